"""The sample every data source produces: a normalised image as acquired, its landmarks and its labels.

Landmarks are ``[x, y]`` = ``[column, row]`` in the pixels of ``image`` as acquired (a right knee is *not*
mirrored), indexed by the scheme of ``phase``. ``laterality`` says which knee the image shows; a dataset whose
right knees were already flipped to look like left knees is simply labelled ``"L"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from model.frames import mirror_points
from model.scheme import LandmarkScheme, load_scheme
from model.vocabulary import PHASE_NAMES

LATERALITIES = ("L", "R")


@dataclass
class KneeSample:
    image: np.ndarray  # float32 (rows, cols) in [0, 1], bone bright, as acquired
    landmarks: np.ndarray  # (N, 2) float64, image pixels
    laterality: str  # "L" | "R"
    phase: str  # one of model.vocabulary.PHASE_NAMES
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column)
    source: str = ""  # where it came from (file name or "synthetic:<seed>")
    atfa_fts_deg: float | None = None  # exact ground truth when known (synthetic), else None
    atfa_fnts_deg: float | None = None
    meta: dict = field(default_factory=dict)
    # Points the image does not show (beyond its edge): their positions are estimates, never trained on or measured
    # against (``train.data.annotations``: the JSON key ``unseen``). Never the reference points.
    unseen: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.laterality not in LATERALITIES:
            raise ValueError(f"{self.source}: laterality must be 'L' or 'R', got {self.laterality!r}")
        if self.phase not in PHASE_NAMES:
            raise ValueError(f"{self.source}: phase must be one of {PHASE_NAMES}, got {self.phase!r}")
        if self.image.ndim != 2:
            raise ValueError(f"{self.source}: image must be 2-D, got shape {self.image.shape}")
        self.landmarks = self.scheme.check_points(self.landmarks, self.source or "landmarks")
        self.unseen = tuple(sorted({int(i) for i in self.unseen}))
        if any(i < 0 or i >= len(self.landmarks) for i in self.unseen):
            raise ValueError(f"{self.source}: unseen point indices must lie in 0..{len(self.landmarks) - 1}")
        if set(self.unseen) & set(self.scheme.roles["reference"]):
            raise ValueError(f"{self.source}: the plateau corners (the reference points) must be seen")

    @property
    def scheme(self) -> LandmarkScheme:
        return load_scheme(self.phase)

    @property
    def is_right(self) -> bool:
        return self.laterality == "R"

    @property
    def reference(self) -> np.ndarray:
        """The two reference points ``[[medial], [lateral]]`` in image pixels as acquired."""
        return self.landmarks[list(self.scheme.roles["reference"])]

    def left_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Image and landmarks mirrored to a left knee when needed, exactly as ``model.inference`` mirrors."""
        if not self.is_right:
            return self.image, self.landmarks
        width = self.image.shape[1]
        return np.ascontiguousarray(self.image[:, ::-1]), mirror_points(self.landmarks, width)


def resample_matrix(src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> np.ndarray:
    """2x3 matrix from source to destination pixels for ``cv2.resize`` (pixel centres at integers)."""
    sx = dst_shape[1] / src_shape[1]
    sy = dst_shape[0] / src_shape[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def coarsen(sample: KneeSample, spacing_mm: float | None = None, max_side: int | None = None) -> KneeSample:
    """Downsample (area averaging) to ``spacing_mm`` when the spacing is known, else to at most ``max_side``
    pixels; landmarks and spacing follow. Never upsamples."""
    h, w = sample.image.shape
    factor = 1.0
    if spacing_mm is not None and sample.pixel_spacing_mm is not None:
        factor = min(sample.pixel_spacing_mm) / spacing_mm
    elif max_side is not None:
        factor = max_side / max(h, w)
    if factor >= 1.0:
        return sample
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    image = cv2.resize(sample.image, (nw, nh), interpolation=cv2.INTER_AREA)
    m = resample_matrix((h, w), (nh, nw))
    pts = sample.landmarks * np.array([m[0, 0], m[1, 1]]) + m[:, 2]
    spacing = None
    if sample.pixel_spacing_mm is not None:
        spacing = (sample.pixel_spacing_mm[0] * h / nh, sample.pixel_spacing_mm[1] * w / nw)
    return replace(sample, image=image, landmarks=pts, pixel_spacing_mm=spacing)


def as_spacing(value: float | tuple | list | None) -> tuple[float, float] | None:
    """Normalise a pixel spacing given as one number or a (row, column) pair; None stays None."""
    if value is None:
        return None
    if np.isscalar(value):
        return (float(value), float(value))
    row, col = value
    return (float(row), float(col))
