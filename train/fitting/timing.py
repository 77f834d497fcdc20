"""``knee-train steptime CONFIG``: seconds per training step of each stage, measured with the configuration's
own networks, batch sizes, augmentation and threads on a few rendered cases, and the time its iterations will
take. Nothing is written."""

from __future__ import annotations

import time

import numpy as np
import torch

from model.inference import resolve_device
from model.network import LandmarkNet
from model.vocabulary import STAGE_NAMES
from train.data.splits import training_seeds
from train.data.synthetic import render_store
from train.fitting.config import SyntheticData, load_config
from train.fitting.loop import stage_indices, train_step
from train.fitting.sources import build_data, phases_needed


def measure_step_times(config_path: str, steps: int = 10) -> dict[str, dict]:
    cfg = load_config(config_path)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    batch = max(s.batch_size for s in cfg.stages.values())
    if isinstance(cfg.data, SyntheticData):
        seeds = {p: training_seeds(p, batch, cfg.data.seed_offset) for p in phases_needed(cfg)}
        store = render_store(seeds, cfg.data.spacing_mm, cfg.data.render_workers)
    else:
        store, _ = build_data(cfg)
    out = {}
    for stage in STAGE_NAMES:
        if stage not in cfg.stages:
            continue
        scfg = cfg.stages[stage]
        net = LandmarkNet(cfg.hourglass(stage)).to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=scfg.lr)
        indices = stage_indices(stage, store)
        times = []
        for step in range(steps + 1):  # the first step warms up allocators and is not counted
            t0 = time.perf_counter()
            train_step(net, opt, stage, cfg, store, indices, step, device)
            times.append(time.perf_counter() - t0)
        median = float(np.median(times[1:]))
        out[stage] = {"median_s": median, "steps": steps, "batch_size": scfg.batch_size,
                      "iterations": scfg.iterations, "estimate_min": median * scfg.iterations / 60}
    return out

