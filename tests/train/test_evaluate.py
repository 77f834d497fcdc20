"""Evaluation: the per-case results and tables on hand-made cases, and `knee-train evaluate` end to end on a
tiny bundle (report, JSON, figures, model card update)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from model.alignment import MIN_LEVEL
from model.scheme import load_scheme
from train.cli import main
from train.evaluate import CaseResult, comparable, resolve_data, summarize_cases
from train.fitting import fit
from train.report import markdown_report, pick_cases


def _case(i: int, phase: str, truth: float, pred: float, rp2p: float, low: bool = False, **kw) -> CaseResult:
    base = {"index": i, "source": f"c{i}", "phase": phase, "phase_pred": phase, "laterality": "L",
            "laterality_pred": "L", "rp2p": rp2p, "rp2c": rp2p / 3, "atfa_fts": truth, "atfa_fnts": truth,
            "atfa_fts_pred": pred, "atfa_fnts_pred": pred, "confidence": 0.1 if low else 0.9,
            "low_confidence": low, "time_ms": 10.0 * (i + 1)}
    base.update(kw)
    return CaseResult(**base)


def test_summary_perfect_and_flagged_cases():
    cases = [_case(0, "preop", 5.0, 5.0, 0.0), _case(1, "preop", -3.0, -3.0, 0.0), _case(2, "preop", 7.0, 7.0, 0.0),
             _case(3, "preop", 2.0, -4.0, 9.0, low=True, laterality_pred="R"),
             CaseResult(index=4, source="c4", phase="preop", laterality="L", atfa_fts=1.0, atfa_fnts=1.0,
                        error="no knee found")]
    s = summarize_cases(cases)
    pre = s["phases"]["preop"]
    assert pre["n"] == 5 and pre["n_no_result"] == 1 and pre["all"]["n"] == 4
    assert pre["n_low_confidence"] == 1 and pre["fraction_not_reported"] == pytest.approx(0.4)
    conf = pre["confident"]
    assert conf["n"] == 3 and conf["rp2p"]["mean"] == 0.0
    assert conf["fnts"]["icc"]["icc"] == 1.0 and conf["fnts"]["mad"] == 0.0
    assert pre["all"]["fnts"]["sign_errors"] == 1 and pre["all"]["fnts"]["max_abs_diff"] == pytest.approx(6.0)
    assert pre["all"]["rp2p"]["mean"] == pytest.approx(2.25)
    assert s["laterality_accuracy"] == pytest.approx(0.6) and s["n_laterality_errors"] == 2  # a failure is wrong
    assert s["phase_accuracy"] == pytest.approx(0.8)
    assert s["n_no_result"] == 1 and s["failures"] == [{"source": "c4", "error": "no knee found"}]
    assert "No result at all for 1 cases" in markdown_report({**s, "data": "d", "weights": "w", "model": {
        "name": "n", "version": "v"}, "laterality_input": "image", "confidence_threshold": 0.5})
    assert "postop" not in s["phases"]
    picked = pick_cases(cases, "preop")  # by rP2P: 0, 0, 0, 9
    assert (picked["best"].index, picked["median"].index, picked["worst"].index) == (0, 2, 3)


def test_flag_is_matched_against_the_exposed_field():
    cases = [_case(0, "postop", 5.0, 5.1, 0.5, axes_visible=True),
             _case(1, "postop", 5.0, 5.0, 0.5, low=True, axes_visible=True),
             _case(2, "postop", 1.0, -3.0, 2.0, low=True, axes_visible=False),
             _case(3, "postop", 1.0, 1.5, 2.0, axes_visible=False),
             _case(4, "postop", 1.0, 1.5, 2.0, low=True, axes_visible=False)]
    block = summarize_cases(cases)["phases"]["postop"]
    assert block["flag_vs_axes_visible"] == {"hidden": 3, "hidden_flagged": 2, "visible": 2, "visible_flagged": 1}
    assert "flag_vs_axes_visible" not in summarize_cases([_case(0, "preop", 5.0, 5.0, 0.5)])["phases"]["preop"]


def test_synthetic_samples_know_which_axis_landmarks_were_exposed():
    from train.data.synthetic import synthetic_sample
    from train.evaluate import axes_visible

    # seed 21 of the generator collimates the distal tibial shaft level; seed 24 exposes every level
    assert axes_visible(synthetic_sample(21, spacing_mm=1.0)) is False
    assert axes_visible(synthetic_sample(24, spacing_mm=1.0)) is True
    assert axes_visible(synthetic_sample(21, spacing_mm=1.0, open_field=True)) is True  # collimator removed


def test_comparable_uses_shared_points_when_phase_is_wrong():
    post = np.zeros((181, 2))
    pre = np.ones((134, 2))
    p, g, scheme = comparable(post, "postop", pre, "preop")
    assert p.shape == g.shape == (134, 2) and scheme.phase == "preop"
    # the pre-op curves are exactly the first curves of the post-op scheme
    a, b = load_scheme("preop"), load_scheme("postop")
    def spans(curves):
        return [(c.name, c.start, c.count) for c in curves]

    assert spans(a.curves) == spans(b.curves[:len(a.curves)])
    assert a.roles == b.roles


def test_resolve_data_rejects_unknown_sets(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic set 'synthetic:train'"):
        resolve_data("synthetic:train")
    with pytest.raises(FileNotFoundError):
        resolve_data(str(tmp_path / "nothing"))


def test_cli_evaluate_writes_report_figures_and_card(tmp_path, toy_manifest, tiny_config):
    data = {"source": "manifest", "manifest": str(toy_manifest), "train_split": "train", "val_split": "val"}
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tmp_path, data, iterations=40)))
    bundle, _ = fit(cfg_path, progress=False)
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(bundle), "--data", str(toy_manifest), "--out", str(out),
                 "--update-card", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 8 and summary["data"] == str(toy_manifest)
    assert set(summary["phases"]) == {"preop", "postop"}
    assert summary["icc_form"].startswith("ICC(A,1)")
    assert len((out / "cases.jsonl").read_text().splitlines()) == 8
    report = (out / "report.md").read_text()
    assert "## Table 1" in report and "## Table 2" in report and "| Pre-operative | FNTS |" in report
    for name in ("bland_altman_preop.png", "bland_altman_postop.png", "overlays/preop_best.png",
                 "overlays/postop_worst.png"):
        assert (out / name).stat().st_size > 1000, name
    card = json.loads(Path(bundle).with_suffix(".json").read_text())
    assert card["metrics"][str(toy_manifest)]["n_cases"] == 8
    assert card["metrics"][str(toy_manifest)]["command"].startswith("knee-train evaluate")
    assert markdown_report(summary).startswith("# KneeAlign evaluation")


def test_exposed_shaft_extent_counts_from_the_joint_without_gaps():
    from train.data.sample import KneeSample
    from train.evaluate import exposed_extent

    scheme = load_scheme("preop")
    visible = np.ones(scheme.n_points, bool)
    for level, med, lat in scheme.shaft_levels["tibia"]:
        if level > 0.95:
            visible[lat] = False  # the collimator cuts the lateral cortex below 0.95 L
    for level, med, _ in scheme.shaft_levels["femur"]:
        if abs(level - 0.5) < 1e-6:
            visible[med] = False  # a marker over the femur at 0.5 L: nothing beyond it counts
    sample = KneeSample(np.zeros((10, 10), np.float32), np.zeros((scheme.n_points, 2)), "L", "preop",
                        meta={"visible": visible})
    assert exposed_extent(sample, "tibia") == pytest.approx(0.9)
    assert exposed_extent(sample, "femur") == pytest.approx(0.4)
    assert exposed_extent(KneeSample(np.zeros((10, 10), np.float32), np.zeros((134, 2)), "L", "preop"), "tibia") is None


def test_confidence_among_cases_with_enough_shaft_and_the_change_of_levels():
    adaptive = {"femur": [1.1, 0.8], "tibia": [0.8, 1.0]}
    fixed = {"femur": [1.3, 0.8], "tibia": [0.8, 1.3]}
    cases = [_case(0, "preop", 5.0, 5.2, 0.5, exposed_femur=1.3, exposed_tibia=1.3, levels_pred=fixed,
                   atfa_fnts_same_levels=5.0, atfa_fts_same_levels=5.0),
             _case(1, "preop", 5.0, 5.5, 0.5, exposed_femur=1.0, exposed_tibia=1.0, levels_pred=adaptive,
                   atfa_fnts_same_levels=5.4, atfa_fts_same_levels=5.4),
             _case(2, "preop", 5.0, 9.0, 0.5, low=True, exposed_femur=0.7, exposed_tibia=0.7),
             _case(3, "preop", 5.0, 9.0, 0.5, low=True, exposed_femur=0.3, exposed_tibia=1.3)]
    block = summarize_cases(cases)["phases"]["preop"]
    assert block["measured_with_0_6_shaft"] == {"n": 3, "confident": 2, "levels": {"femur": 0.6, "tibia": 0.6}}
    assert block["measured_with_minimum_shaft"] == {"n": 1, "confident": 1, "levels": MIN_LEVEL}  # case 0 only
    same = block["confident_vs_truth_at_same_levels"]
    assert same["n"] == 2 and same["n_not_fixed_levels"] == 1
    assert same["fnts"]["mad"] == pytest.approx(0.15)  # (0.2 + 0.1) / 2: the landmark error alone
    assert same["level_shift_fnts_mad_deg"] == pytest.approx(0.2)  # (0 + 0.4) / 2: the definition's shift
    by_level = block["confident_error_by_far_level"]
    assert by_level["tibia"] == {"1.0": {"n": 1, "fnts_mad": pytest.approx(0.1), "fts_mad": pytest.approx(0.1)},
                                 "1.3": {"n": 1, "fnts_mad": pytest.approx(0.2), "fts_mad": pytest.approx(0.2)}}
    assert set(by_level["femur"]) == {"1.1", "1.3"}
    assert "tibia 1.0 (1, 0.10 / 0.10°), 1.3 (1, 0.20 / 0.20°)" in markdown_report(
        {**summarize_cases(cases), "data": "x", "weights": "w", "model": {"name": "k", "version": "1"},
         "laterality_input": "image", "confidence_threshold": 0.5})


def test_renderer_sets_resolve_to_their_renderer():
    three = resolve_data("xray3d:test", n_per_phase=1)
    assert three.n == 2
    first = next(iter(three.samples()))
    assert first.source.startswith("xray3d:") and "atfa_axes_deg" in first.meta
    mixed = resolve_data("mixed:hard", n_per_phase=1)
    assert mixed.n == 4
    # Which renderer versions drew the images and their ground truth goes into every summary made of them.
    from train.synth import GENERATOR_VERSION
    from train.xray3d import RENDERER_VERSION
    assert three.generators == {"xray3d": RENDERER_VERSION}
    assert mixed.generators == {"synthetic": GENERATOR_VERSION, "xray3d": RENDERER_VERSION}
    with pytest.raises(ValueError, match="xray3d:test"):
        resolve_data("xray3d:nonsense")


def test_a_phase_can_be_chosen_for_synthetic_sets_only(tmp_path, toy_manifest):
    """``--phase``: the held-out seeds of that phase alone, in the same order as in the full set (so that two
    evaluations of one phase compare knee by knee); a manifest is evaluated whole; the model card never gets the
    metrics of half a set."""
    whole = resolve_data("mixed:hard", n_per_phase=2)
    post = resolve_data("mixed:hard", n_per_phase=2, phases=("postop",))
    assert post.n == 4
    assert [post.reload(i).source for i in range(4)] == [whole.reload(i).source for i in (2, 3, 6, 7)]
    assert {post.reload(i).phase for i in range(4)} == {"postop"}
    with pytest.raises(ValueError, match="unknown phase"):
        resolve_data("synthetic:test", phases=("pre",))
    with pytest.raises(ValueError, match="synthetic sets only"):
        resolve_data(str(toy_manifest), phases=("preop",))
    with pytest.raises(SystemExit, match="--update-card needs both phases"):
        main(["evaluate", "--data", "synthetic:test", "--phase", "preop", "--update-card", "--out", str(tmp_path)])


def test_the_validation_sets_draw_validation_seeds_never_held_out_ones():
    from train.data.splits import HELD_OUT_RANGE, validation_seeds

    val = resolve_data("xray3d:val", n_per_phase=2)
    assert val.n == 4
    sources = [val.reload(i).source for i in (0, 2)]
    assert sources == [f"xray3d:{validation_seeds(p, 1)[0]}" for p in ("preop", "postop")]
    seeds = [int(s.split(":")[1]) for s in sources]
    assert not any(HELD_OUT_RANGE[0] <= seed < HELD_OUT_RANGE[1] for seed in seeds)
    assert resolve_data("synthetic:val").n == 2 * 376


@pytest.mark.parametrize("progress", [True, False])
def test_the_render_bar_of_a_synthetic_set_follows_the_progress_flag(capsys, progress):
    """``--no-progress`` silences the bar of the cases rendering too (it filled the logs of long runs)."""
    data = resolve_data("synthetic:test", n_per_phase=1, progress=progress)
    assert len(list(data.samples())) == 2
    assert ("synthetic:test" in capsys.readouterr().err) is progress


def test_error_sources_are_summarised_over_confident_cases_and_reported():
    src = {"femoral_fnts_deg": 2.0, "femoral_fts_deg": 1.0, "tibial_deg": -0.5, "notch_lateral_pct": 3.0,
           "notch_distal_pct": -1.0}
    cases = [_case(0, "postop", 5.0, 2.5, 1.0, error_sources=src),
             _case(1, "postop", 5.0, 5.0, 1.0, error_sources={k: -v for k, v in src.items()}),
             _case(2, "postop", 5.0, 9.0, 1.0, low=True, error_sources=dict.fromkeys(src, 50.0)),
             _case(3, "postop", 5.0, 5.0, 1.0)]  # phase or side wrong: no split
    summary = summarize_cases(cases)
    block = summary["phases"]["postop"]["confident_error_sources"]
    assert block["n"] == 2
    assert block["femoral_fnts_deg"] == {"mean": 0.0, "mad": 2.0} and block["notch_lateral_pct"]["mad"] == 3.0
    report = markdown_report({**summary, "data": "d", "weights": "w", "model": {"name": "n", "version": "v"},
                              "laterality_input": "image", "confidence_threshold": 0.5})
    assert "where the error comes from (2 confident cases" in report and "tibial axis +0.00 / 0.50°" in report
