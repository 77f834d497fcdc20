"""Adaptive shaft levels on hand-built shafts: which levels are chosen, and the angle they give."""

import numpy as np
import pytest

from model.alignment import FIXED_LEVEL, MIN_LEVEL, ShaftLevels, axis_levels, choose_levels, compute_alignment
from model.scheme import load_scheme

SCHEME = load_scheme("preop")
ALL = {bone: {lv for lv, _, _ in rows} for bone, rows in SCHEME.shaft_levels.items()}


def bent_knee(femur_bend_deg: float, L: float = 100.0) -> np.ndarray:
    """A left knee: plateau corners at (+-50, 0), a straight tibial shaft along +y, a femoral shaft whose axis
    points a few degrees toward +x going proximally from the notch at (0, -20); every point on the axes' cortices."""
    pts = np.zeros((SCHEME.n_points, 2))
    a, b = SCHEME.roles["reference"]
    pts[a], pts[b] = (-50.0, 0.0), (50.0, 0.0)
    t = np.radians(femur_bend_deg)
    up = np.array([np.sin(t), -np.cos(t)])  # proximal direction of the femur
    across = np.array([np.cos(t), np.sin(t)])
    notch = np.array([0.0, -20.0])
    for level, med, lat in SCHEME.shaft_levels["femur"]:
        centre = notch + up * ((level * L - 20.0) / np.cos(t))
        pts[med], pts[lat] = centre - 14 * across, centre + 14 * across
    for level, med, lat in SCHEME.shaft_levels["tibia"]:
        pts[med], pts[lat] = (-14.0, level * L), (14.0, level * L)
    n1, n2 = SCHEME.roles["femoral_notch"]
    pts[n1], pts[n2] = notch + (-8.0, 0.0), notch + (8.0, 0.0)
    return pts


def test_everything_exposed_gives_the_papers_levels():
    levels, reasons = choose_levels(ALL)
    assert levels == ShaftLevels() and levels.fixed and not reasons
    assert levels.femur == (1.3, 0.8) and levels.tibia == (0.8, 1.3)


def test_the_most_distant_exposed_levels_are_used_with_the_span():
    exposed = {"femur": {lv for lv in ALL["femur"] if lv <= 0.9}, "tibia": {lv for lv in ALL["tibia"] if lv <= 1.0}}
    levels, reasons = choose_levels(exposed)
    assert not reasons
    assert levels.femur == (0.9, 0.4) and levels.tibia == (0.6, 1.0)
    assert "femur 0.9/0.4, tibia 0.6/1.0" in levels.describe()


def test_a_gap_in_the_exposed_levels_moves_to_a_level_whose_partner_shows():
    exposed = {"femur": ALL["femur"] - {0.8}, "tibia": ALL["tibia"]}  # a marker over 0.8 L of the femur
    levels, _ = choose_levels(exposed)
    assert levels.femur == (1.2, 0.7)


def test_too_little_shaft_is_not_measurable_with_the_reason():
    exposed = {"femur": {0.3, 0.4, 0.5}, "tibia": {0.6, 0.7}}
    levels, reasons = choose_levels(exposed)
    assert levels is None
    assert reasons == [f"less than {MIN_LEVEL['femur']:.1f} plateau widths of femoral shaft exposed",
                       f"less than {MIN_LEVEL['tibia']:.1f} plateau widths of tibial shaft exposed"]


def test_axis_levels_refuse_levels_outside_the_range():
    assert axis_levels("tibia", 0.8) == (0.8, 0.6)
    with pytest.raises(ValueError):
        axis_levels("tibia", 0.7)
    with pytest.raises(ValueError):
        axis_levels("femur", FIXED_LEVEL + 0.1)


@pytest.mark.parametrize("bend", [-8.0, 0.0, 5.0, 12.0])
def test_a_straight_shaft_gives_the_same_angle_at_every_level(bend):
    pts = bent_knee(bend)
    fixed = compute_alignment(pts, SCHEME, "L")
    for f_far, t_far in ((1.0, 0.8), (0.6, 1.3), (0.7, 0.9)):
        levels = ShaftLevels(femur=axis_levels("femur", f_far), tibia=axis_levels("tibia", t_far)[::-1])
        adaptive = compute_alignment(pts, SCHEME, "L", levels=levels)
        assert adaptive.levels == levels
        assert adaptive.atfa_fts_deg == pytest.approx(fixed.atfa_fts_deg, abs=1e-6)
        assert adaptive.atfa_fnts_deg == pytest.approx(fixed.atfa_fnts_deg, abs=1e-6)
    assert fixed.atfa_fts_deg == pytest.approx(bend, abs=1e-6)  # valgus when the femur leans laterally upward


def test_the_axes_are_drawn_through_the_chosen_levels():
    pts = bent_knee(0.0)
    levels = ShaftLevels(femur=(0.9, 0.4), tibia=(0.6, 1.0))
    res = compute_alignment(pts, SCHEME, "L", levels=levels)
    assert res.tibial_axis.proximal[1] == pytest.approx(60.0) and res.tibial_axis.distal[1] == pytest.approx(100.0)
    assert res.femoral_axis_fts.proximal[1] == pytest.approx(-90.0) and res.femoral_axis_fts.distal[1] == pytest.approx(-40.0)
    assert res.as_dict()["shaft_levels"] == {"femur": [0.9, 0.4], "tibia": [0.6, 1.0]}
