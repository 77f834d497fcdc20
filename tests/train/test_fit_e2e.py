"""A tiny end-to-end training run: every stage lowers its loss, the bundle loads in KneeAligner, checkpoints
resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from model.inference import KneeAligner
from model.weights import load_bundle
from tests.conftest import REPO
from train.fitting import ConfigError, fit, load_config


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_run_lowers_loss_and_writes_a_loadable_bundle(tmp_path, toy_manifest, tiny_config):
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val",
            "spacing_mm": 1.0}
    config = _write(tmp_path, tiny_config(tmp_path, data))
    bundle_path, results = fit(config, progress=False)

    assert set(results) == {"global", "local_preop", "local_postop"}
    for stage, r in results.items():
        first, last = np.mean(r.losses[:8]), np.mean(r.losses[-8:])
        assert last < 0.8 * first, f"{stage}: loss {first:.3f} -> {last:.3f}"
        assert r.steps == 40 and len(r.losses) == 40
        assert np.isfinite(r.validation["err_px"])
    assert 0.0 <= results["global"].validation["right_acc"] <= 1.0

    card = json.loads(bundle_path.with_suffix(".json").read_text())
    assert card["training_data_kind"] == "ANNOTATED IMAGES"
    assert card["stages"]["local_postop"]["iterations"] == 40
    assert card["schemes"]["postop"] == "kneealign-postop@1.0"
    assert card["training"]["command"].startswith("knee-train fit ")

    aligner = KneeAligner.load(bundle_path, device="cpu")
    image = np.random.default_rng(0).random((320, 256)).astype(np.float32)
    pred = aligner.predict_image(image, "L", (0.5, 0.5))
    assert pred.landmarks.shape in ((134, 2), (181, 2))
    assert np.all(np.isfinite(pred.landmarks))

    # Running the same config again resumes every stage at its end: nothing is retrained.
    _, again = fit(config, progress=False)
    for stage in results:
        assert again[stage].losses == results[stage].losses
        assert np.isnan(again[stage].step_time_s)
        for k, v in results[stage].state.items():
            assert np.array_equal(v.numpy(), again[stage].state[k].numpy())

    # More iterations continue from the checkpoint: the first 40 losses are kept, 5 new steps run.
    cfg = tiny_config(tmp_path, data, iterations=45)
    _, more = fit(_write(tmp_path, cfg), progress=False)
    assert more["local_preop"].losses[:40] == results["local_preop"].losses
    assert len(more["local_preop"].losses) == 45


def test_resume_refuses_another_network(tmp_path, toy_manifest, tiny_config):
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    cfg = tiny_config(tmp_path, data, iterations=2)
    fit(_write(tmp_path, cfg), progress=False)
    cfg["stages"]["global"]["network"]["width"] = 16
    with pytest.raises(Exception, match="made for network"):
        fit(_write(tmp_path, cfg), progress=False)


def test_a_run_that_starts_again_from_step_0_starts_a_new_learning_curve(tmp_path, toy_manifest, tiny_config):
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    cfg = {**tiny_config(tmp_path, data, iterations=3), "resume": False}
    cfg["stages"] = {"local_preop": cfg["stages"]["local_preop"]}
    cfg["init_weights"] = str(fit(_write(tmp_path, tiny_config(tmp_path / "a", data, iterations=1)), False)[0])
    log = Path(cfg["checkpoint_dir"]) / "local_preop" / "log.jsonl"
    curves = []
    for _ in range(2):
        fit(_write(tmp_path, cfg), progress=False)
        curves.append([json.loads(line)["step"] for line in log.read_text().splitlines()])
    assert curves[0] == curves[1] == [3]


def test_the_axis_term_is_trained_and_logged_only_where_configured(tmp_path, toy_manifest, tiny_config):
    """``axis_angle_weight`` reaches the training step: the learning curve of a landmark stage trained with it logs
    the axis term (degrees), one trained without it does not."""
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    logged = {}
    for weight in (0.0, 1.0):
        cfg = tiny_config(tmp_path / f"w{weight:g}", data, iterations=2)
        cfg["stages"] = {"local_preop": cfg["stages"]["local_preop"]}
        cfg["stages"]["local_preop"].setdefault("loss", {})["axis_angle_weight"] = weight
        cfg["init_weights"] = str(fit(_write(tmp_path, tiny_config(tmp_path / "a", data, iterations=1)), False)[0])
        fit(_write(tmp_path, cfg), progress=False)
        log = Path(cfg["checkpoint_dir"]) / "local_preop" / "log.jsonl"
        logged[weight] = json.loads(log.read_text().splitlines()[-1])
    assert "axis" not in logged[0.0]
    assert logged[1.0]["axis"] > 0.0 and logged[1.0]["loss"] > logged[1.0]["wing"]


def test_config_errors_name_the_key(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, {"source": "synthetic"})
    cfg["stages"]["global"]["itertions"] = 3
    with pytest.raises(ConfigError, match="itertions"):
        load_config(_write(tmp_path, cfg))
    cfg = tiny_config(tmp_path, {"source": "synthetic"})
    cfg["stages"]["local_preop"]["network"]["max_width"] = 4  # below the width: refused when read, not when built
    with pytest.raises(ConfigError, match="max_width 4 is below width 8"):
        load_config(_write(tmp_path, cfg))
    for stage, key, value, message in (
            ("global", "axis_landmark_weight", 3.0, "only the landmark stages have aTFA landmarks to weight"),
            ("local_postop", "axis_landmark_weight", 0.0, "axis_landmark_weight"),
            ("implant", "axis_angle_weight", 1.0, "implant.loss.axis_angle_weight: only the landmark stages"),
            ("local_preop", "axis_angle_weight", -1.0, "axis_angle_weight")):
        cfg = tiny_config(tmp_path, {"source": "synthetic"})
        cfg["stages"].setdefault(stage, {"network": dict(cfg["stages"]["global"]["network"]), "iterations": 1})
        cfg["stages"][stage]["loss"] = {**cfg["stages"][stage].get("loss", {}), key: value}  # this stage's alone
        with pytest.raises(ConfigError, match=message):
            load_config(_write(tmp_path, cfg))
    cfg = tiny_config(tmp_path, {"source": "synthetic"})
    del cfg["stages"]["local_postop"]
    with pytest.raises(ConfigError, match=r"\['local_postop'\] are not trained by this config: give init_weights"):
        fit(_write(tmp_path, cfg), progress=False)


def test_partial_run_takes_missing_stages_from_init_weights(tmp_path, toy_manifest, tiny_config):
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    first = tiny_config(tmp_path / "a", data, iterations=3)
    base, _ = fit(_write(tmp_path, first), progress=False)
    second = tiny_config(tmp_path / "b", data, iterations=3)
    second["init_weights"] = str(base)
    del second["stages"]["global"], second["stages"]["local_preop"]
    second["stages"]["local_postop"].setdefault("loss", {})["axis_landmark_weight"] = 3.0  # as cpu-v13.yaml
    out, results = fit(_write(tmp_path, second), progress=False)
    assert list(results) == ["local_postop"]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["stages"]["local_postop"]["loss"]["axis_landmark_weight"] == 3.0
    # The training record is the chain from random weights: the init bundle's run, then this one.
    first_step, second_step = card["training_steps"]
    assert first_step == json.loads(base.with_suffix(".json").read_text())["training_steps"][0]
    assert first_step["init_weights"] is None and set(first_step["stages"]) == {"global", "local_preop", "local_postop"}
    assert second_step["init_weights"] == str(base) and second_step["stages"] == {"local_postop": 3}
    assert second_step["command"].startswith("knee-train fit ") and second_step["train_time_s"] >= 0
    a, b = load_bundle(base), load_bundle(out)
    for k, v in a.state["global"].items():
        assert np.array_equal(v.numpy(), b.state["global"][k].numpy())
    assert any(not np.array_equal(v.numpy(), b.state["local_postop"][k].numpy())
               for k, v in a.state["local_postop"].items())


def test_a_stage_from_scratch_ignores_the_init_weights_of_its_shape(tmp_path, toy_manifest, tiny_config):
    """With lr 0 a stage keeps the weights it starts from: the init bundle's, or random ones with from_scratch."""
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    base, _ = fit(_write(tmp_path, tiny_config(tmp_path / "a", data, iterations=3)), progress=False)
    started = {}
    for scratch in (False, True):
        cfg = tiny_config(tmp_path / f"b{scratch}", data, iterations=1)
        cfg["init_weights"] = str(base)
        cfg["stages"] = {"local_postop": {**cfg["stages"]["local_postop"], "lr": 0.0, "from_scratch": scratch}}
        out, _ = fit(_write(tmp_path, cfg), progress=False)
        started[scratch] = load_bundle(out).state["local_postop"]
    init = load_bundle(base).state["local_postop"]
    convs = [k for k, v in init.items() if k.endswith("weight") and v.ndim == 4]
    assert all(np.array_equal(init[k].numpy(), started[False][k].numpy()) for k in convs)
    assert not any(np.array_equal(init[k].numpy(), started[True][k].numpy()) for k in convs)


