"""Generate a folder of synthetic AP knee radiographs as DICOM files with ground-truth JSON beside each.

Backs ``knee-train synth --n N --out DIR [--seed S] [--start I] [--phase P] [--hard] [--variant NAME]``. Case ``i``
of a run with seed ``S`` uses the seed ``case_seed(S, i)``, so any single file can be regenerated alone (``--start i
--n 1``). A projection whose outline misses a landmark level is drawn again, as for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from train.data.synthetic import render_synthetic
from train.synth.dicom_writer import write_dicom


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` in a run seeded with ``seed`` (independent streams per case)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generate(n: int, out_dir: str | Path, seed: int = 0, phase: str | None = None, hard: bool = False,
             compress: str | None = None, drop_laterality: float = 0.0, progress: bool = True,
             renderer: str = "2d", variants: Sequence[str] = (), start: int = 0) -> list[Path]:
    """Write ``n`` cases to ``out_dir`` as ``synth_s<seed>_<i>.dcm`` + ``.json``, ``i`` from ``start`` (a single
    file of a larger run written again alone); returns the DICOM paths.
    ``renderer``: "2d" (this package) or "3d" (``train.xray3d``, files named ``xray3d_s<seed>_<i>``).

    ``phase``: None (mixed), ``"preop"`` or ``"postop"``. ``compress``: None, ``"jpeg2000"`` or ``"rle"``.
    ``drop_laterality``: fraction of files written without laterality tags (chosen per case, reproducibly).
    ``variants`` (2d only): widenings of the generator (``VARIANTS``: ``implant_designs``, ``dense_plates``,
    ``filled_notch``).
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got {n} and {start}")
    stem = "synth" if renderer == "2d" else "xray3d"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(start, start + n), desc="synthetic knees", unit="image", disable=not progress):
        s = case_seed(seed, i)
        keep_tags = np.random.default_rng([s, 7]).random() >= drop_laterality
        image = render_synthetic(s, phase=phase, hard=hard, renderer=renderer, variants=variants)  # redraws a miss
        paths.append(write_dicom(image, out / f"{stem}_s{seed}_{i:05d}.dcm", laterality_tags=keep_tags,
                                 compress=compress, number=i + 1))
    return paths
