"""Which femoral axis should aLDFA and the femoral component angle use? The evidence behind ``PANEL_FEMORAL_AXIS``.

    python tests/bench/bench_femoral_axis.py [--weights PATH] [--data synthetic:test xray3d:test] [--n 100]

The panel (``model.measurements``) can take the femoral anatomical axis through the shaft midpoints at two levels
(``fts``, 0.8 and 1.3 plateau widths: a baseline of about half a plateau width) or from the proximal shaft midpoint
to the notch midpoint (``fnts``: about 1.3 plateau widths, the axis as drawn on a knee film). For every knee the
node reads in its true phase and on its true side, this bench measures both angles both ways on the same predicted
landmarks and at the same shaft levels, against the ground truth measured the same way (the paper's levels, as
``knee-train evaluate`` does), and prints MAD and ICC(A,1) over the knees the node measured confidently and over
all it measured. Where the renderer knows them (``xray3d``) it also prints how far each definition, on the
ground-truth landmarks, lies from the projected 3D diaphyseal axis (``exact``) and from the 3D design values.
"""

from __future__ import annotations

import argparse

import numpy as np

ANGLES = ("aldfa", "femoral_component")
AXES = ("fts", "fnts")


def measure_both(aligner, sample) -> dict | None:
    """``{axis: {angle: (pred, truth, node status, exact, design)}}`` for one knee; None when the node read another
    phase or side, or failed."""
    from model.measurements import compute_measurements
    from model.preprocess import UnsupportedImage

    try:
        pred = aligner.predict_image(sample.image, sample.laterality, sample.pixel_spacing_mm)
    except UnsupportedImage:
        return None
    if pred.phase != sample.phase or pred.laterality != sample.laterality:
        return None
    names = [n for n in ANGLES if n in pred.measurements and pred.measurements[n].value is not None]
    known = sample.meta.get("panel") or {}
    out = {}
    for axis in AXES:
        p = compute_measurements(pred.landmarks, sample.scheme, pred.laterality, sample.pixel_spacing_mm,
                                 levels=pred.alignment.levels, names=names, femoral_axis=axis)
        t = compute_measurements(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm,
                                 names=names, femoral_axis=axis)
        out[axis] = {n: (p[n].value, t[n].value, pred.measurements[n].status, (known.get("projected") or {}).get(n),
                         (known.get("design") or {}).get(n)) for n in names if p[n].value is not None}
    return out


def report(rows: list[dict]) -> list[str]:
    from train.metrics import agreement

    lines = []
    for angle in ANGLES:
        for axis in AXES:
            got = [r[axis][angle] for r in rows if angle in r[axis] and r[axis][angle][1] is not None]
            if not got:
                continue
            text = []
            for subset, sel in (("confident", [g for g in got if g[2] == "ok"]), ("all measured", got)):
                a = agreement(np.array([g[0] for g in sel], float), np.array([g[1] for g in sel], float))
                icc = f"{a.icc.icc:.3f}" if a.icc else "-"
                text.append(f"{subset} n={a.n} MAD {a.mad:.2f} deg, ICC {icc}")
            for name, k in (("exact", 3), ("design", 4)):
                ref = [(g[1], g[k]) for g in got if g[k] is not None]
                if ref:
                    text.append(f"truth vs {name} {np.mean([abs(x - y) for x, y in ref]):.2f} deg")
            lines.append(f"  {angle:17s} {axis:4s}: " + "; ".join(text))
    return lines


def main() -> None:
    from model.inference import KneeAligner
    from model.weights import DEFAULT_WEIGHTS
    from train.evaluate import resolve_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="bundle (default: the shipped)")
    ap.add_argument("--data", nargs="+", default=["synthetic:test", "xray3d:test"], help="evaluation sets")
    ap.add_argument("--n", type=int, default=100, help="cases per phase of a synthetic set")
    ap.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = ap.parse_args()
    aligner = KneeAligner.load(args.weights, device="cpu")
    for spec in args.data:
        rows = [r for sample in resolve_data(spec, args.n, args.workers, progress=False).samples()
                if (r := measure_both(aligner, sample)) is not None]
        print(f"{args.weights} on {spec} ({len(rows)} knees read in their phase and side):")
        print("\n".join(report(rows)))


if __name__ == "__main__":
    main()
