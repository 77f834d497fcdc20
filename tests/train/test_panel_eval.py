"""The measurement panel's ground truth and agreement tables in `knee-train evaluate` (``train.panel_eval``) and in
the report (Table 3)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from model.measurements import compute_measurements
from train.data.synthetic import synthetic_sample
from train.evaluate import CaseResult, summarize_cases
from train.panel_eval import PANEL, case_panel, summarize_panel
from train.report import markdown_report, table3


def _entry(truth, pred, status="ok", **kw):
    return {"truth": truth, "pred": pred, "status": status if pred is not None else "not_measurable", **kw}


def _case(i: int, phase: str, panel: dict) -> CaseResult:
    full = {name: _entry(None, None) for name in PANEL}
    full.update(panel)
    return CaseResult(index=i, source=f"c{i}", phase=phase, laterality="L", atfa_fts=1.0, atfa_fnts=1.0,
                      phase_pred=phase, laterality_pred="L", atfa_fts_pred=1.0, atfa_fnts_pred=1.0,
                      confidence=0.9, low_confidence=False, time_ms=5.0, panel=full)


def test_panel_tables_count_what_was_and_was_not_measured():
    cases = [
        _case(0, "preop", {"mpta": _entry(87.0, 88.0), "jsw_medial": _entry(4.0, 4.1, exact=4.05)}),
        _case(1, "preop", {"mpta": _entry(85.0, 85.0), "jsw_medial": _entry(3.0, 3.2, exact=2.9)}),
        _case(2, "preop", {"mpta": _entry(90.0, 93.0, "low_confidence"), "jsw_medial": _entry(None, 2.0)}),
        _case(3, "preop", {"mpta": _entry(86.0, None), "jsw_medial": _entry(5.0, None)}),
        _case(4, "postop", {"tibial_component": _entry(90.0, 91.5, design=90.5)}),
        _case(5, "postop", {"tibial_component": _entry(88.0, 88.5, design=88.0)}),
        CaseResult(index=6, source="c6", phase="preop", laterality="L", atfa_fts=0.0, atfa_fnts=0.0, error="no knee"),
    ]
    panel = summarize_panel(cases)
    assert set(panel["preop"]) == {"jlca", "aldfa", "mpta", "jsw_medial", "jsw_lateral"}
    assert set(panel["postop"]) == {"femoral_component", "tibial_component"}
    mpta = panel["preop"]["mpta"]
    assert mpta["n"] == 4 and mpta["n_truth_measurable"] == 4 and mpta["n_not_measured"] == 1
    assert mpta["all"]["n"] == 3 and mpta["all"]["mad"] == pytest.approx(4.0 / 3)
    assert mpta["confident"]["n"] == 2 and mpta["confident"]["mad"] == pytest.approx(0.5)
    assert mpta["confident"]["bias"] == pytest.approx(0.5)
    assert mpta["target"]["met"] is False  # ICC of two cases with these values is far below 0.95
    jsw = panel["preop"]["jsw_medial"]
    assert jsw["unit"] == "mm" and jsw["n_measured_without_truth"] == 1 and jsw["n_not_measured"] == 1
    assert jsw["confident"]["mad"] == pytest.approx(0.15) and jsw["target"]["met"] is True  # MAD <= 0.3 mm
    assert jsw["truth_vs_exact"]["mad"] == pytest.approx(0.075) and jsw["truth_vs_exact"]["max"] == pytest.approx(0.1)
    tib = panel["postop"]["tibial_component"]
    assert tib["confident"]["mad"] == pytest.approx(1.0) and tib["target"]["met"] is True  # no ICC target
    assert tib["truth_vs_design"]["mad"] == pytest.approx(0.25)
    assert panel["preop"]["jlca"]["n_truth_measurable"] == 0 and "target" not in panel["preop"]["jlca"]

    summary = summarize_cases(cases)
    assert set(summary["panel"]) == {"preop", "postop"} and summary["panel"]["preop"]["mpta"]["all"]["n"] == 3
    text = table3(summary)
    assert "| Pre-operative | MPTA (°) | all | 3 |" in text and "1 of 4" in text
    assert "MAD ≤ 0.3 mm: met" in text and "MAD ≤ 1°, ICC ≥ 0.95: not met" in text
    report = markdown_report({**summary, "data": "d", "weights": "w", "model": {"name": "n", "version": "v"},
                              "laterality_input": "image", "confidence_threshold": 0.5})
    assert "## Table 3" in report and "## Table 2" in report  # the aTFA tables stay
    assert "vs exact mean |diff| 0.07 mm" in report


@pytest.mark.parametrize("renderer", ["2d", "3d"])
def test_ground_truth_panel_of_both_renderers(renderer):
    """The reference is the panel of the ground-truth landmarks; the projection renderer adds its exact values.
    A prediction equal to the truth agrees perfectly."""
    sample = synthetic_sample(4242, "preop", spacing_mm=0.6, renderer=renderer)
    truth = compute_measurements(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm)
    perfect = SimpleNamespace(measurements=truth)
    panel = case_panel(sample, perfect)
    assert set(panel) == set(PANEL)
    assert panel["mpta"]["truth"] == pytest.approx(truth["mpta"].value) and panel["mpta"]["status"] == "ok"
    assert panel["femoral_component"]["truth"] is None  # pre-op
    if renderer == "3d":
        assert panel["mpta"]["exact"] == pytest.approx(panel["mpta"]["truth"], abs=1.5)
        assert panel["jlca"]["exact"] == pytest.approx(panel["jlca"]["truth"], abs=0.3)
        assert "design" in panel["aldfa"] and "exact" in panel["jsw_lateral"]
    else:
        assert "exact" not in panel["mpta"]
    case = CaseResult(index=0, source="s", phase="preop", laterality=sample.laterality, atfa_fts=0.0, atfa_fnts=0.0,
                      phase_pred="preop", laterality_pred=sample.laterality, panel=panel)
    block = summarize_panel([case, case])["preop"]["mpta"]
    assert block["all"]["mad"] == 0.0 and block["all"]["bias"] == 0.0


def test_panel_pictures_draw_each_axis_to_its_joint_line(tmp_path):
    from PIL import Image

    from train.panel_figures import _intersection, drawn_lines, panel_figure

    sample = synthetic_sample(5, "preop", spacing_mm=1.0)
    panel = compute_measurements(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm)
    span = sample.scheme.reference_length(sample.landmarks)
    axis, plateau = drawn_lines(panel["mpta"], span)
    measured_plateau = np.asarray(panel["mpta"].lines[1])
    assert np.linalg.norm(plateau[1] - plateau[0]) >= span - 1e-6  # the joint line drawn across the knee
    meet = _intersection(np.asarray(panel["mpta"].lines[0]), measured_plateau)
    assert np.linalg.norm(axis[1] - meet) == pytest.approx(0.1 * np.linalg.norm(axis[0] - meet))  # just beyond it
    width, = drawn_lines(panel["jsw_medial"], span)
    assert np.array_equal(width, np.asarray(panel["jsw_medial"].lines[0]))  # widths as measured
    path = panel_figure(sample, (("mpta",), ("jsw_medial", "jsw_lateral")), tmp_path / "p.png")
    assert Image.open(path).size[0] > 200 and path.stat().st_size < 300_000
