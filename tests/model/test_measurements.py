"""The measurement panel's definitions on hand-built landmark sets with known values (``tests/model/knee_builder``):
left and right knees, rotated images, anisotropic pixels, adaptive shaft levels, statuses and reasons."""

import numpy as np
import pytest

from model.alignment import ShaftLevels
from model.measurements import (ALWAYS_MEASURED, DETECTOR_SPACING_NOTE, JSW_OVERLAP_TOLERANCE_MM, MEASUREMENT_NAMES,
                                SPECS, STATUS_LOW_CONFIDENCE, STATUS_NOT_MEASURABLE, STATUS_OK, Measurement,
                                ReferenceRange, apply_site_ranges, compute_measurements, distrust_through, grade,
                                resolve_names)
from model.scheme import load_scheme
from tests.model.knee_builder import KneeSpec, build, to_image

PRE, POST = load_scheme("preop"), load_scheme("postop")
VIEWS = [("L", 0.0, (1.0, 1.0)), ("R", 0.0, (1.0, 1.0)), ("L", 23.0, (0.1, 0.1)), ("R", -31.0, (0.1, 0.1)),
         ("L", 12.0, (0.1, 0.15)), ("R", 40.0, (0.16, 0.11))]


def measure(spec: KneeSpec, phase="preop", laterality="L", rotation=0.0, spacing=(1.0, 1.0), **kw):
    scheme = PRE if phase == "preop" else POST
    pts = to_image(build(spec, phase), laterality, rotation, spacing)
    return compute_measurements(pts, scheme, laterality, spacing, **kw)


@pytest.mark.parametrize("laterality,rotation,spacing", VIEWS)
@pytest.mark.parametrize("spec", [KneeSpec(), KneeSpec(84.0, 78.0, 2.5), KneeSpec(91.0, 86.0, -3.0),
                                  KneeSpec(80.0, 95.0, 4.0)])
def test_preop_angles_have_their_known_values_in_every_view(spec, laterality, rotation, spacing):
    m = measure(spec, "preop", laterality, rotation, spacing)
    assert m["mpta"].value == pytest.approx(spec.mpta, abs=1e-9)
    assert m["aldfa"].value == pytest.approx(spec.aldfa, abs=1e-9)
    assert m["jlca"].value == pytest.approx(spec.jlca, abs=1e-9)
    assert m["atfa_fts"].value == pytest.approx(spec.atfa, abs=1e-9)
    assert all(m[n].status == STATUS_OK for n in ("mpta", "aldfa", "jlca", "atfa_fts", "atfa_fnts"))


@pytest.mark.parametrize("laterality,rotation,spacing", VIEWS)
@pytest.mark.parametrize("alpha,beta", [(96.0, 90.0), (88.0, 93.5), (101.0, 85.0)])
def test_component_angles_and_their_deviations_in_every_view(alpha, beta, laterality, rotation, spacing):
    m = measure(KneeSpec(alpha=alpha, beta=beta), "postop", laterality, rotation, spacing)
    fem, tib = m["femoral_component"], m["tibial_component"]
    assert fem.value == pytest.approx(alpha, abs=1e-9) and fem.deviation_deg == pytest.approx(alpha - 90, abs=1e-9)
    assert tib.value == pytest.approx(beta, abs=1e-9) and tib.deviation_deg == pytest.approx(beta - 90, abs=1e-9)
    assert fem.status == tib.status == STATUS_OK


@pytest.mark.parametrize("laterality,rotation,spacing", VIEWS)
def test_minimum_joint_space_widths_in_millimetres(laterality, rotation, spacing):
    m = measure(KneeSpec(flat_gaps=(2.2, 4.7)), "preop", laterality, rotation, spacing)
    assert m["jsw_medial"].value == pytest.approx(2.2, abs=1e-9)
    assert m["jsw_lateral"].value == pytest.approx(4.7, abs=1e-9)
    assert m["jsw_medial"].unit == "mm" and m["mpta"].unit == "deg"
    # The narrowest gap is drawn where it is, between the two outlines, in the image's pixels.
    (a, b), = m["jsw_medial"].lines
    gap_mm = np.hypot((b[0] - a[0]) * spacing[1], (b[1] - a[1]) * spacing[0])
    assert gap_mm == pytest.approx(2.2, abs=1e-9)


