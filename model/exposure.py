"""Which shaft levels are on visible bone?

FTS and FNTS take shaft midpoints at given levels from the joint (``model.alignment``). When the collimator or a
tight crop cuts the shafts short, the landmark network still places points there, extrapolating from the knee,
and the angle can be several degrees off while every heatmap looks sharp. What the network cannot fake is the
image: a shaft level that was exposed shows the two cortices as intensity steps between bone and soft tissue;
one under the collimator shows a flat field. ``exposed_levels`` says, for every shaft level of the scheme, whether
it is exposed; the axes then use the most distant exposed ones.

``cortex_steps`` measures, for each shaft level, the smaller of the two steps across the predicted cortex
points: the image is resampled so that the plateau width spans ``WORK_PX_PER_L`` pixels (area averaging, which
also averages the noise away), a profile is taken along the line through the two cortex points, and at each
point the mean over a few samples outside is compared with the mean over a few samples inside. On the
normalised image (``model.preprocess``: [0, 1], bone bright) a level under the collimator steps by 0 to a few
hundredths. Exposed shafts step by 0.17-0.5 on the 2D generator's images but by as little as 0.01-0.06 (1st-5th
percentiles) on the 3D renderer's: a metal implant takes the top of the display range and leaves bone a narrow band,
and the fibula lies against the tibia's lateral cortex. ``MIN_CORTEX_STEP`` was set on both renderers' training
seeds with their ground-truth landmarks (``python tests/bench/bench_exposure.py``): at 0.08 (tuned on the 2D
generator alone) the check lost 24 of 131 post-op and 15 of 133 pre-op bones of the 3D renderer that had enough
shaft exposed, at 0.04 it loses 8 and 1, and takes an axis level past the exposed field in 3 post-op bones of 160
instead of 2; the 2D generator's bones come out the same at every threshold from 0.02 to 0.08.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.scheme import LandmarkScheme

# Working resolution: pixels per reference length (tibial plateau width).
WORK_PX_PER_L = 64.0
# Below this step (fraction of the normalised display range) a cortex is taken as not visible (see above).
MIN_CORTEX_STEP = 0.04
# The profile runs this fraction of the shaft width beyond each cortex point, sampled this many times.
PROFILE_EXTENSION = 0.3
PROFILE_SAMPLES = 64
# Samples averaged on each side of a cortex point.
STEP_SAMPLES = 4


def line_profile(image: np.ndarray, start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Bilinear samples from ``start`` to ``end``; beyond the border the edge pixels are repeated (landmarks
    outside the image are the caller's other check)."""
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    xs = (start[0] + t * (end[0] - start[0])).astype(np.float32)[None]
    ys = (start[1] + t * (end[1] - start[1])).astype(np.float32)[None]
    return cv2.remap(image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]


def _step(before: np.ndarray, after: np.ndarray) -> float:
    return float(abs(after.mean() - before.mean()))


def pair_step(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The smaller intensity step across two cortex points ``a`` and ``b`` (``[x, y]`` in ``image``'s pixels)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = b - a
    n, k, ext = PROFILE_SAMPLES, STEP_SAMPLES, PROFILE_EXTENSION
    prof = line_profile(image, a - ext * d, b + ext * d, n)
    ia = round(ext / (1 + 2 * ext) * (n - 1))
    ib = round((1 + ext) / (1 + 2 * ext) * (n - 1))
    step_a = _step(prof[ia - k:ia], prof[ia + 1:ia + 1 + k])
    step_b = _step(prof[ib - k:ib], prof[ib + 1:ib + 1 + k])
    return min(step_a, step_b)


def cortex_steps(image: np.ndarray, landmarks: np.ndarray, pairs: dict, reference_length_px: float) -> dict:
    """Per named landmark pair (two cortex points of one shaft level), the smaller step across its cortices.

    ``image`` is the normalised radiograph the ``landmarks`` (``[x, y]`` pixels) refer to.
    """
    scale = min(1.0, WORK_PX_PER_L / max(reference_length_px, 1e-6))
    small = np.ascontiguousarray(image, dtype=np.float32)
    if scale < 1.0:
        small = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    pts = (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5  # cv2.resize's pixel-centre convention
    return {name: pair_step(small, pts[i], pts[j]) for name, (i, j) in pairs.items()}


def exposed_levels(image: np.ndarray, landmarks: np.ndarray, scheme: LandmarkScheme, reference_length_px: float,
                   min_step: float = MIN_CORTEX_STEP) -> dict[str, set[float]]:
    """Per bone ("femur", "tibia"), the shaft levels of ``scheme`` whose two cortex points lie inside the image and
    show a cortex step of at least ``min_step``."""
    h, w = image.shape
    pts = np.asarray(landmarks, np.float64)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    pairs = {(bone, level): (m, lt) for bone, rows in scheme.shaft_levels.items() for level, m, lt in rows}
    steps = cortex_steps(image, pts, pairs, reference_length_px)
    out: dict[str, set[float]] = {bone: set() for bone in scheme.shaft_levels}
    for (bone, level), (m, lt) in pairs.items():
        if inside[m] and inside[lt] and steps[(bone, level)] >= min_step:
            out[bone].add(level)
    return out
