"""3D solids of the projection renderer, sampled as anti-aliased occupancy on slabs of constant depth.

Each bone (or implant part) is a ``Solid``: the union of a few primitives in the bone's own millimetre frame
(x lateral, y along the long axis, distal positive, z anterior), optionally minus other primitives, with a
heightmap that cuts its proximal or distal end (tibial plateau, resection planes). ``Solid.slab(z, grid)`` gives
the occupancy in [0, 1] of one plane of constant local z on an (y, x) grid; the projector turns each plane into
a perspective warp onto the detector and adds it up along the rays.

- ``Tube``: a generalised cylinder along y: at every level an ellipse in (x, z) whose centre and radii follow
  piecewise-linear profiles (shafts with their bow, metaphyseal flares, stems).
- ``Ellipsoid``: condyles, the fibular head, the patella.
- ``Box``: implant plates and flanges (an axis-aligned box with rounded occupancy at its faces).

Occupancy is an approximate signed distance to the surface, divided by the grid step and clipped, so edges are
sampled to a fraction of a voxel and the projected silhouettes are smooth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Grid:
    """The (y, x) sampling of one slab: ``x0 + i * step`` for i < nx, ``y0 + j * step`` for j < ny."""

    x0: float
    y0: float
    nx: int
    ny: int
    step: float
    dz: float = 1.0  # thickness of the slab: occupancy is averaged over it (no terracing of the projection)

    @property
    def xs(self) -> np.ndarray:
        return (self.x0 + self.step * np.arange(self.nx)).astype(np.float32)

    @property
    def ys(self) -> np.ndarray:
        return (self.y0 + self.step * np.arange(self.ny)).astype(np.float32)


def _ramp(signed_mm: np.ndarray, step: float) -> np.ndarray:
    """Occupancy from a signed distance (positive inside): 0 outside, 1 inside, linear over one step."""
    return np.clip(signed_mm / step + 0.5, 0.0, 1.0)


def _level_occupancy(r: np.ndarray, drdx: np.ndarray, drdy: np.ndarray | float, drdz: np.ndarray | float,
                     grid: Grid) -> np.ndarray:
    """Occupancy of voxels (step x step x dz) for a level-set function ``r`` (< 1 inside): the fraction of the
    voxel inside the surface ``r = 1``, linearised across it. Where the surface faces the rays (normal along z)
    the ramp spans the slab's thickness, so stacked slabs add up smoothly instead of in terraces."""
    width = (np.abs(drdx) + np.abs(drdy)) * grid.step + np.abs(drdz) * grid.dz
    return np.clip((1.0 - r) / np.maximum(width, 1e-9) + 0.5, 0.0, 1.0)


class Primitive:
    def bounds(self) -> np.ndarray:
        """``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` in the solid's frame."""
        raise NotImplementedError

    def slab(self, z: float, grid: Grid) -> np.ndarray | None:
        """Occupancy (ny, nx) float32 of the plane at depth ``z``, or None where the plane misses it."""
        raise NotImplementedError

    def window(self, grid: Grid) -> tuple[Grid, slice, slice] | None:
        """The part of ``grid`` this primitive can occupy: a sub-grid and its row and column slices."""
        lo, hi = self.bounds()
        i0 = max(0, int(np.floor((lo[0] - grid.x0) / grid.step)) - 1)
        i1 = min(grid.nx, int(np.ceil((hi[0] - grid.x0) / grid.step)) + 2)
        j0 = max(0, int(np.floor((lo[1] - grid.y0) / grid.step)) - 1)
        j1 = min(grid.ny, int(np.ceil((hi[1] - grid.y0) / grid.step)) + 2)
        if i0 >= i1 or j0 >= j1:
            return None
        sub = Grid(grid.x0 + i0 * grid.step, grid.y0 + j0 * grid.step, i1 - i0, j1 - j0, grid.step, grid.dz)
        return sub, slice(j0, j1), slice(i0, i1)


