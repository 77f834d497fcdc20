"""Rendering the synthetic knee into a radiograph: attenuation from the outlines, then the imaging chain.

Attenuation (a line integral, like ``-ln(I/I0)``) is built polygon by polygon with OpenCV: each polygon
is rasterised (``cv2.fillPoly`` with sub-pixel vertices, inset half a pixel to cancel its outward bias),
its distance transform indexes a 256-entry float lookup table holding the projected thickness profile
of a round bone (bright cortical rim, trabecular or medullary inside) or of the soft-tissue envelope.
Long bones blend a thick shaft cortex into the thin metaphyseal one along their axis. Then: trabecular
texture (upsampled filtered noise), detector blur, heel effect, quantum noise (stronger behind bone and
metal), large-scale equalisation, display window and gamma, stored bits, mirroring of right knees,
collimation, the lead side marker, and MONOCHROME1 inversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.frames import apply_affine, mirror_points
from train.synth.acquisition import Acquisition
from train.synth.anatomy import KneeAnatomy
from train.synth.geometry import inset_polygon
from train.synth.shapes import Diaphysis, KneeShapes

SHIFT = 8  # fractional bits of polygon vertices for cv2.fillPoly
RAMP_STEP = 8  # pixels between the samples of the diaphysis ramp
MU_SOFT = 0.02  # per mm (water at about 60 keV)
MU_CORTEX = 0.06  # cortical bone in excess of the soft tissue it displaces
MU_MARROW = 0.004
MU_TRABECULAR = 0.016
METAL = 3.2  # line integral through an implant: far beyond the display window
CEMENT = 0.2
INSERT = 0.015
SUBCHONDRAL = 0.12
RIM = 0.1


@dataclass(frozen=True)
class Look:
    """Projected thickness profile of a roughly cylindrical bone part."""

    radius: float
    cortex: float
    mu_inner: float
    gain: float = 1.0  # denser (or lighter) bone of the same shape

    def values(self, d: np.ndarray) -> np.ndarray:
        outer = _chord(d, self.radius)
        inner = np.where(d > self.cortex, _chord(d - self.cortex, self.radius - self.cortex), 0.0)
        return self.gain * (MU_CORTEX * (outer - inner) + self.mu_inner * inner)


def _chord(d: np.ndarray, radius: float) -> np.ndarray:
    d = np.clip(d, 0.0, radius)
    return 2.0 * np.sqrt(np.clip(2.0 * radius * d - d * d, 0.0, None))


def _lut(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).reshape(1, 256)


class Canvas:
    """A float32 attenuation image with the millimetre-to-pixel mapping of the (left-knee) image."""

    def __init__(self, shape: tuple[int, int], matrix: np.ndarray, spacing: float):
        self.attenuation = np.zeros(shape, np.float32)
        self.texture_weight = np.zeros(shape, np.float32)
        self.metal = np.zeros(shape, np.uint8)
        self.matrix = matrix
        self.spacing = spacing

    def _mask(self, poly_mm: np.ndarray):
        px = inset_polygon(apply_affine(self.matrix, poly_mm), 0.5)
        h, w = self.attenuation.shape
        x0, y0 = np.floor(px.min(0)).astype(int) - 1
        x1, y1 = np.ceil(px.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return None
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.round((px - [x0, y0]) * (1 << SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=SHIFT)
        return mask, (slice(y0, y1), slice(x0, x1))

    def add_flat(self, poly_mm: np.ndarray, value: float, metal: bool = False) -> None:
        got = self._mask(poly_mm)
        if got is not None:
            mask, roi = got
            view = self.attenuation[roi]
            cv2.add(view, value, dst=view, mask=mask)
            if metal:
                self.metal[roi] |= mask

    def add_round(self, poly_mm: np.ndarray, thin: Look, thick: Look | None = None,
                 diaphysis: Diaphysis | None = None, textured: bool = True) -> None:
        """Add a bone: ``thin`` profile, blended into ``thick`` along ``diaphysis`` where given."""
        got = self._mask(poly_mm)
        if got is None:
            return
        mask, roi = got
        dmax = max(thin.radius, thick.radius if thick else 0.0)
        step = dmax / 255.0
        d = (np.arange(256) + 0.5) * step
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        alpha = self.spacing / step
        idx = cv2.convertScaleAbs(dist, alpha=alpha, beta=-0.5 * alpha - 0.5)
        vals = cv2.LUT(idx, _lut(thin.values(d)))
        tex = cv2.LUT(idx, _lut(np.clip(d / 2.0, 0.0, 1.0))) if textured else None
        if thick is not None and diaphysis is not None:
            w = self._axis_weight(diaphysis, roi)
            diff = cv2.subtract(cv2.LUT(idx, _lut(thick.values(d))), vals)
            vals += cv2.multiply(diff, w, dst=diff)
            if tex is not None:
                tex -= cv2.multiply(tex, w)
        view = self.attenuation[roi]
        cv2.add(view, vals, dst=view, mask=mask)
        if tex is not None:
            tview = self.texture_weight[roi]
            cv2.add(tview, tex, dst=tview, mask=mask)

    def _axis_weight(self, dia: Diaphysis, roi: tuple[slice, slice]) -> np.ndarray:
        """1 in the shaft, 0 in the metaphysis: a ramp along the bone axis, computed on a coarse grid
        and upsampled (bilinear interpolation of a linear ramp is exact away from its clipped ends)."""
        p = apply_affine(self.matrix, dia.point)
        direction = self.matrix[:, :2] @ dia.direction
        direction = direction / np.hypot(*direction)
        step = RAMP_STEP
        h, w = roi[0].stop - roi[0].start, roi[1].stop - roi[1].start
        ys = np.arange(roi[0].start, roi[0].stop + step, step, dtype=np.float32)
        xs = np.arange(roi[1].start, roi[1].stop + step, step, dtype=np.float32)
        ys = (ys - p[1]) * (direction[1] * self.spacing)
        xs = (xs - p[0]) * (direction[0] * self.spacing)
        ramp = ((ys[:, None] + xs[None, :] - dia.none) * (1.0 / (dia.full - dia.none))).astype(np.float32)
        np.clip(ramp, 0.0, 1.0, out=ramp)
        return _expand(ramp, step, 0.0, (h, w))  # output pixel i samples the ramp at i / step

    def add_smooth(self, poly_mm: np.ndarray, look: Look, factor: int) -> None:
        """Add a smooth profile (the soft tissue) computed ``factor`` times coarser, then interpolated."""
        if factor <= 1:
            self.add_round(poly_mm, look, textured=False)
            return
        h, w = self.attenuation.shape
        small_shape = (-(-h // factor) + 1, -(-w // factor) + 1)
        m = self.matrix.copy()
        m[:, :2] /= factor
        m[:, 2] = (m[:, 2] + 0.5) / factor - 0.5
        small = Canvas(small_shape, m, self.spacing * factor)
        small.add_round(poly_mm, look, textured=False)
        self.attenuation += _expand(small.attenuation, factor, 0.5 / factor - 0.5, (h, w))


def _expand(small: np.ndarray, factor: float, offset: float, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling where output pixel i samples ``small`` at ``i / factor + offset``."""
    m = np.array([[1.0 / factor, 0.0, offset], [0.0, 1.0 / factor, offset]])
    return cv2.warpAffine(small, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def knee_matrix(acq: Acquisition, spacing: float) -> np.ndarray:
    """2x3 affine taking canonical knee millimetres to pixels of the left-knee image at ``spacing``."""
    a = math.radians(acq.rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / spacing
    centre = np.array([acq.centre[0] * acq.width_mm, acq.centre[1] * acq.height_mm]) / spacing - 0.5
    return np.hstack([rot, centre[:, None]])


def _attenuation(shapes: KneeShapes, anatomy: KneeAnatomy, canvas: Canvas) -> None:
    s = anatomy.soft
    leg_radius = max(anatomy.femur.condyle_halfwidth_medial, anatomy.femur.condyle_halfwidth_lateral) + s.knee_margin
    canvas.add_smooth(shapes.leg, Look(leg_radius, 0.0, MU_SOFT), factor=max(1, int(0.4 / canvas.spacing)))
    epiphysis = Look(30.0, 1.6, MU_TRABECULAR)
    f, t = anatomy.femur, anatomy.tibia
    canvas.add_round(shapes.femur.polygon, epiphysis, Look(f.shaft_halfwidth, 0.38 * f.shaft_halfwidth, MU_MARROW),
                    shapes.femur.diaphysis)
    if f.notch_fill > 0:
        canvas.add_flat(shapes.femur.notch, f.notch_fill)
    canvas.add_round(shapes.tibia.polygon, Look(26.0, 1.4, MU_TRABECULAR),
                    Look(t.shaft_halfwidth, 0.33 * t.shaft_halfwidth, MU_MARROW), shapes.tibia.diaphysis)
    r = anatomy.fibula.shaft_halfwidth
    canvas.add_round(shapes.fibula.polygon, Look(12.0, 0.8, MU_TRABECULAR), Look(r, 0.3 * r, MU_MARROW),
                    shapes.fibula.diaphysis)
    canvas.add_round(shapes.patella, Look(9.0, 0.6, 0.4 * MU_TRABECULAR, anatomy.patella.density),
                    textured=False)
    for spur in shapes.osteophytes:
        canvas.add_round(spur, Look(4.0, 0.8, MU_TRABECULAR), textured=False)
    for plate in shapes.subchondral:
        canvas.add_flat(plate, SUBCHONDRAL * anatomy.tibia.plate_density)
    if shapes.posterior_rim is not None:
        canvas.add_flat(shapes.posterior_rim, RIM * anatomy.tibia.plate_density)
    imp = shapes.implant
    if imp is not None:
        canvas.add_flat(imp.tray_cement_polygon, CEMENT)
        canvas.add_flat(imp.stem_cement_polygon, CEMENT)
        canvas.add_flat(imp.insert_polygon, INSERT)
        design = anatomy.implant
        for poly, density in ((imp.tray_polygon, design.tray_density), (imp.stem_polygon, design.tray_density),
                              (imp.component_polygon, design.component_density)):
            canvas.add_flat(poly, METAL * density, metal=True)


def _texture(rng: np.random.Generator, acq: Acquisition, shape: tuple[int, int], spacing: float) -> np.ndarray:
    """Trabecular-like texture: low-resolution noise, blurred more along the columns, upsampled."""
    cell = acq.texture_scale_mm
    small = rng.standard_normal((max(2, round(acq.height_mm / cell)), max(2, round(acq.width_mm / cell))))
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigmaX=0.5, sigmaY=1.1)
    small *= 1.0 / max(float(small.std()), 1e-6)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _lowpass(img: np.ndarray, spacing: float, sigma_mm: float) -> np.ndarray:
    factor = max(1, int(sigma_mm / 4.0 / spacing))
    h, w = img.shape
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_mm / (spacing * factor))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _window(att: np.ndarray, metal: np.ndarray, acq: Acquisition) -> tuple[float, float]:
    """Display window from the image itself: from the air level up to just above the brightest bone
    (metal, far brighter, is left out of the statistics and saturates)."""
    sample = att[::8, ::8][metal[::8, ::8] == 0]
    if sample.size < 16:
        sample = att.ravel()
    a0, a1 = (float(v) for v in np.percentile(sample, [0.5, 99.8]))
    span = max(a1 - a0, 1e-3)
    return a0 + acq.window_low * span, a1 + (acq.window_high - 1.0) * span


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # uint16 stored values, as acquired (right knees unmirrored)
    landmarks: np.ndarray  # (N, 2) [column, row] in ``image``
    visible: np.ndarray  # (N,) inside the image and the exposed field


