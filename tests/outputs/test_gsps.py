"""The Grayscale Softcopy Presentation State: validity, polarity, graphics in the image, clipping, VOI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dicomnode.outputs.gsps import build_gsps, clip_polyline
from dicomnode.outputs.pixels import auto_window, modality_values
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import dciodvfy, dcmpschk
from tests.outputs.synthetic_knee import knee_case


def objects(ps, layer: str) -> list:
    return [obj for ann in ps.GraphicAnnotationSequence if ann.GraphicLayer == layer
            for obj in ann.get("GraphicObjectSequence", [])]


def texts(ps) -> list[str]:
    return [t.UnformattedTextValue for ann in ps.GraphicAnnotationSequence for t in ann.get("TextObjectSequence", [])]


def test_gsps_passes_dciodvfy_and_dcmpschk(any_case, tmp_path):
    path = save(build_gsps(any_case.source, any_case.prediction), tmp_path / "ps.dcm")
    report = dciodvfy(path)
    assert "GrayscaleSoftcopyPresentationState" in report.output
    assert report.errors == [], report.output
    assert report.warnings == [], report.output
    check = dcmpschk(path)
    assert "Test passed" in check.output, check.output
    assert check.errors == [], check.output


@pytest.mark.parametrize("monochrome1, shape", [(True, "INVERSE"), (False, "IDENTITY")])
def test_presentation_lut_follows_the_source_polarity(monochrome1, shape):
    c = knee_case(monochrome1=monochrome1)
    ps = build_gsps(c.source, c.prediction)
    assert ps.PresentationLUTShape == shape


def test_references_laterality_and_study(low_case):
    src, pred = low_case.source, low_case.prediction
    ps = build_gsps(src, pred)
    assert ps.Laterality == pred.laterality == "R"
    assert ps.StudyInstanceUID == src.StudyInstanceUID and ps.SeriesInstanceUID != src.SeriesInstanceUID
    image = ps.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert image.ReferencedSOPInstanceUID == src.SOPInstanceUID
    shown = texts(ps)
    assert "LOW CONFIDENCE - NOT A VALID MEASUREMENT" in shown
    assert any(t.startswith("aTFA FNTS: -") and "varus (unreliable)" in t for t in shown)
    assert any(t.startswith("NOT FOR DIAGNOSTIC USE") for t in shown)


def test_a_low_confidence_result_says_why(low_case, left_case, tmp_path):
    reason = "no bone edges at tibial shaft distal level (collimated or cut short?)"
    ps = build_gsps(low_case.source, dataclasses.replace(low_case.prediction, warnings=[reason]))
    assert f"Why: {reason}" in texts(ps)
    assert dciodvfy(save(ps, tmp_path / "ps.dcm")).errors == []
    confident = build_gsps(left_case.source, dataclasses.replace(left_case.prediction, warnings=[reason]))
    assert not any(t.startswith("Why:") for t in texts(confident))  # reasons go with low confidence only


def test_axes_and_landmarks_in_dicom_pixel_coordinates(left_case):
    pred = left_case.prediction
    ps = build_gsps(left_case.source, pred)
    (tibia,) = objects(ps, "AXIS_TIBIA")
    axis = pred.alignment.tibial_axis
    np.testing.assert_allclose(np.reshape(tibia.GraphicData, (-1, 2)),
                               np.array([axis.proximal, axis.distal]) + 0.5, atol=1e-3)
    points = [np.array(o.GraphicData) for o in objects(ps, "LANDMARKS") if o.GraphicType == "POINT"]
    np.testing.assert_allclose(np.array(points), pred.landmarks + 0.5, atol=1e-3)


def test_graphics_outside_the_image_are_clipped(left_case):
    pred = left_case.prediction
    shifted = type(pred)(**{**pred.__dict__, "landmarks": pred.landmarks + [0.0, -300.0]})  # femur off the top
    ps = build_gsps(left_case.source, shifted)
    cols, rows = left_case.source.Columns, left_case.source.Rows
    for ann in ps.GraphicAnnotationSequence:
        for obj in ann.get("GraphicObjectSequence", []):
            data = np.reshape(obj.GraphicData, (-1, 2))
            assert data.min() >= 0 and np.all(data <= [cols, rows])
    n_points = len([o for o in objects(ps, "LANDMARKS") if o.GraphicType == "POINT"])
    assert 0 < n_points < pred.landmarks.shape[0]


def test_clip_polyline():
    runs = clip_polyline(np.array([[-10.0, 5.0], [5.0, 5.0], [15.0, 5.0], [15.0, 20.0], [5.0, 8.0]]), 10, 10)
    assert len(runs) == 2
    np.testing.assert_allclose(runs[0], [[0, 5], [5, 5], [10, 5]])
    np.testing.assert_allclose(runs[1][-1], [5, 8])
    assert clip_polyline(np.array([[20.0, 20.0], [30.0, 30.0]]), 10, 10) == []


def test_source_without_voi_gets_the_automatic_window():
    c = knee_case()
    del c.source.WindowCenter, c.source.WindowWidth
    ps = build_gsps(c.source, c.prediction)
    voi = ps.SoftcopyVOILUTSequence[0]
    centre, width = auto_window(modality_values(c.source))
    assert float(voi.WindowCenter) == pytest.approx(centre, abs=0.01)
    assert float(voi.WindowWidth) == pytest.approx(width, abs=0.01)
