"""The synthetic path end to end: training data rendered from train.synth with seeds that never touch the
held-out sets, a tiny run on it, and evaluation on the first held-out test cases and on written DICOM files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from train.cli import main
from train.data.splits import (
    HELD_OUT_RANGE,
    N_TEST_PER_PHASE,
    SeedLeakError,
    check_training_seeds,
    held_out_seeds,
    training_seeds,
    validation_seeds,
)
from train.data.synthetic import synthetic_sample
from train.fitting import fit


def test_seed_ranges_are_disjoint():
    held = {s for name in ("test", "hard") for p in ("preop", "postop") for s in held_out_seeds(name, p)}
    assert len(held) == 4 * N_TEST_PER_PHASE
    train = set(training_seeds("preop", 5000)) | set(training_seeds("postop", 5000))
    val = set(validation_seeds("preop", 500)) | set(validation_seeds("postop", 500))
    assert len(train) == 10000 and len(val) == 1000
    assert not (held & train) and not (held & val) and not (train & val)
    with pytest.raises(SeedLeakError):
        check_training_seeds([1, 2, HELD_OUT_RANGE[0] + 5])
    with pytest.raises(ValueError, match="overflow"):
        training_seeds("preop", 10, offset=499_995)


def test_synthetic_sample_matches_the_generator():
    s = synthetic_sample(held_out_seeds("test", "postop")[0], "postop", False, spacing_mm=1.0)
    assert s.phase == "postop" and s.landmarks.shape == (181, 2)
    assert s.pixel_spacing_mm == (1.0, 1.0) and s.image.dtype == np.float32
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    # the generator's angles are those of its landmarks
    from model.alignment import compute_alignment

    a = compute_alignment(s.landmarks, s.scheme, s.laterality)
    assert a.atfa_fnts_deg == pytest.approx(s.atfa_fnts_deg, abs=1e-6)


def test_tiny_synthetic_run_and_held_out_evaluation(tmp_path, caplog, tiny_config):
    data = {"source": "synthetic", "n_train_preop": 3, "n_train_postop": 3, "n_val_per_phase": 1,
            "spacing_mm": 2.0, "render_workers": 1, "cache_file": str(tmp_path / "cache.npz")}
    cfg = tiny_config(tmp_path, data, iterations=4)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bundle, results = fit(path, progress=False)
    assert (tmp_path / "cache.npz").exists()
    card = json.loads(bundle.with_suffix(".json").read_text())
    assert card["training_data_kind"] == "SYNTHETIC"
    assert card["training_data"].startswith("SYNTHETIC: 3 pre-op + 3 post-op")

    # a second run with the same data reads the cache instead of rendering
    cfg["checkpoint_dir"] = str(tmp_path / "ckpt2")
    path.write_text(yaml.safe_dump(cfg))
    with caplog.at_level("INFO", logger="train.fitting.sources"):
        _, again = fit(path, progress=False)
    assert "loaded 8 rendered 2d cases" in caplog.text
    assert again["global"].losses == results["global"].losses

    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(bundle), "--data", "synthetic:test", "--n-per-phase", "1",
                 "--out", str(out), "--no-progress", "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["data"] == "synthetic:test"
    cases = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert [c["source"] for c in cases] == [f"synthetic:{held_out_seeds('test', p)[0]}" for p in ("preop", "postop")]
    assert all(0.0 <= c["laterality_probability"] <= 1.0 and 0.0 <= c["phase_probability"] <= 1.0 for c in cases)

    written = tmp_path / "dicom"
    assert main(["synth", "--n", "2", "--out", str(written), "--seed", "5", "--compress", "rle"]) == 0
    assert main(["evaluate", "--weights", str(bundle), "--data", str(written), "--out", str(tmp_path / "eval2"),
                 "--no-progress", "--no-figures"]) == 0
    assert json.loads((tmp_path / "eval2" / "summary.json").read_text())["n_cases"] == 2


def test_render_store_hard_fraction():
    from train.data.synthetic import render_store

    store = render_store({"preop": training_seeds("preop", 4)}, spacing_mm=3.0, hard_fraction=0.5)
    assert [store[i].source.endswith(":hard") for i in range(4)] == [False, False, True, True]


def test_a_run_can_watch_a_renderer_it_never_trains_on(tmp_path, tiny_config, capsys):
    """Validation cases from the 3D renderer only, training cases from the 2D generator only: the learning curve
    of a leave-one-renderer-out run on the renderer it is kept from; ``progress=False`` renders without a bar."""
    from train.fitting.config import load_config
    from train.fitting.sources import build_data

    data = {"source": "synthetic", "n_train_preop": 2, "n_train_postop": 2, "n_val_per_phase": 0,
            "spacing_mm": 3.0, "render_workers": 1, "xray3d": {"n_val_per_phase": 1, "spacing_mm": 3.0}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, data)))
    cfg = load_config(path)
    train, val = build_data(cfg, progress=False)
    assert [train[i].source.split(":")[0] for i in range(len(train))] == ["synthetic"] * 4
    assert [val[i].source for i in range(len(val))] == [f"xray3d:{validation_seeds(p, 1)[0]}"
                                                         for p in ("preop", "postop")]
    assert cfg.data.renderers == ["2d"]
    assert "never trained on" in cfg.data.describe()
    assert "render" not in capsys.readouterr().err


def test_validation_cases_alone_are_not_a_training_set(tmp_path, tiny_config):
    """A config whose only cases are the 3D renderer's validation cases stops with the data error, before
    anything is rendered, instead of a later, vaguer error from the stage."""
    from train.fitting.config import load_config
    from train.fitting.sources import build_data

    data = {"source": "synthetic", "n_train_preop": 0, "n_train_postop": 0, "n_val_per_phase": 0,
            "spacing_mm": 3.0, "render_workers": 1, "xray3d": {"n_val_per_phase": 1, "spacing_mm": 3.0}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, data)))
    with pytest.raises(ValueError, match="no training cases"):
        build_data(load_config(path), progress=False)


def test_each_renderer_takes_its_own_seed_offset(tmp_path, tiny_config):
    """``seed_offset`` moves a renderer's training seeds past those earlier runs trained on, each renderer its own;
    validation seeds do not move (runs stay comparable)."""
    from train.fitting.config import load_config
    from train.fitting.sources import build_data

    data = {"source": "synthetic", "n_train_preop": 1, "n_train_postop": 0, "n_val_per_phase": 0, "seed_offset": 7,
            "spacing_mm": 3.0, "render_workers": 1,
            "xray3d": {"n_train_preop": 1, "n_val_per_phase": 1, "seed_offset": 11, "spacing_mm": 3.0}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, data)))
    cfg = load_config(path)
    train, val = build_data(cfg, progress=False)
    assert [train[i].source for i in range(len(train))] == [f"synthetic:{training_seeds('preop', 1, 7)[0]}",
                                                            f"xray3d:{training_seeds('preop', 1, 11)[0]}"]
    assert [val[i].source for i in range(len(val))] == [f"xray3d:{validation_seeds(p, 1)[0]}"
                                                         for p in ("preop", "postop")]
    assert "training seeds from offset 11" in cfg.data.xray3d.describe()
