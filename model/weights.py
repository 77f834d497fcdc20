"""Model bundles: the three networks (global; local pre-op; local post-op) in one safetensors file, with their
configuration in its metadata and a human-readable model card (JSON) beside it.

Loading checks the bundle against the shipped landmark schemes and refuses a mismatch with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.frames import FrameSpec
from model.network import HourglassConfig, LandmarkNet
from model.scheme import load_scheme
from model.vocabulary import GLOBAL_STAGE, PHASE_NAMES, STAGE_NAMES, local_stage

FORMAT = "kneealign-bundle/1"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "kneealign-v1.safetensors"


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
        }

    def build_networks(self) -> dict[str, LandmarkNet]:
        """Instantiate the three networks and load their weights (random init where none are stored)."""
        nets = {GLOBAL_STAGE: LandmarkNet(self.global_cfg)}
        for phase in PHASE_NAMES:
            nets[local_stage(phase)] = LandmarkNet(self.local_cfgs[phase])
        for stage, net in nets.items():
            if stage in self.state:
                try:
                    net.load_state_dict(self.state[stage], strict=True)
                except RuntimeError as exc:
                    raise WeightsError(f"stage {stage!r}: weights do not fit the configured network: {exc}") from None
        return nets

    @classmethod
    def untrained(cls, global_cfg: HourglassConfig, local_cfgs: dict[str, HourglassConfig],
                  frame_spec: FrameSpec | None = None, global_size: int = 256, seed: int = 0) -> "ModelBundle":
        """A bundle with freshly initialised networks (for tests and as the start of training)."""
        torch.manual_seed(seed)
        bundle = cls(global_cfg, dict(local_cfgs), frame_spec or FrameSpec(), global_size)
        bundle.state = {k: v.state_dict() for k, v in bundle.build_networks().items()}
        bundle.card = {"training_data": "none: untrained weights, outputs are meaningless"}
        return bundle


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (the model card)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{stage}.{k}": v.detach().cpu().contiguous()
               for stage, sd in bundle.state.items() for k, v in sd.items()}
    save_file(tensors, str(path), metadata={"kneealign": json.dumps(bundle.header())})
    card = {**bundle.header(), **bundle.card, "weights_file": path.name}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


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
                state.setdefault(stage, {})[name] = f.get_tensor(key)
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
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: bad network configuration in header: {exc}") from None
    for phase in PHASE_NAMES:
        if local[phase].n_points != load_scheme(phase).n_points:
            raise WeightsError(f"{path}: local {phase} network predicts {local[phase].n_points} points, "
                               f"scheme has {load_scheme(phase).n_points}")
    if glob.n_points != 2 or glob.n_aux != 2:
        raise WeightsError(f"{path}: global network must predict 2 points and 2 auxiliary logits")
    missing = [s for s in STAGE_NAMES if s not in state]
    if missing:
        raise WeightsError(f"{path}: no weights for stage(s) {missing}")
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    return ModelBundle(glob, local, frame, int(header["global_size"]), state, card,
                       name=header.get("name", "kneealign"), version=header.get("version", "unknown"),
                       confidence_threshold=float(header.get("confidence_threshold", 0.5)), sha256=checksum)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file: names the exact weights a result came from (written into the DICOM outputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
