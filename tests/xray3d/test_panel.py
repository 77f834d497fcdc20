"""The projection renderer's measurement panel: exact values on the projected geometry agree with the 3D design of
an unposed knee, and the panel measured on the ground-truth landmarks agrees with the exact values."""

from __future__ import annotations

import pytest

from model.measurements import compute_measurements
from model.scheme import load_scheme
from tests.xray3d.test_renderer import SPACING, STILL, posed
from train.xray3d import render_case


def panel_of(img):
    return compute_measurements(img.landmarks, load_scheme(img.phase), img.laterality, (SPACING, SPACING))


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_unposed_preop_knee_projects_its_design(laterality):
    img = render_case(posed(21, "preop", laterality, atfa=6.0, **STILL, gap_min=3.0), SPACING)
    exact, design = img.panel["projected"], img.panel["design"]
    assert exact["aldfa"] == pytest.approx(design["aldfa"], abs=0.3)
    assert exact["mpta"] == pytest.approx(design["mpta"], abs=1.0)  # the corner line against the tilted heightmap
    assert exact["jlca"] == pytest.approx(design["jlca"], abs=1.0)
    assert exact["femoral_component"] is None and design["tibial_component"] is None
    landmarks = panel_of(img)
    assert landmarks["jlca"].value == pytest.approx(exact["jlca"], abs=0.1)
    assert landmarks["mpta"].value == pytest.approx(exact["mpta"], abs=0.5)
    for side in ("jsw_medial", "jsw_lateral"):
        assert exact[side] is not None and exact[side] < design["joint_space_3d_mm"]  # the rims project higher
        if exact[side] > 0:
            assert landmarks[side].value == pytest.approx(exact[side], abs=0.2)


def test_unposed_postop_knee_projects_its_components():
    img = render_case(posed(22, "postop", "L", atfa=6.0, **STILL), SPACING)
    exact, design = img.panel["projected"], img.panel["design"]
    assert exact["femoral_component"] == pytest.approx(design["femoral_component"], abs=0.3)
    assert exact["tibial_component"] == pytest.approx(design["tibial_component"], abs=0.1)
    assert exact["mpta"] is None and exact["jsw_medial"] is None
    landmarks = panel_of(img)
    assert landmarks["tibial_component"].value == pytest.approx(exact["tibial_component"], abs=0.3)


def test_posed_knee_landmark_panel_follows_the_projection():
    """Flexed and rotated: the design no longer shows, but the landmarks still measure what the projection shows."""
    pose = dict(flexion_deg=15.0, rotation_deg=10.0, tibia_tilt_deg=4.0)
    img = render_case(posed(23, "preop", "R", **pose, gap_min=7.0), SPACING)
    exact, landmarks = img.panel["projected"], panel_of(img)
    assert landmarks["jlca"].value == pytest.approx(exact["jlca"], abs=0.3)
    for side in ("jsw_medial", "jsw_lateral"):
        assert exact[side] > 1.0
        assert landmarks[side].value == pytest.approx(exact[side], abs=0.3)
    # A narrow joint space, flexed: the plateau's rims project over the condyles and the joint space is not seen.
    hidden = render_case(posed(23, "preop", "R", **pose, gap_min=3.0), SPACING)
    assert hidden.panel["projected"]["jsw_lateral"] < -1.0
    assert panel_of(hidden)["jsw_lateral"].status == "not_measurable"