@dataclass
class Tube(Primitive):
    """Elliptic cross-sections along y. ``levels`` (increasing) with per-level centre (cx, cz) and radii (ax, az)."""

    levels: Sequence[float]
    cx: Sequence[float]
    cz: Sequence[float]
    ax: Sequence[float]
    az: Sequence[float]

    def __post_init__(self) -> None:
        arrays = [np.asarray(v, np.float64) for v in (self.levels, self.cx, self.cz, self.ax, self.az)]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays) or n < 2 or np.any(np.diff(arrays[0]) <= 0):
            raise ValueError("Tube needs increasing levels and one centre and radius per level")
        self._y, self._cx, self._cz, self._ax, self._az = arrays

    def bounds(self) -> np.ndarray:
        return np.array([[np.min(self._cx - self._ax), self._y[0], np.min(self._cz - self._az)],
                         [np.max(self._cx + self._ax), self._y[-1], np.max(self._cz + self._az)]])

    def profile(self, ys: np.ndarray) -> tuple[np.ndarray, ...]:
        """Centre and radii interpolated at ``ys`` (NaN outside the tube's length)."""
        out = [np.interp(ys, self._y, v, left=np.nan, right=np.nan) for v in (self._cx, self._cz, self._ax, self._az)]
        return tuple(out)

    def slab(self, z: float, grid: Grid) -> np.ndarray | None:
        ys = grid.ys.astype(np.float64)
        cx, cz, ax, az = self.profile(ys)
        with np.errstate(invalid="ignore"):
            hit = np.abs(z - cz) < az + grid.dz
        if not hit.any():
            return None
        rows = np.flatnonzero(hit)
        cx, cz, ax, az = cx[rows], cz[rows], ax[rows], az[rows]
        # Per row the section is an interval of x (anti-aliased over one step). Near the front and back faces the
        # surface runs across the slab: there the occupancy is the fraction of the slab's depth inside the tube.
        f32 = np.float32
        rel_z = np.abs(z - cz)
        half = ax * np.sqrt(np.clip(1.0 - (rel_z / az) ** 2, 0.0, None))
        dx = np.abs(grid.xs[None, :] - cx[:, None].astype(f32))
        occ = np.clip((half[:, None].astype(f32) - dx) / f32(grid.step) + 0.5, 0.0, 1.0)
        face = np.flatnonzero(rel_z > 0.5 * az)
        if face.size:
            edge = az[face, None] * np.sqrt(np.clip(1.0 - (dx[face] / ax[face, None]) ** 2, 0.0, None))
            occ_z = np.clip((edge - rel_z[face, None]) / grid.dz + 0.5, 0.0, 1.0)
            occ[face] = np.minimum(occ[face], occ_z)
        # Ends of the tube: occupancy ramps over one step at levels[0] and levels[-1].
        ends = _ramp(np.minimum(ys[rows] - self._y[0], self._y[-1] - ys[rows]), grid.step)
        out = np.zeros((grid.ny, grid.nx), np.float32)
        out[rows] = occ * ends[:, None]
        return out


@dataclass
class Ellipsoid(Primitive):
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]

    def bounds(self) -> np.ndarray:
        c, r = np.asarray(self.centre), np.asarray(self.radii)
        return np.array([c - r, c + r])

    def slab(self, z: float, grid: Grid) -> np.ndarray | None:
        cx, cy, cz = self.centre
        rx, ry, rz = self.radii
        dz = (z - cz) / rz
        if abs(dz) >= 1.0 + grid.dz / rz:
            return None
        f32 = np.float32
        dz = f32(dz)
        dx = ((grid.xs - f32(cx)) / f32(rx))[None, :]
        dy = ((grid.ys - f32(cy)) / f32(ry))[:, None]
        r = np.sqrt(dx**2 + dy**2 + dz**2)
        rs = np.maximum(r, 1e-6)
        return _level_occupancy(r, dx / (rx * rs), dy / (ry * rs), dz / (rz * rs), grid).astype(np.float32)


