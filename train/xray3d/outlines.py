"""Landmarks placed on projected outlines by anatomical rules: what an annotator does, done by geometry.

Input: the path length through each bone (and implant part) along every ray of the detector; a bone's outline is
the contour of its path-length map at ``LEVEL`` millimetres (sub-pixel, by marching squares). The rules, in the
canonical frame that the plateau corners fix (x from the medial to the lateral corner, y distal, lengths in L, the
corner distance), follow the scheme texts of ``model/schemes``:

- plateau corners: the points of the proximal tibial outline farthest in the two directions half-way between the
  plateau line and the proximal direction (iterated so that the directions follow the corner line itself);
- condyle tips: the most distal outline points medial and lateral of the notch; the notch roof's level: the most
  proximal point of the outline between the tips; notch edges: where the notch walls pass ``NOTCH_EDGE`` of the way
  from the roof's level down to each condyle's tip; notch apex: the roof's point midway between the notch walls
  where they pass ``NOTCH_CENTRE`` of the way down (the centre of the roof, as an annotator marks it: the most
  proximal point alone slides along a flat or boxy roof, an implant's box above all, with the femur's tilt);
- shaft points: the outermost crossings of the outline with lines parallel to the corner line at the scheme's
  levels; the flare, condyle, plateau and notch points evenly by arc length between these anchors;
- fibular head: from where its outline enters the tibia's silhouette, over its apex, to its lateral side at the
  level of the neck; fibular shaft: crossings at its levels;
- implants: the femoral component from one flange top to the other around the condyles; the tray's two surfaces
  between its four corners; the stem from its medial to its lateral junction with the tray, round the tip.

The same functions turn any set of bone masks or path-length maps into annotations (``scheme_landmarks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import contourpy
import numpy as np

from model.scheme import LandmarkScheme
from model.vocabulary import PHASES

LEVEL = 2.0  # mm of path length: the outline of a silhouette
FEMUR_LEVELS = tuple(1.3 - 0.1 * i for i in range(11))  # above the corner line, in L
TIBIA_LEVELS = tuple(0.6 + 0.1 * i for i in range(8))  # below
FIBULA_LEVELS = (0.7, 0.85, 1.0, 1.15, 1.3)
NOTCH_EDGE = 0.65  # notch edges: this fraction of the way from the roof's level down to the condyle tip's
NOTCH_CENTRE = 0.25  # the notch walls' midpoint, which places the apex, is taken this far down from the roof


class OutlineError(ValueError):
    """An outline needed by a rule is missing or does not have the expected shape."""


def outline(path_length: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """The longest closed contour of ``path_length > level`` as (M, 2) ``[col, row]`` points, closed (last = first)."""
    padded = np.pad(np.asarray(path_length, np.float64), 1)
    lines = contourpy.contour_generator(z=padded).lines(level)
    if not lines:
        raise OutlineError("no silhouette")
    best = max(lines, key=len) - 1.0
    if not np.allclose(best[0], best[-1]):
        best = np.vstack([best, best[:1]])
    return best


@dataclass
class Contour:
    """A closed contour in the canonical frame with its cumulative arc length."""

    pts: np.ndarray  # (M, 2), closed
    step: float = 0.2  # resampled evenly at this arc length, so that extreme points are not tied to the vertices

    def __post_init__(self) -> None:
        seg = np.linalg.norm(np.diff(self.pts, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        if s[-1] > 0:
            t = np.linspace(0.0, s[-1], max(int(np.ceil(s[-1] / self.step)), 4) + 1)
            self.pts = np.column_stack([np.interp(t, s, self.pts[:, 0]), np.interp(t, s, self.pts[:, 1])])
            s = t
        self.s = s

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: np.ndarray | float) -> np.ndarray:
        s = np.mod(s, self.length)
        return np.column_stack([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])])

    def param(self, index: int) -> float:
        return float(self.s[index])

    def support(self, direction: tuple[float, float], mask: np.ndarray | None = None) -> float:
        """Arc parameter of the point farthest along ``direction`` (among ``mask``)."""
        score = self.pts[:-1] @ np.asarray(direction, np.float64)
        if mask is not None:
            score = np.where(mask[:-1], score, -np.inf)
        if not np.isfinite(score.max()):
            raise OutlineError("no outline point where a support point was looked for")
        return self.param(int(np.argmax(score)))

    def crossings(self, y: float) -> list[tuple[float, float]]:
        """``(x, s)`` of every crossing of the horizontal line at ``y``."""
        a, b = self.pts[:-1], self.pts[1:]
        da, db = a[:, 1] - y, b[:, 1] - y
        idx = np.flatnonzero((da <= 0) != (db <= 0))
        out = []
        for i in idx:
            t = da[i] / (da[i] - db[i])
            out.append((float(a[i, 0] + t * (b[i, 0] - a[i, 0])), float(self.s[i] + t * (self.s[i + 1] - self.s[i]))))
        return out

    def crossing(self, y: float, side: str) -> tuple[np.ndarray, float]:
        """The outermost crossing on ``side`` ("medial": smallest x, "lateral": largest x): ``(point, s)``."""
        found = self.crossings(y)
        if not found:
            raise OutlineError(f"the outline does not reach the level {y:.1f}")
        x, s = min(found) if side == "medial" else max(found)
        return np.array([x, y]), s

    def span(self, sa: float, sb: float, forward: bool) -> tuple[float, float]:
        """Arc interval from ``sa`` to ``sb`` going forward (increasing s) or backward, as (start, signed length)."""
        d = (sb - sa) % self.length
        return (sa, d) if forward else (sa, -((sa - sb) % self.length))

    def sample(self, sa: float, sb: float, forward: bool, n: int, ends: tuple[bool, bool] = (True, True)) -> np.ndarray:
        """``n`` points evenly by arc length from ``sa`` to ``sb``; ``ends`` says whether each end is included."""
        start, length = self.span(sa, sb, forward)
        k0 = 0 if ends[0] else 1
        total = n - 1 + (0 if ends[0] else 1) + (0 if ends[1] else 1)
        t = (k0 + np.arange(n)) / total
        return self.at(start + t * length)

    def path(self, sa: float, sb: float, forward: bool, n: int = 64) -> np.ndarray:
        return self.sample(sa, sb, forward, n)

    def direction_through(self, sa: float, sb: float, via: float) -> bool:
        """The direction (forward?) in which going from ``sa`` to ``sb`` passes ``via``."""
        return (via - sa) % self.length < (sb - sa) % self.length

    def direction_away_from(self, sa: float, sb: float, score) -> bool:
        """Of the two ways from ``sa`` to ``sb``, the one whose points have the larger mean ``score(points)``."""
        fwd = score(self.path(sa, sb, True)).mean()
        bwd = score(self.path(sa, sb, False)).mean()
        return bool(fwd >= bwd)


@dataclass(frozen=True)
class Frame:
    """The canonical frame of the plateau corners in image pixels."""

    origin: np.ndarray
    x_axis: np.ndarray
    length: float  # L, in pixels

    @property
    def y_axis(self) -> np.ndarray:
        return np.array([-self.x_axis[1], self.x_axis[0]])

    def to_canonical(self, pts: np.ndarray) -> np.ndarray:
        d = np.asarray(pts, np.float64) - self.origin
        return np.column_stack([d @ self.x_axis, d @ self.y_axis])

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, np.float64)
        return self.origin + p[:, :1] * self.x_axis + p[:, 1:2] * self.y_axis


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, np.float64) / np.linalg.norm(v)


def plateau_corners(tibia_px: np.ndarray, distal: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Medial and lateral plateau corners of a left-knee tibia outline (image pixels); ``distal`` is the tibial axis
    direction in the image."""
    a = _unit(distal)
    lateral = np.array([a[1], -a[0]])
    c = Contour(tibia_px)
    along = c.pts @ a
    width = np.ptp(c.pts @ lateral)
    proximal = along < along.min() + 0.4 * width
    x, y = lateral, a
    for _ in range(iterations):
        med = c.at(c.support(_unit(-x - y), proximal))[0]
        lat = c.at(c.support(_unit(x - y), proximal))[0]
        x = _unit(lat - med)
        y = np.array([-x[1], x[0]])
    return med, lat


