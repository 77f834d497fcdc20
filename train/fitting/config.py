"""The run configuration: one YAML file per training run (``train/configs/*.yaml``), validated with pydantic so
that a typo is an error naming the key, not a silently ignored setting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.frames import FrameSpec
from model.network import HourglassConfig
from model.scheme import load_scheme
from model.vocabulary import GLOBAL_STAGE, IMPLANT_STAGE, STAGE_NAMES, STAGES
from train.augment import FrameJitter, GlobalAug, ImplantAug
from train.synth.anatomy import VARIANTS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkConfig(_Strict):
    depth: int
    width: int
    stem_stride: Literal[1, 2, 4] = 4
    attention: bool = True
    max_width: int | None = None  # levels below the top double their width up to this (None: constant width)

    @model_validator(mode="after")
    def _network_checks_its_own_shape(self) -> "NetworkConfig":
        self.hourglass(n_points=1)  # HourglassConfig's checks (e.g. max_width below width), when the file is read
        return self

    def hourglass(self, n_points: int, n_aux: int = 0) -> HourglassConfig:
        return HourglassConfig(depth=self.depth, width=self.width, n_points=n_points, n_aux=n_aux,
                               stem_stride=self.stem_stride, attention=self.attention, max_width=self.max_width)


class LossConfig(_Strict):
    wing_w: float = 10.0
    wing_eps: float = 2.0
    heatmap_kl_weight: float = 1.0  # KL(Gaussian target || softmax map): sharpens maps from the start (0 = off)
    heatmap_js_weight: float = 0.0  # Jensen-Shannon divergence to the Gaussian target, as DSNT (0 = off)
    heatmap_sigma: float = 1.0  # heatmap cells
    adaptive_wing_weight: float = 0.0  # Adaptive Wing on sigmoid heatmaps (0 = off)
    aux_weight: float = 1.0  # global stage BCE
    # Landmark stages only: the weight of the landmarks the aTFA is built from (the plateau corners, the femoral
    # notch and the shaft pair of every level the scheme marks, those the adaptive axes use among them;
    # model.scheme.LandmarkScheme.angle_landmarks) against the others' 1 in the Wing, KL and JS terms (1 = every
    # landmark alike, as the paper).
    axis_landmark_weight: float = Field(default=1.0, gt=0, le=100)
    # Landmark stages only: the weight of a loss on the direction of every axis the aTFA may be drawn through (the
    # tibial axis from 0.8 to 1.0-1.3 plateau widths, the femoral FTS axis from 1.1-1.3 to 0.8 and the FNTS axis
    # from 1.1-1.3 to the notch), degrees, smooth L1 (train.losses.axis_angle_loss); 0 = off, as the paper.
    axis_angle_weight: float = Field(default=0.0, ge=0, le=100)


class StageConfig(_Strict):
    network: NetworkConfig
    iterations: int = Field(gt=0)
    batch_size: int = Field(default=8, gt=0)
    lr: float = 1e-4
    lr_min_fraction: float = 1.0  # cosine decay to lr * this at the end (1 = constant lr)
    warmup: int = 0  # iterations of linear warm-up
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    loss: LossConfig = LossConfig()
    from_scratch: bool = False  # random weights even where init_weights holds a network of this stage's shape


class GlobalStageConfig(StageConfig):
    augment: GlobalAug = GlobalAug()


class LocalStageConfig(StageConfig):
    augment: FrameJitter = FrameJitter()


class ImplantStageConfig(StageConfig):
    augment: ImplantAug = ImplantAug()


STAGE_CONFIGS: dict[str, type[StageConfig]] = {GLOBAL_STAGE: GlobalStageConfig, IMPLANT_STAGE: ImplantStageConfig}


class Xray3DData(_Strict):
    """Cases from the projection renderer (``train.xray3d``), in addition to (or instead of) the 2D generator's."""

    n_train_preop: int = Field(default=0, ge=0)
    n_train_postop: int = Field(default=0, ge=0)
    n_val_per_phase: int = Field(default=0, ge=0)
    seed_offset: int = Field(default=0, ge=0)  # start this far into the training seed range (fresh images)
    spacing_mm: float = Field(default=0.6, gt=0)
    hard_fraction: float = Field(default=0.0, ge=0, le=1)
    cache_file: str | None = None

    def describe(self) -> str:
        return (f"{self.n_train_preop} pre-op + {self.n_train_postop} post-op radiographs from train.xray3d (3D "
                f"solids projected from a point source; training seeds from offset {self.seed_offset}; "
                f"{100 * self.hard_fraction:.0f}% from its hard distribution), "
                f"rendered at {self.spacing_mm} mm/pixel")


