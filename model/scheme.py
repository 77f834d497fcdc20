"""Landmark schemes: the versioned JSON files that name every landmark, its curve and its role.

A scheme is defined for a *left* knee seen on an AP radiograph (right knees are mirrored
first): x grows toward the lateral side (fibula), y grows distally. Pairs in ``roles`` are
``[medial, lateral]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from model.vocabulary import PHASE_NAMES

SCHEME_DIR = Path(__file__).parent / "schemes"
REQUIRED_ROLES = (
    "reference",
    "femoral_shaft_proximal",
    "femoral_shaft_distal",
    "femoral_notch",
    "tibial_shaft_proximal",
    "tibial_shaft_distal",
)


class SchemeError(ValueError):
    """A scheme file, or landmarks claimed to follow one, is inconsistent."""


@dataclass(frozen=True)
class Curve:
    name: str
    bone: str
    start: int
    count: int
    closed: bool
    description: str

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.count)


@dataclass(frozen=True)
class LandmarkScheme:
    name: str
    version: str
    phase: str
    n_points: int
    curves: tuple[Curve, ...]
    roles: dict[str, tuple[int, int]]
    levels: dict[str, float]
    point_names: tuple[str, ...]
    # Every shaft level of the outlines: bone -> ((level in reference lengths, medial index, lateral index), ...)
    shaft_levels: dict[str, tuple[tuple[float, int, int], ...]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Identifier written into weights and results, e.g. ``kneealign-preop@1.0``."""
        return f"{self.name}@{self.version}"

    def role(self, name: str) -> tuple[int, int]:
        return self.roles[name]

    def shaft_pair(self, bone: str, level: float) -> tuple[int, int]:
        """``(medial, lateral)`` landmark indices of the ``bone``'s shaft at ``level`` reference lengths."""
        for lv, med, lat in self.shaft_levels.get(bone, ()):
            if abs(lv - level) < 1e-6:
                return med, lat
        raise SchemeError(f"scheme {self.id} has no {bone} shaft level {level}")

    @property
    def axis_indices(self) -> list[int]:
        """The landmarks the angles are built from (every point of the required roles), in index order."""
        return sorted({i for name in REQUIRED_ROLES for i in self.roles[name]})

    @property
    def angle_landmarks(self) -> list[int]:
        """The landmarks of the required roles and the shaft pair of every level the scheme marks (a superset of
        those an aTFA may be built from: the adaptive axes use 0.8 and 1.0-1.3 of them, ``model.alignment``), in
        index order."""
        pairs = {i for levels in self.shaft_levels.values() for _, med, lat in levels for i in (med, lat)}
        return sorted(set(self.axis_indices) | pairs)

    def curve(self, name: str) -> Curve:
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(f"scheme {self.id} has no curve named {name!r}")

    def reference_length(self, points: np.ndarray) -> float:
        """Distance between the two tibial plateau corners (the rP2P/rP2C denominator)."""
        a, b = self.roles["reference"]
        return float(np.linalg.norm(points[b] - points[a]))

    def check_points(self, points: np.ndarray, source: str = "landmarks") -> np.ndarray:
        """Return ``points`` as a float (N, 2) array or raise naming what does not match."""
        arr = np.asarray(points, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise SchemeError(f"{source}: expected an (N, 2) array of [x, y], got shape {arr.shape}")
        if arr.shape[0] != self.n_points:
            raise SchemeError(
                f"{source}: {arr.shape[0]} landmarks, but scheme {self.id} has {self.n_points}"
            )
        if not np.all(np.isfinite(arr)):
            raise SchemeError(f"{source}: landmarks contain NaN or infinite coordinates")
        return arr

    @classmethod
    def from_dict(cls, data: dict, source: str = "scheme") -> "LandmarkScheme":
        try:
            curves = tuple(
                Curve(c["name"], c["bone"], int(c["start"]), int(c["count"]), bool(c.get("closed", False)),
                      c.get("description", ""))
                for c in data["curves"]
            )
            roles = {k: (int(v[0]), int(v[1])) for k, v in data["roles"].items()}
            scheme = cls(
                name=data["name"], version=str(data["version"]), phase=data["phase"],
                n_points=int(data["n_points"]), curves=curves, roles=roles,
                levels={k: float(v) for k, v in data.get("levels", {}).items()},
                point_names=tuple(data["point_names"]),
                shaft_levels={bone: tuple((float(lv), int(m), int(lt)) for lv, m, lt in rows)
                              for bone, rows in data.get("shaft_levels", {}).items() if bone in ("femur", "tibia")},
            )
        except KeyError as exc:
            raise SchemeError(f"{source}: missing key {exc}") from None
        scheme.validate(source)
        return scheme

    def validate(self, source: str = "scheme") -> None:
        if self.phase not in PHASE_NAMES:
            raise SchemeError(f"{source}: phase must be one of {PHASE_NAMES}, got {self.phase!r}")
        if len(self.point_names) != self.n_points or len(set(self.point_names)) != self.n_points:
            raise SchemeError(f"{source}: point_names must be {self.n_points} unique names")
        covered = sorted(i for c in self.curves for i in c.indices)
        if covered != list(range(self.n_points)):
            raise SchemeError(f"{source}: curves must cover every landmark exactly once")
        for role in REQUIRED_ROLES:
            if role not in self.roles:
                raise SchemeError(f"{source}: missing role {role!r}")
        for role, pair in self.roles.items():
            if not all(0 <= i < self.n_points for i in pair) or pair[0] == pair[1]:
                raise SchemeError(f"{source}: role {role!r} has bad indices {pair}")
        for bone, rows in self.shaft_levels.items():
            for level, med, lat in rows:
                if not (0 <= med < self.n_points and 0 <= lat < self.n_points) or med == lat or level <= 0:
                    raise SchemeError(f"{source}: shaft level {level} of the {bone} has bad indices {(med, lat)}")


@lru_cache(maxsize=None)
def load_scheme(phase: str, version: str = "1") -> LandmarkScheme:
    """Load a shipped scheme, e.g. ``load_scheme("preop")``."""
    if phase not in PHASE_NAMES:
        raise SchemeError(f"unknown phase {phase!r}; expected one of {PHASE_NAMES}")
    path = SCHEME_DIR / f"{phase}-v{version}.json"
    if not path.exists():
        raise SchemeError(f"no scheme file {path.name} in {SCHEME_DIR}")
    return LandmarkScheme.from_dict(json.loads(path.read_text()), source=path.name)
