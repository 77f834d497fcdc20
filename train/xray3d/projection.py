"""Point-source projection of posed solids onto a flat detector: Beer-Lambert line integrals.

World frame (millimetres): the detector is the plane z = 0, x to the image's right, y down the image, z toward
the X-ray source at ``(sx, sy, sid)``. A solid is sampled on planes of constant depth in its own frame; each plane,
posed by a rigid 4x4 matrix, maps onto the detector by a homography (plane-to-plane central projection), so
``cv2.warpPerspective`` projects it exactly, magnification and all. The planes' occupancies times their spacing,
times the path length factor ``1 / |n . r|`` of the ray through a slab with normal ``n``, add up to the path length
through the solid along every ray; weighted by attenuation, to its line integral.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from train.xray3d.solids import Grid, Material, Solid


@dataclass(frozen=True)
class Detector:
    """The source and a pixel grid on the detector plane: pixel (col, row) centre at ``(u0 + col*spacing,
    v0 + row*spacing)`` world mm."""

    sid: float  # source-to-image distance
    source_xy: tuple[float, float]  # where the central ray meets the detector
    u0: float
    v0: float
    spacing: float
    cols: int
    rows: int

    def homography(self, local_to_world: np.ndarray, grid: Grid, z: float) -> np.ndarray:
        """3x3 matrix from (i, j) indices of ``grid`` at local depth ``z`` to detector (col, row)."""
        rot, t = local_to_world[:3, :3], local_to_world[:3, 3]
        a = np.column_stack([rot[:, 0] * grid.step, rot[:, 1] * grid.step,
                             rot[:, 0] * grid.x0 + rot[:, 1] * grid.y0 + rot[:, 2] * z + t])
        a = np.vstack([a, [0.0, 0.0, 1.0]])
        d, sp = self.sid, self.spacing
        sx, sy = self.source_xy
        q = np.array([[d / sp, 0.0, (self.u0 - sx) / sp, -self.u0 * d / sp],
                      [0.0, d / sp, (self.v0 - sy) / sp, -self.v0 * d / sp],
                      [0.0, 0.0, -1.0, d]])
        return q @ a

    def project_points(self, world: np.ndarray) -> np.ndarray:
        """Detector (col, row) of world points (..., 3)."""
        p = np.asarray(world, np.float64)
        sx, sy = self.source_xy
        w = self.sid - p[..., 2]
        u = (self.sid * p[..., 0] - sx * p[..., 2]) / w
        v = (self.sid * p[..., 1] - sy * p[..., 2]) / w
        return np.stack([(u - self.u0) / self.spacing, (v - self.v0) / self.spacing], axis=-1)

    def path_factor(self, normal: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
        """``1 / |n . r|`` on the pixels of ``roi`` = (col0, row0, cols, rows), r the unit ray to the source."""
        c0, r0, nc, nr = roi
        u = self.u0 + self.spacing * (c0 + np.arange(nc, dtype=np.float64))
        v = self.v0 + self.spacing * (r0 + np.arange(nr, dtype=np.float64))
        dx = self.source_xy[0] - u[None, :]
        dy = self.source_xy[1] - v[:, None]
        norm = np.sqrt(dx**2 + dy**2 + self.sid**2)
        cos = np.abs(normal[0] * dx + normal[1] * dy + normal[2] * self.sid) / norm
        return (1.0 / np.maximum(cos, 0.2)).astype(np.float32)


def world_corners(bounds: np.ndarray, local_to_world: np.ndarray) -> np.ndarray:
    """The 8 corners of a local bounding box in world coordinates."""
    lo, hi = bounds
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return corners @ local_to_world[:3, :3].T + local_to_world[:3, 3]


def _roi(det: Detector, bounds: np.ndarray, pose: np.ndarray) -> tuple[int, int, int, int] | None:
    px = det.project_points(world_corners(bounds, pose))
    c0, r0 = np.floor(px.min(0)).astype(int) - 2
    c1, r1 = np.ceil(px.max(0)).astype(int) + 3
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, det.cols), min(r1, det.rows)
    if c0 >= c1 or r0 >= r1:
        return None
    return int(c0), int(r0), int(c1 - c0), int(r1 - r0)


def path_length(solid: Solid, pose: np.ndarray, det: Detector, step: float, dz: float,
                roi: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Path length (mm) through ``solid`` along every ray of ``roi`` (default: the solid's projected bounding box).

    ``step`` is the in-plane sampling of the solid, ``dz`` the spacing of its planes. Returns ``(image, roi)``.
    """
    bounds = solid.bounds()
    roi = roi or _roi(det, bounds, pose)
    if roi is None:
        return None
    c0, r0, nc, nr = roi
    lo, hi = bounds
    margin = dz
    nz = max(1, int(np.ceil((hi[2] - lo[2]) / dz)) + 2)
    dz = (hi[2] - lo[2] + 2 * margin) / nz
    grid = Grid(float(lo[0]) - step, float(lo[1]) - step, int(np.ceil((hi[0] - lo[0]) / step)) + 3,
                int(np.ceil((hi[1] - lo[1]) / step)) + 3, step, dz)
    shift = np.array([[1.0, 0.0, -c0], [0.0, 1.0, -r0], [0.0, 0.0, 1.0]])
    acc = np.zeros((nr, nc), np.float32)
    for k in range(nz):
        z = float(lo[2] - margin + (k + 0.5) * dz)
        plane = solid.slab(z, grid)
        if plane is None:
            continue
        h = shift @ det.homography(pose, grid, z)
        acc += cv2.warpPerspective(plane, h, (nc, nr), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    acc *= dz * det.path_factor(pose[:3, 2], roi)
    return acc, roi


@dataclass
class Projection:
    """Per material: its path length image and where it lies on the detector."""

    attenuation: np.ndarray  # (rows, cols) float32 line integral of every material's excess attenuation
    thickness: dict[str, np.ndarray]  # material name -> full-size path length (mm), for outlines
    metal: np.ndarray  # (rows, cols) float32 path length through metal parts


def project(materials: list[tuple[Material, np.ndarray]], det: Detector, step: float, dz: float,
            metal_names: frozenset[str] = frozenset()) -> Projection:
    """Project every ``(material, local_to_world pose)``; outlines are kept for materials with ``outline``."""
    att = np.zeros((det.rows, det.cols), np.float32)
    metal = np.zeros_like(att)
    thickness: dict[str, np.ndarray] = {}
    for mat, pose in materials:
        got = path_length(mat.solid, pose, det, step, dz)
        if got is None:
            if mat.outline:
                thickness[mat.name] = np.zeros_like(att)
            continue
        outer, roi = got
        c0, r0, nc, nr = roi
        view = att[r0:r0 + nr, c0:c0 + nc]
        if mat.core is not None:
            core = path_length(mat.core, pose, det, step, dz, roi)
            inner = core[0] if core is not None else 0.0
            view += mat.mu * (outer - inner) + mat.mu_core * inner
        else:
            view += mat.mu * outer
        if mat.name in metal_names:
            metal[r0:r0 + nr, c0:c0 + nc] += outer
        if mat.outline:
            full = thickness.setdefault(mat.name, np.zeros_like(att))
            full[r0:r0 + nr, c0:c0 + nc] += outer
    return Projection(att, thickness, metal)
