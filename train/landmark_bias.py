"""Systematic against scattered landmark error: how much of a set's landmark error is the same offset in every image.

A network trained on one source puts each landmark where that source's renderer or annotators put it. On another
source the same anatomical point may be drawn elsewhere (a different convention, or bones of another shape), and
that part of the error is the same offset in every image: a few annotated images of the new source measure it, and
fine-tuning on them (docs/training.md, section 2) removes it. The rest is scatter, which only a better model or
training images closer to the new source shrink. Offsets are taken in the true knee's own frame, in percent of the
plateau width (lateral and distal positive), so that left and right knees, rotation and scale line up.

The offset of each landmark is the median over the cases (robust to the few whose frame is lost); how much removing
it would help is measured out of sample: offsets from the odd-numbered cases applied to the even-numbered ones and
the other way round.
"""

from __future__ import annotations

import numpy as np

from train.metrics import plateau_frame

MIN_CASES = 4  # two per half for the out-of-sample estimate


def frame_errors(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(K, 2)`` errors of predicted landmarks (prediction minus truth) in percent of the plateau width, along the
    true plateau toward the lateral corner and across it distally (``train.metrics.plateau_frame``). ``reference``: the
    true (medial, lateral) plateau corners."""
    length, across, down = plateau_frame(reference)
    d = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return 100.0 * np.stack([d @ across, d @ down], axis=1) / length


def _mean_distance(errors: np.ndarray) -> float:
    return float(np.linalg.norm(errors, axis=-1).mean())


def decompose(errors: np.ndarray, point_names: tuple[str, ...], n_largest: int = 5) -> dict:
    """``errors``: ``(n cases, K, 2)`` from ``frame_errors``. Returns n, the mean point-to-point error
    (``p2p_mean_pct``), the mean size of the per-landmark offsets (``offset_mean_pct``), the mean error left once the
    offsets measured on the other half of the cases are removed (``p2p_offset_removed_mean_pct``), and the landmarks
    with the largest offsets."""
    errors = np.asarray(errors, np.float64)
    n = len(errors)
    if n < MIN_CASES:
        raise ValueError(f"need at least {MIN_CASES} cases to tell offset from scatter, got {n}")
    offsets = np.median(errors, axis=0)
    size = np.linalg.norm(offsets, axis=1)
    removed = [errors[part::2] - np.median(errors[1 - part::2], axis=0) for part in (0, 1)]
    largest = np.argsort(-size, kind="stable")[:n_largest]
    return {
        "n": n,
        "p2p_mean_pct": _mean_distance(errors),
        "offset_mean_pct": float(size.mean()),
        "p2p_offset_removed_mean_pct": _mean_distance(np.concatenate(removed)),
        "largest": [{"landmark": point_names[k], "lateral_pct": float(offsets[k, 0]),
                     "distal_pct": float(offsets[k, 1])} for k in largest],
    }
