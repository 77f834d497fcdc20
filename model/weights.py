"""Model bundles: the networks (global; local pre-op; local post-op; optionally the implant stage) in one
safetensors file, with their configuration in its metadata and a human-readable model card (JSON) beside it.

Loading checks the bundle against the shipped landmark schemes and refuses a mismatch with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.frames import FrameSpec
from model.network import HourglassConfig, LandmarkNet
from model.scheme import load_scheme
from model.shipped import SHIPPED_WEIGHTS
from model.vocabulary import GLOBAL_STAGE, IMPLANT_STAGE, PHASE_NAMES, REQUIRED_STAGES, STAGES

FORMAT = "kneealign-bundle/1"
DEFAULT_WEIGHTS = SHIPPED_WEIGHTS


class WeightsError(ValueError):
    """A weights file is missing, malformed, or does not match this code's schemes or networks."""


@dataclass
class ModelBundle:
    global_cfg: HourglassConfig
    local_cfgs: dict[str, HourglassConfig]  # phase -> config
    frame_spec: FrameSpec
    global_size: int
    state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # stage -> state dict
    card: dict = field(default_factory=dict)
    name: str = "kneealign"
    version: str = "0.0.0-untrained"
    confidence_threshold: float = 0.5
    sha256: str | None = None  # of the weights file as loaded (None for a bundle built in memory)
    implant_cfg: HourglassConfig | None = None  # the optional implant stage (2 points, 1 logit) and its frame
    implant_frame: FrameSpec | None = None
    # The phase check's split for these landmark stages (``model.inference.IMPLANT_OUTLINE_EVIDENCE`` explains it);
    # None: that default. It belongs to the weights: another landmark stage finds outlines with other confidences.
    implant_outline_evidence: float | None = None

    def __post_init__(self) -> None:
        if (self.implant_cfg is None) != (self.implant_frame is None):
            raise WeightsError("the implant stage needs both a network configuration and a frame")

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this bundle has networks for."""
        return tuple(s for s in STAGES if s != IMPLANT_STAGE or self.implant_cfg is not None)

    def config_of(self, stage: str) -> HourglassConfig:
        """The network configuration of ``stage``."""
        if stage == GLOBAL_STAGE:
            return self.global_cfg
        if stage == IMPLANT_STAGE:
            if self.implant_cfg is None:
                raise WeightsError("this bundle has no implant stage")
            return self.implant_cfg
        return self.local_cfgs[STAGES[stage].phase]

    def header(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            GLOBAL_STAGE: self.global_cfg.to_dict(),
            "global_size": self.global_size,
            "local": {p: c.to_dict() for p, c in self.local_cfgs.items()},
            "frame": self.frame_spec.to_dict(),
            "schemes": {p: load_scheme(p).id for p in PHASE_NAMES},
            "confidence_threshold": self.confidence_threshold,
            **({IMPLANT_STAGE: {"network": self.implant_cfg.to_dict(), "frame": self.implant_frame.to_dict()}}
               if self.implant_cfg is not None and self.implant_frame is not None else {}),
            **({"implant_outline_evidence": self.implant_outline_evidence}
               if self.implant_outline_evidence is not None else {}),
        }

    def build_networks(self) -> dict[str, LandmarkNet]:
        """Instantiate the bundle's networks and load their weights (random init where none are stored)."""
        nets = {stage: LandmarkNet(self.config_of(stage)) for stage in self.stages}
        for stage, net in nets.items():
            if stage in self.state:
                try:
                    net.load_state_dict(self.state[stage], strict=True)
                except RuntimeError as exc:
                    raise WeightsError(f"stage {stage!r}: weights do not fit the configured network: {exc}") from None
        return nets

    @classmethod
    def untrained(cls, global_cfg: HourglassConfig, local_cfgs: dict[str, HourglassConfig],
                  frame_spec: FrameSpec | None = None, global_size: int = 256, seed: int = 0,
                  implant_cfg: HourglassConfig | None = None, implant_frame: FrameSpec | None = None
                  ) -> "ModelBundle":
        """A bundle with freshly initialised networks (for tests and as the start of training)."""
        torch.manual_seed(seed)
        bundle = cls(global_cfg, dict(local_cfgs), frame_spec or FrameSpec(), global_size,
                     implant_cfg=implant_cfg, implant_frame=implant_frame)
        bundle.state = {k: v.state_dict() for k, v in bundle.build_networks().items()}
        bundle.card = {"training_data": "none: untrained weights, outputs are meaningless"}
        return bundle


