"""Landmark annotation files: BoneFinder-style ``.pts`` and JSON, read and checked against the schemes.

``.pts``::

    version: 1
    n_points: 134
    {
    412.5 380.25
    ...
    }

JSON: ``{"landmarks": [[x, y], ...], "laterality": "L" | "R", "phase": "preop" | "postop", ...}``; the
ground-truth files the synthetic generator writes beside its DICOM files are read the same way (their exact
``atfa_fts_deg``/``atfa_fnts_deg`` and ``pixel_spacing_mm`` are kept when present). ``"unseen": [i, ...]`` lists
points the image does not show (a shaft beyond a tight field): their ``[x, y]`` are estimates and may lie outside the
image; training does not learn them and evaluation refuses such a file. The plateau corners must always be seen.

Coordinates are ``[x, y]`` in pixels of the image as stored, with pixel centres at integers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.scheme import load_scheme
from model.vocabulary import PHASE_NAMES


class AnnotationError(ValueError):
    """An annotation file is malformed or does not match the landmark scheme; the message names the file."""


@dataclass
class Annotation:
    landmarks: np.ndarray  # (N, 2)
    phase: str | None = None
    laterality: str | None = None
    pixel_spacing_mm: float | list | None = None
    atfa_fts_deg: float | None = None
    atfa_fnts_deg: float | None = None
    unseen: tuple[int, ...] = ()  # points beyond the image: estimates, not annotations (JSON only)


_HEADER = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(\S+)\s*$")


def read_pts(path: str | Path) -> np.ndarray:
    """Read a BoneFinder-style ``.pts`` file into an (N, 2) array, checking its declared ``n_points``."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("//")]
    header: dict[str, str] = {}
    try:
        start = lines.index("{")
    except ValueError:
        raise AnnotationError(f"{path}: no '{{' opening the point list") from None
    try:
        stop = lines.index("}", start)
    except ValueError:
        raise AnnotationError(f"{path}: no '}}' closing the point list") from None
    for ln in lines[:start]:
        m = _HEADER.match(ln)
        if not m:
            raise AnnotationError(f"{path}: unexpected header line {ln!r}")
        header[m.group(1).lower()] = m.group(2)
    points = []
    for number, ln in enumerate(lines[start + 1:stop], 1):
        parts = ln.split()
        if len(parts) != 2:
            raise AnnotationError(f"{path}: point {number} is {ln!r}, expected two numbers 'x y'")
        try:
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise AnnotationError(f"{path}: point {number} is {ln!r}, expected two numbers 'x y'") from None
    arr = np.array(points, dtype=np.float64).reshape(-1, 2)
    if "n_points" in header:
        try:
            declared = int(header["n_points"])
        except ValueError:
            raise AnnotationError(f"{path}: n_points is {header['n_points']!r}, not an integer") from None
        if declared != len(arr):
            raise AnnotationError(f"{path}: header says n_points: {declared} but the list has {len(arr)} points")
    return arr


def write_pts(path: str | Path, points: np.ndarray) -> Path:
    """Write points as a BoneFinder-style ``.pts`` file (version 1)."""
    path = Path(path)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    path.write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")
    return path


def read_annotation_json(path: str | Path) -> Annotation:
    """Read a JSON annotation (or a synthetic ground-truth file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "landmarks" not in data:
        raise AnnotationError(f"{path}: expected an object with a 'landmarks' list of [x, y] pairs")
    try:
        landmarks = np.asarray(data["landmarks"], dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: 'landmarks' must be a list of [x, y] number pairs") from None
    if landmarks.ndim != 2 or landmarks.shape[1] != 2:
        raise AnnotationError(f"{path}: 'landmarks' must be a list of [x, y] pairs, got shape {landmarks.shape}")

    def opt_float(key: str) -> float | None:
        return float(data[key]) if data.get(key) is not None else None

    unseen = data.get("unseen") or []
    if (not isinstance(unseen, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in unseen)
            or any(i < 0 or i >= len(landmarks) for i in unseen)):
        raise AnnotationError(f"{path}: 'unseen' must be a list of point indices in 0..{len(landmarks) - 1}")

    return Annotation(
        landmarks=landmarks,
        phase=data.get("phase"),
        laterality=data.get("laterality"),
        pixel_spacing_mm=data.get("pixel_spacing_mm"),
        atfa_fts_deg=opt_float("atfa_fts_deg"),
        atfa_fnts_deg=opt_float("atfa_fnts_deg"),
        unseen=tuple(unseen),
    )


def read_annotation(path: str | Path) -> Annotation:
    """Read ``.pts`` or ``.json`` by suffix."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    suffix = path.suffix.lower()
    if suffix == ".pts":
        return Annotation(landmarks=read_pts(path))
    if suffix == ".json":
        return read_annotation_json(path)
    raise AnnotationError(f"{path}: unknown annotation format {suffix!r}; expected .pts or .json")


def resolve_phase(path: str | Path, n_points: int, phase: str | None) -> str:
    """The phase whose scheme the annotation follows; raises naming the file when the count does not fit."""
    counts = {p: load_scheme(p).n_points for p in PHASE_NAMES}
    if phase is not None:
        if phase not in PHASE_NAMES:
            raise AnnotationError(f"{path}: phase {phase!r} is not one of {PHASE_NAMES}")
        if n_points != counts[phase]:
            scheme = load_scheme(phase)
            raise AnnotationError(f"{path}: {n_points} landmarks, but the {phase} scheme {scheme.id} "
                                  f"has {counts[phase]}")
        return phase
    for p, count in counts.items():
        if n_points == count:
            return p
    expected = " or ".join(f"{c} ({p})" for p, c in counts.items())
    raise AnnotationError(f"{path}: {n_points} landmarks match no scheme; expected {expected}")