def _field_polygon(acq: Acquisition, spacing: float) -> np.ndarray | None:
    c = acq.collimation
    if c is None:
        return None
    x0, x1 = c.left, acq.width_mm - c.right
    y0, y1 = c.top, acq.height_mm - c.bottom
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    a = math.radians(c.angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - centre
    return (corners @ rot.T + centre) / spacing - 0.5


def _inside(poly: np.ndarray, points: np.ndarray) -> np.ndarray:
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points])


def _draw_marker(img: np.ndarray, acq: Acquisition, spacing: float, field: np.ndarray | None, value: int) -> None:
    h, w = img.shape
    height_px = acq.marker_height_mm / spacing
    scale = height_px / 22.0
    thick = max(1, round(1.6 / spacing))
    (tw, th), _ = cv2.getTextSize(acq.marker, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    box = field if field is not None else np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    corner = box[acq.marker_corner]
    inward = box.mean(0) - corner
    pad = 8.0 / spacing
    cx, cy = corner + pad * np.sign(inward) + np.sign(inward) * [tw / 2, th / 2]
    x0, y0 = int(cx - tw / 2), int(cy + th / 2)
    margin = thick + 2
    rx0, ry0 = max(0, x0 - margin), max(0, y0 - th - margin)
    rx1, ry1 = min(w, x0 + tw + margin), min(h, y0 + margin)
    if rx0 >= rx1 or ry0 >= ry1:
        return
    mask = np.zeros((ry1 - ry0, rx1 - rx0), np.uint8)
    cv2.putText(mask, acq.marker, (x0 - rx0, y0 - ry0), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    region = img[ry0:ry1, rx0:rx1]
    alpha = mask.astype(np.float32) / 255.0
    region[:] = (region * (1.0 - alpha) + value * alpha).astype(img.dtype)


def render(shapes: KneeShapes, anatomy: KneeAnatomy, acq: Acquisition, points_mm: np.ndarray, spacing: float,
           seed: int, clean: bool = False) -> Rendered:
    """Render one knee at ``spacing`` mm per pixel. ``clean`` leaves out noise, texture, heel effect,
    collimation and marker (for checking the ground truth against the image)."""
    shape = acq.image_shape(spacing)
    matrix = knee_matrix(acq, spacing)
    rng = np.random.default_rng([seed, round(spacing * 1e5)])
    canvas = Canvas(shape, matrix, spacing)
    _attenuation(shapes, anatomy, canvas)
    att = canvas.attenuation
    if not clean:
        att += acq.texture_amplitude * _texture(rng, acq, shape, spacing) * canvas.texture_weight
    att = cv2.GaussianBlur(att, (0, 0), max(acq.blur_mm / spacing, 0.5))
    if not clean:
        att += (acq.heel * np.linspace(-0.5, 0.5, shape[0], dtype=np.float32))[:, None]
        noise = np.empty(shape, np.float32)
        cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))
        cv2.randn(noise, 0.0, 1.0)
        sigma = cv2.exp(att * 0.5)
        sigma *= 1.0 / math.sqrt(acq.dose * spacing * spacing)
        att += sigma * noise
    if acq.equalisation > 0:
        low = _lowpass(att, spacing, 20.0)
        att -= acq.equalisation * (low - float(low.mean()))

    lo, hi = _window(att, canvas.metal, acq)
    v = (att - lo) * (1.0 / (hi - lo))
    np.clip(v, 0.0, 1.0, out=v)
    if acq.gamma != 1.0:  # a gamma-like curve, v * (1 + g (1 - v)), cheaper than a power
        t = cv2.subtract(1.0, v)
        t *= 1.0 - acq.gamma
        t += 1.0
        v *= t
    maxval = (1 << acq.bits_stored) - 1
    image = (v * maxval + 0.5).astype(np.uint16)

    landmarks = apply_affine(matrix, points_mm)
    if acq.laterality == "R":
        image = cv2.flip(image, 1)
        landmarks = mirror_points(landmarks, shape[1])
    h, w = shape
    visible = (landmarks[:, 0] >= -0.5) & (landmarks[:, 0] <= w - 0.5) & \
              (landmarks[:, 1] >= -0.5) & (landmarks[:, 1] <= h - 0.5)
    field = None if clean else _field_polygon(acq, spacing)
    if field is not None:
        frame = np.array([[-1, -1], [w, -1], [w, h], [-1, h]], float)
        polys = [np.round(p * (1 << SHIFT)).astype(np.int32) for p in (frame, field)]
        cv2.fillPoly(image, polys, round(acq.collimation.fill * maxval), shift=SHIFT)
        visible &= _inside(field, landmarks)
    if not clean and acq.marker:
        _draw_marker(image, acq, spacing, field, int(0.97 * maxval))
    if acq.photometric == "MONOCHROME1":
        image = (maxval - image).astype(np.uint16)
    return Rendered(image, landmarks, visible)