def save_bundle(bundle: ModelBundle, path: str | Path, float16: bool = False) -> Path:
    """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (the model card).

    ``float16`` stores the floating-point tensors at half precision (half the file; the header then says
    ``"stored_as": "float16"``); ``load_bundle`` widens them to float32 again, so the networks always compute in
    float32. Rounding moves each weight by at most 1 part in 2048: a new file, to be measured before it ships.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{stage}.{k}": _stored(v.detach().cpu().contiguous(), float16, f"{stage}.{k}")
               for stage, sd in bundle.state.items() for k, v in sd.items()}
    header = {**bundle.header(), **({"stored_as": "float16"} if float16 else {})}
    save_file(tensors, str(path), metadata={"kneealign": json.dumps(header)})
    card = {**header, **bundle.card, "weights_file": path.name}
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    # safetensors (0.8.1 on) writes through a temporary file created 0600 whatever the umask (safetensors issue
    # #782): a bundle exported by an admin would be unreadable by the node's own service user. The weights take
    # their card's mode, which open() made from the umask as for any file.
    shutil.copymode(card_path, path)
    return path


def _stored(tensor: torch.Tensor, float16: bool, name: str) -> torch.Tensor:
    """``tensor`` as it is written: unchanged, or a floating-point one at half precision if it fits there."""
    if not float16 or not tensor.is_floating_point():
        return tensor
    half = tensor.to(torch.float16)
    if not torch.isfinite(half).all():  # beyond float16's range (65504), or not finite at all: refuse
        raise WeightsError(f"{name}: not finite at float16 (beyond 65504?); store this bundle at float32")
    return half


def load_bundle(path: str | Path | None = None) -> ModelBundle:
    """Read a bundle, refusing files whose schemes or configurations do not match this code."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    checksum = file_sha256(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state: dict[str, dict[str, torch.Tensor]] = {}
            for key in f.keys():
                stage, _, name = key.partition(".")
                tensor = f.get_tensor(key)  # half-precision storage is widened: the networks compute in float32
                state.setdefault(stage, {})[name] = tensor.float() if tensor.is_floating_point() else tensor
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from None
    if "kneealign" not in meta:
        raise WeightsError(f"{path}: no KneeAlign header in the safetensors metadata")
    header = json.loads(meta["kneealign"])
    if header.get("format") != FORMAT:
        raise WeightsError(f"{path}: format {header.get('format')!r}, this code reads {FORMAT!r}")
    for phase in PHASE_NAMES:
        expected = load_scheme(phase).id
        got = header.get("schemes", {}).get(phase)
        if got != expected:
            raise WeightsError(f"{path}: trained for scheme {got!r} but this code uses {expected!r} ({phase})")
    try:
        local = {p: HourglassConfig.from_dict(header["local"][p]) for p in PHASE_NAMES}
        glob = HourglassConfig.from_dict(header[GLOBAL_STAGE])
        frame = FrameSpec(**header["frame"])
        implant = header.get(IMPLANT_STAGE)
        implant_cfg = HourglassConfig.from_dict(implant["network"]) if implant is not None else None
        implant_frame = FrameSpec(**implant["frame"]) if implant is not None else None
        evidence = header.get("implant_outline_evidence")
        evidence = None if evidence is None else float(evidence)
        if evidence is not None and not -1.0 <= evidence <= 1.0:  # a difference of two mean confidences
            raise ValueError(f"implant_outline_evidence {evidence} outside [-1, 1]")
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: bad network configuration in header: {exc}") from None
    for phase in PHASE_NAMES:
        if local[phase].n_points != load_scheme(phase).n_points:
            raise WeightsError(f"{path}: local {phase} network predicts {local[phase].n_points} points, "
                               f"scheme has {load_scheme(phase).n_points}")
    for stage, cfg in ((GLOBAL_STAGE, glob), (IMPLANT_STAGE, implant_cfg)):  # the two reference points and logits
        n_aux = len(STAGES[stage].aux)
        if cfg is not None and (cfg.n_points != 2 or cfg.n_aux != n_aux):
            raise WeightsError(f"{path}: {stage} network must predict 2 points and {n_aux} auxiliary logit(s)")
    missing = [s for s in REQUIRED_STAGES + ((IMPLANT_STAGE,) if implant_cfg else ()) if s not in state]
    if missing:
        raise WeightsError(f"{path}: no weights for stage(s) {missing}")
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    return ModelBundle(glob, local, frame, int(header["global_size"]), state, card,
                       name=header.get("name", "kneealign"), version=header.get("version", "unknown"),
                       confidence_threshold=float(header.get("confidence_threshold", 0.5)), sha256=checksum,
                       implant_cfg=implant_cfg, implant_frame=implant_frame, implant_outline_evidence=evidence)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file: names the exact weights a result came from (written into the DICOM outputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
