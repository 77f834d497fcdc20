"""The one place that fixes which synthetic seeds are used for what.

Training and validation draw from their own ranges; the held-out test sets (376 pre-op + 376 post-op, the size of
the paper's test set, and the same number of hard cases) use fixed seeds from a range that training code refuses
(``check_training_seeds``). Pre-op and post-op cases of one split come from disjoint sub-ranges so that no seed
is rendered twice in one split.
"""

from __future__ import annotations

from collections.abc import Iterable

from model.vocabulary import POSTOP, PREOP

N_TEST_PER_PHASE = 376

# Half-open seed ranges [start, stop).
TRAIN_RANGE = (0, 1_000_000)
VAL_RANGE = (1_000_000, 1_100_000)
HELD_OUT_RANGE = (9_000_000, 10_000_000)

# Held-out sets: name -> {phase: first seed}; each phase uses N_TEST_PER_PHASE consecutive seeds.
HELD_OUT_SETS: dict[str, dict[str, int]] = {
    "test": {PREOP: 9_000_000, POSTOP: 9_100_000},
    "hard": {PREOP: 9_200_000, POSTOP: 9_300_000},
}
PHASE_OFFSET = {PREOP: 0, POSTOP: 500_000}  # within TRAIN_RANGE and (scaled) VAL_RANGE


class SeedLeakError(ValueError):
    """A seed reserved for held-out evaluation was asked for in training."""


def held_out_seeds(name: str, phase: str, n: int = N_TEST_PER_PHASE) -> list[int]:
    """The fixed seeds of held-out set ``name`` ("test" or "hard") for ``phase``."""
    if name not in HELD_OUT_SETS:
        raise KeyError(f"unknown held-out set {name!r}; known: {sorted(HELD_OUT_SETS)}")
    if not 0 < n <= N_TEST_PER_PHASE:
        raise ValueError(f"held-out sets have at most {N_TEST_PER_PHASE} cases per phase, asked for {n}")
    start = HELD_OUT_SETS[name][phase]
    return list(range(start, start + n))


def training_seeds(phase: str, n: int, offset: int = 0) -> list[int]:
    """``n`` training seeds for ``phase``, starting ``offset`` into that phase's sub-range."""
    start = TRAIN_RANGE[0] + PHASE_OFFSET[phase] + offset
    seeds = list(range(start, start + n))
    check_training_seeds(seeds)
    if seeds and seeds[-1] >= TRAIN_RANGE[0] + PHASE_OFFSET[phase] + 500_000:
        raise ValueError(f"{n} training seeds from offset {offset} overflow the {phase} sub-range")
    return seeds


def validation_seeds(phase: str, n: int) -> list[int]:
    """``n`` validation seeds for ``phase`` (disjoint from training and held-out seeds)."""
    start = VAL_RANGE[0] + PHASE_OFFSET[phase] // 10
    seeds = list(range(start, start + n))
    check_training_seeds(seeds)
    return seeds


def check_training_seeds(seeds: Iterable[int]) -> None:
    """Raise ``SeedLeakError`` when any seed lies in the held-out range."""
    lo, hi = HELD_OUT_RANGE
    leaked = [s for s in seeds if lo <= s < hi]
    if leaked:
        raise SeedLeakError(f"{len(leaked)} seed(s) reserved for held-out evaluation, e.g. {leaked[0]}")
