"""KneeAlign landmark model: schemes, network, preprocessing, two-stage inference and alignment geometry.

This package imports neither ``dicomnode`` nor ``train``; both build on it.
"""

from model.alignment import AlignmentResult, Axis, compute_alignment
from model.scheme import LandmarkScheme, load_scheme

__all__ = ["AlignmentResult", "Axis", "LandmarkScheme", "compute_alignment", "load_scheme"]
