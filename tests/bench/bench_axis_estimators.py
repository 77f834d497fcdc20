"""Where does the aTFA error of a knee read in the right phase and side come from: noise an estimator could average
away, or whole shafts read tilted? Three estimators on the same predicted landmarks, against the ground truth.

    python tests/bench/bench_axis_estimators.py [--weights PATH] [--data xray3d:val synthetic:val] [--n 80]

For every pre-op knee of the validation seeds that the node measures confidently in its true phase (laterality from
the tag, as a hospital's images carry it), at the shaft levels the node chose:

- ``network``: the angles as the node measures them (the paper's two-point axes);
- ``copies averaged``: the landmarks averaged with those of the mirrored copy and of the copies rotated by +-7 deg
  (mapped back to the image), i.e. test-time augmentation; the mirrored and +7 deg copies are the ones the
  consistency check measures anyway;
- ``least squares``: each shaft axis fitted through the midpoints of every level between its near and far level,
  not two of them (the FNTS femoral axis from that line at the far level to the notch);
- ``edge snap``: each shaft cortex point moved along the line through its pair to the strongest rise of the
  image towards the bone within 3 % of the plateau width, then the two-point axes.

It prints the FNTS and FTS mean absolute difference from the ground truth (the truth measured the paper's way at
the node's levels, as ``knee-train evaluate`` does) and the mean landmark error in % of the plateau width.
If the error were noise from landmark to landmark or copy to copy, averaging would lower it; it barely does
(kneealign-v2.9: xray3d:val FNTS 0.673 -> 0.638 deg with the copies, 0.796 by least squares; synthetic:val 0.217 ->
0.209, 0.225). The edge snap helps on the 3D renderer (0.603) and nearly doubles the 2D generator's error (0.401):
a rule tuned to one renderer's edges (docs/results/cpu-v16-candidate.md).
"""

from __future__ import annotations

import argparse

import numpy as np

SNAP_WINDOW = 0.03  # plateau widths either side of the predicted cortex point
COPY_DEGREES = (7.0, -7.0)


def snap_cortex(image: np.ndarray, point: np.ndarray, inward: np.ndarray, reach: float, step: float = 0.25
                ) -> np.ndarray:
    """``point`` moved along ``inward`` (unit vector towards the bone) to the steepest rise of the image within
    ``reach`` pixels either side (smoothed profile, parabolic sub-sample peak); unchanged where nothing rises."""
    n = int(2 * reach / step) + 1
    offsets = np.linspace(-reach, reach, n)
    from model.exposure import line_profile

    prof = line_profile(image.astype(np.float32), point - reach * inward, point + reach * inward, n)
    prof = prof.astype(np.float64)
    k = max(1, int(round(3 / step)))
    g = np.exp(-0.5 * (np.arange(-k, k + 1) * step) ** 2)
    slope = np.gradient(np.convolve(np.pad(prof, k, mode="edge"), g / g.sum(), mode="valid"))
    i = int(np.argmax(slope))
    if slope[i] <= 0:
        return point
    frac = 0.0
    if 0 < i < n - 1 and slope[i - 1] - 2 * slope[i] + slope[i + 1] < 0:
        frac = 0.5 * (slope[i - 1] - slope[i + 1]) / (slope[i - 1] - 2 * slope[i] + slope[i + 1])
    return point + (offsets[i] + frac * step) * inward


def edge_snapped(image: np.ndarray, points: np.ndarray, scheme, length: float) -> np.ndarray:
    out = points.copy()
    for rows in scheme.shaft_levels.values():
        for _, med, lat in rows:
            u = points[lat] - points[med]
            u = u / max(float(np.linalg.norm(u)), 1e-9)
            out[med] = snap_cortex(image, points[med], u, SNAP_WINDOW * length)
            out[lat] = snap_cortex(image, points[lat], -u, SNAP_WINDOW * length)
    return out


def least_squares_angles(points: np.ndarray, scheme, laterality: str, levels) -> tuple[float, float]:
    """(FNTS, FTS) with each shaft axis fitted through every level's midpoint from its near to its far level."""
    from model.alignment import signed_angle_deg

    def line(bone: str, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, dict]:
        mids = {round(lv, 1): (points[m] + points[lt]) / 2 for lv, m, lt in scheme.shaft_levels[bone]
                if lo - 1e-6 <= lv <= hi + 1e-6}
        xy = np.array(list(mids.values()))
        centre = xy.mean(0)
        direction = np.linalg.svd(xy - centre)[2][0]
        return centre, direction if direction[1] > 0 else -direction, mids  # pointing distally (+y)

    (f_far, f_near), (t_near, t_far) = levels.femur, levels.tibia
    fc, fd, fmids = line("femur", f_near, f_far)
    _, td, _ = line("tibia", t_near, t_far)
    far = fc + np.dot(fmids[round(f_far, 1)] - fc, fd) * fd
    a, b = scheme.roles["femoral_notch"]
    notch = (points[a] + points[b]) / 2
    flip = np.array([-1.0 if laterality == "R" else 1.0, 1.0])
    return signed_angle_deg((notch - far) * flip, td * flip), signed_angle_deg(fd * flip, td * flip)


