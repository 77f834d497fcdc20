"""An in-memory store of samples with images kept as 16-bit integers (a quarter of float32's memory), so that
training renders or decodes every case once and then spends its time on augmentation and the network.

The store can be saved to and loaded from one ``.npz`` file so a resumed run does not render again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.data.sample import KneeSample

_SCALE = 65535.0


@dataclass
class _Compact:
    pixels: np.ndarray  # uint16
    landmarks: np.ndarray
    laterality: str
    phase: str
    pixel_spacing_mm: tuple[float, float] | None
    source: str
    atfa_fts_deg: float | None
    atfa_fnts_deg: float | None
    unseen: tuple[int, ...] = ()


class SampleStore:
    """A list-like container of ``KneeSample``: ``store[i]`` gives back a float32 image."""

    def __init__(self, samples: Iterable[KneeSample] = ()):
        self._items: list[_Compact] = []
        for s in samples:
            self.append(s)

    def append(self, s: KneeSample) -> None:
        pixels = np.round(np.clip(s.image, 0.0, 1.0) * _SCALE).astype(np.uint16)
        self._items.append(_Compact(pixels, np.asarray(s.landmarks, np.float64), s.laterality, s.phase,
                                    s.pixel_spacing_mm, s.source, s.atfa_fts_deg, s.atfa_fnts_deg, s.unseen))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> KneeSample:
        c = self._items[i]
        return KneeSample(
            image=c.pixels.astype(np.float32) / np.float32(_SCALE), landmarks=c.landmarks.copy(),
            laterality=c.laterality, phase=c.phase, pixel_spacing_mm=c.pixel_spacing_mm, source=c.source,
            atfa_fts_deg=c.atfa_fts_deg, atfa_fnts_deg=c.atfa_fnts_deg, unseen=c.unseen,
        )

    def indices(self, phase: str | None = None) -> list[int]:
        """Indices of all samples, or of those of one phase."""
        return [i for i, c in enumerate(self._items) if phase is None or c.phase == phase]

    @classmethod
    def concat(cls, *stores: SampleStore) -> SampleStore:
        """One store holding the samples of ``stores`` in order (images shared, not copied)."""
        out = cls()
        for st in stores:
            out._items.extend(st._items)
        return out

    def split(self, n: int) -> tuple[SampleStore, SampleStore]:
        """The first ``n`` samples and the rest, as two stores (images shared, not copied)."""
        head, tail = SampleStore(), SampleStore()
        head._items, tail._items = self._items[:n], self._items[n:]
        return head, tail

    @property
    def nbytes(self) -> int:
        return sum(c.pixels.nbytes for c in self._items)

    def save(self, path: str | Path, description: dict | None = None) -> Path:
        """Write every sample into one uncompressed ``.npz`` (with a JSON description of how it was made)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for i, c in enumerate(self._items):
            arrays[f"img{i}"] = c.pixels
            arrays[f"pts{i}"] = c.landmarks
            meta.append({"laterality": c.laterality, "phase": c.phase, "pixel_spacing_mm": c.pixel_spacing_mm,
                         "source": c.source, "atfa_fts_deg": c.atfa_fts_deg, "atfa_fnts_deg": c.atfa_fnts_deg,
                         **({"unseen": list(c.unseen)} if c.unseen else {})})
        arrays["meta"] = np.frombuffer(json.dumps({"description": description or {}, "samples": meta}).encode(),
                                       dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[SampleStore, dict]:
        """Read a store written by ``save``; returns it with its description."""
        store = cls()
        with np.load(Path(path)) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            for i, m in enumerate(meta["samples"]):
                spacing = tuple(m["pixel_spacing_mm"]) if m["pixel_spacing_mm"] is not None else None
                store._items.append(_Compact(data[f"img{i}"], data[f"pts{i}"], m["laterality"], m["phase"],
                                             spacing, m["source"], m["atfa_fts_deg"], m["atfa_fnts_deg"],
                                             tuple(m.get("unseen", ()))))
        return store, meta["description"]
