"""The Comprehensive SR: validators, OHIF's loading rules, values, coordinates, status and identity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dicomnode.outputs import codes
from dicomnode.outputs.common import target
from dicomnode.outputs.description import alignment_measurements
from dicomnode.outputs.sr import MAX_LABEL_LINES, build_sr, measurement_group
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import (
    all_text,
    dciodvfy,
    dsrdump,
    measurement_groups,
    nums_by_meaning,
    ohif_sr_problems,
    pixelmed_sr,
)
from tests.outputs.synthetic_knee import knee_case

FNTS, FTS = "aTFA (FNTS)", "aTFA (FTS)"
FNTS_LOW, FTS_LOW = codes.ATFA_FNTS_LOW.meaning, codes.ATFA_FTS_LOW.meaning


def test_sr_passes_dciodvfy(any_case, tmp_path):
    report = dciodvfy(save(build_sr(any_case.source, any_case.prediction), tmp_path / "sr.dcm"))
    assert "ComprehensiveSR" in report.output
    assert report.errors == [], report.output
    # The only warnings: dicom3tools does not know our private coding scheme designator.
    assert all("99KNEEALIGN" in w for w in report.warnings), report.warnings


def test_dsrdump_shows_the_angles(left_case, tmp_path):
    text = dsrdump(save(build_sr(left_case.source, left_case.prediction), tmp_path / "sr.dcm"))
    a = left_case.prediction.alignment
    assert "Imaging Measurement Report" in text
    assert f'NUM:(,,"{FNTS}")="{round(a.atfa_fnts_deg, 3)}" (deg,UCUM' in text
    assert f'NUM:(,,"{FTS}")="{round(a.atfa_fts_deg, 3)}" (deg,UCUM' in text
    assert "Arm of angle" in text and "POLYLINE" in text


@pytest.mark.slow
@pytest.mark.integration
def test_pixelmed_tid1500_no_errors(any_case, tmp_path):
    report = pixelmed_sr(save(build_sr(any_case.source, any_case.prediction), tmp_path / "sr.dcm"))
    assert "Found Root Template TID_1500" in report.output, report.output
    assert "Root Template Validation Complete" in report.output, report.output
    assert report.errors == [], report.output


def test_ohif_loading_rules(any_case):
    sr = build_sr(any_case.source, any_case.prediction)
    assert ohif_sr_problems(sr, any_case.source.SOPInstanceUID) == []


def test_ohif_check_catches_a_num_with_two_scoords(left_case):
    sr = build_sr(left_case.source, left_case.prediction)
    num = nums_by_meaning(sr)[FNTS][0]
    num.ContentSequence.append(num.ContentSequence[0])
    problems = ohif_sr_problems(sr, left_case.source.SOPInstanceUID)
    assert any("exactly one content item" in p for p in problems)
    assert ohif_sr_problems(sr, "1.2.3.4")  # a source the SR does not reference


@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("atfa", [6.0, -8.0])
def test_values_equal_the_prediction_with_sign(laterality, atfa):
    case = knee_case(laterality=laterality, atfa_deg=atfa, rotation_deg=-5.0)
    a = case.prediction.alignment
    assert a.atfa_fts_deg == pytest.approx(atfa, abs=1e-6)  # the fixture's geometry is what it claims
    nums = nums_by_meaning(build_sr(case.source, case.prediction))
    fts = float(nums[FTS][0].MeasuredValueSequence[0].NumericValue)
    fnts = float(nums[FNTS][0].MeasuredValueSequence[0].NumericValue)
    assert fts == pytest.approx(a.atfa_fts_deg, abs=1e-3)
    assert fnts == pytest.approx(a.atfa_fnts_deg, abs=1e-3)
    assert np.sign(fts) == np.sign(atfa)
    unit = nums[FTS][0].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("deg", "UCUM")


def test_arms_are_the_axes_shifted_to_dicom_pixel_corners(low_case):
    sr = build_sr(low_case.source, low_case.prediction)
    nums = nums_by_meaning(sr)
    a = low_case.prediction.alignment
    for name, femoral in ((FNTS_LOW, a.femoral_axis_fnts), (FTS_LOW, a.femoral_axis_fts)):
        (scoord,) = nums[name][0].ContentSequence
        assert scoord.GraphicType == "POLYLINE"
        assert scoord.ConceptNameCodeSequence[0].CodeMeaning == "Arm of angle"
        got = np.array(scoord.GraphicData).reshape(-1, 2)
        want = np.array([femoral.proximal, femoral.distal, a.tibial_axis.proximal, a.tibial_axis.distal]) + 0.5
        np.testing.assert_allclose(got, want, atol=1e-3)
        image = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == low_case.source.SOPInstanceUID


def test_low_confidence_is_stated_plainly(low_case, left_case):
    sr = build_sr(low_case.source, low_case.prediction)
    nums = nums_by_meaning(sr)
    assert FTS not in nums and FNTS not in nums  # no plain, confident-looking angle anywhere
    assert FTS_LOW in nums and FNTS_LOW in nums  # the values are there, under names that carry the warning
    text = all_text(sr)
    assert "LOW CONFIDENCE - NOT A VALID MEASUREMENT" in text
    assert "Right knee aTFA - LOW CONFIDENCE" in text  # the tracking identifier
    assert sr.SeriesDescription.endswith("LOW CONFIDENCE")
    assert "Low confidence: not a valid measurement" in text  # the coded result status
    confident = build_sr(left_case.source, left_case.prediction)
    assert "LOW CONFIDENCE" not in all_text(confident).upper()
    why = dataclasses.replace(low_case.prediction, warnings=["no bone edges at the tibial shaft distal level"])
    assert "Why: no bone edges at the tibial shaft distal level." in all_text(build_sr(low_case.source, why))
    assert "Confidence at or above threshold" in all_text(confident)


def test_phase_laterality_status_and_algorithm(low_case):
    pred = dataclasses.replace(low_case.prediction, model_sha256="ab" * 32)
    sr = build_sr(low_case.source, pred)
    knee = measurement_groups(sr)[0]
    codes_in_group = {(it.ConceptNameCodeSequence[0].CodeMeaning, it.ConceptCodeSequence[0].CodeMeaning)
                      for it in knee.ContentSequence if it.ValueType == "CODE"}
    assert ("Surgical phase", codes.POST_OPERATIVE.meaning) in codes_in_group
    assert ("Laterality", "Right") in codes_in_group
    site = next(it for it in knee.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "363698007")
    assert site.ConceptCodeSequence[0].CodeValue == codes.KNEE_JOINT.value
    assert site.ContentSequence[0].ConceptCodeSequence[0].CodeValue == codes.RIGHT.value
    texts = {}
    for it in knee.ContentSequence:
        if it.ValueType == "TEXT":
            texts.setdefault(it.ConceptNameCodeSequence[0].CodeMeaning, []).append(it.TextValue)
    assert texts["Algorithm Name"] == [pred.model_name]
    assert texts["Algorithm Version"] == [pred.model_version]
    assert f"weights sha256:{'ab' * 32}" in texts["Algorithm Parameters"]  # the exact weights, in full
    assert "confidence 30% (threshold 50%)" in texts["Result status note"][0]  # the confidence, in words


def test_the_angles_group_and_the_panel_group_are_all_that_is_drawn(any_case):
    """What OHIF labels over the image: the aTFA group, whose NUMs are the two angles, each on its own arms, and
    the alignment panel's group; no group has more labels than OHIF shows."""
    sr = build_sr(any_case.source, any_case.prediction)
    angles, panel = measurement_groups(sr)
    nums = [it for it in angles.ContentSequence if it.ValueType == "NUM"]
    low = any_case.prediction.low_confidence
    assert [n.ConceptNameCodeSequence[0].CodeMeaning for n in nums] == ([FNTS_LOW, FTS_LOW] if low else [FNTS, FTS])
    for group in (angles, panel):
        assert not [it for it in group.ContentSequence if it.ValueType == "SCOORD"]  # no region for the group
        assert len([it for it in group.ContentSequence if it.ValueType == "NUM"]) <= MAX_LABEL_LINES


