"""Adaptive shaft levels on hand-built shafts: which levels are chosen, and the angle they give."""

import numpy as np
import pytest

from model.alignment import (
    FIXED_LEVEL,
    MIN_LEVEL,
    NEAR_LEVEL,
    ShaftLevels,
    axis_levels,
    choose_levels,
    compute_alignment,
)
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


def test_the_most_distant_exposed_levels_are_used_with_the_papers_near_level():
    exposed = {"femur": {lv for lv in ALL["femur"] if lv <= 1.1}, "tibia": {lv for lv in ALL["tibia"] if lv <= 1.0}}
    levels, reasons = choose_levels(exposed)
    assert not reasons
    assert levels.femur == (1.1, NEAR_LEVEL) and levels.tibia == (NEAR_LEVEL, 1.0)
    assert "femur 1.1/0.8, tibia 0.8/1.0" in levels.describe()


def test_a_gap_in_the_exposed_levels_moves_to_the_next_exposed_far_level():
    exposed = {"femur": ALL["femur"] - {1.3}, "tibia": ALL["tibia"] - {1.3, 1.2}}  # markers over the far levels
    levels, _ = choose_levels(exposed)
    assert levels.femur == (1.2, 0.8) and levels.tibia == (0.8, 1.1)


def test_a_hidden_near_level_makes_the_bone_not_measurable():
    """Nearer the joint the shaft is the metaphysis: no axis is drawn through another near level."""
    levels, reasons = choose_levels({"femur": ALL["femur"], "tibia": ALL["tibia"] - {NEAR_LEVEL}})
    assert levels is None and reasons == [f"less than {MIN_LEVEL['tibia']:.1f} plateau widths of tibial shaft exposed"]


def test_too_little_shaft_is_not_measurable_with_the_reason():
    below = {bone: {lv for lv in ALL[bone] if lv < MIN_LEVEL[bone] - 1e-9} for bone in ALL}
    assert below["femur"] >= {0.6, 0.8, 1.0} and below["tibia"] >= {0.6, 0.8, 0.9}  # what shorter films show
    levels, reasons = choose_levels(below)
    assert levels is None
    assert reasons == [f"less than {MIN_LEVEL['femur']:.1f} plateau widths of femoral shaft exposed",
                       f"less than {MIN_LEVEL['tibia']:.1f} plateau widths of tibial shaft exposed"]


def test_axis_levels_refuse_levels_outside_the_range():
    assert axis_levels("tibia", 1.0) == (1.0, NEAR_LEVEL)
    with pytest.raises(ValueError):
        axis_levels("tibia", 0.9)
    with pytest.raises(ValueError):
        axis_levels("femur", 1.0)
    with pytest.raises(ValueError):
        axis_levels("femur", FIXED_LEVEL + 0.1)


@pytest.mark.parametrize("bend", [-8.0, 0.0, 5.0, 12.0])
def test_a_straight_shaft_gives_the_same_angle_at_every_level(bend):
    pts = bent_knee(bend)
    fixed = compute_alignment(pts, SCHEME, "L")
    for f_far, t_far in ((1.1, 1.0), (1.2, 1.3), (1.3, 1.1)):
        levels = ShaftLevels(femur=axis_levels("femur", f_far), tibia=axis_levels("tibia", t_far)[::-1])
        adaptive = compute_alignment(pts, SCHEME, "L", levels=levels)
        assert adaptive.levels == levels
        assert adaptive.atfa_fts_deg == pytest.approx(fixed.atfa_fts_deg, abs=1e-6)
        assert adaptive.atfa_fnts_deg == pytest.approx(fixed.atfa_fnts_deg, abs=1e-6)
    assert fixed.atfa_fts_deg == pytest.approx(bend, abs=1e-6)  # valgus when the femur leans laterally upward


def test_the_axes_are_drawn_through_the_chosen_levels():
    pts = bent_knee(0.0)
    levels = ShaftLevels(femur=(1.1, 0.8), tibia=(0.8, 1.0))
    res = compute_alignment(pts, SCHEME, "L", levels=levels)
    assert res.tibial_axis.proximal[1] == pytest.approx(80.0) and res.tibial_axis.distal[1] == pytest.approx(100.0)
    assert res.femoral_axis_fts.proximal[1] == pytest.approx(-110.0)
    assert res.femoral_axis_fts.distal[1] == pytest.approx(-80.0)
    assert res.as_dict()["shaft_levels"] == {"femur": [1.1, 0.8], "tibia": [0.8, 1.0]}


def test_a_flaring_metaphysis_never_moves_the_angle():
    """Cortices nearer the joint than the near level bulge out on one side only (the metaphysis flaring into the
    condyles and the plateau): whatever part of the shafts a film shows, the chosen levels give the straight shafts'
    angle or no axis at all. The levels of earlier releases (down to 0.3 L of femur, 0.6 L of tibia) did not."""
    pts = bent_knee(6.0)
    for bone in ("femur", "tibia"):
        for level, med, _ in SCHEME.shaft_levels[bone]:
            if level < NEAR_LEVEL - 1e-9:
                pts[med, 0] -= 40.0 * (NEAR_LEVEL - level)  # only the medial cortex: the midpoint moves
    straight = compute_alignment(pts, SCHEME, "L")
    measured = 0
    for f_extent in sorted(ALL["femur"]):
        for t_extent in sorted(ALL["tibia"]):
            exposed = {"femur": {lv for lv in ALL["femur"] if lv <= f_extent + 1e-9},
                       "tibia": {lv for lv in ALL["tibia"] if lv <= t_extent + 1e-9}}
            levels, reasons = choose_levels(exposed)
            if levels is None:
                assert f_extent < MIN_LEVEL["femur"] - 1e-9 or t_extent < MIN_LEVEL["tibia"] - 1e-9, reasons
                continue
            measured += 1
            at = compute_alignment(pts, SCHEME, "L", levels=levels)
            assert at.atfa_fnts_deg == pytest.approx(straight.atfa_fnts_deg, abs=1e-6)
            assert at.atfa_fts_deg == pytest.approx(straight.atfa_fts_deg, abs=1e-6)
    assert measured == 3 * 4  # femur 1.1-1.3, tibia 1.0-1.3
    old = ShaftLevels(femur=(0.9, 0.4), tibia=(0.6, 1.0))
    assert abs(compute_alignment(pts, SCHEME, "L", levels=old).atfa_fts_deg - straight.atfa_fts_deg) > 5.0
