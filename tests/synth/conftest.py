"""Fixtures for the synthetic-radiograph tests: a few cases rendered once per session, cheaply."""

from __future__ import annotations

import pytest

from train.synth import render_case, sample_case

COARSE_MM = 0.3  # renders for geometry checks: the same anatomy as the detector-resolution image, fast


@pytest.fixture(scope="session")
def clean_renders():
    """Noise-free renders at 0.3 mm of 4 pre-op and 4 post-op cases (each with its case)."""
    return [render_case(sample_case(9000 + i, phase="preop" if i < 4 else "postop"), COARSE_MM, clean=True)
            for i in range(8)]


@pytest.fixture(scope="session")
def variant_renders():
    """Noise-free renders at 0.3 mm of the generator's variants: 4 post-op cases with implants of other designs,
    4 pre-op cases with dense plates."""
    return ([render_case(sample_case(9100 + i, phase="postop", implant_designs=True), COARSE_MM, clean=True)
             for i in range(4)]
            + [render_case(sample_case(9200 + i, phase="preop", dense_plates=True), COARSE_MM, clean=True)
               for i in range(4)])