def test_signs_follow_the_anatomy_not_the_formulas():
    """Built without the sign conventions: a plateau whose medial side is lower, condylar lines closer medially,
    a tray lower laterally."""
    pts = build(KneeSpec(mpta=90.0, aldfa=81.0, jlca=0.0))
    pts[65] += (0.0, 4.0)  # the medial corner 4 mm lower: a varus plateau
    m = compute_measurements(pts, PRE)
    assert m["mpta"].value < 90.0  # medial angle below 90
    assert m["jlca"].value < 0  # a lower medial corner opens the medial side: the lines converge laterally
    narrow_medially = measure(KneeSpec(jlca=3.0))
    assert narrow_medially["jsw_medial"].value < narrow_medially["jsw_lateral"].value  # converge medially: JLCA > 0
    valgus_tray = build(KneeSpec(beta=90.0), "postop")
    valgus_tray[[159, 170]] -= (0.0, 3.0)  # medial end of both surfaces 3 mm higher
    assert compute_measurements(valgus_tray, POST)["tibial_component"].deviation_deg > 0


def test_atfa_is_mpta_minus_aldfa_minus_jlca_for_any_landmarks():
    rng = np.random.default_rng(3)
    base = build(KneeSpec(86.0, 83.0, 1.0))
    for _ in range(20):
        pts = base + rng.normal(0.0, 1.5, base.shape)
        m = compute_measurements(pts, PRE, "L", (0.12, 0.1))
        assert m["atfa_fnts"].value == pytest.approx(m["mpta"].value - m["aldfa"].value - m["jlca"].value, abs=1e-9)


def test_the_panel_takes_the_femoral_axis_from_the_shaft_to_the_notch():
    pts = build(KneeSpec(86.0, 83.0, 1.0))
    r = PRE.roles
    moved = pts.copy()
    moved[list(r["femoral_shaft_distal"])] += (4.0, 0.0)  # the FTS axis' distal point only
    before, after = compute_measurements(pts, PRE), compute_measurements(moved, PRE)
    assert after["aldfa"].value == pytest.approx(before["aldfa"].value, abs=1e-9)
    assert abs(after["atfa_fts"].value - before["atfa_fts"].value) > 1.0
    notch = pts.copy()
    notch[list(r["femoral_notch"])] += (4.0, 0.0)  # the FNTS axis' distal point
    shifted = compute_measurements(notch, PRE)
    assert abs(shifted["aldfa"].value - before["aldfa"].value) > 1.0
    assert shifted["aldfa"].value - before["aldfa"].value == pytest.approx(
        before["atfa_fnts"].value - shifted["atfa_fnts"].value, abs=1e-9)
    used = set(before["aldfa"].landmarks)
    assert set(r["femoral_notch"]) <= used and set(r["femoral_shaft_proximal"]) <= used
    assert not set(r["femoral_shaft_distal"]) & used
    fts = compute_measurements(moved, PRE, femoral_axis="fts")  # the two-level axis, kept for comparison
    assert fts["atfa_fts"].value == pytest.approx(fts["mpta"].value - fts["aldfa"].value - fts["jlca"].value, abs=1e-9)
    assert abs(fts["aldfa"].value - after["aldfa"].value) > 1.0
    with pytest.raises(ValueError, match="femoral axis"):
        compute_measurements(pts, PRE, femoral_axis="mechanical")


def test_a_right_knee_read_as_left_changes_the_values():
    spec = KneeSpec(84.0, 78.0, 2.5)
    pts = to_image(build(spec), "R", 10.0)
    wrong = compute_measurements(pts, PRE, "L")
    assert wrong["jlca"].value == pytest.approx(-spec.jlca, abs=1e-9)
    assert wrong["mpta"].value != pytest.approx(spec.mpta, abs=0.5)


def test_phase_decides_what_is_measurable():
    pre = measure(KneeSpec(), "preop")
    post = measure(KneeSpec(), "postop")
    for name in ("femoral_component", "tibial_component"):
        assert pre[name].status == STATUS_NOT_MEASURABLE and pre[name].value is None
        assert "no implant" in pre[name].reason
    for name in ("jlca", "aldfa", "mpta", "jsw_medial", "jsw_lateral"):
        assert post[name].status == STATUS_NOT_MEASURABLE and post[name].value is None
        assert "post-operative" in post[name].reason
    assert post["atfa_fts"].status == pre["atfa_fts"].status == STATUS_OK


