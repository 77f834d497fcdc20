"""Datasets: the common sample type, synthetic and real annotated sources, seed splits, and the per-stage
network inputs/targets."""

from train.data.annotations import AnnotationError, read_annotation, read_pts, write_pts
from train.data.manifest import ManifestError, load_entry, load_manifest, read_directory, read_manifest
from train.data.sample import KneeSample, coarsen
from train.data.splits import SeedLeakError, held_out_seeds, training_seeds, validation_seeds
from train.data.store import SampleStore

__all__ = [
    "AnnotationError", "KneeSample", "ManifestError", "SampleStore", "SeedLeakError", "coarsen", "held_out_seeds",
    "load_entry", "load_manifest", "read_annotation", "read_directory", "read_manifest", "read_pts",
    "training_seeds", "validation_seeds", "write_pts",
]
