"""Real annotated data: a manifest listing images (DICOM or PNG/TIFF) with their landmark files.

A manifest is a CSV file with a header, or a YAML/JSON file holding a list (or ``{"images": [...]}``) of
entries with these keys; paths are relative to the manifest's folder:

- ``image`` (required): a DICOM file, or an 8/16-bit greyscale PNG/TIFF/JPEG;
- ``landmarks`` (required): a ``.pts`` or ``.json`` annotation in that image's pixels, as acquired;
- ``laterality``: ``L``/``R`` (else from the JSON annotation, else from the DICOM tags; required somewhere);
- ``phase``: ``preop``/``postop`` (else from the annotation, else from the number of points);
- ``pixel_spacing_mm``: for PNGs (one number, or ``row col``); DICOM files carry their own;
- ``photometric``: ``MONOCHROME1`` for PNGs whose bone is dark (default ``MONOCHROME2``);
- ``split``: optional free label (e.g. ``train``/``val``/``test``) to select subsets.

Every error names the manifest line or the file that is wrong.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.errors
import yaml

from model.preprocess import load_radiograph, normalize_image
from train.data.annotations import AnnotationError, read_annotation, resolve_phase
from train.data.sample import LATERALITIES, KneeSample, as_spacing

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class ManifestError(ValueError):
    """A manifest is malformed or one of its entries cannot be used; the message names the entry."""


@dataclass(frozen=True)
class ManifestEntry:
    image: Path
    landmarks: Path
    laterality: str | None = None
    phase: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    photometric: str = "MONOCHROME2"
    split: str | None = None
    where: str = ""  # "manifest.csv line 3", for error messages


def _parse_spacing(value, where: str) -> tuple[float, float] | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, str):
            parts = [float(v) for v in value.replace(",", " ").replace("\\", " ").split()]
            return as_spacing(parts[0] if len(parts) == 1 else tuple(parts))
        return as_spacing(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: pixel_spacing_mm {value!r} is not a number or a 'row col' pair") from None


def _entry(raw: dict, base: Path, where: str) -> ManifestEntry:
    missing = [k for k in ("image", "landmarks") if not raw.get(k)]
    if missing:
        raise ManifestError(f"{where}: missing {', '.join(missing)}")
    laterality = (str(raw.get("laterality") or "").strip().upper()) or None
    if laterality is not None and laterality not in LATERALITIES:
        raise ManifestError(f"{where}: laterality {laterality!r} is not L or R")
    phase = (str(raw.get("phase") or "").strip().lower()) or None
    return ManifestEntry(
        image=base / str(raw["image"]),
        landmarks=base / str(raw["landmarks"]),
        laterality=laterality,
        phase=phase,
        pixel_spacing_mm=_parse_spacing(raw.get("pixel_spacing_mm"), where),
        photometric=str(raw.get("photometric") or "MONOCHROME2").strip().upper(),
        split=(str(raw.get("split") or "").strip() or None),
        where=where,
    )


def read_manifest(path: str | Path, split: str | None = None) -> list[ManifestEntry]:
    """Parse a CSV/YAML/JSON manifest (optionally only the entries of ``split``)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    base = path.parent
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        entries = [_entry(row, base, f"{path.name} line {i}") for i, row in enumerate(rows, 2)]
    elif suffix in (".yaml", ".yml", ".json"):
        data = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
        items = data.get("images") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ManifestError(f"{path}: expected a list of entries (or an 'images' list)")
        entries = [_entry(item, base, f"{path.name} entry {i}") for i, item in enumerate(items, 1)]
    else:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r}; expected .csv, .yaml or .json")
    if split is not None:
        entries = [e for e in entries if e.split == split]
    if not entries:
        raise ManifestError(f"{path}: no entries" + (f" with split {split!r}" if split else ""))
    return entries


def _read_image(entry: ManifestEntry) -> tuple[np.ndarray, tuple[float, float] | None, str | None]:
    """Normalised image, spacing and laterality tag (DICOM only) of an entry."""
    if not entry.image.exists():
        raise ManifestError(f"{entry.where}: image not found: {entry.image}")
    if entry.image.suffix.lower() in IMAGE_SUFFIXES:
        pixels = cv2.imread(str(entry.image), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ManifestError(f"{entry.where}: cannot read image {entry.image}")
        if pixels.ndim == 3:
            pixels = cv2.cvtColor(pixels[..., :3], cv2.COLOR_BGR2GRAY)
        return normalize_image(pixels, entry.photometric), entry.pixel_spacing_mm, None
    try:
        ds = pydicom.dcmread(str(entry.image))
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
        raise ManifestError(f"{entry.where}: {entry.image} is neither a known image format nor DICOM: {exc}") from None
    radiograph = load_radiograph(ds)
    return radiograph.image, entry.pixel_spacing_mm or radiograph.pixel_spacing_mm, radiograph.laterality_tag


def load_entry(entry: ManifestEntry) -> KneeSample:
    """Load one manifest entry into a ``KneeSample``, checking the annotation against the scheme."""
    annotation = read_annotation(entry.landmarks)
    phase = resolve_phase(entry.landmarks, len(annotation.landmarks), entry.phase or annotation.phase)
    image, spacing, tag = _read_image(entry)
    laterality = entry.laterality or (annotation.laterality or "").upper() or tag
    if laterality not in LATERALITIES:
        raise ManifestError(f"{entry.where}: laterality unknown for {entry.image.name}: give it in the manifest, "
                            "the JSON annotation or the DICOM ImageLaterality tag")
    h, w = image.shape
    pts = annotation.landmarks
    outside = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
    outside[list(annotation.unseen)] = False  # estimates beyond the image, declared as such
    if outside.any():
        raise AnnotationError(f"{entry.landmarks}: {int(outside.sum())} landmark(s) outside the {w}x{h} image "
                              f"{entry.image.name}, e.g. point {int(np.argmax(outside))}")
    return KneeSample(
        image=image, landmarks=pts, laterality=laterality, phase=phase,
        pixel_spacing_mm=spacing or as_spacing(annotation.pixel_spacing_mm), source=str(entry.image),
        atfa_fts_deg=annotation.atfa_fts_deg, atfa_fnts_deg=annotation.atfa_fnts_deg,
        meta={"split": entry.split} if entry.split else {}, unseen=annotation.unseen,
    )


def load_manifest(path: str | Path, split: str | None = None) -> list[KneeSample]:
    """Load every entry of a manifest."""
    return [load_entry(e) for e in read_manifest(path, split)]


def read_directory(path: str | Path) -> list[ManifestEntry]:
    """Entries for a folder of DICOM files each with a ground-truth JSON of the same name beside it
    (``case.dcm`` + ``case.json``, as ``knee-train synth`` writes them), searched recursively."""
    root = Path(path)
    if not root.is_dir():
        raise ManifestError(f"not a directory: {root}")
    entries = []
    for image in sorted(root.rglob("*.dcm")):
        truth = image.with_suffix(".json")
        if not truth.exists():
            raise ManifestError(f"{image}: no ground-truth file {truth.name} beside it")
        entries.append(ManifestEntry(image=image, landmarks=truth, where=str(image.relative_to(root))))
    if not entries:
        raise ManifestError(f"{root}: no .dcm files found")
    return entries
