"""How well the exposed-field check (``model.exposure``) finds the shaft the renderers really exposed, per threshold.

    python tests/bench/bench_exposure.py [--n 80] [--workers 2] [--thresholds 0.08 0.06 0.04 0.03 0.02]

Both renderers' *training* seeds (never the held-out sets), 40 % of them from the hard distribution (tight fields,
shafts cut short), with their ground-truth landmarks, so that only the check is measured, not the network. For each
bone the check chooses its axis levels (``model.alignment.choose_bone_levels``) from the levels whose cortex step is
at least the threshold, and this is compared with the ground truth's exposed extent:

- lost: the ground truth shows at least the minimum of shaft, the check finds too little (the bone is flagged);
- shorter: the check's far level is more than 0.1 plateau widths nearer the joint than the exposed extent;
- beyond: the check's far level is more than 0.1 plateau widths past the exposed extent (an axis through points the
  network had to guess under the collimator).

It also prints the distribution of the steps at exposed levels and at levels under the collimator (at least 0.2
plateau widths past the field's edge).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def bone_rows(sample) -> list[dict]:
    """Per bone: its ground-truth exposed extent and every in-image level's cortex step and exposure."""
    from model.exposure import cortex_steps
    from train.evaluate import exposed_extent

    length = float(np.linalg.norm(sample.reference[1] - sample.reference[0]))
    h, w = sample.image.shape
    pts = sample.landmarks
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    visible = np.asarray(sample.meta["visible"])
    pairs = {(bone, level): (m, lt) for bone, rows in sample.scheme.shaft_levels.items()
             for level, m, lt in rows if inside[m] and inside[lt]}
    steps = cortex_steps(sample.image, pts, pairs, length)  # one resampling of the image for both bones
    return [{"phase": sample.phase, "bone": bone, "extent": exposed_extent(sample, bone),
             "levels": {lv: (steps[(b, lv)], bool(visible[m] and visible[lt]))
                        for (b, lv), (m, lt) in pairs.items() if b == bone}}
            for bone in sample.scheme.shaft_levels]


def score(bones: list[dict], threshold: float) -> Counter:
    """Counts of bones, bones with enough exposed shaft, and the check's lost / shorter / beyond at ``threshold``."""
    from model.alignment import MIN_LEVEL, choose_bone_levels

    c: Counter = Counter()
    for b in bones:
        chosen = choose_bone_levels(b["bone"], {lv for lv, (step, _) in b["levels"].items() if step >= threshold})
        enough = b["extent"] >= MIN_LEVEL[b["bone"]] - 1e-9
        c["bones"] += 1
        c["enough"] += enough
        c["lost"] += enough and chosen is None
        c["shorter"] += enough and chosen is not None and chosen[0] < b["extent"] - 0.15
        c["beyond"] += chosen is not None and chosen[0] > b["extent"] + 0.15
    return c


def main() -> None:
    from train.data.splits import training_seeds
    from train.data.synthetic import render_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80, help="training seeds per phase and renderer")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.08, 0.06, 0.04, 0.03, 0.02])
    args = ap.parse_args()
    spacing = {"2d": 0.5, "3d": 0.75}  # the training configs' spacings
    for renderer in ("2d", "3d"):
        jobs = [(seed, phase, k % 5 < 2, spacing[renderer], False, renderer)
                for phase in ("preop", "postop") for k, seed in enumerate(training_seeds(phase, args.n))]
        bones = [b for s in render_samples(jobs, args.workers, progress=False) for b in bone_rows(s)]
        for phase in ("preop", "postop"):
            sub = [b for b in bones if b["phase"] == phase]
            exposed = [st for b in sub for st, vis in b["levels"].values() if vis]
            under = [st for b in sub for lv, (st, vis) in b["levels"].items() if not vis and lv > b["extent"] + 0.15]
            print(f"{renderer} {phase}: steps at exposed levels (n {len(exposed)}) 1st/5th/50th percentile "
                  + " / ".join(f"{v:.3f}" for v in np.percentile(exposed, [1, 5, 50]))
                  + f"; under the collimator (n {len(under)}) 99th percentile / max "
                  + (" / ".join(f"{v:.3f}" for v in np.percentile(under, [99, 100])) if under else "-"))
            for t in args.thresholds:
                c = score(sub, t)
                print(f"  threshold {t:.2f}: bones {c['bones']}, with enough shaft {c['enough']}: lost {c['lost']}, "
                      f"shorter {c['shorter']}, beyond {c['beyond']}")


if __name__ == "__main__":
    main()