def test_a_stage_whose_network_differs_from_its_init_weights_is_refused_unless_from_scratch(tmp_path, toy_manifest,
                                                                                               tiny_config):
    """Fine-tuning a bundle with another network for a stage (e.g. an old config after the shipped pre-op stage grew)
    would silently start that stage from random weights; it is refused before any data is read, naming both networks,
    and from_scratch: true says it is meant."""
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    base, _ = fit(_write(tmp_path, tiny_config(tmp_path / "a", data, iterations=2)), progress=False)
    cfg = tiny_config(tmp_path / "b", data, iterations=1)
    cfg["init_weights"] = str(base)
    wider = {**cfg["stages"]["local_postop"], "network": {"depth": 2, "width": 12, "stem_stride": 2}}
    cfg["stages"] = {"local_postop": wider}
    with pytest.raises(ConfigError, match=r"stage local_postop: .*'width': 8.*'width': 12.*from_scratch: true"):
        fit(_write(tmp_path, cfg), progress=False)
    cfg["stages"] = {"local_postop": {**wider, "from_scratch": True}}
    out, _ = fit(_write(tmp_path, cfg), progress=False)
    assert load_bundle(out).config_of("local_postop").width == 12
    assert load_bundle(out).config_of("local_preop").width == 8  # the stages not trained are the init bundle's


