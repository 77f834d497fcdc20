"""Anatomical tibiofemoral angle (aTFA) from landmarks, by the FTS and FNTS methods of Hu et al. 2025.

Sign convention (clinical, the same for both knees): seen as a left knee (fibula lateral, +x) and going
distally, the angle is positive (valgus) when the tibial axis turns toward the lateral side relative to
the femoral axis, negative (varus) when it turns medially, and 0 for a straight limb. Landmarks of a right
knee given in its original (unmirrored) image are mirrored first, so a valgus right knee is positive too.

- FTS: femoral axis through the midpoints of the proximal and distal femoral shaft pairs; tibial axis
  through the midpoints of the proximal and distal tibial shaft pairs.
- FNTS: femoral axis from the proximal femoral shaft midpoint to the femoral notch midpoint; tibial axis
  as in FTS.

Shaft levels adapt to the exposed field, within limits: the paper takes the shafts at 1.3 and 0.8 reference lengths
(L, the plateau corner distance) from the plateau line. On a tightly collimated film the far level may not be on the
image. ``choose_levels`` keeps the paper's near level (0.8 L) and takes, for each bone, the most distant level whose
cortices are exposed (``far``, at most 1.3 L, at least ``MIN_LEVEL``). With both shafts exposed to 1.3 L this is
exactly the paper's definition. Nearer the joint than 0.8 L the outline is the metaphysis flaring into the condyles
or the plateau, and an axis drawn there is a different measurement: on both renderers' ground truth a femoral level of
0.8 moves the FNTS angle by 0.4-3.3 degrees on average (95th percentile up to 8.5), a tibial axis from 0.6 to 0.8 L
by 0.9-2.9 (up to 9.2), while the minimum levels here (femur 1.1, tibia 1.0 with the near level at 0.8) keep it
within 0.7 degrees on average and 1.6 at the 95th percentile (``python tests/bench/bench_shaft_levels.py``; the FTS
angle, whose femoral axis follows the femur's bow between its two levels, moves more on the 3D renderer: up to 2.1
degrees on average at a femoral far level of 1.1). Below the minimum no axis is drawn from the image: the bone is
not measurable.
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


# The paper's levels, and the rules of the adaptive ones (reference lengths from the plateau line).
FIXED_LEVEL = 1.3
NEAR_LEVEL = 0.8  # the paper's near level, kept for every axis: nearer the joint the shaft is no longer the diaphysis
MIN_LEVEL = {"femur": 1.1, "tibia": 1.0}  # less exposed shaft than this: the bone's axis is not measurable


@dataclass(frozen=True)
class ShaftLevels:
    """The shaft levels the axes were drawn through, in reference lengths from the plateau line."""

    femur: tuple[float, float] = (FIXED_LEVEL, NEAR_LEVEL)  # (far, near): above the plateau
    tibia: tuple[float, float] = (NEAR_LEVEL, FIXED_LEVEL)  # (near, far): below it

    @property
    def fixed(self) -> bool:
        return self == ShaftLevels()

    def describe(self) -> str:
        """E.g. "femur 1.3/0.8, tibia 0.8/1.3 plateau widths"."""
        return (f"femur {self.femur[0]:.1f}/{self.femur[1]:.1f}, tibia {self.tibia[0]:.1f}/{self.tibia[1]:.1f} "
                "plateau widths")


def axis_levels(bone: str, far: float) -> tuple[float, float]:
    """The two levels of a bone's shaft axis with its far level at ``far``: ``(far, near)``."""
    if not MIN_LEVEL[bone] - 1e-9 <= far <= FIXED_LEVEL + 1e-9:
        raise ValueError(f"{bone} axis level {far} outside [{MIN_LEVEL[bone]}, {FIXED_LEVEL}]")
    return round(far, 1), NEAR_LEVEL


def choose_bone_levels(bone: str, exposed: set[float]) -> tuple[float, float] | None:
    """``(far, near)`` levels of one bone's axis from its exposed levels; None when too little shaft is exposed."""
    shown = {round(v, 1) for v in exposed}
    candidates = sorted((lv for lv in shown if MIN_LEVEL[bone] - 1e-9 <= lv <= FIXED_LEVEL + 1e-9), reverse=True)
    usable = [lv for lv in candidates if axis_levels(bone, lv)[1] in shown]
    return axis_levels(bone, usable[0]) if usable else None


def short_shaft_reason(bone: str) -> str:
    """Why a bone's axis is not measured, e.g. "less than 1.1 plateau widths of femoral shaft exposed"."""
    side = "femoral" if bone == "femur" else "tibial"
    return f"less than {MIN_LEVEL[bone]:.1f} plateau widths of {side} shaft exposed"


def choose_levels(exposed: dict[str, set[float]]) -> tuple[ShaftLevels | None, list[str]]:
    """Levels for both axes from each bone's exposed levels; ``(None, reasons)`` when a bone has too little shaft."""
    chosen = {bone: choose_bone_levels(bone, exposed.get(bone, set())) for bone in ("femur", "tibia")}
    reasons = [short_shaft_reason(bone) for bone, levels in chosen.items() if levels is None]
    if reasons:
        return None, reasons
    far_t, near_t = chosen["tibia"]
    return ShaftLevels(femur=chosen["femur"], tibia=(near_t, far_t)), []


ATFA_METHODS = ("fnts", "fts")  # the report's order: FNTS (the paper's preferred), then FTS


def check_method(method: str) -> None:
    if method not in ATFA_METHODS:
        raise ValueError(f"unknown aTFA method {method!r}; expected 'fts' or 'fnts'")