def test_an_axis_without_shaft_makes_only_its_measurements_not_measurable():
    m = measure(KneeSpec(), unmeasurable_axes={"femur": "less than 0.6 plateau widths of femoral shaft exposed"})
    for name in ("aldfa", "atfa_fts", "atfa_fnts"):
        assert m[name].status == STATUS_NOT_MEASURABLE and m[name].value is None
        assert "femoral shaft exposed" in m[name].reason
    for name in ("mpta", "jlca", "jsw_medial", "jsw_lateral"):
        assert m[name].status == STATUS_OK
    post = measure(KneeSpec(), "postop", unmeasurable_axes={"tibia": "too short"})
    assert post["tibial_component"].value is None and post["femoral_component"].status == STATUS_OK


def test_landmarks_outside_the_image_make_a_measurement_not_measurable():
    pts = build(KneeSpec())
    visible = np.ones(PRE.n_points, bool)
    visible[87] = False  # the lateral plateau corner
    m = compute_measurements(pts, PRE, visible=visible)
    assert m["mpta"].status == STATUS_NOT_MEASURABLE and "outside the image" in m["mpta"].reason
    assert PRE.point_names[87] in m["mpta"].reason
    assert m["aldfa"].status == STATUS_OK  # its lines do not use the corner
    visible[:] = True
    visible[0] = False  # a femoral shaft point of the 1.3 level
    m = compute_measurements(pts, PRE, visible=visible)
    assert m["aldfa"].value is None and m["mpta"].status == STATUS_OK


def test_joint_space_statuses():
    no_spacing = compute_measurements(build(KneeSpec()), PRE)
    assert no_spacing["jsw_medial"].value is None and "pixel spacing unknown" in no_spacing["jsw_medial"].reason
    assert no_spacing["mpta"].status == STATUS_OK  # angles need no spacing
    detector = measure(KneeSpec(flat_gaps=(3.0, 3.0)), spacing_source="ImagerPixelSpacing")
    assert detector["jsw_medial"].status == STATUS_OK and detector["jsw_medial"].reason == DETECTOR_SPACING_NOTE
    calibrated = measure(KneeSpec(flat_gaps=(3.0, 3.0)), spacing_source="PixelSpacing")
    assert calibrated["jsw_medial"].reason is None
    touching = measure(KneeSpec(flat_gaps=(-0.6 * JSW_OVERLAP_TOLERANCE_MM, 2.0)))
    assert touching["jsw_medial"].value == 0.0 and touching["jsw_medial"].status == STATUS_OK
    hidden = measure(KneeSpec(flat_gaps=(-2.0, 2.0)))
    assert hidden["jsw_medial"].value is None and "overlap by 2.0 mm" in hidden["jsw_medial"].reason
    assert hidden["jsw_lateral"].value == pytest.approx(2.0)


def test_adaptive_shaft_levels_are_the_axes_of_the_panel():
    pts = build(KneeSpec(87.0, 81.0, 0.0))
    # Bend the femoral shaft above 1.1 plateau widths: the 1.1/0.8 axis is the built one, the 1.3/0.8 axis is not.
    for level, med, lat in PRE.shaft_levels["femur"]:
        if level > 1.1 + 1e-6:
            pts[[med, lat]] += ((level - 1.1) * 100.0, 0.0)
    near = compute_measurements(pts, PRE, levels=ShaftLevels(femur=(1.1, 0.8), tibia=(0.8, 1.3)))
    assert near["aldfa"].value == pytest.approx(81.0, abs=1e-9)
    far = compute_measurements(pts, PRE)  # the paper's levels
    assert abs(far["aldfa"].value - 81.0) > 5.0
    assert far["atfa_fnts"].value == pytest.approx(far["mpta"].value - far["aldfa"].value - far["jlca"].value)


def test_implausible_values_are_low_confidence():
    m = measure(KneeSpec(gap=25.0))
    assert m["jsw_medial"].status == STATUS_LOW_CONFIDENCE and "implausible" in m["jsw_medial"].reason
    assert m["jsw_medial"].value == pytest.approx(25.0, abs=0.1)
    assert m["mpta"].status == STATUS_OK