@dataclass
class Box(Primitive):
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def bounds(self) -> np.ndarray:
        return np.array([self.lo, self.hi], dtype=np.float64)

    def slab(self, z: float, grid: Grid) -> np.ndarray | None:
        oz = float(_ramp(np.array(min(z - self.lo[2], self.hi[2] - z)), grid.dz))
        if oz <= 0:
            return None
        ox = _ramp(np.minimum(grid.xs - self.lo[0], self.hi[0] - grid.xs), grid.step)
        oy = _ramp(np.minimum(grid.ys - self.lo[1], self.hi[1] - grid.ys), grid.step)
        return (oz * oy[:, None] * ox[None, :]).astype(np.float32)


# A heightmap cut: given local (x, z) arrays returns the level y of the cut; the solid keeps y >= cut ("top")
# or y <= cut ("bottom").
Heightmap = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Cut:
    surface: Heightmap
    keep: str  # "below" (keep y >= surface: a top surface) | "above" (keep y <= surface: a bottom surface)
    region: tuple[float, float] | None = None  # y range where the cut applies (None: everywhere)

    def apply(self, occ: np.ndarray, z: float, grid: Grid) -> None:
        """Multiply ``occ`` (ny, nx) by this cut's occupancy, in place (only the rows of ``region``)."""
        xs = grid.xs.astype(np.float64)
        level = self.surface(xs, np.full_like(xs, z)).astype(np.float32)
        ys = grid.ys
        rows = slice(None)
        if self.region is not None:
            j0 = int(np.searchsorted(ys, self.region[0]))
            j1 = int(np.searchsorted(ys, self.region[1], side="right"))
            rows = slice(j0, j1)
        y = ys[rows, None]
        signed = (y - level[None, :]) if self.keep == "below" else (level[None, :] - y)
        occ[rows] *= _ramp(signed, grid.step)
        if self.region is not None and self.keep == "below":
            occ[:rows.start] = 0.0  # above a top surface's region nothing is kept
        elif self.region is not None:
            occ[rows.stop:] = 0.0  # below a bottom surface's region nothing is kept


@dataclass
class Solid(Primitive):
    """Union of ``parts``, minus the union of ``holes``, intersected with every ``cuts`` half-space. A solid can be
    a part of another one."""

    parts: list[Primitive]
    holes: list[Primitive] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)

    def bounds(self) -> np.ndarray:
        b = np.array([p.bounds() for p in self.parts])
        return np.array([b[:, 0].min(0), b[:, 1].max(0)])

    def slab(self, z: float, grid: Grid) -> np.ndarray | None:
        occ = None
        for p in self.parts:
            got = _part_slab(p, z, grid)
            if got is None:
                continue
            o, rows, cols = got
            if occ is None:
                occ = np.zeros((grid.ny, grid.nx), np.float32)
            np.maximum(occ[rows, cols], o, out=occ[rows, cols])
        if occ is None:
            return None
        for h in self.holes:
            got = _part_slab(h, z, grid)
            if got is not None:
                o, rows, cols = got
                np.minimum(occ[rows, cols], 1.0 - o, out=occ[rows, cols])
        for c in self.cuts:
            c.apply(occ, z, grid)
        return occ


def _part_slab(p: Primitive, z: float, grid: Grid) -> tuple[np.ndarray, slice, slice] | None:
    lo, hi = p.bounds()
    if not lo[2] - grid.dz <= z <= hi[2] + grid.dz:
        return None
    win = p.window(grid)
    if win is None:
        return None
    sub, rows, cols = win
    o = p.slab(z, sub)
    return None if o is None else (o, rows, cols)


@dataclass
class Material:
    """A solid with the linear attenuation (per mm, in excess of the soft tissue it displaces) of its volume."""

    name: str
    solid: Solid
    mu: float
    core: Solid | None = None  # inner part with its own attenuation (cancellous bone, medullary canal)
    mu_core: float = 0.0
    outline: bool = True  # its silhouette is kept for landmark placement
