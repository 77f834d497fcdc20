"""One case of the projection renderer: sample it from a seed, render it with its ground truth.

``sample_case`` draws the knee (``anatomy``) and the exposure (``detector``); ``render_case`` builds the solids,
projects them from a point source, places the scheme's landmarks on the projected outlines (``outlines``), and
exposes and processes the image. The result has the same fields as the 2D generator's ``SynthImage`` (so the
DICOM writer and the datasets take either), plus the exact aTFA between the projected 3D shaft axes and the
measurement panel's exact and design values (``panel``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from model.alignment import compute_alignment, signed_angle_deg
from model.frames import mirror_points
from model.scheme import load_scheme
from model.vocabulary import PHASE_NAMES, PHASES
from train.xray3d.anatomy import Knee3D, sample_knee
from train.xray3d.bones import build_knee
from train.xray3d.detector import MAX_SIDE_PX, Exposure, bone_texture, expose, field_mask, sample_exposure, soft_tissue
from train.xray3d.outlines import LEVEL, outline, scheme_landmarks
from train.xray3d.panel import design_values, projected_values
from train.xray3d.projection import Detector, project

RENDERER_VERSION = "1.3"  # 1.1: the tibial flare landmarks go down their own side (1.0 went round the bone);
# 1.2: the notch apex is the roof's centre between the notch walls (1.1: its most proximal point);
# 1.3: post-op, the box cut removes the bone in the femoral component's box (``bones._box_cut``; 1.2 left the native
# notch's bone there, a faint edge the images do not show, where the ground-truth notch then lay)
METAL = frozenset({"femoral_component", "tray", "stem"})
MIN_RENDER_SPACING = 0.3  # finer detectors get the physics at this spacing, then resampled before the noise


@dataclass(frozen=True)
class Case3D:
    seed: int
    phase: str
    hard: bool
    knee: Knee3D
    acquisition: Exposure  # named as the 2D generator's, for the DICOM writer

    uid_namespace = "kneealign-xray3d"  # the DICOM writer derives UIDs from it and the seed
    generator_version = f"xray3d@{RENDERER_VERSION}"

    @property
    def laterality(self) -> str:
        return self.acquisition.laterality

    def to_dict(self) -> dict:
        return {"renderer": self.generator_version, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # (rows, columns) uint16 stored values
    bits_stored: int
    photometric: str
    pixel_spacing_mm: float
    laterality: str
    phase: str
    scheme_id: str
    landmarks: np.ndarray  # (N, 2) [column, row]
    visible: np.ndarray  # (N,) inside the image and the exposed field
    atfa_fts_deg: float  # from the ground-truth landmarks
    atfa_fnts_deg: float
    atfa_axes_deg: float  # between the projected 3D shaft axes (exact for this projection)
    case: Case3D
    # The measurement panel on the projected geometry ("projected") and as the 3D knee was built ("design"):
    # name -> value (None where it does not apply to the phase), see ``panel``.
    panel: dict = field(default_factory=dict)


def sample_case(seed: int, phase: str | None = None, hard: bool = False, *, atfa_deg: float | None = None,
                laterality: str | None = None, draw: int = 0) -> Case3D:
    """The case of ``seed``. ``draw`` > 0 draws it again from its own random stream: about one case in 2000 has
    a pose whose projected outline misses a landmark level (``OutlineError`` from ``render_case``), and the
    dataset code then takes the next draw of the same seed (rejection sampling; draw 0 is every other case)."""
    rng = np.random.default_rng([int(seed), 3, int(draw)] if draw else [int(seed), 3])
    if phase is None:
        phase = PHASE_NAMES[int(rng.integers(2))]
    drawn = "L" if rng.random() < 0.5 else "R"
    lat = laterality or drawn
    if lat not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {lat!r}")
    knee = sample_knee(rng, phase, hard=hard, atfa_deg=atfa_deg)
    return Case3D(int(seed), phase, hard, knee, sample_exposure(rng, lat, hard=hard))


@dataclass(frozen=True)
class _Layout:
    canvas: Detector
    fov: tuple[int, int, int, int]  # col0, row0, cols, rows on the canvas


def _layout(case: Case3D, model, spacing: float) -> _Layout:
    exp, k = case.acquisition, case.knee
    mag = exp.sid / (exp.sid - k.pose.knee_height)
    source = (float(model.knee_centre[0] + exp.ray_offset[0]), float(model.knee_centre[1] + exp.ray_offset[1]))
    probe = Detector(exp.sid, source, 0.0, 0.0, 1.0, 1, 1)
    ku, kv = probe.project_points(model.knee_centre[None])[0]
    plateau = k.tibia.width * mag
    width = plateau / exp.plateau_fraction
    height = float(np.clip((exp.shaft_above + exp.shaft_below) * plateau, 0.8 * width, 2.2 * width))
    u0 = ku - width * (0.5 + exp.centre_shift[0])
    v0 = kv - height * (exp.shaft_above / (exp.shaft_above + exp.shaft_below) + exp.centre_shift[1])
    reach = 2.0 * plateau
    cu0, cv0 = min(u0, ku - reach), min(v0, kv - reach)
    cu1, cv1 = max(u0 + width, ku + reach), max(v0 + height, kv + reach)
    cols, rows = int(np.ceil((cu1 - cu0) / spacing)), int(np.ceil((cv1 - cv0) / spacing))
    canvas = Detector(exp.sid, source, cu0, cv0, spacing, cols, rows)
    fov = (int(round((u0 - cu0) / spacing)), int(round((v0 - cv0) / spacing)),
           int(round(width / spacing)), int(round(height / spacing)))
    return _Layout(canvas, fov)


def _bilinear(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    m = cv2.remap(img.astype(np.float32), pts[:, 0].astype(np.float32)[None], pts[:, 1].astype(np.float32)[None],
                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return m[0]


def render_case(case: Case3D, pixel_spacing_mm: float | None = None) -> Rendered:
    """Render ``case`` at ``pixel_spacing_mm`` (default: its detector spacing, capped so that no side exceeds
    ``MAX_SIDE_PX``); the physics runs at no finer than ``MIN_RENDER_SPACING``."""
    exp, k = case.acquisition, case.knee
    model = build_knee(k)
    scheme = load_scheme(case.phase)
    # Output spacing: as asked, or the detector's unless the image would be too large.
    mag = exp.sid / (exp.sid - k.pose.knee_height)
    plateau = k.tibia.width * mag
    longest = max(plateau / exp.plateau_fraction, (exp.shaft_above + exp.shaft_below) * plateau)
    out_spacing = float(pixel_spacing_mm or max(exp.detector_spacing, longest / MAX_SIDE_PX))
    spacing = max(out_spacing, MIN_RENDER_SPACING)
    lay = _layout(case, model, spacing)
    det = lay.canvas
    proj = project(model.parts, det, step=0.95 * spacing, dz=1.5, metal_names=METAL)
    # Ground truth on the canvas (left knee).
    thick = proj.thickness
    femur_map = thick["femur"] + thick.get("femoral_component", 0.0)
    names = {"femur": femur_map, "tibia": thick["tibia"], "fibula": thick["fibula"]}
    if PHASES[case.phase].has_implants:
        names.update({n: thick[n] for n in ("femoral_component", "tray", "stem")})
    outlines_px = {n: outline(m) for n, m in names.items()}
    t_axis = det.project_points(model.tibial_axis)
    f_axis = det.project_points(model.femoral_axis)
    neck = det.project_points(model.fibular_neck[None])[0]
    landmarks = scheme_landmarks(scheme, outlines_px, t_axis[1] - t_axis[0], neck,
                                 lambda p: _bilinear(thick["tibia"], p) > LEVEL)
    exact = signed_angle_deg(f_axis[1] - f_axis[0], t_axis[1] - t_axis[0])
    panel = {"projected": projected_values(scheme, landmarks, outlines_px, model, k, det, spacing),
             "design": design_values(k)}
    # The image: soft tissue, then the field of view, mirrored for a right knee, exposed.
    s = k.soft
    radii = np.array([s.thigh_halfwidth, 1.05 * s.knee_halfwidth, s.knee_halfwidth, 0.95 * s.knee_halfwidth,
                      s.calf_halfwidth])
    rng = np.random.default_rng([case.seed, 4])
    bones = proj.attenuation * bone_texture(proj.attenuation.shape, exp, spacing, rng)
    bones = np.where(proj.metal > 0, proj.attenuation, bones)  # metal has no texture
    total = bones + soft_tissue((det.rows, det.cols), det.project_points(model.limb_axis), radii,
                                           spacing, s.depth_ratio, s.fat_fraction, k.mu_soft, k.mu_fat)
    c0, r0, nc, nr = lay.fov
    padded = cv2.copyMakeBorder(total, 0, max(0, r0 + nr - det.rows), 0, max(0, c0 + nc - det.cols),
                                cv2.BORDER_CONSTANT, value=0.0)
    image_li = padded[r0:r0 + nr, c0:c0 + nc]
    points = landmarks - [c0, r0]
    if case.laterality == "R":
        image_li = np.ascontiguousarray(image_li[:, ::-1])
        points = mirror_points(points, nc)
    if out_spacing < spacing:
        size = (int(round(nc * spacing / out_spacing)), int(round(nr * spacing / out_spacing)))
        image_li = cv2.resize(image_li, size, interpolation=cv2.INTER_CUBIC)
        points = (points + 0.5) * np.array([size[0] / nc, size[1] / nr]) - 0.5
    image = expose(image_li, exp, out_spacing, rng)
    h, w = image.shape
    inside = (points[:, 0] >= 0) & (points[:, 0] <= w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= h - 1)
    field = field_mask((h, w), exp, out_spacing)
    visible = inside & (_bilinear(field, points) > 0.5)
    truth = compute_alignment(points, scheme, case.laterality)
    return Rendered(
        image=image, bits_stored=exp.bits_stored, photometric=exp.photometric, pixel_spacing_mm=out_spacing,
        laterality=case.laterality, phase=case.phase, scheme_id=scheme.id, landmarks=points, visible=visible,
        atfa_fts_deg=truth.atfa_fts_deg, atfa_fnts_deg=truth.atfa_fnts_deg, atfa_axes_deg=exact, case=case, panel=panel,
    )
