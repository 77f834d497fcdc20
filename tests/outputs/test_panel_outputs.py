"""The knee alignment panel in the result objects: a NUM per measured value with its lines as the one SCOORD in the
SR (validators and OHIF's rules with every kind of entry), notes for what has no number, and the compact table
in the SC's header band and the GSPS text."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dicomnode.outputs import codes
from dicomnode.outputs.description import FEMORAL_ARM
from dicomnode.outputs.gsps import build_gsps
from dicomnode.outputs.overlay import panel_lines, summary_lines
from dicomnode.outputs.sc import render_overlay
from dicomnode.outputs.sr import build_sr
from model.measurements import ReferenceRange, aldfa_deg, not_measurable
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import (
    all_text,
    dciodvfy,
    measurement_groups,
    ohif_sr_problems,
    pixelmed_sr,
)
from tests.outputs.synthetic_knee import knee_case

RANGES = {"mpta": ReferenceRange(85.0, 88.0), "jlca": ReferenceRange(-2.0, 2.0)}


@pytest.fixture(scope="module")
def ranged_case():
    """A left pre-op knee with site ranges (MPTA 90 is outside 85-88), a joint space not measurable."""
    case = knee_case(phase="preop", laterality="L", reference_ranges=RANGES)
    panel = dict(case.prediction.measurements)
    panel["jsw_lateral"] = not_measurable("jsw_lateral", "the lateral condyle and plateau outlines overlap by 1.2 mm: "
                                                         "joint space not seen")
    return dataclasses.replace(case, prediction=dataclasses.replace(case.prediction, measurements=panel))


def _nums(group):
    return {str(it.ConceptNameCodeSequence[0].CodeMeaning): it for it in group.ContentSequence if it.ValueType == "NUM"}


def _notes(group) -> list[str]:
    return [it.TextValue for it in group.ContentSequence
            if it.ValueType == "TEXT" and it.ConceptNameCodeSequence[0].CodeValue == codes.MEASUREMENT_NOTE.value]


def test_each_measured_value_is_a_num_on_its_own_lines(ranged_case):
    pred = ranged_case.prediction
    _, panel = measurement_groups(build_sr(ranged_case.source, pred))
    nums = _nums(panel)
    assert set(nums) == {"JLCA", "aLDFA", "MPTA", "JSW medial"}  # the lateral width has no number
    for name, meaning in (("jlca", "JLCA"), ("aldfa", "aLDFA"), ("mpta", "MPTA"), ("jsw_medial", "JSW medial")):
        m, num = pred.measurements[name], nums[meaning]
        value = num.MeasuredValueSequence[0]
        assert float(value.NumericValue) == pytest.approx(m.value, abs=1e-3)
        assert value.MeasurementUnitsCodeSequence[0].CodeValue == ("mm" if m.unit == "mm" else "deg")
        (scoord,) = num.ContentSequence  # exactly one SCOORD: OHIF draws the NUM
        assert scoord.ValueType == "SCOORD" and scoord.GraphicType == "POLYLINE"
        drawn = np.reshape(scoord.GraphicData, (-1, 2)) - 0.5  # back to pixel centres
        assert len(drawn) == (2 if m.unit == "mm" else 4)
        if name != "aldfa":  # the lines as measured
            np.testing.assert_allclose(drawn, np.array([p for line in m.lines for p in line]), atol=1e-3)
        assert scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
            ranged_case.source.SOPInstanceUID
    # aLDFA's femoral axis is the arm from the condylar tangent up the axis: the same angle, a short stretch.
    drawn = np.reshape(nums["aLDFA"].ContentSequence[0].GraphicData, (-1, 2)) - 0.5
    tangent = np.asarray(pred.measurements["aldfa"].lines[1])
    np.testing.assert_allclose(drawn[2:], tangent, atol=1e-3)
    value = pred.measurements["aldfa"].value
    assert aldfa_deg(tangent[1] - tangent[0], drawn[1] - drawn[0]) == pytest.approx(value, abs=1e-6)
    assert np.linalg.norm(drawn[1] - drawn[0]) == pytest.approx(FEMORAL_ARM * pred.reference_length_px)


def test_what_has_no_number_or_needs_a_word_is_a_note(ranged_case):
    _, panel = measurement_groups(build_sr(ranged_case.source, ranged_case.prediction))
    notes = _notes(panel)
    assert "JSW lateral: not measurable: the lateral condyle and plateau outlines overlap by 1.2 mm: joint space " \
           "not seen" in notes
    assert "MPTA 90.0 deg: outside the site's range (85 to 88°)" in notes
    assert "JLCA -6.0 deg: outside the site's range (-2 to 2°)" in notes
    assert not any(n.startswith("aLDFA") for n in notes)  # confident, no range: nothing to say
    assert any(n.startswith("JSW medial: detector pixel spacing (ImagerPixelSpacing) only") for n in notes)


def test_post_op_components_with_their_varus_valgus_and_low_confidence_names(low_case, left_case):
    _, panel = measurement_groups(build_sr(low_case.source, low_case.prediction))
    nums = _nums(panel)
    assert set(nums) == {f"{codes.PANEL[n][1]} LOW CONFIDENCE" for n in (
        "femoral_component", "femoral_component_varus_valgus", "tibial_component", "tibial_component_varus_valgus")}
    fem = low_case.prediction.measurements["femoral_component"]
    dev = nums["Femoral comp. valgus(+)/varus(-) LOW CONFIDENCE"].MeasuredValueSequence[0]
    assert float(dev.NumericValue) == pytest.approx(fem.deviation_deg, abs=1e-3)
    assert any(n.startswith("Femoral component angle: LOW CONFIDENCE") for n in _notes(panel))
    assert "Right knee alignment panel - LOW CONFIDENCE" in all_text(panel)
    # Pre-op: no component NUM, and a note per missing component would only repeat the phase: they say why.
    _, pre = measurement_groups(build_sr(left_case.source, left_case.prediction))
    assert "Femoral component angle: not measurable: no implant (pre-operative knee)" in _notes(pre)


def test_a_panel_without_any_number_leaves_its_notes_in_the_angle_group(left_case):
    empty = {n: (not_measurable(n, "pixel spacing unknown: no millimetres") if n.startswith("jsw") else
                 not_measurable(n, "tibia axis not measurable: too short") if n in ("mpta", "tibial_component") else
                 not_measurable(n, "femur axis not measurable") if n in ("aldfa", "femoral_component") else
                 not_measurable(n, "landmarks outside the image") if n == "jlca" else m)
             for n, m in left_case.prediction.measurements.items()}
    sr = build_sr(left_case.source, dataclasses.replace(left_case.prediction, measurements=empty))
    (group,) = measurement_groups(sr)
    assert "JSW medial: not measurable: pixel spacing unknown: no millimetres" in _notes(group)
    assert ohif_sr_problems(sr, left_case.source.SOPInstanceUID) == []


def test_validators_and_ohif_with_every_kind_of_entry(ranged_case, low_case, tmp_path):
    for name, case in (("ranged", ranged_case), ("low", low_case)):
        sr = build_sr(case.source, case.prediction)
        assert ohif_sr_problems(sr, case.source.SOPInstanceUID) == []
        path = save(sr, tmp_path / f"{name}.dcm")
        report = dciodvfy(path)
        assert report.errors == [], report.output
        assert all("99KNEEALIGN" in w for w in report.warnings), report.warnings


@pytest.mark.slow
@pytest.mark.integration
def test_pixelmed_accepts_the_panel(ranged_case, tmp_path):
    report = pixelmed_sr(save(build_sr(ranged_case.source, ranged_case.prediction), tmp_path / "sr.dcm"))
    assert "Root Template Validation Complete" in report.output, report.output
    assert report.errors == [], report.output


def test_compact_table_in_the_text_block(ranged_case, low_case):
    rows = [ln.text for ln in panel_lines(ranged_case.prediction)]
    m = ranged_case.prediction.measurements
    assert rows[0] == f"MPTA {m['mpta'].value:.1f}°*   aLDFA {m['aldfa'].value:.1f}°   JLCA -6.0°*"
    assert rows[1] == f"JSW at detector: medial {m['jsw_medial'].value:.1f} mm   lateral n/a"  # ImagerPixelSpacing
    assert rows[2:] == ["n/a not measurable", "* outside the site's range: JLCA -2 to 2°, MPTA 85 to 88°"]
    assert all(len(r) <= 60 for r in rows)
    calibrated = {n: dataclasses.replace(x, reason=None) if n.startswith("jsw") and x.value is not None else x
                  for n, x in m.items()}
    rows = [ln.text for ln in panel_lines(dataclasses.replace(ranged_case.prediction, measurements=calibrated))]
    assert rows[1].startswith("JSW: medial")
    post = [ln.text for ln in panel_lines(low_case.prediction)]
    fem = low_case.prediction.measurements["femoral_component"]
    assert fem.value < 90  # this synthetic component is in varus
    assert post[0] == f"Femoral component {fem.value:.1f}° ({90 - fem.value:.1f}° varus)?"
    assert post[-1] == "? low confidence"
    lines = [ln.text for ln in summary_lines(ranged_case.prediction)]
    assert lines.index(rows[0]) == lines.index("Tibial axis") + 1  # after the aTFA, before the confidence


def test_the_table_is_in_the_header_band_not_over_the_bone(left_case):
    """The panel's rows make the header band taller; the radiograph below it is drawn exactly as without them."""
    plain = dataclasses.replace(left_case.prediction, measurements={})
    with_panel, without = (render_overlay(left_case.source, p) for p in (left_case.prediction, plain))
    assert with_panel.top > without.top
    h = min(with_panel.pixels.shape[0] - with_panel.top, without.pixels.shape[0] - without.top) - 60  # no footer
    if with_panel.scale_x == without.scale_x:
        np.testing.assert_array_equal(with_panel.pixels[with_panel.top:with_panel.top + h],
                                      without.pixels[without.top:without.top + h])


def test_gsps_shows_the_same_table(ranged_case, tmp_path):
    ps = build_gsps(ranged_case.source, ranged_case.prediction)
    shown = [t.UnformattedTextValue for ann in ps.GraphicAnnotationSequence
             for t in ann.get("TextObjectSequence", [])]
    for row in panel_lines(ranged_case.prediction, degree_sign=" deg"):
        assert row.text in shown
    assert any(t.startswith("MPTA 90.0 deg*") for t in shown)
    assert dciodvfy(save(ps, tmp_path / "ps.dcm")).errors == []