@dataclass(frozen=True)
class AlignmentResult:
    atfa_fts_deg: float
    atfa_fnts_deg: float
    femoral_axis_fts: Axis
    femoral_axis_fnts: Axis
    tibial_axis: Axis
    levels: ShaftLevels = ShaftLevels()

    def femoral_axis(self, method: str) -> Axis:
        """The femoral axis of ``method`` ("fnts" or "fts")."""
        check_method(method)
        return self.femoral_axis_fnts if method == "fnts" else self.femoral_axis_fts

    def angle_deg(self, method: str) -> float:
        """The aTFA by ``method`` ("fnts" or "fts"), degrees, valgus positive."""
        check_method(method)
        return float(self.atfa_fnts_deg if method == "fnts" else self.atfa_fts_deg)

    def angle_arms(self, method: str) -> np.ndarray:
        """The 4 points of the angle's arms: femoral axis proximal, distal, then tibial axis proximal, distal."""
        femoral = self.femoral_axis(method)
        return np.array([femoral.proximal, femoral.distal, self.tibial_axis.proximal, self.tibial_axis.distal],
                        dtype=np.float64)

    def as_dict(self) -> dict:
        return {
            "atfa_fts_deg": self.atfa_fts_deg,
            "atfa_fnts_deg": self.atfa_fnts_deg,
            "axes": {
                "femoral_fts": [list(self.femoral_axis_fts.proximal), list(self.femoral_axis_fts.distal)],
                "femoral_fnts": [list(self.femoral_axis_fnts.proximal), list(self.femoral_axis_fnts.distal)],
                "tibial": [list(self.tibial_axis.proximal), list(self.tibial_axis.distal)],
            },
            "shaft_levels": {"femur": list(self.levels.femur), "tibia": list(self.levels.tibia)},
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
    levels: ShaftLevels | None = None,
) -> AlignmentResult:
    """aTFA by FTS and FNTS from landmarks following ``scheme``.

    ``points`` are in the image as acquired. For ``laterality="R"`` the image shows a right knee
    unmirrored: the angle is measured on the mirrored points so that the clinical sign is the same as
    for a left knee. Axes are returned in the caller's (unmirrored) coordinates for drawing.
    ``pixel_spacing_mm = (row, column)`` matters only for non-square pixels: angles are measured in millimetres.
    ``levels``: the shaft levels of the axes (default: the paper's, 1.3 and 0.8 reference lengths).
    """
    pts = scheme.check_points(points)
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    r = scheme.roles
    levels = levels or ShaftLevels()
    if levels.fixed:  # the roles name the paper's levels in every scheme
        pairs = [r["femoral_shaft_proximal"], r["femoral_shaft_distal"], r["tibial_shaft_proximal"],
                 r["tibial_shaft_distal"]]
    else:
        pairs = [scheme.shaft_pair("femur", levels.femur[0]), scheme.shaft_pair("femur", levels.femur[1]),
                 scheme.shaft_pair("tibia", levels.tibia[0]), scheme.shaft_pair("tibia", levels.tibia[1])]
    f_prox, f_dist, t_prox, t_dist = (_midpoint(pts, pair) for pair in pairs)
    notch = _midpoint(pts, r["femoral_notch"])
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
        levels=levels,
    )


# FNTS draws the femoral axis to the notch's midpoint. A notch whose roof lies less than this fraction of the plateau
# width proximal of the shallower condyle's most distal point has no roof to place it on (a femoral component seen
# with its box hidden, a flat distal contour): its midpoint slides along the flat contour, in an annotation as in a
# reading, and the axis with it. Chosen on the 3D renderer's validation seeds with kneealign-v2.17 (python
# tests/bench/bench_notch_depth.py --n 376; docs/results/flat-notch.md): of its 341 post-op knees read in the right
# phase and side, the three notches read shallower than 3 % (0.4, 2.3 and 2.6 %; ground truth 0.7, 1.8 and 2.4 %)
# had FNTS 8.2, 3.2 and 8.3 degrees off, two of them with confidences 0.73 and 0.67 and no warning; the next
# shallowest are read at 3.8 %. Native notches, and the 2D generator's components, are far deeper (at least 8 %).
MIN_NOTCH_DEPTH = 0.03


def notch_depth(points: np.ndarray, scheme: LandmarkScheme,
                pixel_spacing_mm: tuple[float, float] | None = None) -> float | None:
    """How far the femoral notch's roof (its most proximal landmark) lies proximal of the shallower condyle's most
    distal landmark, across the plateau line, as a fraction of the plateau width (in millimetres for non-square
    pixels); None for a scheme without the condyles' distal contours and the notch."""
    names = ("medial_condyle_distal", "intercondylar_notch", "lateral_condyle_distal")
    if not all(any(c.name == n for c in scheme.curves) for n in names):
        return None
    pts = scheme.check_points(points)
    if pixel_spacing_mm is not None:
        pts = pts * np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]], dtype=np.float64)
    medial, lateral = pts[list(scheme.roles["reference"])]
    width = max(float(np.linalg.norm(lateral - medial)), 1e-12)
    across = (lateral - medial) / width
    distal = np.array([-across[1], across[0]])
    if (_midpoint(pts, scheme.roles["femoral_shaft_proximal"]) - medial) @ distal > 0:
        distal = -distal  # the femur lies proximal
    depth = {n: (pts[list(scheme.curve(n).indices)] - medial) @ distal for n in names}
    tips = min(depth["medial_condyle_distal"].max(), depth["lateral_condyle_distal"].max())
    return float(tips - depth["intercondylar_notch"].min()) / width
