"""Training and validation data for a run, held in RAM: synthetic cases rendered once (optionally cached in an
``.npz`` file so that a resumed run does not render again) or the images of a manifest, downsampled."""

from __future__ import annotations

import logging
from pathlib import Path

from train.data.manifest import load_manifest
from train.data.sample import coarsen
from train.data.splits import training_seeds, validation_seeds
from train.data.store import SampleStore
from train.data.synthetic import render_store
from train.fitting.config import ManifestData, RunConfig, SyntheticData

log = logging.getLogger(__name__)


def phases_needed(cfg: RunConfig) -> list[str]:
    """The phases a run's stages train on: the global stage sees both."""
    if "global" in cfg.stages:
        return ["preop", "postop"]
    return [s.removeprefix("local_") for s in ("local_preop", "local_postop") if s in cfg.stages]


def _synthetic(data: SyntheticData, phases: list[str]) -> tuple[SampleStore, SampleStore]:
    counts = {"preop": data.n_train_preop, "postop": data.n_train_postop}
    train_seeds = {p: training_seeds(p, counts[p], data.seed_offset) for p in phases}
    val_seeds = {p: validation_seeds(p, data.n_val_per_phase) for p in phases}
    from train.synth import GENERATOR_VERSION

    description = {"train": train_seeds, "val": val_seeds, "spacing_mm": data.spacing_mm,
                   "hard_fraction": data.hard_fraction, "generator": GENERATOR_VERSION}
    if data.cache_file and Path(data.cache_file).exists():
        store, saved = SampleStore.load(data.cache_file)
        if saved.get("description") == description:
            log.info("loaded %d rendered cases from %s", len(store), data.cache_file)
            return store.split(saved["n_train"])
        log.info("cache %s was made for other seeds or spacing: rendering again", data.cache_file)
    train = render_store(train_seeds, data.spacing_mm, data.render_workers, data.hard_fraction)
    val = render_store(val_seeds, data.spacing_mm, data.render_workers)
    if data.cache_file:
        SampleStore.concat(train, val).save(data.cache_file, {"description": description, "n_train": len(train)})
    return train, val


def _manifest(data: ManifestData, phases: list[str]) -> tuple[SampleStore, SampleStore]:
    def load(split: str | None) -> SampleStore:
        samples = load_manifest(data.manifest, split)
        return SampleStore(coarsen(s, data.spacing_mm, data.max_side) for s in samples if s.phase in phases)

    train = load(data.train_split)
    val = load(data.val_split) if data.val_split else SampleStore()
    return train, val


def build_data(cfg: RunConfig) -> tuple[SampleStore, SampleStore]:
    """``(train, val)`` stores for the run's stages."""
    phases = phases_needed(cfg)
    if isinstance(cfg.data, SyntheticData):
        return _synthetic(cfg.data, phases)
    return _manifest(cfg.data, phases)
