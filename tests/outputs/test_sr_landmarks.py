"""The optional landmark-detail SR: validators, one outline per scheme curve, the result confidence."""

from __future__ import annotations

import numpy as np
import pytest

from dicomnode.outputs.sr_landmarks import build_landmarks_sr
from model.scheme import load_scheme
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import (
    dciodvfy,
    measurement_groups,
    nums_by_meaning,
    ohif_sr_problems,
    pixelmed_sr,
)


def test_landmarks_sr_passes_dciodvfy_and_ohif_rules(any_case, tmp_path):
    sr = build_landmarks_sr(any_case.source, any_case.prediction)
    report = dciodvfy(save(sr, tmp_path / "landmarks.dcm"))
    assert report.errors == [], report.output
    assert all("99KNEEALIGN" in w for w in report.warnings), report.warnings
    assert ohif_sr_problems(sr, any_case.source.SOPInstanceUID) == []
    assert sr.SeriesNumber == 9904 and sr.SeriesDescription.startswith("KneeAlign landmark detail")


@pytest.mark.slow
@pytest.mark.integration
def test_landmarks_sr_pixelmed_tid1500_no_errors(low_case, tmp_path):
    report = pixelmed_sr(save(build_landmarks_sr(low_case.source, low_case.prediction), tmp_path / "lm.dcm"))
    assert "Root Template Validation Complete" in report.output, report.output
    assert report.errors == [], report.output


def test_one_landmark_outline_per_scheme_curve(low_case):
    pred = low_case.prediction
    scheme = load_scheme(pred.phase)
    outlines = {}
    for g in measurement_groups(build_landmarks_sr(low_case.source, pred)):
        label = [it.TextValue for it in g.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "112039"]
        if label[0].startswith("Landmarks: "):
            (region,) = [it for it in g.ContentSequence if it.ValueType == "SCOORD"]
            outlines[label[0][len("Landmarks: "):]] = np.array(region.GraphicData).reshape(-1, 2)
    assert len(outlines) == len(scheme.curves)
    for curve in scheme.curves:
        got = outlines[curve.name.replace("_", " ")]
        np.testing.assert_allclose(got, pred.landmarks[curve.start:curve.start + curve.count] + 0.5, atol=1e-3)


def test_result_and_landmark_confidences(low_case):
    pred = low_case.prediction
    nums = nums_by_meaning(build_landmarks_sr(low_case.source, pred))
    (confidence,) = nums["Result confidence"]
    assert float(confidence.MeasuredValueSequence[0].NumericValue) == pytest.approx(100 * pred.confidence)
    assert confidence.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
    assert len(nums["Mean landmark confidence"]) == len(load_scheme(pred.phase).curves)