def test_a_group_with_more_labels_than_ohif_shows_is_refused(left_case):
    t = target(left_case.source, left_case.prediction, "sr")
    many = alignment_measurements(left_case.prediction) * 3
    with pytest.raises(ValueError, match="split them"):
        measurement_group(t, left_case.prediction, "too many", many)


def test_document_identity_and_references(left_case):
    src = left_case.source
    sr = build_sr(src, left_case.prediction)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    assert (sr.VerificationFlag, sr.PreliminaryFlag, sr.CompletionFlag) == ("UNVERIFIED", "PRELIMINARY", "COMPLETE")
    assert sr.Manufacturer == "KneeAlign"
    assert any(item.CodingSchemeDesignator == "99KNEEALIGN" for item in sr.CodingSchemeIdentificationSequence)
    purposes = [eq.PurposeOfReferenceCodeSequence[0].CodeValue for eq in sr.ContributingEquipmentSequence
                if eq.Manufacturer == "KneeAlign"]
    assert purposes == ["109102"]  # Processing Equipment
    observer = next(it for it in sr.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "121005")
    assert observer.ConceptCodeSequence[0].CodeMeaning == "Device"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def _cr(source, spacing: str | None):
    """The source as a CR (which has no Imager Pixel Spacing in its IOD's required set) with ``spacing`` only."""
    source = source.copy()
    source.file_meta = source.file_meta.copy()
    source.Modality, source.SOPClassUID = "CR", "1.2.840.10008.5.1.4.1.1.1"
    source.file_meta.MediaStorageSOPClassUID = source.SOPClassUID
    values = source.get("ImagerPixelSpacing") or source.get("PixelSpacing") or [0.15, 0.15]
    for keyword in ("ImagerPixelSpacing", "PixelSpacing", "PresentationIntentType", "DetectorType"):
        source.pop(keyword, None)
    if spacing is not None:
        setattr(source, spacing, values)
    return source


