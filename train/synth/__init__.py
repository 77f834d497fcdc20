"""Parametric synthetic AP knee radiographs (pre-op and post-op, left and right) with exact ground truth.

``sample_case`` draws every parameter of one image, ``render_case`` renders it (at the detector spacing or
directly at a coarser one) with the scheme's landmarks and the aTFA they give, ``write_dicom`` stores it
as DX or CR with a ground-truth JSON, and ``generate`` writes a reproducible folder of them.
"""

from train.synth.cases import (
    GENERATOR_VERSION,
    SynthCase,
    SynthImage,
    landmarks_mm,
    render_case,
    sample_case,
)
from train.synth.dicom_writer import build_dataset, write_dicom
from train.synth.generate import case_seed, generate

__all__ = [
    "GENERATOR_VERSION", "SynthCase", "SynthImage", "build_dataset", "case_seed", "generate", "landmarks_mm",
    "render_case", "sample_case", "write_dicom",
]