def _zero_crossing(values: np.ndarray, d: np.ndarray, i: int) -> float:
    """What ``values`` is, linearly between samples ``i`` and ``i + 1``, where ``d`` changes sign between them."""
    return float(values[i] + (values[i + 1] - values[i]) * d[i] / (d[i] - d[i + 1]))


def _notch_apex(f: Contour, tip_m: float, tip_l: float, forward: bool) -> float:
    """Arc parameter of the notch apex: the roof's point midway between the notch walls where they cross the level
    ``NOTCH_CENTRE`` of the way from the roof's most proximal point down to the higher condyle tip. (The most
    proximal point alone slides along a flat or boxy roof, an implant's box above all, with the femur's tilt.)"""
    start, length = f.span(tip_m, tip_l, forward)
    t = start + np.linspace(0, 1, 1200) * length
    q = f.at(t)
    top = int(np.argmin(q[:, 1]))
    level = q[top, 1] + NOTCH_CENTRE * (min(q[0, 1], q[-1, 1]) - q[top, 1])
    d = q[:, 1] - level
    cross = np.flatnonzero((d[:-1] > 0) != (d[1:] > 0))
    before, after = cross[cross < top], cross[cross >= top]
    if not before.size or not after.size:
        raise OutlineError("the notch walls do not reach below its roof")

    lo, hi = int(before[-1]), int(after[0])  # the crossings nearest the roof
    x_mid = 0.5 * (_zero_crossing(q[:, 0], d, lo) + _zero_crossing(q[:, 0], d, hi))
    e = q[lo:hi + 2, 0] - x_mid
    over = lo + np.flatnonzero((e[:-1] > 0) != (e[1:] > 0))
    if not over.size:
        raise OutlineError("the notch roof does not span its walls' midpoint")
    i = int(over[np.argmin(q[over, 1])])  # the most proximal crossing: the roof, not a wall folding back
    return float(t[i] + (t[i + 1] - t[i]) * (q[i, 0] - x_mid) / (q[i, 0] - q[i + 1, 0]))


