"""``knee-train export``: a release written at half precision is half the file, loads as float32 networks whose
outputs barely move, carries its training record and provenance, and drops the source's metrics."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from model.network import HourglassConfig
from model.weights import ModelBundle, WeightsError, load_bundle, save_bundle
from train.cli import main as knee_train
from train.export import export_bundle

SMALL = dict(global_cfg=HourglassConfig(2, 16, 2, n_aux=2),
             local_cfgs={"preop": HourglassConfig(3, 16, 134), "postop": HourglassConfig(2, 16, 181)})


@pytest.fixture
def trained(tmp_path):
    bundle = ModelBundle.untrained(**SMALL, seed=3)
    bundle.version = "9.1.0-candidate"
    bundle.card = {"training_data": "SYNTHETIC: toy", "training_steps": [{"stages": {"global": 5}}],
                   "metrics": {"synthetic:test": {"model": {"version": "9.1.0-candidate"}}}}
    path = save_bundle(bundle, tmp_path / "run" / "weights.safetensors")
    return load_bundle(path), path


def test_float16_export_halves_the_file_and_loads_as_float32_close_to_the_source(trained, tmp_path):
    source, source_path = trained
    exit_code = knee_train(["export", str(source_path), str(tmp_path / "rel.safetensors"),
                            "--version", "9.1.0", "--float16"])
    assert exit_code == 0
    target = tmp_path / "rel.safetensors"
    float_bytes = sum(t.numel() * 4 for w in source.state.values() for t in w.values() if t.is_floating_point())
    saved = source_path.stat().st_size - target.stat().st_size
    assert saved == pytest.approx(float_bytes / 2, abs=1500)  # 2 bytes a weight, not 4 (and shorter offsets)
    release = load_bundle(target)
    assert release.version == "9.1.0"
    for stage, weights in source.state.items():
        for name, tensor in weights.items():
            loaded = release.state[stage][name]
            assert loaded.dtype == tensor.dtype  # widened again: the networks compute in float32
            if tensor.is_floating_point():
                assert torch.equal(loaded, tensor.half().float())
            else:
                assert torch.equal(loaded, tensor)
    x = torch.randn(1, 1, 288, 192)
    with torch.no_grad():
        a = source.build_networks()["local_preop"].eval()(x).coords
        b = release.build_networks()["local_preop"].eval()(x).coords
    assert 0 < (a - b).abs().max() < 0.05  # pixels of the 288 x 192 frame: rounding, not a different network


def test_the_exports_card_keeps_the_training_record_names_its_source_and_drops_its_metrics(trained, tmp_path):
    source, source_path = trained
    target = export_bundle(source_path, tmp_path / "rel.safetensors", version="9.1.0", float16=True)
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["version"] == "9.1.0" and card["stored_as"] == "float16"
    assert card["weights_file"] == "rel.safetensors"
    assert card["training_steps"] == [
        {"stages": {"global": 5}},
        {"command": f"knee-train export {source_path} {tmp_path / 'rel.safetensors'} --version 9.1.0 --float16",
         "note": "weights stored at float16; the networks compute in float32"}]
    assert card["exported_from"] == {"file": str(source_path), "version": "9.1.0-candidate",
                                     "sha256": source.sha256}
    assert "metrics" not in card
    kept = export_bundle(target, tmp_path / "again.safetensors")  # float32 again; version and record kept
    again = json.loads(kept.with_suffix(".json").read_text())
    assert "stored_as" not in again and again["version"] == "9.1.0"
    assert again["training_steps"][:2] == card["training_steps"]
    assert again["training_steps"][2] == {"command": f"knee-train export {target} {kept}"}
    assert again["exported_from"]["file"] == str(target)


def test_export_refuses_to_overwrite_its_source_or_take_a_version_the_outputs_cannot_carry(trained, tmp_path):
    _, source_path = trained
    with pytest.raises(ValueError, match="new file"):
        export_bundle(source_path, source_path, float16=True)
    for bad in ("", "2.5.0 final", "2.5\n0", "x" * 33):
        with pytest.raises(ValueError, match="version"):
            export_bundle(source_path, tmp_path / "rel.safetensors", version=bad)
    assert not (tmp_path / "rel.safetensors").exists()


def test_weights_beyond_float16s_range_are_refused_not_stored_as_infinity(tmp_path):
    bundle = ModelBundle.untrained(**SMALL)
    name = next(k for k, v in bundle.state["global"].items() if v.is_floating_point())
    bundle.state["global"][name] = bundle.state["global"][name] * 0 + 1e6
    with pytest.raises(WeightsError, match="float16"):
        save_bundle(bundle, tmp_path / "w.safetensors", float16=True)
    assert load_bundle(save_bundle(bundle, tmp_path / "w32.safetensors")).state["global"][name].max() == 1e6


def test_weights_files_are_readable_by_other_users_as_the_umask_allows(tmp_path):
    """safetensors writes 0600 whatever the umask; a release an admin exports must be readable by the node's service
    user (umask 022: 0644, as its card)."""
    old = os.umask(0o022)
    try:
        path = save_bundle(ModelBundle.untrained(**SMALL, seed=1), tmp_path / "w.safetensors")
        released = export_bundle(path, tmp_path / "rel.safetensors", "9.2.0", True)
    finally:
        os.umask(old)
    for p in (path, released):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644 == stat.S_IMODE(p.with_suffix(".json").stat().st_mode)
