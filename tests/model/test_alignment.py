"""aTFA geometry on hand-built landmark sets with known angles."""

import math

import numpy as np
import pytest

from model.alignment import MIN_NOTCH_DEPTH, compute_alignment, notch_depth
from model.frames import mirror_points
from model.scheme import load_scheme

WIDTH = 2000


def rotate(v, deg):
    """Rotate a vector in image coordinates (x right, y down); positive = clockwise on screen."""
    a = math.radians(deg)
    return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])


def build_left_knee(scheme, atfa_deg, image_rotation_deg=0.0, notch_offset=(0.0, 0.0)):
    """A left knee (lateral = +x): femur straight down the image, tibia turned laterally by ``atfa_deg``.

    A turn toward +x of the distal direction (0, 1) is a clockwise turn on screen by -atfa degrees in
    ``rotate``'s convention, built here without using the code under test.
    """
    rng = np.random.default_rng(1)
    pts = rng.uniform(800, 1200, size=(scheme.n_points, 2))
    joint = np.array([1000.0, 1200.0])
    down = np.array([0.0, 1.0])
    across = np.array([1.0, 0.0])
    tib_dir = np.array([math.sin(math.radians(atfa_deg)), math.cos(math.radians(atfa_deg))])
    tib_across = np.array([tib_dir[1], -tib_dir[0]])
    r = scheme.roles

    def pair(centre, side, half=60.0):
        return centre - side * half, centre + side * half  # medial (-x), lateral (+x)

    for name, dist in (("femoral_shaft_proximal", 500.0), ("femoral_shaft_distal", 300.0)):
        m, l = pair(joint - down * dist, across)
        pts[r[name][0]], pts[r[name][1]] = m, l
    m, l = pair(joint - down * 40 + np.array(notch_offset), across, 15.0)
    pts[r["femoral_notch"][0]], pts[r["femoral_notch"][1]] = m, l
    for name, dist in (("tibial_shaft_proximal", 300.0), ("tibial_shaft_distal", 500.0)):
        m, l = pair(joint + tib_dir * dist, tib_across)
        pts[r[name][0]], pts[r[name][1]] = m, l
    pts[r["reference"][0]], pts[r["reference"][1]] = joint - across * 250, joint + across * 250
    if image_rotation_deg:
        centre = np.array([1000.0, 1000.0])
        pts = np.array([centre + rotate(p - centre, image_rotation_deg) for p in pts])
    return pts


@pytest.mark.parametrize("phase", ["preop", "postop"])
@pytest.mark.parametrize("atfa", [-15.0, -4.0, 0.0, 6.0, 18.0])
@pytest.mark.parametrize("rotation", [0.0, 12.0, -25.0])
def test_left_knee_known_angle_any_rotation(phase, atfa, rotation):
    scheme = load_scheme(phase)
    pts = build_left_knee(scheme, atfa, rotation)
    res = compute_alignment(pts, scheme, "L")
    assert res.atfa_fts_deg == pytest.approx(atfa, abs=1e-9)
    assert res.atfa_fnts_deg == pytest.approx(atfa, abs=1e-9)  # notch on the femoral axis here


@pytest.mark.parametrize("atfa", [-12.0, 7.0])
def test_right_knee_gives_same_clinical_sign(atfa):
    scheme = load_scheme("preop")
    right = mirror_points(build_left_knee(scheme, atfa, 8.0), WIDTH)  # a right knee as acquired
    res = compute_alignment(right, scheme, "R")
    assert res.atfa_fts_deg == pytest.approx(atfa, abs=1e-9)
    # Read as a left knee, the same points would give the opposite sign: laterality matters.
    assert compute_alignment(right, scheme, "L").atfa_fts_deg == pytest.approx(-atfa, abs=1e-9)


def test_valgus_positive_varus_negative():
    scheme = load_scheme("preop")
    assert compute_alignment(build_left_knee(scheme, 6.0), scheme).atfa_fnts_deg > 0
    assert compute_alignment(build_left_knee(scheme, -6.0), scheme).atfa_fnts_deg < 0


def test_fnts_uses_notch_and_differs_from_fts():
    scheme = load_scheme("preop")
    # Move the notch 30 px laterally, 40 px below the joint-line reference: the femoral axis (proximal shaft
    # midpoint at 500 px above the joint to the notch) turns toward lateral by atan(30 / 460).
    pts = build_left_knee(scheme, 0.0, notch_offset=(30.0, 0.0))
    res = compute_alignment(pts, scheme)
    expected = -math.degrees(math.atan2(30.0, 460.0))  # femur turned laterally = tibia relatively medial
    assert res.atfa_fts_deg == pytest.approx(0.0, abs=1e-9)
    assert res.atfa_fnts_deg == pytest.approx(expected, abs=1e-9)


