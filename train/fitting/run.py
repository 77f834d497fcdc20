"""``knee-train fit CONFIG``: train the configured stages in order (global, local pre-op, local post-op, implant)
and write a ``ModelBundle`` (safetensors) with its model card; stages not trained come from ``init_weights``."""

from __future__ import annotations

import datetime as dt
import logging
import math
import platform
from pathlib import Path

import cv2
import torch

from model.inference import resolve_device
from model.network import LandmarkNet, count_parameters
from model.vocabulary import GLOBAL_STAGE, IMPLANT_STAGE, PHASE_NAMES, REQUIRED_STAGES, STAGE_NAMES, local_stage
from model.weights import ModelBundle, load_bundle, save_bundle
from train.fitting.config import ConfigError, RunConfig, SyntheticData, load_config
from train.fitting.loop import StageResult, fit_stage
from train.fitting.sources import build_data

log = logging.getLogger(__name__)

RENDERER_NAMES = {"2d": "train.synth (2D outlines)", "3d": "train.xray3d (3D solids projected)"}


def limitations(data: SyntheticData, trained: list[str] | None = None) -> str:
    """The model card's limitations of weights trained on synthetic radiographs (``trained``: the stages this run
    trained, when the others come from init_weights)."""
    sources = " and ".join(RENDERER_NAMES[r] for r in data.renderers)
    which = f"The {', '.join(trained)} stage(s) were trained" if trained else "Trained"
    return (f"{which} only on synthetic radiographs from {sources}"
            + ("; the other stages come from init_weights (see init_weights_training_data)" if trained else "")
            + "; accuracy on real radiographs is not established and must be measured on local annotated data "
            "(knee-train evaluate) before clinical use. Figures on a renderer the weights were trained on are a "
            "ceiling, not an estimate: see the leave-one-renderer-out figures in the README.")


def _init_bundle(cfg: RunConfig) -> ModelBundle | None:
    missing = [s for s in REQUIRED_STAGES if s not in cfg.stages]
    if cfg.init_weights is None:
        if missing:
            raise ConfigError(f"stages {missing} are not trained by this config: give init_weights, a bundle to "
                              "take them from")
        return None
    bundle = load_bundle(cfg.init_weights)
    if bundle.frame_spec != cfg.frame or bundle.global_size != cfg.global_size:
        raise ConfigError(f"init_weights {cfg.init_weights} use frame {bundle.frame_spec} / global size "
                          f"{bundle.global_size}; this config has {cfg.frame} / {cfg.global_size}")
    for stage, scfg in cfg.stages.items():  # a stage that cannot start from its init weights must say so
        if stage not in bundle.stages or scfg.from_scratch:
            continue
        if bundle.config_of(stage) != cfg.hourglass(stage):
            raise ConfigError(f"stage {stage}: init_weights {cfg.init_weights} hold the network "
                              f"{bundle.config_of(stage).to_dict()}, this config asks for "
                              f"{cfg.hourglass(stage).to_dict()}; give the same network to train on from those "
                              "weights, or from_scratch: true to start this stage from random weights")
        if stage == IMPLANT_STAGE and bundle.implant_frame != cfg.implant_frame:
            raise ConfigError(f"stage {stage}: init_weights {cfg.init_weights} use implant frame "
                              f"{bundle.implant_frame}, this config {cfg.implant_frame}; give the same frame, or "
                              "from_scratch: true to start this stage from random weights")
    return bundle


def _stage_card(cfg: RunConfig, result: StageResult) -> dict:
    scfg = cfg.stages[result.stage]
    tail = result.losses[-50:]
    return {
        "network": cfg.hourglass(result.stage).to_dict(),
        "parameters": count_parameters(LandmarkNet(cfg.hourglass(result.stage))),
        "iterations": result.steps,
        "batch_size": scfg.batch_size,
        "lr": scfg.lr,
        "loss": scfg.loss.model_dump(),
        "train_time_s": round(result.elapsed_s, 1),
        "median_step_s": None if math.isnan(result.step_time_s) else round(result.step_time_s, 4),
        "final_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "validation": {k: round(v, 4) for k, v in result.validation.items()},
    }


