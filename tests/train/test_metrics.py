"""Metric functions on hand-computed cases, and ICC(A,1) checked against pingouin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin
import pytest

from model.alignment import compute_alignment
from model.scheme import load_scheme
from train.metrics import (
    ERROR_SOURCES,
    agreement,
    bland_altman,
    error_sources,
    icc_a1,
    p2c_distances,
    point_to_segments,
    relative_p2c,
    relative_p2p,
    sign_errors,
    summarize,
    summarize_error_sources,
)


def _landmarks(phase: str, seed: int = 0) -> np.ndarray:
    """Distinct points with the reference corners exactly 100 px apart."""
    scheme = load_scheme(phase)
    pts = np.random.default_rng(seed).uniform(0, 500, size=(scheme.n_points, 2))
    a, b = scheme.roles["reference"]
    pts[a], pts[b] = (200.0, 300.0), (300.0, 300.0)
    return pts


def test_point_to_segments():
    line = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    pts = np.array([[1.0, 0.0], [1.0, 1.0], [-3.0, 4.0], [3.0, 1.0], [1.0, 2.0]])
    assert np.allclose(point_to_segments(pts, line), [0.0, 1.0, 5.0, 1.0, 1.0])
    # closing the polyline adds the segment (2,2)-(0,0): (1, 2) is then sqrt(0.5) away
    assert point_to_segments(np.array([[1.0, 2.0]]), line, closed=True)[0] == pytest.approx(np.sqrt(0.5))


@pytest.mark.parametrize("phase", ["preop", "postop"])
def test_rp2p_known_offset(phase):
    gt = _landmarks(phase)
    assert relative_p2p(gt + np.array([3.0, 4.0]), gt, load_scheme(phase)) == pytest.approx(5.0)
    assert relative_p2p(gt, gt, load_scheme(phase)) == 0.0


def test_rp2p_uses_ground_truth_reference_length():
    scheme = load_scheme("preop")
    gt = _landmarks("preop")
    pred = gt.copy()
    b = scheme.roles["reference"][1]
    pred[b] = (320.0, 300.0)  # 20 px off on one point: the prediction's own plateau would be 120 px wide
    assert relative_p2p(pred, gt, scheme) == pytest.approx(100 * 20 / scheme.n_points / 100)


def test_p2c_on_curve_is_zero_but_p2p_is_not():
    scheme = load_scheme("postop")
    gt = _landmarks("postop")
    pred = gt.copy()
    curve = scheme.curve("tibial_plateau")
    i = curve.start + 3
    pred[i] = 0.25 * gt[i] + 0.75 * gt[i + 1]  # slid along its own curve
    assert p2c_distances(pred, gt, scheme)[i] == pytest.approx(0.0, abs=1e-9)
    assert relative_p2c(pred, gt, scheme) == pytest.approx(0.0, abs=1e-9)
    assert relative_p2p(pred, gt, scheme) > 0


def test_p2c_measures_to_its_own_curve_only():
    scheme = load_scheme("preop")
    gt = _landmarks("preop")
    pred = gt.copy()
    fem = scheme.curve("femur_medial_outline")
    other = scheme.curve("tibia_lateral_outline")
    pred[fem.start] = gt[other.start]  # lies on another curve's vertex: still far from its own curve
    expected = point_to_segments(gt[other.start][None], gt[list(fem.indices)])[0]
    assert p2c_distances(pred, gt, scheme)[fem.start] == pytest.approx(expected)
    assert expected > 1.0


def test_summarize_hand_values():
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (s.n, s.mean, s.median) == (4, 2.5, 2.5)
    assert s.p95 == pytest.approx(3.85)  # linear interpolation: 3 + 0.85 * (4 - 3)


def test_icc_identical_ratings_is_one():
    x = np.array([1.0, 5.0, -3.0, 7.5])
    r = icc_a1(np.column_stack([x, x]))
    assert (r.icc, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)


def test_icc_shrout_fleiss_table():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; their ICC(2,1) is 0.29.
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    assert icc_a1(y).icc == pytest.approx(0.29, abs=0.005)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icc_matches_pingouin(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(5, 6, size=40)
    auto = truth + rng.normal(0.3, 1.0, size=40)
    ours = icc_a1(np.column_stack([truth, auto]))
    long = pd.DataFrame({
        "subject": np.tile(np.arange(40), 2),
        "rater": np.repeat(["manual", "auto"], 40),
        "score": np.concatenate([truth, auto]),
    })
    table = pingouin.intraclass_corr(long, targets="subject", raters="rater", ratings="score").set_index("Type")
    row = table.loc["ICC(A,1)" if "ICC(A,1)" in table.index else "ICC2"]  # pingouin >= 0.7 / older names
    assert ours.icc == pytest.approx(row["ICC"], abs=1e-10)
    assert ours.f == pytest.approx(row["F"], rel=1e-9)
    assert ours.p == pytest.approx(row["pval"], rel=1e-6, abs=1e-300)
    low, high = row["CI95" if "CI95" in row.index else "CI95%"]  # pingouin rounds its CI to 2 decimals
    assert ours.ci_low == pytest.approx(low, abs=0.0051)
    assert ours.ci_high == pytest.approx(high, abs=0.0051)
    assert ours.ci_low < ours.icc < ours.ci_high


def test_bland_altman_constant_offset():
    ref = np.array([1.0, -2.0, 7.0, 4.0])
    assert bland_altman(ref + 0.5, ref) == pytest.approx((0.5, 0.0, 0.5, 0.5))
    bias, sd, lo, hi = bland_altman(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    assert (bias, sd) == pytest.approx((2.0, np.sqrt(2)))
    assert (lo, hi) == pytest.approx((2 - 1.96 * np.sqrt(2), 2 + 1.96 * np.sqrt(2)))


def test_sign_errors():
    auto = np.array([0.3, 0.4, -3.0, 5.0, 0.0])
    ref = np.array([-0.2, -0.8, 2.0, 4.0, 3.0])
    assert sign_errors(auto, ref).tolist() == [False, True, True, False, False]


def test_agreement_hand_values():
    ref = np.array([2.0, 4.0, 6.0, -1.0])
    auto = np.array([3.0, 3.0, 6.0, -1.0])
    a = agreement(auto, ref)
    assert a.n == 4
    assert a.mad == pytest.approx(0.5)
    assert a.mad_sd == pytest.approx(np.std([1, 1, 0, 0], ddof=1))
    assert a.bias == pytest.approx(0.0)
    assert a.max_abs_diff == pytest.approx(1.0)
    assert a.sign_errors == 0
    assert 0.8 < a.icc.icc < 1.0


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_error_sources_split_the_angle_error_between_the_two_axes(laterality):
    scheme = load_scheme("preop")
    truth_pts = _landmarks("preop", seed=3)
    pred_pts = truth_pts + np.random.default_rng(4).normal(0.0, 4.0, truth_pts.shape)
    truth = compute_alignment(truth_pts, scheme, laterality)
    pred = compute_alignment(pred_pts, scheme, laterality)
    src = error_sources(pred, truth, laterality, truth_pts[list(scheme.roles["reference"])])
    assert set(src) == set(ERROR_SOURCES)

    def wrapped(d):
        return (d + 180.0) % 360.0 - 180.0

    assert abs(src["tibial_deg"]) > 0.1 and abs(src["femoral_fnts_deg"]) > 0.1  # the noise moved both axes
    assert wrapped(pred.atfa_fnts_deg - truth.atfa_fnts_deg) == pytest.approx(
        wrapped(src["tibial_deg"] - src["femoral_fnts_deg"]), abs=1e-9)
    assert wrapped(pred.atfa_fts_deg - truth.atfa_fts_deg) == pytest.approx(
        wrapped(src["tibial_deg"] - src["femoral_fts_deg"]), abs=1e-9)


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_error_sources_place_the_notch_along_and_across_the_true_plateau(laterality):
    scheme = load_scheme("preop")
    pts = _landmarks("preop", seed=5)
    medial, lateral = scheme.roles["reference"]
    if laterality == "R":  # a right knee as acquired: its lateral corner on the image's left
        pts[medial], pts[lateral] = (300.0, 300.0), (200.0, 300.0)
    a, b = scheme.roles["femoral_notch"]
    pts[[a, b]] = [(240.0, 250.0), (260.0, 250.0)]
    f_prox = scheme.roles["femoral_shaft_proximal"]
    pts[list(f_prox)] = [(230.0, 120.0), (270.0, 120.0)]  # the femoral shaft straight above the notch
    moved = pts.copy()
    lateral_px = 3.0 if laterality == "L" else -3.0
    moved[[a, b]] += (lateral_px, 2.0)  # 3 % of the plateau width laterally, 2 % distally
    truth = compute_alignment(pts, scheme, laterality)
    pred = compute_alignment(moved, scheme, laterality)
    src = error_sources(pred, truth, laterality, pts[[medial, lateral]])
    assert src["notch_lateral_pct"] == pytest.approx(3.0) and src["notch_distal_pct"] == pytest.approx(2.0)
    # the femoral axis (shaft to notch, 132 px) turns laterally by atan(3/132); the tibial axis does not move
    assert src["femoral_fnts_deg"] == pytest.approx(np.degrees(np.arctan2(3.0, 132.0)), abs=1e-6)
    assert src["tibial_deg"] == 0.0 and src["femoral_fts_deg"] == 0.0
    assert pred.atfa_fnts_deg - truth.atfa_fnts_deg == pytest.approx(-src["femoral_fnts_deg"])  # varus-ward


def test_error_sources_summary_gives_the_bias_and_the_mean_absolute_value():
    rows = [dict.fromkeys(ERROR_SOURCES, 1.0), dict.fromkeys(ERROR_SOURCES, -3.0)]
    out = summarize_error_sources(rows)
    assert out["n"] == 2
    assert out["tibial_deg"] == {"mean": pytest.approx(-1.0), "mad": pytest.approx(2.0)}
    assert np.isnan(summarize_error_sources([])["notch_distal_pct"]["mean"])
