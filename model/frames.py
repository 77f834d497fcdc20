"""Coordinate frames: mirroring right knees to left, and the similarity frame fixed by two reference points.

All points are ``[x, y]`` = ``[column, row]`` in pixels, with pixel centres at integer coordinates
(the OpenCV convention used by ``cv2.warpAffine``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """Mirror points across the vertical centre line of an image ``width`` pixels wide (an involution)."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to an (..., 2) array of points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    a = matrix[:, :2]
    inv = np.linalg.inv(a)
    return np.hstack([inv, -inv @ matrix[:, 2:3]])


@dataclass(frozen=True)
class FrameSpec:
    """The local search window, in units of the reference length L (plateau corner distance).

    The frame's x axis runs from the medial to the lateral reference point, its y axis distally,
    its origin is the midpoint of the two reference points. The window spans ``[-half_width, half_width]``
    across and ``[-above, below]`` along, sampled on a ``width_px`` x ``height_px`` grid.
    """

    half_width: float = 1.0
    above: float = 1.5
    below: float = 1.5
    width_px: int = 192
    height_px: int = 288

    def __post_init__(self) -> None:
        self.scale_px  # validates square pixels

    @property
    def scale_px(self) -> float:
        """Frame pixels per reference length (identical along both axes)."""
        sx = self.width_px / (2 * self.half_width)
        sy = self.height_px / (self.above + self.below)
        if abs(sx - sy) > 1e-6 * sx:
            raise ValueError(f"FrameSpec pixels must be square: {sx:.4f} vs {sy:.4f} px per L")
        return sx

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("half_width", "above", "below", "width_px", "height_px")}

    @property
    def reference_points_px(self) -> np.ndarray:
        """Where the medial and lateral reference points sit inside the frame, in frame pixels."""
        s = self.scale_px
        cx, cy = self.half_width * s - 0.5, self.above * s - 0.5
        return np.array([[cx - 0.5 * s, cy], [cx + 0.5 * s, cy]])


def frame_matrix(reference: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """2x3 similarity matrix taking image pixels to frame pixels, from ``reference = [[medial], [lateral]]``.

    The reference points are in left-knee orientation (lateral toward +x), so an upright left knee
    maps to an upright frame.
    """
    ref = np.asarray(reference, dtype=np.float64)
    med, lat = ref[0], ref[1]
    d = lat - med
    length = float(np.hypot(*d))
    if not np.isfinite(length) or length < 1e-6:
        raise ValueError("reference points coincide: cannot build a frame")
    u = d / length
    v = np.array([-u[1], u[0]])
    s = spec.scale_px / length
    centre = (med + lat) / 2
    rot = np.vstack([u, v]) * s  # rows: frame x, frame y
    offset = np.array([spec.half_width * spec.scale_px - 0.5, spec.above * spec.scale_px - 0.5])
    return np.hstack([rot, (offset - rot @ centre)[:, None]])


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    denom = (a**2).sum()
    p = (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum() / denom
    q = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / denom
    rot = np.array([[p, -q], [q, p]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])