SHAPES = {
    "cr-pixel-spacing-only": (lambda s: _cr(s, "PixelSpacing"), "PixelSpacing", "Pixel Spacing (0028,0030)"),
    "cr-imager-spacing-only": (lambda s: _cr(s, "ImagerPixelSpacing"), "ImagerPixelSpacing",
                               "Imager Pixel Spacing (0018,1164)"),
    "cr-no-spacing": (lambda s: _cr(s, None), None, "none: the image states no usable pixel spacing"),
    "dx-no-orientation": (lambda s: _without(s, "PatientOrientation"), "ImagerPixelSpacing", "Imager Pixel"),
    "dx-empty-orientation": (lambda s: _emptied(s, "PatientOrientation"), "ImagerPixelSpacing", "Imager Pixel"),
}


def _without(source, keyword):
    source = source.copy()
    source.pop(keyword, None)
    return source


def _emptied(source, keyword):
    source = source.copy()
    setattr(source, keyword, "")
    return source


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_projection_shape_gets_an_sr_that_says_which_spacing_it_used(shape, left_case, tmp_path):
    change, keyword, statement = SHAPES[shape]
    source = change(left_case.source)
    prediction = dataclasses.replace(left_case.prediction, pixel_spacing_source=keyword,
                                     pixel_spacing_mm=left_case.prediction.pixel_spacing_mm if keyword else None)
    sr = build_sr(source, prediction)
    assert any(line.startswith(statement) for line in all_text(sr).splitlines()), all_text(sr)
    library_spacing = "Horizontal Pixel Spacing" in dsrdump(save(sr, tmp_path / "sr.dcm"))
    assert library_spacing == ("ImagerPixelSpacing" in source), "TID 1603 spacing only from Imager Pixel Spacing"
    report = dciodvfy(tmp_path / "sr.dcm")
    assert report.errors == [], report.output


@pytest.mark.slow
@pytest.mark.integration
def test_pixelmed_accepts_the_sr_of_a_cr_without_imager_pixel_spacing(left_case, tmp_path):
    change, keyword, _ = SHAPES["cr-pixel-spacing-only"]
    prediction = dataclasses.replace(left_case.prediction, pixel_spacing_source=keyword)
    report = pixelmed_sr(save(build_sr(change(left_case.source), prediction), tmp_path / "sr.dcm"))
    assert "Root Template Validation Complete" in report.output and report.errors == [], report.output


@pytest.mark.parametrize("levels", [None, ((1.1, 0.8), (0.8, 1.0))])
def test_the_shaft_levels_used_are_stated_in_the_sr_and_on_the_overlay(left_case, levels):
    from dicomnode.outputs.overlay import summary_lines
    from model.alignment import ShaftLevels

    pred = left_case.prediction
    if levels is not None:  # axes through adapted levels (a tightly collimated film)
        shaft = ShaftLevels(femur=levels[0], tibia=levels[1])
        pred = dataclasses.replace(pred, alignment=dataclasses.replace(pred.alignment, levels=shaft))
    expected = ("Shaft levels: femur 1.3/0.8, tibia 0.8/1.3 plateau widths from the joint line (the paper's)"
                if levels is None else
                "Shaft levels: femur 1.1/0.8, tibia 0.8/1.0 plateau widths from the joint line (adapted to the "
                "exposed shafts)")
    knee = measurement_groups(build_sr(left_case.source, pred))[0]
    texts = [it.TextValue for it in knee.ContentSequence
             if it.ValueType == "TEXT" and it.ConceptNameCodeSequence[0].CodeMeaning == "Shaft levels of the axes"]
    assert texts == [expected]
    assert expected in [line.text for line in summary_lines(pred)]
