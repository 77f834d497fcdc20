"""Fixtures for the result-object tests: synthetic knee cases and their outputs written to disk."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.outputs.synthetic_knee import KneeCase, knee_case


def save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def left_case() -> KneeCase:
    """Left knee, pre-op, 6 degrees valgus by FTS, confident."""
    return knee_case(phase="preop", laterality="L", atfa_deg=6.0)


@pytest.fixture(scope="module")
def low_case() -> KneeCase:
    """Right knee, post-op, 8 degrees varus, below the confidence threshold, MONOCHROME1 (as CR often is)."""
    return knee_case(phase="postop", laterality="R", atfa_deg=-8.0, confidence=0.3, monochrome1=True)


@pytest.fixture(params=["left", "low"])
def any_case(request, left_case, low_case) -> KneeCase:
    return {"left": left_case, "low": low_case}[request.param]