def training_steps(this_run: dict, init: ModelBundle | None) -> list[dict]:
    """The chain of runs from random weights to this bundle: the init weights' chain (their card's
    ``training_steps``, exports included) followed by ``this_run``."""
    earlier = list(init.card.get("training_steps") or []) if init else []
    return earlier + [this_run]


def build_card(cfg: RunConfig, config_path: Path, results: dict[str, StageResult], device: torch.device,
               init: ModelBundle | None) -> dict:
    synthetic = isinstance(cfg.data, SyntheticData)
    command = f"knee-train fit {config_path}"
    train_time_s = round(sum(r.elapsed_s for r in results.values()), 1)
    this_run = {"command": command, "init_weights": str(cfg.init_weights) if cfg.init_weights else None,
                "stages": {s: r.steps for s, r in results.items()}, "train_time_s": train_time_s}
    return {
        "training_data": cfg.data.describe(),
        "training_data_kind": "SYNTHETIC" if synthetic else "ANNOTATED IMAGES",
        "limitations": (limitations(cfg.data, list(results) if init and set(init.stages) - set(results) else None)
                        if synthetic
                        else "Measure on held-out local data before clinical use."),
        "stages": {s: _stage_card(cfg, r) for s, r in results.items()},
        "stages_from_init_weights": {s: str(cfg.init_weights) for s in (init.stages if init else ())
                                     if s not in results},
        # What those stages were trained on (this run's training_data describes only the stages it trained).
        "init_weights_training_data": init.card.get("training_data") if init else None,
        "training_steps": training_steps(this_run, init),
        "training": {
            "command": command,
            "config": cfg.model_dump(mode="json"),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "total_train_time_s": train_time_s,
        },
        "metrics": None,  # filled in by: knee-train evaluate --weights W --data synthetic:test --update-card
    }


def fit(config_path: str | Path, progress: bool = True) -> tuple[Path, dict[str, StageResult]]:
    """Run a training config end to end; returns the bundle path and the per-stage results."""
    config_path = Path(config_path)
    cfg = load_config(config_path)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        cv2.setNumThreads(1)  # augmentation runs between steps; its threads would only contend with torch's
    device = resolve_device(cfg.device)
    init = _init_bundle(cfg)
    train, val = build_data(cfg, progress)
    log.info("training data: %d samples (%.0f MB), validation: %d", len(train), train.nbytes / 2**20, len(val))
    results: dict[str, StageResult] = {}
    for stage in STAGE_NAMES:
        if stage not in cfg.stages:
            continue
        init_state = None  # random weights; _init_bundle refused a stage whose init weights do not fit
        if init is not None and stage in init.stages and stage in init.state and not cfg.stages[stage].from_scratch:
            init_state = init.state[stage]
        results[stage] = fit_stage(stage, cfg, train, val, device, init_state, progress)
    state = {s: r.state for s, r in results.items()}
    if init is not None:
        state = {**{s: init.state[s] for s in init.stages if s not in results}, **state}

    def net_cfg(stage: str):
        return cfg.hourglass(stage) if stage in results else init.config_of(stage)

    implant_trained = IMPLANT_STAGE in results
    has_implant = implant_trained or (init is not None and IMPLANT_STAGE in init.stages)
    bundle = ModelBundle(
        global_cfg=net_cfg(GLOBAL_STAGE),
        local_cfgs={p: net_cfg(local_stage(p)) for p in PHASE_NAMES},
        frame_spec=cfg.frame, global_size=cfg.global_size, state=state,
        card=build_card(cfg, config_path, results, device, init),
        name=cfg.name, version=cfg.version, confidence_threshold=cfg.confidence_threshold,
        implant_outline_evidence=_outline_evidence(cfg, results, init),
        implant_cfg=net_cfg(IMPLANT_STAGE) if has_implant else None,
        implant_frame=(cfg.implant_frame if implant_trained else init.implant_frame) if has_implant else None,
    )
    return save_bundle(bundle, cfg.output), results


def _outline_evidence(cfg: RunConfig, results: dict, init: ModelBundle | None) -> float | None:
    """The new bundle's phase-check split: the config's; else the init weights' while both landmark stages are
    theirs (the split belongs to the stages that find the outlines); else None, the node's default."""
    if cfg.implant_outline_evidence is not None:
        return cfg.implant_outline_evidence
    if init is None or any(local_stage(p) in results for p in PHASE_NAMES):
        return None
    return init.implant_outline_evidence
