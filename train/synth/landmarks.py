"""Ground-truth landmarks of the synthetic knee, placed on its outlines exactly as the schemes describe.

Reading of the scheme texts (``model/schemes/{preop,postop}-v1.json``), with L the plateau corner distance
and levels measured along y (perpendicular to the corner line, which is the x axis of the canonical frame):

- femoral outlines: 11 points on the outer cortex at 1.3, 1.2, ... 0.3 L above the corner line, then 11
  points evenly by arc length along the flare and condyle, the last on the condyle's most distal point;
- condylar distal contours: 6 points evenly spaced strictly between the condyle's most distal point and
  the notch edge (neither end repeated: both belong to neighbouring curves);
- notch: 5 points from the medial edge up to the apex and 5 from the apex down to the lateral edge, the
  apex shared (index 4);
- plateau: 23 points evenly by arc length from the medial corner (the reference point) to the lateral one;
- tibial outlines: 4 points evenly on the flare strictly between the corner and the 0.6 L level, then
  8 shaft points at 0.6 ... 1.3 L below the corner line;
- fibular head: 12 points evenly from where its outline leaves the tibia's lateral cortex, over the apex,
  to the lateral neck; fibular shaft cortices: 5 points each at 0.7, 0.85, 1.0, 1.15, 1.3 L;
- post-op implant curves: femoral component 25 points evenly along its outer contour from flange top to
  flange top; tray 6 points on the upper surface medial to lateral then 6 on the lower surface lateral to
  medial (corners included); stem 10 points evenly from the medial junction with the tray, round the tip,
  to the lateral junction.
"""

from __future__ import annotations

import numpy as np

from model.scheme import LandmarkScheme
from model.vocabulary import PHASES
from train.synth.geometry import crossing, sample_even
from train.synth.shapes import KneeShapes

FEMUR_SHAFT_LEVELS = tuple(-1.3 + 0.1 * i for i in range(11))  # in L, negative = proximal
TIBIA_SHAFT_LEVELS = tuple(0.6 + 0.1 * i for i in range(8))
FIBULA_SHAFT_LEVELS = (0.7, 0.85, 1.0, 1.15, 1.3)


def _levels(side: np.ndarray, levels: tuple[float, ...], length: float) -> np.ndarray:
    return np.array([crossing(side, lv * length)[0] for lv in levels])


def _femur_outline(side: np.ndarray, length: float) -> np.ndarray:
    shaft = _levels(side, FEMUR_SHAFT_LEVELS, length)
    _, s0 = crossing(side, FEMUR_SHAFT_LEVELS[-1] * length)
    condyle = sample_even(side, 11, s0, include_start=False)
    return np.vstack([shaft, condyle])


def _tibia_outline(side: np.ndarray, length: float) -> np.ndarray:
    _, s_shaft = crossing(side, TIBIA_SHAFT_LEVELS[0] * length)
    flare = sample_even(side, 4, 0.0, s_shaft, include_start=False, include_end=False)
    return np.vstack([flare, _levels(side, TIBIA_SHAFT_LEVELS, length)])


def _notch(notch: np.ndarray, apex_index: int) -> np.ndarray:
    up = sample_even(notch[: apex_index + 1], 5)
    down = sample_even(notch[apex_index:], 5)
    return np.vstack([up, down[1:]])


def bone_points(shapes: KneeShapes) -> np.ndarray:
    """The 134 points shared by both schemes (femur, tibia, fibula), canonical millimetres."""
    L = shapes.reference_length
    f, t, fib = shapes.femur, shapes.tibia, shapes.fibula
    parts = [
        _femur_outline(f.side_medial, L),
        _femur_outline(f.side_lateral, L),
        sample_even(f.inner_medial, 6, include_start=False, include_end=False),
        _notch(f.notch, f.notch_apex_index),
        sample_even(f.inner_lateral, 6, include_start=False, include_end=False),
        sample_even(t.plateau, 23),
        _tibia_outline(t.side_medial, L),
        _tibia_outline(t.side_lateral, L),
        sample_even(fib.head, 12),
        _levels(fib.side_medial, FIBULA_SHAFT_LEVELS, L),
        _levels(fib.side_lateral, FIBULA_SHAFT_LEVELS, L),
    ]
    return np.vstack(parts)


def implant_points(shapes: KneeShapes) -> np.ndarray:
    """The 47 implant points of the post-op scheme, canonical millimetres."""
    imp = shapes.implant
    if imp is None:
        raise ValueError("a pre-op knee has no implant landmarks")
    return np.vstack([
        sample_even(imp.component_outline, 25),
        sample_even(imp.tray_top, 6),
        sample_even(imp.tray_bottom, 6),
        sample_even(imp.stem, 10),
    ])


def scheme_points(shapes: KneeShapes, scheme: LandmarkScheme) -> np.ndarray:
    """All landmarks of ``scheme`` for this knee, (N, 2) canonical millimetres, checked against the scheme."""
    points = bone_points(shapes)
    if PHASES[scheme.phase].has_implants:
        points = np.vstack([points, implant_points(shapes)])
    return scheme.check_points(points, source="synthetic ground truth")