def test_an_implant_stage_trained_onto_init_weights(tmp_path, toy_manifest, tiny_config):
    """Only the implant stage is trained; the others come from the init bundle unchanged, and the result decides
    the phase with its implant stage (the global stage is no longer asked)."""
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    first = tiny_config(tmp_path / "a", data, iterations=3)
    base, _ = fit(_write(tmp_path, first), progress=False)
    second = tiny_config(tmp_path / "b", data, iterations=6)
    second["init_weights"] = str(base)
    second["implant_frame"] = {"half_width": 1.0, "above": 1.0, "below": 1.0, "width_px": 32, "height_px": 32}
    second["stages"] = {"implant": {**first["stages"]["local_preop"], "augment": {"mirror_p": 0.5}}}
    out, results = fit(_write(tmp_path, second), progress=False)
    assert list(results) == ["implant"] and "implant_acc" in results["implant"].validation
    bundle = load_bundle(out)
    assert bundle.stages == ("global", "local_preop", "local_postop", "implant")
    assert bundle.implant_cfg.n_aux == 1 and bundle.implant_frame.width_px == 32
    card = json.loads(out.with_suffix(".json").read_text())
    assert set(card["stages_from_init_weights"]) == {"global", "local_preop", "local_postop"}
    assert card["init_weights_training_data"] == json.loads(base.with_suffix(".json").read_text())["training_data"]
    for k, v in load_bundle(base).state["global"].items():
        assert np.array_equal(v.numpy(), bundle.state["global"][k].numpy())
    assert "implant" in KneeAligner(bundle).nets


@pytest.mark.parametrize("path", sorted((REPO / "train" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_run_config_validates_and_starts_from_weights_in_the_repository(path):
    """The configs the docs tell users to run: each validates, and one that starts from weights in model/weights/
    names a file that is there (the others start from an earlier run's output, named in their header); one that
    starts from a release whose file left the tree (runs/released/) says in its header how to restore it."""
    cfg = load_config(path)
    if cfg.init_weights and str(cfg.init_weights).startswith("model/weights/"):
        assert (REPO / cfg.init_weights).exists(), cfg.init_weights
    if cfg.init_weights and str(cfg.init_weights).startswith("runs/released/"):
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert any("git show" in line and line.rstrip().endswith(f"> {cfg.init_weights}") for line in header), path


def test_the_phase_check_split_follows_the_landmark_stages_it_was_chosen_for(tmp_path, toy_manifest, tiny_config):
    """The config's split goes into the bundle; a run that trains no landmark stage keeps its init weights' split, one
    that retrains a landmark stage drops it (the node's default) unless its config names a new one."""
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": None, "val_split": "val"}
    first = {**tiny_config(tmp_path / "a", data, iterations=1), "implant_outline_evidence": -0.2}
    base, _ = fit(_write(tmp_path, first), progress=False)
    assert load_bundle(base).implant_outline_evidence == -0.2

    def continued(name: str, stages: dict, **extra) -> float | None:
        cfg = {**tiny_config(tmp_path / name, data, iterations=1), "init_weights": str(base), "stages": stages, **extra}
        out, _ = fit(_write(tmp_path, cfg), progress=False)
        return load_bundle(out).implant_outline_evidence

    assert continued("global", {"global": first["stages"]["global"]}) == -0.2
    assert continued("postop", {"local_postop": first["stages"]["local_postop"]}) is None
    assert continued("chosen", {"local_postop": first["stages"]["local_postop"]}, implant_outline_evidence=0.05) == 0.05
    with pytest.raises(ConfigError, match="implant_outline_evidence"):
        continued("hostile", {"global": first["stages"]["global"]}, implant_outline_evidence=3.0)
