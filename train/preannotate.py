"""Pre-annotate radiographs with a weights bundle: the node's own readings as landmark files and a manifest.

``knee-train preannotate --weights W --images DIR --out OUT`` reads every DICOM file under ``DIR`` that the node
would process (knee AP or PA projection radiographs by their attributes, ``model.selection``; ``--any-view`` reads
every image, for exports whose tags were stripped) with the node's inference (tags as the files carry them, every
check as in production) and writes, per radiograph it reads, a JSON annotation in that image's pixels
(``OUT/annotations/<file name>.json``, readable by ``train.data.annotations``) and one row of ``OUT/manifest.csv``
(``train.data.manifest``; written row by row, so an interrupted run leaves a manifest of what it wrote). Two uses:

- a starting point for a person annotating a hospital's own radiographs: correct the points, do not place them;
- self-training on unlabelled radiographs of a new source: fine-tune on the confident readings
  (``train/configs/loro-2d-selftrain.yaml``, ``docs/results/self-training-on-unlabelled-images.md``).

Only confident readings get a training split (``train``, or ``val`` for a fixed fraction chosen from the SOP
Instance UID's hash, so a rerun splits alike); with ``--all`` the low-confidence ones are written as well, with the
split ``flagged``, which no run trains on until a person has looked at them. Points beyond the image (a tightly
collimated shaft) are written as the model's estimates and listed as ``unseen``: the loader accepts them there and
the landmark stages are not trained on them; a reading whose plateau corners leave the image is not written. Nothing
here logs a patient's name or ID: the log names a file by its number, and its path only at DEBUG level (a file name
may hold a patient's name).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.errors

from model.preprocess import UnsupportedImage
from model.scheme import load_scheme
from model.selection import skip_reason

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ("image", "landmarks", "laterality", "phase", "split", "status", "confidence", "warnings")
FLAGGED_SPLIT = "flagged"


@dataclass
class PreannotationSummary:
    read: int = 0
    written: int = 0
    partial: int = 0  # written with points beyond the image (listed as unseen)
    skipped: Counter | None = None  # reason -> count
    splits: Counter | None = None  # split -> count

    def as_dict(self) -> dict:
        return {"read": self.read, "written": self.written, "with_points_beyond_the_image": self.partial,
                "skipped": dict(self.skipped or {}), "splits": dict(self.splits or {})}


def dicom_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (or ``root`` itself), sorted; which are DICOM is found on reading."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file())


def split_for(uid: str, val_fraction: float) -> str:
    """``val`` for a fixed ``val_fraction`` of instances (by the UID's SHA-256), ``train`` otherwise."""
    h = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2 ** 64
    return "val" if h < val_fraction else "train"


def inside_image(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per point: within the image (pixel centres at integers, edges at -0.5 and size - 0.5)."""
    h, w = shape[:2]
    return (points[:, 0] >= -0.5) & (points[:, 0] <= w - 0.5) & (points[:, 1] >= -0.5) & (points[:, 1] <= h - 0.5)


def annotation_json(pred, uid: str, visible: np.ndarray) -> dict:
    """The annotation file of one reading: the points and labels the training module reads (points outside
    the image listed as ``unseen``: the model's estimates beyond it, never trained on), and the provenance
    a reviewer needs (which weights, how confident, why flagged)."""
    return {
        "landmarks": np.round(pred.landmarks, 3).tolist(),
        "unseen": [int(i) for i in np.flatnonzero(~visible)],
        "phase": pred.phase,
        "laterality": pred.laterality,
        "pixel_spacing_mm": list(pred.pixel_spacing_mm) if pred.pixel_spacing_mm else None,
        "scheme": pred.scheme_id,
        "sop_instance_uid": uid,
        "annotated_by": {"model": pred.model_name, "version": pred.model_version, "sha256": pred.model_sha256,
                         "status": pred.status, "confidence": round(float(pred.confidence), 4),
                         "laterality_source": pred.laterality_source, "warnings": list(pred.warnings),
                         "reviewed": False},
    }


def preannotate(aligner, images: Path, out: Path, val_fraction: float = 0.15, include_flagged: bool = False,
                progress: bool = True, any_view: bool = False) -> PreannotationSummary:
    """Read every knee AP radiograph under ``images`` (every DICOM image with ``any_view``) with ``aligner``;
    write annotations and ``out/manifest.csv``."""
    from tqdm import tqdm

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"the validation fraction must be at least 0 and below 1, got {val_fraction}")
    files = dicom_files(images)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    batch = _Batch(aligner, images, out, val_fraction, include_flagged, any_view, len(files))
    with (out / "manifest.csv").open("w", newline="") as manifest:
        writer = csv.DictWriter(manifest, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for number, path in enumerate(tqdm(files, desc="pre-annotating", unit="image", disable=not progress), 1):
            row = batch.read(path, number)
            if row is not None:
                writer.writerow(row)
                manifest.flush()
    (out / "summary.json").write_text(json.dumps(batch.summary.as_dict(), indent=2))
    return batch.summary


@dataclass
class _Batch:
    """One pre-annotation run: its settings, and the counts of what it did so far."""

    aligner: Any
    images: Path
    out: Path
    val_fraction: float
    include_flagged: bool
    any_view: bool
    total: int  # files to look at (for the log)
    summary: PreannotationSummary = field(
        default_factory=lambda: PreannotationSummary(skipped=Counter(), splits=Counter()))

    def read(self, path: Path, number: int) -> dict | None:
        """Read one file; write its annotation and return its manifest row, or count why not and return None."""
        summary = self.summary
        try:
            ds = pydicom.dcmread(str(path))
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            summary.skipped["not DICOM"] += 1
            return None
        summary.read += 1
        reason = None if self.any_view else skip_reason(ds)
        if reason is not None:  # a lateral view, another body part, not a radiograph: the node would skip it too
            summary.skipped[f"not processed by the node: {reason}"] += 1
            return None
        try:
            pred = self.aligner.predict(ds)
        except UnsupportedImage as exc:  # no knee, or pixels that cannot be decoded: counted, the batch goes on
            log.warning("file %d of %d not read: %s", number, self.total, exc)  # a file name may hold a name
            log.debug("file %d is %s", number, path)
            summary.skipped["not read"] += 1
            return None
        if pred.low_confidence and not self.include_flagged:
            summary.skipped["low confidence"] += 1
            return None
        visible = inside_image(pred.landmarks, (int(ds.Rows), int(ds.Columns)))
        if not visible[list(load_scheme(pred.phase).roles["reference"])].all():
            summary.skipped["plateau corners outside the image"] += 1
            return None
        summary.partial += int(not visible.all())
        uid = str(getattr(ds, "SOPInstanceUID", "") or path.name)
        split = FLAGGED_SPLIT if pred.low_confidence else split_for(uid, self.val_fraction)
        relative = path.relative_to(self.images) if self.images.is_dir() else Path(path.name)
        target = self.out / "annotations" / relative.parent / f"{relative.name}.json"  # UID-named: keep every dot
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(annotation_json(pred, uid, visible)))
        summary.written += 1
        summary.splits[split] += 1
        return {"image": os.path.relpath(path.resolve(), self.out.resolve()),
                "landmarks": str(target.relative_to(self.out)), "laterality": pred.laterality, "phase": pred.phase,
                "split": split, "status": pred.status, "confidence": f"{pred.confidence:.4f}",
                "warnings": "; ".join(pred.warnings)}
