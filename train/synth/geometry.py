"""Polyline helpers for the synthetic knee, in millimetres: smooth profiles, superellipse arcs,
arc-length sampling and level crossings.

Every outline of the synthetic anatomy is a dense polyline (an ``(N, 2)`` array of ``[x, y]``), and
every landmark is taken *on* such a polyline, so the landmarks lie exactly on the rendered edges.
"""

from __future__ import annotations

import numpy as np


def smoothstep(t: np.ndarray | float) -> np.ndarray:
    """0 at t <= 0, 1 at t >= 1, zero slope at both ends."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def superellipse_arc(exponent: float, t0: float, t1: float, num: int = 160) -> np.ndarray:
    """Unit superellipse ``|X|^n + |Y|^n = 1`` points for parameter angles t in [t0, t1] within [0, pi/2]
    (X = cos(t)^(2/n), Y = sin(t)^(2/n)); t = 0 is (1, 0) with a vertical tangent, t = pi/2 is (0, 1)
    with a horizontal one."""
    t = np.linspace(t0, t1, num)
    p = 2.0 / exponent
    return np.stack([np.cos(t).clip(0, None) ** p, np.sin(t).clip(0, None) ** p], axis=1)


def arc_length(poly: np.ndarray) -> np.ndarray:
    """Cumulative arc length at each vertex (0 at the first)."""
    seg = np.hypot(*np.diff(poly, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(seg)])


def point_at(poly: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """Points at arc positions ``s`` along the polyline (linear between vertices)."""
    cum = arc_length(poly)
    s = np.asarray(s, dtype=np.float64)
    return np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], axis=-1)


def sample_even(poly: np.ndarray, count: int, s_start: float = 0.0, s_end: float | None = None,
                include_start: bool = True, include_end: bool = True) -> np.ndarray:
    """``count`` points evenly spaced by arc length between arc positions ``s_start`` and ``s_end``
    (default: the whole polyline); excluded ends are left out but keep the spacing even."""
    if s_end is None:
        s_end = float(arc_length(poly)[-1])
    slots = count - 1 + (0 if include_start else 1) + (0 if include_end else 1)
    k = np.arange(count) + (0 if include_start else 1)
    return point_at(poly, s_start + (s_end - s_start) * k / slots)


def crossing(poly: np.ndarray, level: float, axis: int = 1) -> tuple[np.ndarray, float]:
    """First point where the polyline crosses ``coordinate[axis] == level``, and its arc position."""
    v = poly[:, axis] - level
    idx = np.nonzero((v[:-1] == 0) | (np.sign(v[:-1]) != np.sign(v[1:])))[0]
    if idx.size == 0:
        raise ValueError(f"polyline never reaches {'xy'[axis]} = {level:.2f}")
    i = int(idx[0])
    f = 0.0 if v[i] == v[i + 1] else v[i] / (v[i] - v[i + 1])
    cum = arc_length(poly)
    point = poly[i] + f * (poly[i + 1] - poly[i])
    return point, float(cum[i] + f * (cum[i + 1] - cum[i]))


def first_exit(poly: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, float]:
    """Last transition from inside to outside along the polyline, given a signed 'inside' value per vertex
    (positive inside); returns the interpolated point and its arc position."""
    idx = np.nonzero((inside[:-1] > 0) & (inside[1:] <= 0))[0]
    if idx.size == 0:
        raise ValueError("polyline never leaves the region")
    i = int(idx[-1])
    f = inside[i] / (inside[i] - inside[i + 1])
    cum = arc_length(poly)
    return poly[i] + f * (poly[i + 1] - poly[i]), float(cum[i] + f * (cum[i + 1] - cum[i]))


def cut(poly: np.ndarray, s_start: float, s_end: float) -> np.ndarray:
    """The part of the polyline between two arc positions, with interpolated end points."""
    cum = arc_length(poly)
    inner = poly[(cum > s_start) & (cum < s_end)]
    return np.vstack([point_at(poly, s_start), inner, point_at(poly, s_end)])


def join(*parts: np.ndarray) -> np.ndarray:
    """Concatenate polylines, dropping a vertex repeated where one part ends and the next begins."""
    out = [parts[0]]
    for p in parts[1:]:
        out.append(p[1:] if np.allclose(p[0], out[-1][-1]) else p)
    return np.vstack(out)


def inset_polygon(poly: np.ndarray, distance: float) -> np.ndarray:
    """Move every vertex of a closed polygon ``distance`` inward along its vertex normal (both
    orientations handled). Used to cancel the half-pixel outward bias of ``cv2.fillPoly``."""
    nxt = np.roll(poly, -1, axis=0)
    prv = np.roll(poly, 1, axis=0)
    tangent = nxt - prv
    norm = np.hypot(*tangent.T)
    norm[norm == 0] = 1.0
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1) / norm[:, None]
    area2 = np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1])
    # For a positive (counter-clockwise in x-right/y-up terms) signed area this normal points outward.
    sign = 1.0 if area2 > 0 else -1.0
    return poly - sign * distance * normal


def band(poly: np.ndarray, thickness: float, side: float = 1.0) -> np.ndarray:
    """Closed polygon of a strip ``thickness`` wide along an open polyline, on the side
    ``side * (t_y, -t_x)`` of its direction ``t`` (e.g. the bone side of an articular surface)."""
    tangent = np.gradient(poly, axis=0)
    norm = np.hypot(*tangent.T)
    norm[norm == 0] = 1.0
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1) / norm[:, None]
    return np.vstack([poly, (poly + side * thickness * normal)[::-1]])