def test_grade_uses_each_measurements_own_landmarks_and_the_whole_set():
    m = measure(KneeSpec(flat_gaps=(3.0, 3.0)), spacing=(0.1, 0.1))
    conf = np.ones(PRE.n_points)
    conf[list(m["mpta"].landmarks)] = 0.1  # the plateau corners and the tibial shaft: uncertain
    graded = grade(m, conf, threshold=0.5)
    assert graded["mpta"].status == STATUS_LOW_CONFIDENCE and "uncertain" in graded["mpta"].reason
    assert graded["mpta"].value == m["mpta"].value
    assert graded["femoral_component"].status == STATUS_NOT_MEASURABLE  # not measurable stays so
    whole = grade(m, np.ones(PRE.n_points), 0.5, whole=0.0, whole_reasons=["laterality tag L contradicted"])
    assert {x.status for n, x in whole.items() if x.value is not None} == {STATUS_LOW_CONFIDENCE}
    assert whole["jsw_lateral"].reason == "laterality tag L contradicted"
    assert grade(m, np.ones(PRE.n_points), 0.5)["mpta"].status == STATUS_OK


def test_measurements_through_a_distrusted_landmark_become_low_confidence_with_the_reason():
    """A femoral notch too shallow to place (``model.inference``): what is drawn through it is flagged, the rest not."""
    m = measure(KneeSpec(), "postop", spacing=(0.1, 0.1))
    notch = POST.roles["femoral_notch"]
    out = distrust_through(m, notch, "femoral notch too shallow")
    through = {n for n, x in m.items() if x.status == STATUS_OK and set(notch) & set(x.landmarks)}
    assert {"atfa_fnts", "femoral_component"} <= through and "tibial_component" not in through
    for name, x in out.items():
        if name in through:
            assert (x.status, x.reason, x.value) == (STATUS_LOW_CONFIDENCE, "femoral notch too shallow", m[name].value)
        else:
            assert x == m[name]  # untouched, a not-measurable one included


def test_names_the_atfa_always_and_in_panel_order():
    assert resolve_names(["mpta"]) == ("atfa_fts", "atfa_fnts", "mpta")
    assert resolve_names(None) == MEASUREMENT_NAMES
    assert set(ALWAYS_MEASURED) <= set(resolve_names([]))
    with pytest.raises(ValueError, match="unknown measurement"):
        resolve_names(["hka"])
    assert list(measure(KneeSpec(), names=["jsw_lateral", "jlca"])) == ["atfa_fts", "atfa_fnts", "jlca", "jsw_lateral"]


def test_json_entry_and_the_no_number_rule():
    m = measure(KneeSpec(), "postop", spacing=(0.1, 0.1))
    entry = m["femoral_component"].to_json()
    assert entry == {"value": 96.0, "unit": "deg", "status": "ok", "reason": None, "varus_valgus_deg": 6.0}
    assert m["jsw_medial"].to_json() == {"value": None, "unit": "mm", "status": "not_measurable",
                                         "reason": "post-operative knee: the joint space is the implant's insert"}
    with pytest.raises(ValueError):
        Measurement("mpta", 87.0, STATUS_NOT_MEASURABLE, "x")
    with pytest.raises(ValueError):
        Measurement("mpta", None, STATUS_LOW_CONFIDENCE, "x")


def test_site_reference_ranges_are_shown_as_outside_the_range_never_as_a_diagnosis():
    m = measure(KneeSpec(mpta=84.0, aldfa=80.0, jlca=1.0))
    ranged = apply_site_ranges(m, {"mpta": ReferenceRange(85.0, 90.0), "aldfa": ReferenceRange(79.0, 83.0),
                                   "femoral_component": ReferenceRange(95.0, 98.0)})
    assert ranged["mpta"].outside_site_range is True
    assert ranged["mpta"].range_note() == "outside the site's range (85 to 90°)"
    assert ranged["aldfa"].outside_site_range is False and ranged["aldfa"].range_note() is None
    assert ranged["femoral_component"].outside_site_range is None  # not measurable pre-op: no verdict
    assert ranged["jlca"].site_range is None and "site_range" not in ranged["jlca"].to_json()
    entry = ranged["mpta"].to_json()
    assert entry["site_range"] == [85.0, 90.0] and entry["outside_site_range"] is True
    for word in ("varus", "valgus", "abnormal", "patholog", "deformity"):
        assert word not in ranged["mpta"].range_note().lower()
    assert ReferenceRange(2.0, 7.0).describe(SPECS["jsw_medial"].unit) == "2 to 7 mm"
    assert ReferenceRange(-2.0, 2.0).describe("deg") == "-2 to 2°"
    with pytest.raises(ValueError):
        ReferenceRange(90.0, 85.0)
    with pytest.raises(ValueError, match="unknown"):
        apply_site_ranges(m, {"hka": ReferenceRange(0.0, 1.0)})
