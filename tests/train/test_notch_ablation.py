"""The filled-notch ablation (docs/results/notch-ablation.md): each config differs from the run it is compared with
only in the generator's variants (and so in its image cache), or, end to end, only in the bundle it starts from."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.fitting import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"
VARIANT_PAIRS = [("loro-2d-aug-off", "loro-2d-notch-global", ["dense_plates", "filled_notch"]),
                 ("loro-2d-aug-off-implant", "loro-2d-notch-implant", ["filled_notch"]),
                 ("loro-2d-aug-off-implant", "loro-2d-notch-plates-implant", ["dense_plates", "filled_notch"]),
                 ("loro-2d-narrow", "loro-2d-notch-preop", ["dense_plates", "filled_notch"])]


def _data_without_images(cfg) -> dict:
    data = cfg.data.model_dump()
    data.pop("cache_file")
    return data


@pytest.mark.parametrize("off,notch,variants", VARIANT_PAIRS)
def test_each_notch_config_differs_from_its_pair_only_in_the_images(off, notch, variants):
    a, b = load_config(CONFIGS / f"{off}.yaml"), load_config(CONFIGS / f"{notch}.yaml")
    assert a.data.variants == [] and b.data.variants == variants
    assert a.data.cache_file != b.data.cache_file  # the cache of the plain images is not reused
    assert {**_data_without_images(a), "variants": variants} == _data_without_images(b)
    assert a.seed == b.seed and a.stages == b.stages
    assert a.output != b.output and a.checkpoint_dir != b.checkpoint_dir


def test_the_end_to_end_run_trains_the_ablations_implant_stage_in_the_2d_only_bundle():
    stage, e2e, narrow = (load_config(CONFIGS / f"{name}.yaml")
                          for name in ("loro-2d-notch-plates-implant", "loro-2d-notch-e2e", "loro-2d-narrow"))
    assert e2e.init_weights == narrow.output and e2e.stages["implant"].from_scratch
    assert e2e.data == stage.data and e2e.seed == stage.seed
    assert e2e.stages["implant"].model_dump() == {**stage.stages["implant"].model_dump(), "from_scratch": True}
    assert load_config(CONFIGS / "loro-2d-notch-preop.yaml").init_weights == e2e.output
