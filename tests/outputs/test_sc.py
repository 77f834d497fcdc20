"""The RGB Secondary Capture: validity, references, what is drawn where, polarity, size and compressed sources."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from dicomnode.outputs.overlay import COLOURS
from dicomnode.outputs.pixels import display_image
from dicomnode.outputs.sc import MAX_SIDE, build_sc, render_overlay
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import dciodvfy
from tests.outputs.synthetic_knee import knee_case


def colour_at(picture, point) -> np.ndarray:
    x, y = np.round(picture.to_picture(np.asarray(point))).astype(int)
    return picture.pixels[y, x].astype(int)


def near(rgb: np.ndarray, key: str, tol: int = 40) -> bool:
    return bool(np.all(np.abs(rgb - np.array(COLOURS[key])) <= tol))


def test_sc_passes_dciodvfy_and_references_the_source(any_case, tmp_path):
    src = any_case.source
    sc = build_sc(src, any_case.prediction)
    report = dciodvfy(save(sc, tmp_path / "sc.dcm"))
    assert "SCImage" in report.output
    assert report.errors == [], report.output
    assert report.warnings == [], report.output
    # JPEG 2000 Lossless with the reversible colour transform (decodes to RGB): see test_sc_compression
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == ("YBR_RCT", 3, 8)
    assert sc.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert sc.BurnedInAnnotation == "YES"
    ref = sc.SourceImageSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src.SOPClassUID, src.SOPInstanceUID)
    assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.SeriesInstanceUID != src.SeriesInstanceUID
    assert sc.Laterality == any_case.prediction.laterality
    assert sc.StudyDescription == src.StudyDescription


@pytest.mark.parametrize("case", ["left", "low"])
def test_axes_are_drawn_where_the_prediction_puts_them(case, left_case, low_case):
    c = {"left": left_case, "low": low_case}[case]
    a = c.prediction.alignment
    picture = render_overlay(c.source, c.prediction)
    mid = lambda axis: (np.array(axis.proximal) + np.array(axis.distal)) / 2
    assert near(colour_at(picture, mid(a.tibial_axis)), "tibia")
    assert near(colour_at(picture, mid(a.femoral_axis_fts)), "fts")
    # The FNTS axis below the FTS one (they share the proximal point): 80 % of the way to the notch.
    fnts = np.array(a.femoral_axis_fnts.proximal) * 0.2 + np.array(a.femoral_axis_fnts.distal) * 0.8
    assert near(colour_at(picture, fnts), "fnts")


def test_low_confidence_frame_only_when_low(left_case, low_case):
    for c, expect in ((low_case, True), (left_case, False)):
        picture = render_overlay(c.source, c.prediction)
        corner = picture.pixels[picture.top + 1, 1].astype(int)
        assert near(corner, "warning", tol=10) is expect


def _bone_and_tissue(case):
    """A point inside the femoral shaft and one in the soft tissue medial to it."""
    lm = case.prediction.landmarks
    medial, lateral = lm[8], lm[30]  # femur outlines, shaft level -0.5
    bone = medial * 0.75 + lateral * 0.25
    tissue = medial + (medial - lateral) * 0.8
    return bone, tissue


@pytest.mark.parametrize("monochrome1", [False, True])
def test_bone_is_bright_whatever_the_polarity(monochrome1):
    c = knee_case(monochrome1=monochrome1)
    picture = render_overlay(c.source, c.prediction)
    bone, tissue = _bone_and_tissue(c)
    assert colour_at(picture, bone).mean() > colour_at(picture, tissue).mean() + 60


def test_source_without_window_is_auto_windowed():
    c = knee_case()
    del c.source.WindowCenter, c.source.WindowWidth
    picture = render_overlay(c.source, c.prediction)
    bone, tissue = _bone_and_tissue(c)
    assert colour_at(picture, bone).mean() > colour_at(picture, tissue).mean() + 60


@pytest.mark.parametrize("shape", [(2800, 2200), (2000, 3000)])
def test_large_source_is_downscaled_keeping_aspect(shape, tmp_path):
    c = knee_case(shape=shape)
    picture = render_overlay(c.source, c.prediction)
    assert 0.9 * MAX_SIDE <= max(picture.pixels.shape[:2]) <= MAX_SIDE  # uses the room it has, no more
    assert picture.scale_x < 1 and picture.scale_x == pytest.approx(picture.scale_y, rel=2e-3)
    assert near(colour_at(picture, np.mean([c.prediction.alignment.tibial_axis.proximal,
                                            c.prediction.alignment.tibial_axis.distal], axis=0)), "tibia")
    sc = build_sc(c.source, c.prediction)
    assert max(sc.Rows, sc.Columns) <= MAX_SIDE
    assert dciodvfy(save(sc, tmp_path / "sc.dcm")).errors == []


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless])
def test_compressed_source_gives_the_same_picture(left_case, syntax):
    compressed = copy.deepcopy(left_case.source)
    compressed.compress(syntax)
    assert compressed.file_meta.TransferSyntaxUID == syntax
    plain = render_overlay(left_case.source, left_case.prediction).pixels
    np.testing.assert_array_equal(render_overlay(compressed, left_case.prediction).pixels, plain)
    assert build_sc(compressed, left_case.prediction).Rows == plain.shape[0]


def test_source_with_a_voi_lut_uses_it():
    c = knee_case()
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [4096, 0, 12]
    lut.LUTData = [int(4095 * (v / 4095) ** 0.5) for v in range(4096)]  # a brightening curve
    c.source.VOILUTSequence = [lut]
    shown = display_image(c.source)
    stored = c.source.pixel_array.astype(float)
    np.testing.assert_allclose(shown, np.sqrt(stored / 4095), atol=2e-3)