def test_axes_returned_in_caller_coordinates():
    scheme = load_scheme("preop")
    right = mirror_points(build_left_knee(scheme, 5.0), WIDTH)
    res = compute_alignment(right, scheme, "R")
    r = scheme.roles
    expected = (right[r["tibial_shaft_proximal"][0]] + right[r["tibial_shaft_proximal"][1]]) / 2
    assert np.allclose(res.tibial_axis.proximal, expected)


def test_anisotropic_pixels_measured_in_mm():
    scheme = load_scheme("preop")
    pts = build_left_knee(scheme, 10.0)
    # Stretch columns by 2: the same anatomy sampled with columns of 0.1 mm and rows of 0.2 mm.
    stretched = pts.copy()
    stretched[:, 0] *= 2
    res = compute_alignment(stretched, scheme, "L", pixel_spacing_mm=(0.2, 0.1))
    assert res.atfa_fts_deg == pytest.approx(10.0, abs=1e-9)
    assert compute_alignment(stretched, scheme, "L").atfa_fts_deg != pytest.approx(10.0, abs=0.5)


def test_wrong_number_of_points_is_refused():
    scheme = load_scheme("preop")
    with pytest.raises(ValueError, match="134"):
        compute_alignment(np.zeros((181, 2)), scheme)
    with pytest.raises(ValueError, match="laterality"):
        compute_alignment(build_left_knee(scheme, 0.0), scheme, "B")


@pytest.mark.parametrize("phase", ["preop", "postop"])
@pytest.mark.parametrize("laterality,rotation,spacing", [("L", 0.0, (1.0, 1.0)), ("R", 25.0, (0.1, 0.1)),
                                                         ("L", -15.0, (0.1, 0.2))])
def test_notch_depth_in_plateau_widths_in_every_view(phase, laterality, rotation, spacing):
    """The hand-built pre-op knee (``tests/model/knee_builder``): condyles of radius 15 mm sampled from 10 to 60
    degrees off their tips toward the notch, notch edges at 70 degrees, roof 12 mm above the edges, plateau 80 mm
    wide; so the roof lies 12 + 15 (cos 10 - cos 70) mm above the nearest sampled condyle point. Rotation, a right
    knee and anisotropic pixels change nothing."""
    from tests.model.knee_builder import KneeSpec, build, to_image

    scheme = load_scheme(phase)
    mm = build(KneeSpec(), phase)
    depth = notch_depth(mm, scheme)
    if phase == "preop":
        c = math.cos
        assert depth == pytest.approx((12.0 + 15.0 * (c(math.radians(10)) - c(math.radians(70)))) / 80.0, abs=1e-9)
    assert MIN_NOTCH_DEPTH < 0.1 < depth < 0.35  # a notch that shows (post-op: the component's box)
    seen = notch_depth(to_image(mm, laterality, rotation, spacing), scheme, spacing)
    assert seen == pytest.approx(depth, abs=1e-9)


def test_a_flat_notch_is_shallower_than_the_minimum():
    """Notch landmarks laid on the line through both condyles' most distal points (a component seen with its box
    hidden): no roof above the condyles, no midpoint to place; a roof 4 % of the plateau width up is one again."""
    from tests.model.knee_builder import KneeSpec, build

    scheme = load_scheme("postop")
    mm = build(KneeSpec(), "postop")
    notch = list(scheme.curve("intercondylar_notch").indices)
    tips = [max(scheme.curve(n).indices, key=lambda i: mm[i, 1]) for n in ("medial_condyle_distal",
                                                                            "lateral_condyle_distal")]
    mm[notch] = mm[tips[0]] + np.linspace(0.0, 1.0, len(notch))[:, None] * (mm[tips[1]] - mm[tips[0]])
    assert abs(notch_depth(mm, scheme)) < 1e-9 < MIN_NOTCH_DEPTH
    mm[notch[len(notch) // 2]] -= (0.0, 0.04 * 80.0)  # proximal is -y in the builder's frame (mpta 87: nearly so)
    assert notch_depth(mm, scheme) >= MIN_NOTCH_DEPTH
