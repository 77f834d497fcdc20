"""Preprocessing from pydicom datasets: photometric interpretations, bit depths, compressed transfer syntaxes."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEG2000Lossless,
                         RLELossless, generate_uid)

from model.frames import FrameSpec, apply_affine, frame_matrix
from model.preprocess import (UnsupportedImage, letterbox, load_radiograph, normalize_image, warp_to_frame)


def make_dx(pixels: np.ndarray, bits_stored: int, photometric="MONOCHROME2", **extra) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8 if bits_stored <= 8 else np.uint16).tobytes()
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def gradient_image(bits: int, shape=(64, 48)) -> np.ndarray:
    top = 2**bits - 1
    ramp = np.linspace(0, top, shape[1])
    return np.tile(ramp, (shape[0], 1)).round().astype(np.uint16)


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_bit_depths_normalise_to_unit_range(bits):
    r = load_radiograph(make_dx(gradient_image(bits), bits))
    assert r.image.dtype == np.float32
    assert r.image.min() == 0.0 and r.image.max() == 1.0
    assert r.image[0, -1] > r.image[0, 0]  # bright stays bright in MONOCHROME2


def test_monochrome1_is_inverted_so_bone_is_bright():
    px = gradient_image(12)
    m2 = load_radiograph(make_dx(px, 12, "MONOCHROME2")).image
    m1 = load_radiograph(make_dx(px, 12, "MONOCHROME1")).image
    assert np.allclose(m1, 1.0 - m2)


def test_rescale_slope_applied_before_normalisation():
    px = gradient_image(12)
    plain = load_radiograph(make_dx(px, 12)).image
    negative = load_radiograph(make_dx(px, 12, RescaleSlope=-1, RescaleIntercept=4095)).image
    assert np.allclose(negative, 1.0 - plain, atol=1e-6)


def test_percentile_clipping_ignores_hot_pixels():
    px = gradient_image(12, (100, 100))
    px[0, 0] = 65535  # a dead-bright detector pixel would otherwise compress the whole range
    img = normalize_image(px.astype(np.float32))
    assert np.median(img) == pytest.approx(0.5, abs=0.05)


def test_spacing_and_laterality_tags():
    ds = make_dx(gradient_image(12), 12, ImagerPixelSpacing=[0.15, 0.14], ImageLaterality="R")
    r = load_radiograph(ds)
    assert r.pixel_spacing_mm == (0.15, 0.14) and r.laterality_tag == "R"
    ds.PixelSpacing = [0.12, 0.12]
    del ds.ImageLaterality
    ds.Laterality = "L"
    r = load_radiograph(ds)
    assert r.pixel_spacing_mm == (0.12, 0.12) and r.laterality_tag == "L"
    ds.Laterality = "B"
    assert load_radiograph(ds).laterality_tag is None


def test_spacing_source_says_whether_the_spacing_is_only_the_detectors():
    ds = make_dx(gradient_image(12), 12, ImagerPixelSpacing=[0.15, 0.14])
    assert load_radiograph(ds).pixel_spacing_source == "ImagerPixelSpacing"
    ds.PixelSpacing = [0.15, 0.14]  # a copy of the detector's spacing, no calibration: still the detector's
    assert load_radiograph(ds).pixel_spacing_source == "ImagerPixelSpacing"
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    assert load_radiograph(ds).pixel_spacing_source == "PixelSpacing"
    del ds.PixelSpacingCalibrationType
    ds.PixelSpacing = [0.135, 0.126]  # corrected for magnification
    assert load_radiograph(ds).pixel_spacing_source == "PixelSpacing"
    ds.PixelSpacing = [0.0, 0.1]  # invalid: the detector's is used
    r = load_radiograph(ds)
    assert r.pixel_spacing_mm == (0.15, 0.14) and r.pixel_spacing_source == "ImagerPixelSpacing"
    del ds.PixelSpacing, ds.ImagerPixelSpacing
    r = load_radiograph(ds)
    assert r.pixel_spacing_mm is None and r.pixel_spacing_source is None


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless])
def test_compressed_transfer_syntaxes_decode_identically(syntax):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    plain = make_dx(px, 12)
    packed = make_dx(px, 12)
    packed.compress(syntax)
    assert packed.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(load_radiograph(packed).image, load_radiograph(plain).image)


def test_unusable_images_are_refused_with_a_reason():
    ds = make_dx(gradient_image(12), 12)
    del ds.PixelData
    with pytest.raises(UnsupportedImage, match="no pixel data"):
        load_radiograph(ds)
    with pytest.raises(UnsupportedImage, match="blank"):
        load_radiograph(make_dx(np.full((32, 32), 7, np.uint16), 12))
    with pytest.raises(UnsupportedImage, match="greyscale"):
        load_radiograph(make_dx(gradient_image(8), 8, "RGB"))


def test_letterbox_maps_points_consistently():
    img = np.zeros((300, 200), np.float32)
    img[150, 50] = 1.0
    out, m = letterbox(img, 64)
    x, y = apply_affine(m, np.array([[50.0, 150.0]]))[0]
    peak = np.unravel_index(np.argmax(out), out.shape)
    assert abs(peak[1] - x) <= 1 and abs(peak[0] - y) <= 1
    assert out.shape == (64, 64)


def test_warp_to_frame_samples_the_right_place_even_when_downscaling_a_lot():
    img = np.zeros((3000, 2400), np.float32)
    img[1490:1510, 1190:1210] = 1.0  # a 20 px square at (1200, 1500)
    spec = FrameSpec()
    ref = np.array([[1000.0, 1500.0], [1400.0, 1500.0]])  # its midpoint is the square
    frame = warp_to_frame(img, frame_matrix(ref, spec), spec)
    peak = np.unravel_index(np.argmax(frame), frame.shape)
    centre = spec.reference_points_px.mean(0)
    assert abs(peak[1] - centre[0]) <= 1.5 and abs(peak[0] - centre[1]) <= 1.5
    assert frame.max() > 0.5  # area-averaged, not missed by point sampling


def test_a_frame_sampler_cuts_warp_to_frames_frames_downsampling_once_per_reduction(monkeypatch):
    import model.preprocess as pp

    img = np.random.default_rng(3).random((3000, 2400)).astype(np.float32)
    spec = FrameSpec()
    # plateau widths of 1000 and 980 px reduce by 6 before the warp, 400 px by 2
    refs = [np.array([[700.0, 1500.0], [1700.0, 1500.0]]), np.array([[720.0, 1490.0], [1700.0, 1520.0]]),
            np.array([[1000.0, 1500.0], [1400.0, 1500.0]])]
    expected = [warp_to_frame(img, frame_matrix(ref, spec), spec) for ref in refs]
    factors = []
    downsample = pp._downsample
    monkeypatch.setattr(pp, "_downsample", lambda image, factor: factors.append(factor) or downsample(image, factor))
    sampler = pp.FrameSampler(img)
    for ref, frame in zip(refs + refs, expected + expected):
        assert np.array_equal(sampler.frame(frame_matrix(ref, spec), spec), frame)
    assert factors == [6, 2]


def test_a_frame_samplers_mirror_is_made_once_and_mirrors_back():
    import gc
    import weakref

    from model.preprocess import FrameSampler

    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    sampler = FrameSampler(img)
    mirror = sampler.mirrored()
    assert np.array_equal(mirror.image, img[:, ::-1]) and mirror.image.flags.c_contiguous
    assert sampler.mirrored() is mirror and mirror.mirrored() is sampler
    gc.disable()  # no reference cycle: both images go with the last reference, not at the next collection
    try:
        alive = weakref.ref(mirror)
        del sampler, mirror
        assert alive() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("flag,bits,exact", [("+e1", 12, True), ("+eb", 8, False), ("+ee", 8, False)])
def test_jpeg_family_encoded_by_dcmtk_decodes(tmp_path, flag, bits, exact):
    """JPEG lossless SV1, baseline and extended (as PACS and modalities send them) through pydicom's plugins."""
    from tests.conftest import require_tool

    dcmcjpeg = require_tool("/usr/bin/dcmcjpeg")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:96, 0:80]
    px = ((np.sin(xx / 9) + np.cos(yy / 7) + 2) / 4 * (2**bits - 1) + rng.normal(0, 2, xx.shape))
    px = np.clip(px, 0, 2**bits - 1).astype(np.uint16)
    plain = make_dx(px, bits)
    plain.file_meta.MediaStorageSOPClassUID = plain.SOPClassUID
    plain.file_meta.MediaStorageSOPInstanceUID = plain.SOPInstanceUID
    src, dst = tmp_path / "plain.dcm", tmp_path / "jpeg.dcm"
    plain.save_as(src, enforce_file_format=True)
    import subprocess
    subprocess.run([dcmcjpeg, flag, str(src), str(dst)], check=True, capture_output=True)
    packed = pydicom.dcmread(dst)
    assert packed.file_meta.TransferSyntaxUID.is_compressed
    decoded, reference = load_radiograph(packed).image, load_radiograph(plain).image
    if exact:
        assert np.array_equal(decoded, reference)
    else:
        assert np.abs(decoded - reference).mean() < 0.02


def test_12_bit_jpeg_extended_without_a_decoder_is_a_clear_error(tmp_path):
    """Only pylibjpeg-libjpeg (GPL-3, not a default dependency) decodes 12-bit JPEG Extended."""
    import importlib.util
    import subprocess

    from tests.conftest import require_tool

    if importlib.util.find_spec("libjpeg") is not None:
        pytest.skip("pylibjpeg-libjpeg is installed: 12-bit JPEG Extended decodes")
    dcmcjpeg = require_tool("/usr/bin/dcmcjpeg")
    plain = make_dx(gradient_image(12), 12)
    plain.file_meta.MediaStorageSOPClassUID = plain.SOPClassUID
    plain.file_meta.MediaStorageSOPInstanceUID = plain.SOPInstanceUID
    plain.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
    subprocess.run([dcmcjpeg, "+ee", str(tmp_path / "plain.dcm"), str(tmp_path / "j.dcm")], check=True)
    with pytest.raises(UnsupportedImage, match="JPEG Extended"):
        load_radiograph(pydicom.dcmread(tmp_path / "j.dcm"))
