"""The generator's ground truth: landmark counts, the scheme's levels and reference points, the aTFA sign,
and the landmarks lying on the edges of the rendered image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.alignment import compute_alignment
from model.scheme import load_scheme
from train.synth import landmarks_mm, render_case, sample_case
from train.synth.landmarks import FEMUR_SHAFT_LEVELS, TIBIA_SHAFT_LEVELS
from train.synth.shapes import build_shapes


@pytest.mark.parametrize("phase, count", [("preop", 134), ("postop", 181)])
def test_landmark_count_follows_the_scheme(phase, count):
    for seed in range(5):
        case = sample_case(seed, phase=phase)
        points = landmarks_mm(case)
        assert points.shape == (count, 2) == (load_scheme(phase).n_points, 2)
        assert np.all(np.isfinite(points))


def test_phase_none_draws_both_phases():
    phases = {sample_case(seed).phase for seed in range(20)}
    assert phases == {"preop", "postop"}


@pytest.mark.parametrize("phase", ["preop", "postop"])
def test_shaft_points_sit_at_the_scheme_levels(phase):
    scheme = load_scheme(phase)
    for seed in range(4):
        case = sample_case(100 + seed, phase=phase)
        p = landmarks_mm(case)
        L = case.anatomy.tibia.width
        # canonical frame: origin between the plateau corners, corner line along x
        a, b = scheme.role("reference")
        assert np.allclose(p[a], [-L / 2, 0.0]) and np.allclose(p[b], [L / 2, 0.0])
        for start in (0, 22):  # femoral medial and lateral outlines: 11 shaft points at 1.3 .. 0.3 L above
            assert np.allclose(p[start:start + 11, 1] / L, FEMUR_SHAFT_LEVELS)
        for start in (88, 100):  # tibial outlines: 4 flare points, then 0.6 .. 1.3 L below
            assert np.allclose(p[start + 4:start + 12, 1] / L, TIBIA_SHAFT_LEVELS)
            assert np.all((p[start:start + 4, 1] > 0) & (p[start:start + 4, 1] < 0.6 * L))
        for role, level in scheme.levels.items():
            i, j = scheme.role(role)
            assert p[i, 1] / L == pytest.approx(level) and p[j, 1] / L == pytest.approx(level)
        # medial points medial of lateral ones at every shaft level
        assert np.all(p[0:11, 0] < p[22:33, 0]) and np.all(p[92:100, 0] < p[104:112, 0])


def test_notch_apex_is_the_most_proximal_notch_point():
    for seed in range(4):
        p = landmarks_mm(sample_case(200 + seed, phase="preop"))
        notch = p[50:59]
        assert np.argmin(notch[:, 1]) == 4


def test_reference_points_are_the_plateau_corners_in_pixels():
    for seed in range(4):
        case = sample_case(300 + seed)
        img = render_case(case, 0.5)
        a, b = load_scheme(case.phase).role("reference")
        width_px = np.linalg.norm(img.landmarks[b] - img.landmarks[a])
        assert width_px == pytest.approx(case.anatomy.tibia.width / 0.5, rel=1e-9)
        tibia = build_shapes(case.anatomy).tibia
        assert np.allclose(tibia.plateau[[0, -1]], landmarks_mm(case)[[a, b]])


@pytest.mark.parametrize("phase", ["preop", "postop"])
@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("target", [8.0, -10.0])
def test_ground_truth_angle_has_the_clinical_sign(phase, laterality, target):
    scheme = load_scheme(phase)
    for seed in range(3):
        case = sample_case(400 + seed, phase=phase, atfa_deg=target, laterality=laterality)
        img = render_case(case, 0.6)
        again = compute_alignment(img.landmarks, scheme, laterality)
        assert img.atfa_fts_deg == pytest.approx(again.atfa_fts_deg, abs=1e-9)
        assert img.atfa_fnts_deg == pytest.approx(again.atfa_fnts_deg, abs=1e-9)
        # FNTS: shaft to notch, close to the sampled angle; FTS: post-op its distal level reaches the flare
        assert img.atfa_fnts_deg == pytest.approx(target, abs=2.5)
        assert img.atfa_fts_deg == pytest.approx(target, abs=2.0 if phase == "preop" else 6.0)
        assert np.sign(img.atfa_fts_deg) == np.sign(img.atfa_fnts_deg) == np.sign(target)


def _gradient(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32)
    return np.hypot(cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3))


def _normals(points: np.ndarray, scheme) -> np.ndarray:
    """Unit normals of each landmark's curve, from its neighbours on the same curve."""
    out = np.zeros_like(points)
    for curve in scheme.curves:
        idx = list(curve.indices)
        for k, i in enumerate(idx):
            t = points[idx[min(k + 1, len(idx) - 1)]] - points[idx[max(k - 1, 0)]]
            out[i] = np.array([-t[1], t[0]]) / np.hypot(*t)
    return out


