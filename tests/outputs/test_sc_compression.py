"""The compact Secondary Capture: JPEG 2000 Lossless by default, a fraction of the uncompressed size, the same
pixels after decoding (sizes on the full-size synthetic knees: ``python tests/bench/bench_sc.py``)."""

from __future__ import annotations

import io
import statistics

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from dicomnode.outputs.sc import build_sc
from tests.outputs.synthetic_knee import knee_case

CASES = [dict(laterality="L", atfa_deg=6.0), dict(laterality="R", atfa_deg=-8.0, confidence=0.3, monochrome1=True),
         dict(phase="postop", laterality="L", atfa_deg=2.0, shape=(2000, 3000))]


def _part10(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def encoded():
    """(default SC bytes, uncompressed SC bytes) per case."""
    out = []
    for kwargs in CASES:
        case = knee_case(**kwargs)
        out.append((_part10(build_sc(case.source, case.prediction)),
                    _part10(build_sc(case.source, case.prediction, transfer_syntax=ExplicitVRLittleEndian))))
    return out


def test_default_is_jpeg2000_lossless_and_a_third_or_less(encoded):
    ratios = []
    for compact, plain in encoded:
        ds = pydicom.dcmread(io.BytesIO(compact), stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert "LossyImageCompression" not in ds or ds.LossyImageCompression == "00"
        ratios.append(len(compact) / len(plain))
    assert statistics.median(ratios) <= 1 / 3, ratios


def test_decodes_to_the_same_pixels(encoded):
    for compact, plain in encoded:
        decoded = pydicom.dcmread(io.BytesIO(compact))
        reference = pydicom.dcmread(io.BytesIO(plain))
        assert reference.PhotometricInterpretation == "RGB"
        np.testing.assert_array_equal(decoded.pixel_array, reference.pixel_array)


def test_unsupported_transfer_syntax_is_refused(left_case):
    with pytest.raises(ValueError, match="unsupported SC transfer syntax"):
        build_sc(left_case.source, left_case.prediction, transfer_syntax="1.2.840.10008.1.2.5")
