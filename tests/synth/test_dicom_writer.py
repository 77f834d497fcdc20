"""Synthetic radiographs written as DICOM: validated by dciodvfy, read back by pydicom, compressed variants,
the ground-truth JSON beside each file."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from tests.conftest import require_tool
from train.synth import render_case, sample_case, write_dicom
from train.synth.dicom_writer import CR_IMAGE, DX_FOR_PRESENTATION


@pytest.fixture(scope="module")
def image():
    case = sample_case(321, phase="postop", laterality="R")
    case = dataclasses.replace(case, acquisition=dataclasses.replace(case.acquisition, bits_stored=12))
    return render_case(case, 0.4)


def _dciodvfy(path) -> list[str]:
    tool = require_tool("/usr/bin/dciodvfy")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
    return (out.stdout + out.stderr).splitlines()


@pytest.mark.integration
@pytest.mark.parametrize("modality, photometric", [("DX", "MONOCHROME2"), ("DX", "MONOCHROME1"),
                                                   ("CR", "MONOCHROME1"), ("CR", "MONOCHROME2")])
def test_dciodvfy_reports_no_errors(tmp_path, image, modality, photometric):
    img = dataclasses.replace(image, photometric=photometric)
    path = write_dicom(img, tmp_path / "knee.dcm", modality=modality)
    lines = _dciodvfy(path)
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(lines)


@pytest.mark.integration
def test_dciodvfy_flags_a_dx_without_image_laterality(tmp_path, image):
    """The validator run above is real: the non-conformant variant (laterality tags left out) is caught."""
    path = write_dicom(image, tmp_path / "knee.dcm", modality="DX", laterality_tags=False)
    assert any(line.startswith("Error") and "Laterality" in line for line in _dciodvfy(path))


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_round_trip_through_pydicom(tmp_path, image, modality):
    path = write_dicom(image, tmp_path / "knee.dcm", modality=modality, number=7)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == (DX_FOR_PRESENTATION if modality == "DX" else CR_IMAGE)
    assert ds.Modality == modality and ds.BodyPartExamined == "KNEE" and ds.ViewPosition == "AP"
    assert (ds.ImageLaterality if modality == "DX" else ds.Laterality) == "R"
    assert ds.PhotometricInterpretation == image.photometric
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.4, 0.4]
    assert float(ds.WindowWidth) > 0
    assert str(ds.PatientName) == "SYNTH^KNEE^0007"
    assert np.array_equal(ds.pixel_array, image.image)
    truth = json.loads(path.with_suffix(".json").read_text())
    assert truth["sop_instance_uid"] == ds.SOPInstanceUID
    assert truth["scheme"] == image.scheme_id and truth["phase"] == "postop" and truth["laterality"] == "R"
    assert np.allclose(truth["landmarks"], image.landmarks, atol=1e-4)
    assert truth["atfa_fnts_deg"] == pytest.approx(image.atfa_fnts_deg)
    assert truth["seed"] == image.case.seed
    assert truth["parameters"]["acquisition"]["laterality"] == "R"
    assert truth["parameters"]["anatomy"]["tibia"]["width"] == pytest.approx(image.case.anatomy.tibia.width)


@pytest.mark.parametrize("compress, syntax", [("jpeg2000", JPEG2000Lossless), ("rle", RLELossless)])
def test_compressed_variants_decode_to_the_same_pixels(tmp_path, image, compress, syntax):
    plain = write_dicom(image, tmp_path / "plain.dcm")
    path = write_dicom(image, tmp_path / f"{compress}.dcm", compress=compress)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPInstanceUID == pydicom.dcmread(plain).SOPInstanceUID
    assert np.array_equal(ds.pixel_array, image.image)
    assert path.stat().st_size < plain.stat().st_size


def test_laterality_tags_can_be_left_out(tmp_path, image):
    for modality in ("DX", "CR"):
        ds = pydicom.dcmread(write_dicom(image, tmp_path / f"{modality}.dcm", modality=modality,
                                         laterality_tags=False))
        assert "ImageLaterality" not in ds and "Laterality" not in ds
