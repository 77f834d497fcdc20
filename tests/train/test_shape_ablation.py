"""The shape-randomisation ablation (docs/results/shape-randomisation-ablation.md): each elastic config differs from
its pair only in the bend, and the implant-occlusion bench (tests/bench/bench_implant_occlusion.py) finds the
patch a logit depends on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.bench.bench_implant_occlusion import occlusion_map
from train.fitting import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"
PAIRS = [("loro-2d-aug-off", "loro-2d-elastic", "global"),
         ("loro-2d-aug-off-implant", "loro-2d-elastic-implant", "implant"),
         ("loro-2d-narrow", "loro-2d-elastic-preop", "local_preop")]


@pytest.mark.parametrize("off,elastic,stage", PAIRS)
def test_each_elastic_config_differs_from_its_pair_only_in_the_bend(off, elastic, stage):
    a, b = load_config(CONFIGS / f"{off}.yaml"), load_config(CONFIGS / f"{elastic}.yaml")
    assert a.data == b.data and a.seed == b.seed and set(a.stages) == set(b.stages) == {stage}
    sa, sb = a.stages[stage].model_dump(), b.stages[stage].model_dump()
    assert sa["augment"].pop("elastic")["p"] == 0.0
    assert sb["augment"].pop("elastic") == {"p": 0.7, "amplitude": (0.01, 0.04), "cells": (3, 4)}
    assert sa == sb
    assert a.output != b.output and a.checkpoint_dir != b.checkpoint_dir


@dataclass
class _Out:
    aux: torch.Tensor


class _WatchesOneCorner(torch.nn.Module):
    """A logit that is the mean brightness of the image's top-left 8 x 8 pixels."""

    def forward(self, images: torch.Tensor) -> _Out:
        return _Out(images[:, :, :8, :8].mean(dim=(2, 3)))


def test_the_occlusion_map_falls_only_where_the_logit_looks():
    images = torch.zeros(3, 1, 32, 32)
    images[:, :, :8, :8] = 1.0  # bright where the logit looks, dark elsewhere
    corners, fall = occlusion_map(_WatchesOneCorner(), images, patch=8, step=8)
    assert corners == [0, 8, 16, 24]
    assert fall[0, 0] == pytest.approx(1.0 - 1.0 / 16)  # greyed to the image's mean, 1/16
    fall[0, 0] = 0.0
    assert abs(fall).max() == 0.0
