"""Training one stage: sample a batch, augment, forward, loss, step; checkpoint every K steps and resume from the
latest checkpoint. Batches are drawn with a generator seeded by ``(run seed, stage, step)``, so a resumed run
draws exactly the batches the interrupted one would have drawn."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.network import LandmarkNet
from model.scheme import load_scheme
from model.vocabulary import GLOBAL_STAGE, IMPLANT_STAGE, STAGE_NAMES, STAGES
from train.data.stages import Batch, global_batch, implant_batch, local_batch
from train.data.store import SampleStore
from train.fitting.config import RunConfig, StageConfig
from train.fitting.objective import angle_axes, landmark_weights, stage_loss, validation_errors


class CheckpointError(RuntimeError):
    """A checkpoint exists but belongs to a different network configuration."""


@dataclass
class StageResult:
    stage: str
    state: dict[str, torch.Tensor]
    steps: int
    elapsed_s: float  # training time summed over resumed sessions
    step_time_s: float  # median seconds per step in this session (nan if none ran)
    losses: list[float] = field(default_factory=list)  # total loss of every step, from step 0
    validation: dict[str, float] = field(default_factory=dict)  # last validation errors


def learning_rate(cfg: StageConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr * lr_min_fraction`` (constant when that is 1)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.iterations - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.lr * cfg.lr_min_fraction
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))


def reference_indices(stage: str) -> tuple[int, int]:
    if STAGES[stage].phase is None:  # the global and implant stages predict just the two reference points
        return (0, 1)
    return load_scheme(STAGES[stage].phase).roles["reference"]


def make_batch(stage: str, cfg: RunConfig, samples: list, rng: np.random.Generator | None) -> Batch:
    """A batch for ``stage``; augmented when ``rng`` is given."""
    scfg = cfg.stages[stage]
    if stage == GLOBAL_STAGE:
        return global_batch(samples, cfg.global_size, rng, scfg.augment if rng is not None else None)
    if stage == IMPLANT_STAGE:
        return implant_batch(samples, cfg.implant_frame, rng, scfg.augment if rng is not None else None)
    return local_batch(samples, cfg.frame, rng, scfg.augment if rng is not None else None)


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def checkpoint_path(cfg: RunConfig, stage: str) -> Path:
    return Path(cfg.checkpoint_dir) / stage / "latest.pt"


def train_step(net: LandmarkNet, opt: torch.optim.Optimizer, stage: str, cfg: RunConfig, train: SampleStore,
               indices: list[int], step: int, device: torch.device) -> tuple[float, dict[str, float]]:
    """One optimisation step on the batch of ``step`` (drawn and augmented reproducibly); returns the losses."""
    scfg = cfg.stages[stage]
    rng = np.random.default_rng([cfg.seed, STAGE_NAMES.index(stage), step])
    chosen = rng.choice(indices, size=scfg.batch_size, replace=len(indices) < scfg.batch_size)
    batch = make_batch(stage, cfg, [train[int(i)] for i in chosen], rng).to(device)
    for group in opt.param_groups:
        group["lr"] = learning_rate(scfg, step)
    out = net(batch.images)
    weights = landmark_weights(STAGES[stage].phase, scfg.loss.axis_landmark_weight)
    axes = angle_axes(STAGES[stage].phase) if scfg.loss.axis_angle_weight > 0 else None
    loss, parts = stage_loss(out, batch, scfg.loss, net.cfg.stem_stride, weights, axes)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if scfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), scfg.grad_clip)
    opt.step()
    return float(loss.detach()), parts


def stage_indices(stage: str, store: SampleStore) -> list[int]:
    """The samples a stage trains on: all for the global stage, those of its phase for a local stage."""
    return store.indices(STAGES[stage].phase)


def fit_stage(stage: str, cfg: RunConfig, train: SampleStore, val: SampleStore, device: torch.device,
              init_state: dict[str, torch.Tensor] | None = None, progress: bool = True) -> StageResult:
    """Train ``stage`` for its configured iterations (resuming from its checkpoint when allowed)."""
    scfg = cfg.stages[stage]
    hg = cfg.hourglass(stage)
    indices = stage_indices(stage, train)
    if not indices:
        raise ValueError(f"stage {stage}: no training samples of its phase")
    torch.manual_seed(cfg.seed * 1000 + STAGE_NAMES.index(stage))
    net = LandmarkNet(hg).to(device)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.Adam(net.parameters(), lr=scfg.lr, weight_decay=scfg.weight_decay)
    start, elapsed, losses = 0, 0.0, []
    ckpt = checkpoint_path(cfg, stage)
    if cfg.resume and ckpt.exists():
        payload = torch.load(ckpt, map_location=device, weights_only=False)
        if payload["hourglass"] != hg.to_dict():
            raise CheckpointError(f"{ckpt}: made for network {payload['hourglass']}, this config has {hg.to_dict()};"
                                  " use another checkpoint_dir or resume: false")
        net.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optim"])
        start, elapsed, losses = payload["step"], payload["elapsed_s"], payload["losses"]
    val_idx = stage_indices(stage, val)
    bs = scfg.batch_size
    val_batches = [make_batch(stage, cfg, [val[i] for i in val_idx[k:k + bs]], None)
                   for k in range(0, len(val_idx), bs)]
    ref = reference_indices(stage)
    axes = angle_axes(STAGES[stage].phase)  # the validation also reports the aTFA axes' angle error
    log_path = Path(cfg.checkpoint_dir) / stage / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if start == 0:
        log_path.unlink(missing_ok=True)  # a run from step 0 starts a new learning curve, not after an old one's
    validation: dict[str, float] = {}
    step_times: list[float] = []
    net.train()
    bar = tqdm(total=scfg.iterations, initial=start, desc=stage, unit="it", dynamic_ncols=True, disable=not progress)

    def checkpoint(step: int) -> None:
        _save(ckpt, {"step": step, "model": net.state_dict(), "optim": opt.state_dict(), "elapsed_s": elapsed,
                     "losses": losses, "hourglass": hg.to_dict(), "iterations": scfg.iterations})

    ema = None
    for step in range(start, scfg.iterations):
        t0 = time.perf_counter()
        loss_value, parts = train_step(net, opt, stage, cfg, train, indices, step, device)
        dt = time.perf_counter() - t0
        step_times.append(dt)
        elapsed += dt
        losses.append(loss_value)
        ema = losses[-1] if ema is None else 0.95 * ema + 0.05 * losses[-1]
        done = step + 1
        if val_batches and (done % cfg.validate_every == 0 or done == scfg.iterations):
            validation = validation_errors(net, val_batches, device, ref, STAGES[stage].aux, axes)
        if done % cfg.checkpoint_every == 0 or done == scfg.iterations:
            checkpoint(done)
        if done % 25 == 0 or done == scfg.iterations or done % cfg.validate_every == 0:
            with log_path.open("a") as fh:
                fh.write(json.dumps({"step": done, "loss": losses[-1], "loss_ema": ema, **parts,
                                     "lr": learning_rate(scfg, step), "step_s": dt, **validation}) + "\n")
        bar.set_postfix(loss=f"{ema:.3g}", **{k: f"{v:.3g}" for k, v in validation.items()})
        bar.update()
    bar.close()
    if start >= scfg.iterations and val_batches:
        validation = validation_errors(net, val_batches, device, ref, STAGES[stage].aux, axes)
    return StageResult(stage, {k: v.detach().cpu() for k, v in net.state_dict().items()}, scfg.iterations,
                       elapsed, float(np.median(step_times)) if step_times else float("nan"), losses, validation)
