"""Offset against scatter (train.landmark_bias): known offsets are found in the knee's own frame whatever its side,
rotation and scale; the out-of-sample estimate removes a shared offset and leaves scatter alone; the evaluation
summary and report carry it."""

from __future__ import annotations

import numpy as np
import pytest

from model.scheme import load_scheme
from train.evaluate import CaseResult, summarize_cases
from train.landmark_bias import decompose, frame_errors
from train.report import markdown_report


def _rotation(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("degrees", [0.0, 25.0, -25.0])
def test_frame_errors_are_lateral_and_distal_percent_of_the_plateau(laterality, degrees):
    # a plateau 80 px wide; the lateral corner on the image's right for a left knee, on its left for a right knee
    medial, lateral = (np.array([0.0, 0.0]), np.array([80.0, 0.0]))
    if laterality == "R":
        medial, lateral = lateral, medial
    toward_lateral = np.sign(lateral[0] - medial[0])
    truth = np.array([[10.0, 40.0], [30.0, -60.0]])
    pred = truth + [[toward_lateral * 4.0, 0.0], [0.0, 8.0]]  # 5 % lateral; 10 % distal (image y grows distally)
    turn = _rotation(degrees)
    centre = np.array([300.0, 200.0])
    place = [lambda p, s=s: (np.asarray(p) @ turn.T) * s + centre for s in (1.0, 2.5)]
    for f in place:  # rotated and scaled copies give the same percentages
        err = frame_errors(f(pred), f(truth), np.stack([f(medial), f(lateral)]))
        assert err == pytest.approx(np.array([[5.0, 0.0], [0.0, 10.0]]), abs=1e-9)


def test_a_shared_offset_is_measured_and_removed_out_of_sample_scatter_is_not():
    rng = np.random.default_rng(0)
    names = tuple(f"p{k}" for k in range(6))
    offset = np.zeros((6, 2))
    offset[2] = (6.0, -8.0)  # one landmark drawn 10 % away in every image
    scatter = rng.normal(0.0, 1.0, (40, 6, 2))
    out = decompose(scatter + offset, names)
    assert out["n"] == 40
    assert out["largest"][0]["landmark"] == "p2"
    assert out["largest"][0]["lateral_pct"] == pytest.approx(6.0, abs=0.5)
    assert out["largest"][0]["distal_pct"] == pytest.approx(-8.0, abs=0.5)
    assert out["p2p_mean_pct"] > 2.5  # the offset landmark dominates: (10 + 5 * 1.25) / 6
    assert out["p2p_offset_removed_mean_pct"] < 1.5  # what is left is the scatter (mean of a unit 2D normal 1.25)
    alone = decompose(scatter, names)  # no offset: removing the other half's medians cannot help
    assert alone["offset_mean_pct"] < 0.5
    assert alone["p2p_offset_removed_mean_pct"] >= alone["p2p_mean_pct"]


def test_too_few_cases_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="at least 4 cases"):
        decompose(np.zeros((3, 2, 2)), ("a", "b"))


def test_the_summary_and_report_carry_the_offsets_of_cases_read_in_the_right_phase_and_side():
    scheme = load_scheme("preop")
    errors = np.zeros((scheme.n_points, 2))
    errors[7] = (12.0, -1.0)

    def case(i: int, placed: bool) -> CaseResult:
        return CaseResult(index=i, source=f"c{i}", phase="preop", laterality="L", atfa_fts=1.0, atfa_fnts=1.0,
                          phase_pred="preop", laterality_pred="L" if placed else "R", rp2p=2.0, rp2c=1.0,
                          atfa_fts_pred=1.0, atfa_fnts_pred=1.0, confidence=0.9, low_confidence=False,
                          time_ms=5.0, frame_errors=errors.tolist() if placed else None)

    summary = summarize_cases([case(i, placed=i < 5) for i in range(7)])
    block = summary["phases"]["preop"]["landmark_offsets"]
    assert block["n"] == 5
    assert block["largest"][0] == {"landmark": scheme.point_names[7], "lateral_pct": 12.0, "distal_pct": -1.0}
    report = markdown_report({**summary, "data": "d", "weights": "w", "model": {"name": "n", "version": "v"},
                              "laterality_input": "image", "confidence_threshold": 0.5})
    assert "the same offset in every image (5 cases" in report
    assert f"{scheme.point_names[7]} (+12.0 / -1.0 %)" in report
    assert summarize_cases([case(i, placed=i < 3) for i in range(7)])["phases"]["preop"].get("landmark_offsets") \
        is None
