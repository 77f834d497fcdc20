"""Evaluation metrics of Hu et al. 2025: rP2P and rP2C per image, summaries over images, and the aTFA
agreement statistics (ICC(A,1) with its 95% CI, MAD, Bland-Altman, sign errors); and where an aTFA error comes
from (each axis's direction error, the notch midpoint's offset).

Distances are relative to the reference length: the distance between the two *ground-truth* tibial plateau
corners (the scheme's ``reference`` role), in percent.

ICC form: ICC(A,1) in McGraw & Wong's notation = ICC(2,1) of Shrout & Fleiss: two-way random effects,
absolute agreement, single measurement. Its 95% confidence interval is McGraw & Wong's (1996) F-based interval
with Satterthwaite degrees of freedom (the one pingouin reports as ICC2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from model.alignment import AlignmentResult, Axis
from model.scheme import LandmarkScheme

# ---------------------------------------------------------------------------------------------- landmarks


def point_to_segments(points: np.ndarray, polyline: np.ndarray, closed: bool = False) -> np.ndarray:
    """Distance from each of ``points`` (M, 2) to the polyline through ``polyline`` (K, 2) (closed: last to first)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    line = np.asarray(polyline, dtype=np.float64).reshape(-1, 2)
    if len(line) == 1:
        return np.linalg.norm(pts - line[0], axis=1)
    a = line[:-1]
    b = line[1:]
    if closed:
        a = np.vstack([a, line[-1:]])
        b = np.vstack([b, line[:1]])
    ab = b - a  # (S, 2)
    ap = pts[:, None, :] - a[None]  # (M, S, 2)
    denom = (ab**2).sum(-1)
    t = np.where(denom > 0, (ap * ab[None]).sum(-1) / np.where(denom > 0, denom, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    nearest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(pts[:, None, :] - nearest, axis=-1).min(axis=1)


def p2p_distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance of each predicted landmark to its ground-truth landmark."""
    return np.linalg.norm(np.asarray(pred, float) - np.asarray(gt, float), axis=-1)


def p2c_distances(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Distance of each predicted landmark to the ground-truth curve (polyline) of the scheme curve it belongs to."""
    pred = scheme.check_points(pred, "predicted landmarks")
    gt = scheme.check_points(gt, "ground-truth landmarks")
    out = np.empty(scheme.n_points)
    for curve in scheme.curves:
        idx = np.asarray(curve.indices)
        out[idx] = point_to_segments(pred[idx], gt[idx], curve.closed)
    return out


def relative_p2p(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme) -> float:
    """rP2P of one image: mean point-to-point distance in percent of the ground-truth reference length."""
    gt = scheme.check_points(gt, "ground-truth landmarks")
    pred = scheme.check_points(pred, "predicted landmarks")
    return 100.0 * float(p2p_distances(pred, gt).mean()) / scheme.reference_length(gt)


def relative_p2c(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme) -> float:
    """rP2C of one image: mean point-to-curve distance in percent of the ground-truth reference length."""
    return 100.0 * float(p2c_distances(pred, gt, scheme).mean()) / scheme.reference_length(np.asarray(gt, float))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    p95: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(values: np.ndarray) -> Summary:
    """Mean, median and 95th percentile (linear interpolation) over images."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    return Summary(int(v.size), float(v.mean()), float(np.median(v)), float(np.percentile(v, 95)))


# ---------------------------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class ICCResult:
    form: str
    icc: float
    ci_low: float
    ci_high: float
    f: float
    df1: int
    df2: int
    p: float
    n_subjects: int
    n_raters: int

    def as_dict(self) -> dict:
        return asdict(self)


ICC_FORM = "ICC(A,1): two-way random effects, absolute agreement, single measurement (Shrout-Fleiss ICC(2,1))"


def icc_a1(ratings: np.ndarray, confidence: float = 0.95) -> ICCResult:
    """ICC(A,1) of an (n subjects, k raters) matrix, with McGraw & Wong's F-based confidence interval."""
    y = np.asarray(ratings, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"ICC needs an (n >= 2, k >= 2) ratings matrix, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("ICC ratings contain NaN or infinite values")
    n, k = y.shape
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((y - grand) ** 2).sum() - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    df1, df2 = n - 1, (n - 1) * (k - 1)
    scale = max(msr, msc, mse, 1e-300)
    if mse <= 1e-12 * scale and msc <= 1e-12 * scale:
        # Raters agree exactly: perfect agreement when the subjects vary at all, undefined otherwise.
        value = 1.0 if msr > 0 else float("nan")
        return ICCResult(ICC_FORM, value, value, value, float("inf"), df1, df2, 0.0, n, k)
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    icc = (msr - mse) / denom
    f = msr / mse if mse > 0 else float("inf")
    p = float(stats.f.sf(f, df1, df2))
    alpha = 1.0 - confidence
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    f_star = stats.f.ppf(1 - alpha / 2, n - 1, v)
    f_lower = stats.f.ppf(1 - alpha / 2, v, n - 1)
    low = n * (msr - f_star * mse) / (f_star * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_lower * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_lower * msr)
    return ICCResult(ICC_FORM, float(icc), float(low), float(high), float(f), df1, df2, p, n, k)


@dataclass(frozen=True)
class Agreement:
    """Agreement of automated against reference angles (degrees)."""

    n: int
    icc: ICCResult | None
    mad: float  # mean absolute difference
    mad_sd: float  # SD of the absolute differences
    bias: float  # mean of (automated - reference)
    bias_sd: float  # SD of (automated - reference)
    loa_low: float  # bias - 1.96 SD
    loa_high: float  # bias + 1.96 SD
    max_abs_diff: float
    sign_errors: int  # opposite signs and |difference| > sign_tolerance_deg
    sign_tolerance_deg: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["icc"] = self.icc.as_dict() if self.icc else None
        return d


def bland_altman(automated: np.ndarray, reference: np.ndarray) -> tuple[float, float, float, float]:
    """Bias (mean of automated - reference), its SD (ddof 1) and the 95% limits of agreement."""
    d = np.asarray(automated, float) - np.asarray(reference, float)
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    return bias, sd, bias - 1.96 * sd, bias + 1.96 * sd


def sign_errors(automated: np.ndarray, reference: np.ndarray, tolerance_deg: float = 1.0) -> np.ndarray:
    """Mask of cases read on the wrong side of zero (varus for valgus or back) by more than ``tolerance_deg``.

    A case counts when the two angles have opposite signs and differ by more than the tolerance, so a
    near-zero disagreement such as +0.3 vs -0.2 is not a sign error but +0.4 vs -0.8 is.
    """
    a = np.asarray(automated, float)
    r = np.asarray(reference, float)
    return (np.sign(a) * np.sign(r) < 0) & (np.abs(a - r) > tolerance_deg)


def agreement(automated: np.ndarray, reference: np.ndarray, sign_tolerance_deg: float = 1.0) -> Agreement:
    """All Table 2 statistics for one method (FTS or FNTS) and one phase."""
    a = np.asarray(automated, float)
    r = np.asarray(reference, float)
    if a.shape != r.shape or a.ndim != 1:
        raise ValueError(f"automated and reference must be equal-length vectors, got {a.shape} and {r.shape}")
    n = a.size
    if n == 0:
        nan = float("nan")
        return Agreement(0, None, nan, nan, nan, nan, nan, nan, nan, 0, sign_tolerance_deg)
    absd = np.abs(a - r)
    bias, sd, lo, hi = bland_altman(a, r)
    icc = icc_a1(np.column_stack([r, a])) if n >= 2 else None
    return Agreement(
        n=n, icc=icc, mad=float(absd.mean()), mad_sd=float(absd.std(ddof=1)) if n > 1 else 0.0,
        bias=bias, bias_sd=sd, loa_low=lo, loa_high=hi, max_abs_diff=float(absd.max()),
        sign_errors=int(sign_errors(a, r, sign_tolerance_deg).sum()), sign_tolerance_deg=sign_tolerance_deg,
    )


def bootstrap_mean(values: np.ndarray, resamples: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval: ``(mean, low, high)``. For paired comparisons,
    ``values`` are the per-case differences, so the interval is that of the mean difference."""
    v = np.asarray(values, float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"bootstrap needs at least 2 finite values, got {v.size}")
    if resamples < 100:
        raise ValueError(f"bootstrap needs at least 100 resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(v.mean()), float(low), float(high)


def accuracy(predicted: list, truth: list) -> float:
    """Fraction of equal labels."""
    if len(predicted) != len(truth):
        raise ValueError("predicted and truth must have the same length")
    if not truth:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


# ---------------------------------------------------------------------------------------------- error sources
# The aTFA is the tibial axis's direction minus the femoral axis's, so its error splits exactly into the two axes'
# errors; the FNTS femoral axis ends at the notch midpoint, whose offset says which landmarks carry the error.

ERROR_SOURCES = ("femoral_fnts_deg", "femoral_fts_deg", "tibial_deg", "notch_lateral_pct", "notch_distal_pct")


def axis_direction_deg(axis: Axis, laterality: str) -> float:
    """Direction of ``axis`` (proximal to distal) from the image's downward vertical, degrees, positive toward the
    lateral side (a right knee's image is read mirrored), so that aTFA = tibial direction - femoral direction."""
    dx = axis.distal[0] - axis.proximal[0]
    dy = axis.distal[1] - axis.proximal[1]
    return math.degrees(math.atan2(-dx if laterality == "R" else dx, dy))


def plateau_frame(reference: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The true knee's own frame from its (medial, lateral) plateau corners: the plateau width, the unit vector along
    the plateau toward the lateral corner, and the unit vector across it pointing down the image (distally for a
    knee within +-90 degrees of upright)."""
    medial, lateral = np.asarray(reference, np.float64)
    length = float(np.linalg.norm(lateral - medial))
    across = (lateral - medial) / length
    down = np.array([-across[1], across[0]])
    return length, across, (down if down[1] >= 0 else -down)


def error_sources(pred: AlignmentResult, truth: AlignmentResult, laterality: str, reference: np.ndarray) -> dict:
    """Where an aTFA error comes from: each axis's direction error (prediction minus truth, degrees, positive
    toward lateral; FNTS error = tibial - femoral_fnts) and the notch midpoint's offset in percent of the plateau
    width along the true plateau (lateral positive) and across it (distal positive). ``pred`` and ``truth``
    must be measured at the same shaft levels, with the true laterality; ``reference``: the true (medial,
    lateral) plateau corners."""
    def turn(p: Axis, t: Axis) -> float:
        return (axis_direction_deg(p, laterality) - axis_direction_deg(t, laterality) + 180.0) % 360.0 - 180.0

    length, across, down = plateau_frame(reference)
    offset = np.subtract(pred.femoral_axis_fnts.distal, truth.femoral_axis_fnts.distal)
    return {"femoral_fnts_deg": turn(pred.femoral_axis_fnts, truth.femoral_axis_fnts),
            "femoral_fts_deg": turn(pred.femoral_axis_fts, truth.femoral_axis_fts),
            "tibial_deg": turn(pred.tibial_axis, truth.tibial_axis),
            "notch_lateral_pct": 100.0 * float(offset @ across) / length,
            "notch_distal_pct": 100.0 * float(offset @ down) / length}


def summarize_error_sources(rows: list[dict]) -> dict:
    """Per quantity of ``error_sources``: n, mean (the bias) and mean absolute value over ``rows``."""
    out = {"n": len(rows)}
    for key in ERROR_SOURCES:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = {"mean": float(values.mean()) if len(values) else math.nan,
                    "mad": float(np.abs(values).mean()) if len(values) else math.nan}
    return out