class SyntheticData(_Strict):
    source: Literal["synthetic"] = "synthetic"
    n_train_preop: int = Field(default=500, ge=0)
    n_train_postop: int = Field(default=500, ge=0)
    n_val_per_phase: int = Field(default=16, ge=0)
    seed_offset: int = Field(default=0, ge=0)  # start this far into the training seed range
    spacing_mm: float = Field(default=0.5, gt=0)
    hard_fraction: float = Field(default=0.0, ge=0, le=1)  # training cases drawn from the hard distribution
    render_workers: int = Field(default=2, ge=1)
    cache_file: str | None = None  # .npz of the rendered store, reused when it matches
    # widenings of the 2D generator (train.synth.anatomy.VARIANTS): implant_designs (post-op implants of other
    # designs), dense_plates (pre-op knees with dense subchondral plates and a bright plateau rim),
    # filled_notch (pre-op knees with a grey notch under a denser patella)
    variants: list[Literal[VARIANTS]] = []
    xray3d: Xray3DData | None = None  # cases of the second renderer

    def describe(self) -> str:
        parts = []
        if self.n_train_preop or self.n_train_postop:
            parts.append(f"{self.n_train_preop} pre-op + {self.n_train_postop} post-op radiographs from train.synth "
                         f"(2D outlines; training seeds from offset {self.seed_offset}; {100 * self.hard_fraction:.0f}%"
                         f" from its hard distribution{''.join('; ' + v for v in self.variants)})"
                         f", rendered at {self.spacing_mm} mm/pixel")
        if self.xray3d is not None and (self.xray3d.n_train_preop or self.xray3d.n_train_postop):
            parts.append(self.xray3d.describe())
        elif self.xray3d is not None and self.xray3d.n_val_per_phase:
            parts.append(f"validated on {self.xray3d.n_val_per_phase} + {self.xray3d.n_val_per_phase} radiographs "
                         "from train.xray3d, never trained on")
        return "SYNTHETIC: " + "; ".join(parts) + "; no real patient images"

    @property
    def renderers(self) -> list[str]:
        """The renderers this data draws training cases from."""
        out = ["2d"] if self.n_train_preop or self.n_train_postop else []
        if self.xray3d is not None and (self.xray3d.n_train_preop or self.xray3d.n_train_postop):
            out.append("3d")
        return out


class ManifestData(_Strict):
    source: Literal["manifest"]
    manifest: str | list[str]  # one manifest, or several whose entries are trained on together
    train_split: str | None = "train"
    val_split: str | None = "val"
    spacing_mm: float | None = 0.5  # downsample images finer than this (when their spacing is known)
    max_side: int = 1200  # otherwise downsample to at most this many pixels

    def describe(self) -> str:
        return f"annotated images listed in {', '.join(self.manifests)} (split {self.train_split!r})"

    @property
    def manifests(self) -> list[str]:
        return [self.manifest] if isinstance(self.manifest, str) else list(self.manifest)


class RunConfig(_Strict):
    name: str = "kneealign"
    version: str = "0.1.0"
    seed: int = 0
    device: str = "auto"
    threads: int | None = 2
    # Relative paths (output, checkpoint_dir, init_weights, data files) are relative to the working directory.
    output: str  # bundle path (.safetensors); the model card is written beside it
    checkpoint_dir: str
    checkpoint_every: int = Field(default=200, gt=0)
    validate_every: int = Field(default=200, gt=0)
    resume: bool = True
    confidence_threshold: float = 0.5
    # The bundle's split of the phase check (model.inference.IMPLANT_OUTLINE_EVIDENCE), chosen on validation seeds
    # with python tests/bench/bench_phase_outline.py once the landmark stages are trained. Unset: the init weights'
    # when this run trains no landmark stage, otherwise the node's default.
    implant_outline_evidence: float | None = Field(default=None, ge=-1.0, le=1.0)
    init_weights: str | None = None  # bundle whose stages seed the networks (and fill stages not trained)
    global_size: int = 256
    frame: FrameSpec = FrameSpec()
    # The implant stage's frame: the joint, one plateau width around the plateau's centre, at 48 px per width.
    implant_frame: FrameSpec = FrameSpec(half_width=1.0, above=1.0, below=1.0, width_px=96, height_px=96)
    data: SyntheticData | ManifestData = Field(discriminator="source")
    stages: dict[Literal[STAGE_NAMES], GlobalStageConfig | LocalStageConfig | ImplantStageConfig]

    @model_validator(mode="before")
    @classmethod
    def _typed_stages(cls, values: dict) -> dict:
        stages = values.get("stages") or {}
        typed = {}
        for name, cfg in stages.items():
            kind = STAGE_CONFIGS.get(name, LocalStageConfig)
            typed[name] = kind.model_validate(cfg) if isinstance(cfg, dict) else cfg
        values["stages"] = typed
        return values

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if not self.stages:
            raise ValueError(f"stages: name at least one of {', '.join(STAGE_NAMES)}")
        for name, stage in self.stages.items():
            if STAGES[name].phase is None and stage.loss.axis_landmark_weight != 1.0:
                raise ValueError(f"stages.{name}.loss.axis_landmark_weight: only the landmark stages have aTFA "
                                 "landmarks to weight (leave it at 1)")
            if STAGES[name].phase is None and stage.loss.axis_angle_weight != 0.0:
                raise ValueError(f"stages.{name}.loss.axis_angle_weight: only the landmark stages have aTFA axes "
                                 "(leave it at 0)")
        _ = self.frame.scale_px, self.implant_frame.scale_px  # raise when a frame's pixels are not square
        return self

    def hourglass(self, stage: str) -> HourglassConfig:
        """The network configuration of ``stage`` (point counts from the schemes)."""
        net = self.stages[stage].network
        about = STAGES[stage]
        if about.phase is None:  # the global and implant stages find the two reference points
            return net.hourglass(n_points=2, n_aux=len(about.aux))
        return net.hourglass(n_points=load_scheme(about.phase).n_points)


class ConfigError(ValueError):
    """The run configuration is missing, unreadable or invalid; the message names the file and key."""


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
        return RunConfig.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
