"""Frame transforms, flips and scheme integrity."""

import json

import numpy as np
import pytest

from model.frames import (FrameSpec, apply_affine, frame_matrix, invert_affine, mirror_points,
                          similarity_from_points)
from model.scheme import SCHEME_DIR, LandmarkScheme, SchemeError, load_scheme


def test_mirror_is_an_involution_and_maps_edges():
    pts = np.array([[0.0, 5.0], [99.0, 7.0], [10.25, 3.0]])
    m = mirror_points(pts, 100)
    assert np.allclose(m[:2, 0], [99.0, 0.0])
    assert np.allclose(mirror_points(m, 100), pts)


@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0, 180.0])
def test_frame_puts_reference_points_at_fixed_positions_and_round_trips(angle):
    spec = FrameSpec()
    a = np.radians(angle)
    u = np.array([np.cos(a), np.sin(a)])
    med = np.array([812.3, 1044.7])
    ref = np.stack([med, med + 431.0 * u])
    m = frame_matrix(ref, spec)
    assert np.allclose(apply_affine(m, ref), spec.reference_points_px, atol=1e-9)
    pts = np.random.default_rng(0).uniform(0, 2000, (50, 2))
    assert np.allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-8)


def test_frame_is_upright_for_an_upright_left_knee():
    spec = FrameSpec()
    m = frame_matrix(np.array([[100.0, 500.0], [300.0, 500.0]]), spec)
    below = apply_affine(m, np.array([[200.0, 700.0]]))[0]
    assert below[1] > spec.reference_points_px[0, 1]  # distal stays down
    assert below[0] == pytest.approx(spec.reference_points_px.mean(0)[0])


def test_frame_spec_requires_square_pixels():
    with pytest.raises(ValueError, match="square"):
        FrameSpec(half_width=1.0, above=1.5, below=1.5, width_px=192, height_px=300)


def test_similarity_from_points_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (10, 2))
    a, s, t = np.radians(23), 1.7, np.array([5.0, -8.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + t
    assert np.allclose(similarity_from_points(src, dst), np.hstack([rot, t[:, None]]))


@pytest.mark.parametrize("phase,n", [("preop", 134), ("postop", 181)])
def test_shipped_schemes_are_complete(phase, n):
    scheme = load_scheme(phase)
    assert scheme.n_points == n and len(scheme.point_names) == n
    assert sum(c.count for c in scheme.curves) == n
    ref = scheme.roles["reference"]
    plateau = scheme.curve("tibial_plateau")
    assert ref == (plateau.start, plateau.start + plateau.count - 1)  # plateau corners
    for role in ("femoral_shaft_proximal", "femoral_shaft_distal", "femoral_notch",
                 "tibial_shaft_proximal", "tibial_shaft_distal"):
        med, lat = scheme.roles[role]
        assert "medial" in scheme.point_names[med] or role == "femoral_notch"
        assert med != lat


def test_postop_extends_preop_with_implant_curves():
    pre, post = load_scheme("preop"), load_scheme("postop")
    assert post.point_names[:134] == pre.point_names
    assert post.roles == pre.roles
    assert {c.bone for c in post.curves[len(pre.curves):]} == {"implant"}


def test_broken_scheme_is_refused_with_a_reason(tmp_path):
    data = json.loads((SCHEME_DIR / "preop-v1.json").read_text())
    data["curves"][0]["count"] -= 1
    with pytest.raises(SchemeError, match="cover every landmark"):
        LandmarkScheme.from_dict(data)
    data = json.loads((SCHEME_DIR / "preop-v1.json").read_text())
    del data["roles"]["femoral_notch"]
    with pytest.raises(SchemeError, match="femoral_notch"):
        LandmarkScheme.from_dict(data)


def test_reference_length_and_point_check():
    scheme = load_scheme("preop")
    pts = np.zeros((134, 2))
    a, b = scheme.roles["reference"]
    pts[a], pts[b] = [0, 0], [3, 4]
    assert scheme.reference_length(pts) == 5.0
    pts[7, 0] = np.nan
    with pytest.raises(SchemeError, match="NaN"):
        scheme.check_points(pts)
