"""Anatomical tibiofemoral angle (aTFA) from landmarks, by the FTS and FNTS methods of Hu et al. 2025.

Sign convention (clinical, the same for both knees): seen as a left knee (fibula lateral, +x) and going
distally, the angle is positive (valgus) when the tibial axis turns toward the lateral side relative to
the femoral axis, negative (varus) when it turns medially, and 0 for a straight limb. Landmarks of a right
knee given in its original (unmirrored) image are mirrored first, so a valgus right knee is positive too.

- FTS: femoral axis through the midpoints of the proximal and distal femoral shaft pairs; tibial axis
  through the midpoints of the proximal and distal tibial shaft pairs.
- FNTS: femoral axis from the proximal femoral shaft midpoint to the femoral notch midpoint; tibial axis
  as in FTS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.scheme import LandmarkScheme


@dataclass(frozen=True)
class Axis:
    """A bone axis from its proximal to its distal point, in the caller's pixel coordinates."""

    proximal: tuple[float, float]
    distal: tuple[float, float]


@dataclass(frozen=True)
class AlignmentResult:
    atfa_fts_deg: float
    atfa_fnts_deg: float
    femoral_axis_fts: Axis
    femoral_axis_fnts: Axis
    tibial_axis: Axis

    def as_dict(self) -> dict:
        return {
            "atfa_fts_deg": self.atfa_fts_deg,
            "atfa_fnts_deg": self.atfa_fnts_deg,
            "axes": {
                "femoral_fts": [list(self.femoral_axis_fts.proximal), list(self.femoral_axis_fts.distal)],
                "femoral_fnts": [list(self.femoral_axis_fnts.proximal), list(self.femoral_axis_fnts.distal)],
                "tibial": [list(self.tibial_axis.proximal), list(self.tibial_axis.distal)],
            },
        }


def signed_angle_deg(femoral_dir: np.ndarray, tibial_dir: np.ndarray) -> float:
    """Angle from the femoral to the tibial direction (both pointing distally) in a left-knee image,
    positive when the tibia turns toward +x (lateral), i.e. valgus."""
    fx, fy = femoral_dir
    tx, ty = tibial_dir
    # In image coordinates (y down), a turn toward +x from a distal direction is clockwise on screen,
    # which is a negative cross product; we report it as positive.
    cross = fx * ty - fy * tx
    dot = fx * tx + fy * ty
    return math.degrees(math.atan2(-cross, dot))


def _midpoint(points: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    return (points[pair[0]] + points[pair[1]]) / 2


def compute_alignment(
    points: np.ndarray,
    scheme: LandmarkScheme,
    laterality: str = "L",
    pixel_spacing_mm: tuple[float, float] | None = None,
) -> AlignmentResult:
    """aTFA by FTS and FNTS from landmarks following ``scheme``.

    ``points`` are in the image as acquired. For ``laterality="R"`` the image shows a right knee
    unmirrored: the angle is measured on the mirrored points so that the clinical sign is the same as
    for a left knee. Axes are returned in the caller's (unmirrored) coordinates for drawing.
    ``pixel_spacing_mm = (row, column)`` matters only for non-square pixels: angles are measured in millimetres.
    """
    pts = scheme.check_points(points)
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    r = scheme.roles
    f_prox = _midpoint(pts, r["femoral_shaft_proximal"])
    f_dist = _midpoint(pts, r["femoral_shaft_distal"])
    notch = _midpoint(pts, r["femoral_notch"])
    t_prox = _midpoint(pts, r["tibial_shaft_proximal"])
    t_dist = _midpoint(pts, r["tibial_shaft_distal"])
    mirror = -1.0 if laterality == "R" else 1.0
    flip = np.array([mirror, 1.0])  # mirroring negates the x of every direction vector
    if pixel_spacing_mm is not None:
        flip = flip * np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]], dtype=np.float64)
    tib = (t_dist - t_prox) * flip
    fts = signed_angle_deg((f_dist - f_prox) * flip, tib)
    fnts = signed_angle_deg((notch - f_prox) * flip, tib)

    def axis(a: np.ndarray, b: np.ndarray) -> Axis:
        return Axis((float(a[0]), float(a[1])), (float(b[0]), float(b[1])))

    return AlignmentResult(
        atfa_fts_deg=fts,
        atfa_fnts_deg=fnts,
        femoral_axis_fts=axis(f_prox, f_dist),
        femoral_axis_fnts=axis(f_prox, notch),
        tibial_axis=axis(t_prox, t_dist),
    )