def _femur_points(f: Contour, L: float) -> tuple[list[np.ndarray], dict]:
    X = f.pts[:, 0]
    tip_m = f.support((0.0, 1.0), X < -0.1 * L)
    tip_l = f.support((0.0, 1.0), X > 0.1 * L)
    forward = f.direction_away_from(tip_m, tip_l, lambda p: p[:, 1])  # the way along the distal side
    start, length = f.span(tip_m, tip_l, forward)
    ts = start + np.linspace(0, 1, 400) * length
    ys = f.at(ts)[:, 1]
    top = float(ts[int(np.argmin(ys))])  # the roof's most proximal point: on a flat roof, anywhere along it
    y_roof = float(f.at(top)[0, 1])

    def wall(sa: float, sb: float, tip: float, nearest_start: bool) -> float:
        """Where the wall between ``sa`` and ``sb`` crosses the edge level of its condyle's ``tip``."""
        level = y_roof + NOTCH_EDGE * (float(f.at(tip)[0, 1]) - y_roof)
        s0, ln = f.span(sa, sb, forward)
        t = s0 + np.linspace(0, 1, 600) * ln
        d = f.at(t)[:, 1] - level
        idx = np.flatnonzero((d[:-1] > 0) != (d[1:] > 0))
        if not idx.size:
            raise OutlineError("the notch wall does not reach its edge level")
        i = int(idx[0] if nearest_start else idx[-1])
        return _zero_crossing(t, d, i)

    edge_m = wall(tip_m, top, tip_m, nearest_start=False)  # the crossing nearest the roof
    edge_l = wall(top, tip_l, tip_l, nearest_start=True)
    apex = _notch_apex(f, tip_m, tip_l, forward)
    parts = []
    for side, tip in (("medial", tip_m), ("lateral", tip_l)):
        shaft = [f.crossing(-lv * L, side) for lv in FEMUR_LEVELS]
        s03 = shaft[-1][1]
        way = f.direction_away_from(s03, tip, lambda p: p[:, 1])
        parts.append(np.vstack([np.array([p for p, _ in shaft]), f.sample(s03, tip, way, 11, (False, True))]))
    med_outline, lat_outline = parts
    medial_distal = f.sample(tip_m, edge_m, forward, 6, (False, False))
    notch = np.vstack([f.sample(edge_m, apex, forward, 5), f.sample(apex, edge_l, forward, 5)[1:]])
    lateral_distal = f.sample(edge_l, tip_l, forward, 6, (False, False))
    anchors = {"apex": f.at(apex)[0], "tip_medial": f.at(tip_m)[0], "tip_lateral": f.at(tip_l)[0]}
    return [med_outline, lat_outline, medial_distal, notch, lateral_distal], anchors


def _tibia_points(t: Contour, L: float) -> list[np.ndarray]:
    s_m = t.support((-1.0, -1.0), np.abs(t.pts[:, 1]) < 0.2 * L)
    s_l = t.support((1.0, -1.0), np.abs(t.pts[:, 1]) < 0.2 * L)
    over_top = t.direction_away_from(s_m, s_l, lambda p: -p[:, 1])
    plateau = t.sample(s_m, s_l, over_top, 23)
    sides = []
    for side, corner, other in (("medial", s_m, s_l), ("lateral", s_l, s_m)):
        shaft = [t.crossing(lv * L, side) for lv in TIBIA_LEVELS]
        # Down this side's flare: the way from the corner to the first shaft level that does not pass the other
        # corner (the way round the far side also runs distally, along the whole shaft, and would be taken by a
        # "more distal on average" rule).
        way = not t.direction_through(corner, shaft[0][1], other)
        sides.append(np.vstack([t.sample(corner, shaft[0][1], way, 4, (False, False)), [p for p, _ in shaft]]))
    return [plateau, *sides]


