"""Training and validation data for a run, held in RAM: synthetic cases rendered once (optionally cached in an
``.npz`` file so that a resumed run does not render again) or the images of a manifest, downsampled."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from model.vocabulary import PHASE_NAMES, POSTOP, PREOP, STAGE_NAMES, STAGES
from train.data.manifest import ManifestError, load_entry, read_manifest
from train.data.sample import coarsen
from train.data.splits import training_seeds, validation_seeds
from train.data.store import SampleStore
from train.data.synthetic import render_store, renderer_version
from train.fitting.config import ManifestData, RunConfig, SyntheticData

log = logging.getLogger(__name__)


def phases_needed(cfg: RunConfig) -> list[str]:
    """The phases a run's stages train on: the global and implant stages see both."""
    if any(STAGES[s].phase is None for s in cfg.stages):
        return list(PHASE_NAMES)
    return [STAGES[s].phase for s in STAGE_NAMES if s in cfg.stages]


def _rendered(renderer: str, counts: dict[str, int], n_val: int, spacing: float, hard_fraction: float,
              workers: int, cache_file: str | None, phases: list[str], seed_offset: int = 0,
              progress: bool = True, variants: Sequence[str] = ()) -> tuple[SampleStore, SampleStore]:
    """Training and validation cases of one renderer, from its cache file when that was made the same way."""
    train_seeds = {p: training_seeds(p, counts[p], seed_offset) for p in phases if counts[p]}
    val_seeds = {p: validation_seeds(p, n_val) for p in phases if n_val}
    description = {"train": train_seeds, "val": val_seeds, "spacing_mm": spacing, "hard_fraction": hard_fraction,
                   "generator": renderer_version(renderer), **({"renderer": renderer} if renderer != "2d" else {}),
                   **({"variants": sorted(variants)} if variants else {})}
    if cache_file and Path(cache_file).exists():
        store, saved = SampleStore.load(cache_file)
        if saved.get("description") == description:
            log.info("loaded %d rendered %s cases from %s", len(store), renderer, cache_file)
            return store.split(saved["n_train"])
        log.info("cache %s was made for other seeds or spacing: rendering again", cache_file)
    train = render_store(train_seeds, spacing, workers, hard_fraction, renderer, progress, variants)
    val = render_store(val_seeds, spacing, workers, renderer=renderer, progress=progress, variants=variants)
    if cache_file:
        SampleStore.concat(train, val).save(cache_file, {"description": description, "n_train": len(train)})
    return train, val


def _synthetic(data: SyntheticData, phases: list[str], progress: bool = True) -> tuple[SampleStore, SampleStore]:
    counts = {PREOP: data.n_train_preop, POSTOP: data.n_train_postop}
    x3 = data.xray3d
    counts3 = {PREOP: x3.n_train_preop, POSTOP: x3.n_train_postop} if x3 is not None else {PREOP: 0, POSTOP: 0}
    if not any(counts[p] or counts3[p] for p in phases):  # checked before anything is rendered
        raise ValueError("data: no training cases (set n_train_preop/n_train_postop or xray3d counts)")
    trains, vals = [], []
    if any(counts[p] for p in phases):
        t, v = _rendered("2d", counts, data.n_val_per_phase, data.spacing_mm, data.hard_fraction,
                         data.render_workers, data.cache_file, phases, data.seed_offset, progress,
                         data.variants)
        trains.append(t)
        vals.append(v)
    if x3 is not None and (any(counts3[p] for p in phases) or x3.n_val_per_phase):
        # validation only (no training counts): a run that never trains on the 3D renderer still watches it
        t, v = _rendered("3d", counts3, x3.n_val_per_phase, x3.spacing_mm, x3.hard_fraction, data.render_workers,
                         x3.cache_file, phases, x3.seed_offset, progress=progress)
        trains.append(t)
        vals.append(v)
    return SampleStore.concat(*trains), SampleStore.concat(*vals)


def _manifest(data: ManifestData, phases: list[str]) -> tuple[SampleStore, SampleStore]:
    def load(split: str | None) -> SampleStore:
        entries = [e for m in data.manifests for e in read_manifest(m) if split is None or e.split == split]
        if not entries:
            raise ManifestError(f"{', '.join(data.manifests)}: no entries with split {split!r}")
        samples = (load_entry(e) for e in entries)
        return SampleStore(coarsen(s, data.spacing_mm, data.max_side) for s in samples if s.phase in phases)

    train = load(data.train_split)
    val = load(data.val_split) if data.val_split else SampleStore()
    return train, val


def build_data(cfg: RunConfig, progress: bool = True) -> tuple[SampleStore, SampleStore]:
    """``(train, val)`` stores for the run's stages."""
    phases = phases_needed(cfg)
    if isinstance(cfg.data, SyntheticData):
        return _synthetic(cfg.data, phases, progress)
    return _manifest(cfg.data, phases)