def copies_averaged(aligner, sample, pred) -> np.ndarray:
    """The landmarks of ``pred`` averaged with those of the mirrored and rotated copies, in the image's pixels."""
    from model.frames import apply_affine, invert_affine, mirror_points
    from model.inference import rotated, rotation
    from model.preprocess import UnsupportedImage

    image, tag, spacing, levels = sample.image, sample.laterality, sample.pixel_spacing_mm, pred.alignment.levels
    sets = [pred.landmarks]
    mirrored = aligner._measure(np.ascontiguousarray(image[:, ::-1]), {"L": "R", "R": "L"}[tag], spacing,
                                panel=False, at_levels=levels)
    sets.append(mirror_points(mirrored.landmarks, image.shape[1]))
    for degrees in COPY_DEGREES:
        try:
            copy = aligner._measure(rotated(image, degrees), tag, spacing, panel=False, at_levels=levels)
        except UnsupportedImage:
            continue
        sets.append(apply_affine(invert_affine(rotation(image.shape, degrees)[0]), copy.landmarks))
    return np.mean(sets, axis=0)


def main() -> None:
    from model.alignment import compute_alignment
    from model.inference import KneeAligner
    from model.preprocess import UnsupportedImage
    from train.evaluate import resolve_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="bundle (default: the shipped weights)")
    ap.add_argument("--data", nargs="+", default=["xray3d:val", "synthetic:val"])
    ap.add_argument("--n", type=int, default=80, help="pre-op knees per set")
    args = ap.parse_args()
    aligner = KneeAligner.load(args.weights, device="cpu")
    aligner.consistency = False  # the copies are measured here, not as a check
    for spec in args.data:
        errors: dict[str, list] = {k: [] for k in ("network", "copies averaged", "least squares", "edge snap")}
        for sample in resolve_data(spec, args.n, progress=False, phases=("preop",)).samples():
            try:
                pred = aligner.predict_image(sample.image, sample.laterality, sample.pixel_spacing_mm)
            except UnsupportedImage:
                continue
            if pred.phase != sample.phase or pred.low_confidence:
                continue
            levels, scheme, gt = pred.alignment.levels, sample.scheme, sample.landmarks
            truth = compute_alignment(gt, scheme, sample.laterality, levels=levels)
            corners = gt[list(scheme.roles["reference"])]
            length = float(np.linalg.norm(corners[1] - corners[0]))  # the true plateau width, as rP2P

            def two_point(points: np.ndarray) -> tuple[float, float, float]:
                a = compute_alignment(points, scheme, sample.laterality, levels=levels)
                return (abs(a.atfa_fnts_deg - truth.atfa_fnts_deg), abs(a.atfa_fts_deg - truth.atfa_fts_deg),
                        100 * float(np.linalg.norm(points - gt, axis=1).mean()) / length)

            errors["network"].append(two_point(pred.landmarks))
            errors["copies averaged"].append(two_point(copies_averaged(aligner, sample, pred)))
            fnts, fts = least_squares_angles(pred.landmarks, scheme, sample.laterality, levels)
            errors["least squares"].append((abs(fnts - truth.atfa_fnts_deg), abs(fts - truth.atfa_fts_deg),
                                            errors["network"][-1][2]))
            errors["edge snap"].append(two_point(edge_snapped(sample.image, pred.landmarks, scheme, length)))
        n = len(errors["network"])
        print(f"{spec}: {n} pre-op knees measured confidently in their phase (of the first {args.n})")
        print(f"  {'estimator':16s} {'FNTS MAD':>9s} {'FTS MAD':>8s} {'landmarks (% plateau)':>22s}")
        for name, rows in errors.items():
            e = np.asarray(rows)
            print(f"  {name:16s} {e[:, 0].mean():8.3f}° {e[:, 1].mean():7.3f}° {e[:, 2].mean():21.2f}")


if __name__ == "__main__":
    main()
