"""How far each adaptive shaft level moves the ground truth's aTFA from the paper's levels, per bone and level.

    python tests/bench/bench_shaft_levels.py [--n 100] [--workers 1] [--near 0.8 | --span 0.5]

No network: both renderers' *training* seeds (never the held-out sets) with their ground-truth landmarks. For each
bone and each far level (up to the paper's 1.3 plateau widths, at least 0.2 beyond the near level), that bone's axis
is drawn from the far level to the near level (``--near``, by default the node's ``NEAR_LEVEL``; or ``--span``: the
level that far nearer the joint, as the node did before stop 23 with 0.5) and the other bone's at the paper's
levels, and the angle is compared with the one at the paper's levels (FNTS and FTS; mean absolute, 95th percentile
and largest change, in degrees). On the 3D renderer it is also compared with the exact angle between its projected
3D shaft axes (``atfa_axes_deg``). A level whose axis is a different measurement from the paper's (the shaft near
the joint is the metaphysis flaring into the condyles or the plateau) shows as a large change; ``MIN_LEVEL`` is set
where the FNTS angle moves less than 1 degree on average and 2 degrees at the 95th percentile on both renderers and
in both phases. Levels below the minimum are measured too, so that the table shows why.
"""

from __future__ import annotations

import argparse

import numpy as np

LEVELS = [round(0.1 * k, 1) for k in range(3, 14)]  # 0.3 .. 1.3 plateau widths
MIN_SPAN = 0.2  # the shortest axis measured here, in plateau widths


def near_level(far: float, available: set[float], near: float | None, span: float | None) -> float | None:
    """The near level paired with ``far``: ``near`` itself, or ``span`` nearer the joint (at most down to the
    outline's last level); None when the pair is shorter than ``MIN_SPAN`` or not on the outline."""
    level = round(max(min(available), far - span), 1) if span is not None else near
    return level if level in available and far - level >= MIN_SPAN - 1e-9 else None


def level_changes(sample, near: float | None, span: float | None
                  ) -> dict[tuple[str, float], tuple[float, float, float | None]]:
    """Per ``(bone, far level)``: the FNTS and FTS angle change from the paper's levels, and the FNTS angle's
    difference from the exact projected axes (None where the renderer has none)."""
    from model.alignment import ShaftLevels, compute_alignment

    lm, scheme, side = sample.landmarks, sample.scheme, sample.laterality
    paper = compute_alignment(lm, scheme, side)
    exact = sample.meta.get("atfa_axes_deg")
    out = {}
    for bone in ("femur", "tibia"):
        available = {round(lv, 1) for lv, _, _ in scheme.shaft_levels[bone]}
        for far in (lv for lv in LEVELS if lv in available):
            near_lv = near_level(far, available, near, span)
            if near_lv is None:
                continue
            levels = ShaftLevels(femur=(far, near_lv)) if bone == "femur" else ShaftLevels(tibia=(near_lv, far))
            at = compute_alignment(lm, scheme, side, levels=levels)
            out[(bone, far)] = (at.atfa_fnts_deg - paper.atfa_fnts_deg, at.atfa_fts_deg - paper.atfa_fts_deg,
                                None if exact is None else at.atfa_fnts_deg - exact)
    return out


def main() -> None:
    from model.alignment import MIN_LEVEL, NEAR_LEVEL
    from train.data.splits import training_seeds
    from train.data.synthetic import render_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="training seeds per phase and renderer")
    ap.add_argument("--workers", type=int, default=1)
    rule = ap.add_mutually_exclusive_group()
    rule.add_argument("--near", type=float, default=NEAR_LEVEL, help="the near level of every axis")
    rule.add_argument("--span", type=float, help="instead: the near level this far nearer the joint than the far one")
    args = ap.parse_args()
    spacing = {"2d": 0.5, "3d": 0.75}  # the training configs' spacings
    print(f"node's minimum far levels: {MIN_LEVEL}; near level: "
          + (f"far minus {args.span:.1f}" if args.span is not None else f"{args.near:.1f}"))
    for renderer in ("2d", "3d"):
        for phase in ("preop", "postop"):
            jobs = [(seed, phase, False, spacing[renderer], False, renderer) for seed in training_seeds(phase, args.n)]
            rows = [level_changes(s, args.near, args.span) for s in render_samples(jobs, args.workers, progress=False)]
            print(f"{renderer} {phase} ({len(rows)} knees): change from the paper's levels, degrees "
                  "(mean abs / 95th pct / max)" + ("; FNTS minus the exact axes' angle (mean abs)" if renderer == "3d"
                                                   else ""))
            for key in sorted({k for r in rows for k in r}):
                fnts = np.abs([r[key][0] for r in rows if key in r])
                fts = np.abs([r[key][1] for r in rows if key in r])
                exact = [abs(r[key][2]) for r in rows if key in r and r[key][2] is not None]
                bone, far = key
                mark = "" if far >= MIN_LEVEL[bone] - 1e-9 else "  (below the minimum)"
                print(f"  {bone:5s} far {far:.1f}: FNTS {fnts.mean():.2f} / {np.percentile(fnts, 95):.2f} / "
                      f"{fnts.max():.2f}   FTS {fts.mean():.2f} / {np.percentile(fts, 95):.2f} / {fts.max():.2f}"
                      + (f"   vs exact {np.mean(exact):.2f}" if exact else "") + mark)


if __name__ == "__main__":
    main()