def _edge_checks(img, points: np.ndarray, radius: int = 2, reach: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Two per-point checks (NaN near the border):
    strong: the strongest gradient within ``radius`` px beats the image's 90th percentile gradient;
    placed: along the curve normal (+-``reach`` px) the strongest gradient is within 1.5 px of the point."""
    g = _gradient(img.image)
    ref = float(np.percentile(g, 90))
    h, w = g.shape
    normals = _normals(img.landmarks, load_scheme(img.phase))
    steps = np.linspace(-reach, reach, 4 * reach + 1, dtype=np.float32)
    strong = np.full(len(points), np.nan)
    placed = np.full(len(points), np.nan)
    for k, p in enumerate(points):
        x, y = np.round(p).astype(int)
        line = (p[None, :] + steps[:, None] * normals[k]).astype(np.float32)
        if not (reach <= x < w - reach and reach <= y < h - reach):
            continue
        strong[k] = g[y - radius:y + radius + 1, x - radius:x + radius + 1].max() > ref
        profile = cv2.remap(g, line[:, 0].reshape(1, -1), line[:, 1].reshape(1, -1), cv2.INTER_LINEAR)[0]
        placed[k] = abs(steps[np.argmax(profile)]) <= 1.5
    return strong, placed


def _legit_exceptions(img) -> tuple[np.ndarray, np.ndarray]:
    """Post-op points that legitimately fail a check: (1) plateau and tray-underside points where the metal
    keel passes through the resected surface (metal on both sides: no edge); (2) the resected plateau under
    the tray, whose strongest neighbouring edge is the tray's underside a thin cement layer above it."""
    in_keel = np.zeros(len(img.landmarks), bool)
    under_tray = np.zeros(len(img.landmarks), bool)
    if img.phase == "postop":
        under_tray[65:88] = True
        stem = build_shapes(img.case.anatomy).implant.stem_polygon.astype(np.float32).reshape(-1, 1, 2)
        mm = landmarks_mm(img.case)
        for i in list(range(65, 88)) + list(range(165, 171)):
            in_keel[i] = cv2.pointPolygonTest(stem, (float(mm[i, 0]), float(mm[i, 1])), True) > -1.0
    return in_keel, under_tray


@pytest.mark.parametrize("renders", ["clean_renders", "variant_renders"])
def test_landmarks_lie_on_edges_of_the_clean_render(renders, request):
    for img in request.getfixturevalue(renders):
        scheme = load_scheme(img.phase)
        strong, placed = _edge_checks(img, img.landmarks)
        judged = ~np.isnan(strong)
        assert judged.sum() > 0.8 * len(strong)
        in_keel, under_tray = _legit_exceptions(img)
        s_ok = judged & ~in_keel
        assert np.mean(strong[s_ok] == 1) > 0.97, f"seed {img.case.seed}: {np.mean(strong[s_ok] == 1):.3f}"
        p_ok = judged & ~in_keel & ~under_tray
        assert np.mean(placed[p_ok] == 1) > 0.9, f"seed {img.case.seed}: {np.mean(placed[p_ok] == 1):.3f}"
        for curve in scheme.curves:  # interior points: at a curve's ends it meets others at a corner
            idx = [i for i in list(curve.indices)[1:-1] if p_ok[i]]
            if len(idx) >= 4:
                assert np.mean(placed[idx] == 1) >= 0.75, f"{curve.name} of seed {img.case.seed}"


@pytest.mark.parametrize("shift", [(6.0, 0.0), (0.0, -6.0)])
def test_shifted_landmarks_are_not_on_edges(clean_renders, shift):
    """The edge check can fail: the same points moved 6 px (1.8 mm) off their outlines mostly miss."""
    for img in clean_renders:
        _, placed = _edge_checks(img, img.landmarks + np.array(shift))
        assert np.nanmean(placed) < 0.5