def _fibula_points(b: Contour, L: float, neck_y: float, inside_tibia) -> list[np.ndarray]:
    apex = b.support((0.0, -1.0))
    _, s_neck = b.crossing(neck_y, "lateral")
    step = 0.02 * L
    medial_forward = bool(b.at(apex + step)[0, 0] < b.at(apex - step)[0, 0])
    t = apex + np.linspace(0.0, 0.5 * b.length, 240) * (1.0 if medial_forward else -1.0)
    pts = b.at(t)
    inside = inside_tibia(pts) & (pts[:, 1] < neck_y)
    if inside.any():  # where the head's outline disappears behind the tibia
        k = int(np.argmax(inside))
        s_start = float(t[k])
    else:  # the head stands clear of the tibia: its most medial point above the neck
        s_start = float(t[int(np.argmin(np.where(pts[:, 1] < neck_y, pts[:, 0], np.inf)))])
    head = b.sample(s_start, s_neck, not medial_forward, 12)
    shaft_m = np.array([b.crossing(lv * L, "medial")[0] for lv in FIBULA_LEVELS])
    shaft_l = np.array([b.crossing(lv * L, "lateral")[0] for lv in FIBULA_LEVELS])
    return [head, shaft_m, shaft_l]


def _implant_points(comp: Contour, tray: Contour, stem: Contour, L: float) -> list[np.ndarray]:
    top_m = comp.support((-1.0, -1.0))
    top_l = comp.support((1.0, -1.0))
    bottom = comp.support((0.0, 1.0))
    component = comp.sample(top_m, top_l, comp.direction_through(top_m, top_l, bottom), 25)
    um, ul = tray.support((-1.0, -1.0)), tray.support((1.0, -1.0))
    ll, lm = tray.support((1.0, 1.0)), tray.support((-1.0, 1.0))
    upper = tray.sample(um, ul, tray.direction_away_from(um, ul, lambda p: -p[:, 1]), 6)
    lower = tray.sample(ll, lm, tray.direction_away_from(ll, lm, lambda p: p[:, 1]), 6)
    # Junctions of the stem with the tray: crossings of the stem outline just below the tray's lower surface.
    p_lm, p_ll = tray.at(lm)[0], tray.at(ll)[0]
    drop = 0.012 * L
    slope = (p_ll[1] - p_lm[1]) / max(p_ll[0] - p_lm[0], 1e-6)
    d = stem.pts[:, 1] - (p_lm[1] + drop + slope * (stem.pts[:, 0] - p_lm[0]))
    idx = np.flatnonzero((d[:-1] <= 0) != (d[1:] <= 0))
    if len(idx) < 2:
        raise OutlineError("the stem outline does not meet the tray")
    cross = []
    for i in idx:
        t = d[i] / (d[i] - d[i + 1])
        cross.append((stem.pts[i, 0] + t * (stem.pts[i + 1, 0] - stem.pts[i, 0]),
                      stem.s[i] + t * (stem.s[i + 1] - stem.s[i])))
    s_med, s_lat = min(cross)[1], max(cross)[1]
    tip = stem.support((0.0, 1.0))
    stem_pts = stem.sample(s_med, s_lat, stem.direction_through(s_med, s_lat, tip), 10)
    return [component, np.vstack([upper, lower]), stem_pts]


def scheme_landmarks(scheme: LandmarkScheme, outlines_px: dict[str, np.ndarray], tibial_distal: np.ndarray,
                     fibular_neck_px: np.ndarray, inside_tibia) -> np.ndarray:
    """All landmarks of ``scheme`` (image pixels) for a left knee from its outlines (image pixels, closed).

    ``outlines_px``: "femur" (post-op: bone and component together), "tibia", "fibula", and post-op
    "femoral_component", "tray", "stem". ``inside_tibia(points_px)`` says which image points lie in the tibia's
    silhouette. ``tibial_distal`` is the tibial axis direction in the image.
    """
    med, lat = plateau_corners(outlines_px["tibia"], tibial_distal)
    frame = Frame((med + lat) / 2, _unit(lat - med), float(np.linalg.norm(lat - med)))
    L = frame.length
    canon = {k: Contour(frame.to_canonical(v)) for k, v in outlines_px.items()}
    femur, _ = _femur_points(canon["femur"], L)
    tibia = _tibia_points(canon["tibia"], L)
    neck_y = float(frame.to_canonical(fibular_neck_px[None])[0, 1])
    fibula = _fibula_points(canon["fibula"], L, neck_y, lambda p: inside_tibia(frame.to_image(p)))
    parts = [*femur, *tibia, *fibula]
    if PHASES[scheme.phase].has_implants:
        parts += _implant_points(canon["femoral_component"], canon["tray"], canon["stem"], L)
    points = frame.to_image(np.vstack(parts))
    return scheme.check_points(points, source="projection renderer ground truth")
