"""The projection renderer: its landmarks lie on its projected outlines, follow the pose, and give the angle it
was posed with; its images are real DICOM radiographs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.frames import mirror_points
from model.scheme import load_scheme
from train.xray3d import render_case, sample_case
from train.xray3d.bones import build_knee
from train.xray3d.case import _layout
from train.xray3d.outlines import Contour, outline
from train.xray3d.projection import project

SPACING = 0.6


def posed(seed: int, phase: str = "preop", laterality: str = "L", atfa: float | None = None, **pose) -> object:
    """A case with a long open field and its pose (and, for a hand-posed knee, the shafts' offsets) overridden."""
    case = sample_case(seed, phase, atfa_deg=atfa, laterality=laterality)
    knee = case.knee
    knee = dataclasses.replace(knee, pose=dataclasses.replace(knee.pose, **pose))
    if atfa is not None:
        knee = dataclasses.replace(knee, femur=dataclasses.replace(knee.femur, shaft_offset=0.0, coronal_bow=0.0,
                                                                   sagittal_bow=0.0),
                                   tibia=dataclasses.replace(knee.tibia, coronal_bow=0.0))
    exposure = dataclasses.replace(case.acquisition, fov="long", plateau_fraction=0.25, shaft_above=1.8,
                                   shaft_below=1.8, collimation=None, centre_shift=(0.0, 0.0),
                                   ray_offset=(0.0, 0.0))
    return dataclasses.replace(case, knee=knee, acquisition=exposure)


STILL = {"flexion_deg": 0.0, "tibia_tilt_deg": 0.0, "rotation_deg": 0.0, "femur_rotation_deg": 0.0, "inplane_deg": 0.0}


@pytest.mark.parametrize("phase", ["preop", "postop"])
def test_outline_landmarks_lie_on_the_projected_silhouettes(phase):
    """Every femoral, tibial and fibular outline landmark is on its bone's silhouette contour (to 0.05 px), and
    the shaft points sit at their levels in the frame of the plateau corners."""
    case = posed(11, phase, rotation_deg=8.0, flexion_deg=10.0)
    model = build_knee(case.knee)
    det = _layout(case, model, SPACING).canvas
    proj = project(model.parts, det, step=0.95 * SPACING, dz=1.5)
    femur = proj.thickness["femur"] + proj.thickness.get("femoral_component", 0.0)
    contours = {"femur": Contour(outline(femur)), "tibia": Contour(outline(proj.thickness["tibia"])),
                "fibula": Contour(outline(proj.thickness["fibula"]))}
    img = render_case(case, SPACING)
    scheme = load_scheme(phase)
    c0, r0 = _layout(case, model, SPACING).fov[:2]
    pts = img.landmarks + [c0, r0]  # back on the canvas of the projection
    for curve in scheme.curves:
        if curve.bone not in contours:
            continue
        c = contours[curve.bone]
        for i in curve.indices:
            d = np.min(np.linalg.norm(c.pts - pts[i], axis=1))
            seg = np.min(_segment_distance(c.pts, pts[i]))
            assert min(d, seg) < 0.05, (curve.name, i, d)
    ref = pts[list(scheme.roles["reference"])]
    x = (ref[1] - ref[0]) / np.linalg.norm(ref[1] - ref[0])
    length = np.linalg.norm(ref[1] - ref[0])
    for bone, sign in (("femur", -1.0), ("tibia", 1.0)):
        for level, med, lat in scheme.shaft_levels[bone]:
            for i in (med, lat):
                d = pts[i] - ref.mean(axis=0)
                y = (x[0] * d[1] - x[1] * d[0]) / length
                assert y == pytest.approx(sign * level, abs=1e-6)


def _segment_distance(poly: np.ndarray, p: np.ndarray) -> np.ndarray:
    a, b = poly[:-1], poly[1:]
    d = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, d) / np.maximum(np.einsum("ij,ij->i", d, d), 1e-12), 0, 1)
    return np.linalg.norm(a + t[:, None] * d - p, axis=1)


def test_the_landmarks_are_on_intensity_edges_of_the_image():
    """In the stored image (noise off), the tibial shaft cortex points are where the intensity changes fastest
    across the shaft: each within 1.5 pixels (0.45 mm) of the steepest step on its row."""
    case = posed(5, **STILL)
    quiet = dataclasses.replace(case.acquisition, photons=1e9, scatter=0.0, blur_mm=0.05, unsharp=0.0,
                                equalisation=0.0, grid_lines=0.0, marker=None, text=None, curve=(0, .25, .5, .75, 1),
                                gamma=1.0, texture=0.0, photometric="MONOCHROME2")
    img = render_case(dataclasses.replace(case, acquisition=quiet), 0.3)
    image = img.image.astype(np.float64)
    scheme = load_scheme("preop")
    for level, med, lat in scheme.shaft_levels["tibia"]:
        for i in (med, lat):
            x, y = img.landmarks[i]
            row = image[int(round(y)), :]
            lo, hi = int(x) - 12, int(x) + 13
            grad = np.abs(np.diff(row[lo:hi]))
            steepest = lo + int(np.argmax(grad)) + 0.5
            assert abs(steepest - x) < 1.5, (level, i, steepest, x)


def test_a_hand_posed_knee_gives_its_angle():
    """No flexion, rotation or tilt, straight shafts centred on the notch: the projected shaft axes give the posed
    angle exactly, and FNTS within 1.5 degrees. FTS's distal femoral level (0.8 L) lies in the metaphyseal flare,
    cut along the plateau's direction: it departs from the shaft axis more, in the direction of the angle."""
    for atfa in (-10.0, 0.0, 6.0, 14.0):
        img = render_case(posed(7, atfa=atfa, **STILL), SPACING)
        assert img.atfa_axes_deg == pytest.approx(atfa, abs=0.05)
        assert img.atfa_fnts_deg == pytest.approx(atfa, abs=1.5)
        assert img.atfa_fts_deg == pytest.approx(atfa, abs=4.0)


def test_landmarks_follow_the_pose():
    """Turning the limb in the image plane turns the corner line by the same angle; the angle does not change."""
    base = render_case(posed(3, **STILL), SPACING)
    turned = render_case(posed(3, **{**STILL, "inplane_deg": 12.0}), SPACING)
    ref = list(load_scheme("preop").roles["reference"])

    def corner_angle(img):
        a, b = img.landmarks[ref]
        return np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))

    assert corner_angle(turned) - corner_angle(base) == pytest.approx(12.0, abs=0.3)
    assert turned.atfa_fnts_deg == pytest.approx(base.atfa_fnts_deg, abs=0.3)
    assert turned.atfa_axes_deg == pytest.approx(base.atfa_axes_deg, abs=0.05)


def test_a_right_knee_is_the_mirror_of_the_left():
    left = render_case(posed(9, laterality="L"), SPACING)
    right = render_case(posed(9, laterality="R"), SPACING)
    assert right.image.shape == left.image.shape
    np.testing.assert_allclose(right.landmarks, mirror_points(left.landmarks, left.image.shape[1]), atol=1e-6)
    assert right.atfa_fnts_deg == pytest.approx(left.atfa_fnts_deg, abs=1e-6)  # the same clinical sign


@pytest.mark.parametrize("hard", [False, True])
def test_random_cases_render_with_plausible_ground_truth(hard):
    for seed in range(20, 26):
        img = render_case(sample_case(seed, hard=hard), 1.0)
        scheme = load_scheme(img.phase)
        assert img.landmarks.shape == (scheme.n_points, 2) and np.isfinite(img.landmarks).all()
        assert img.image.dtype == np.uint16 and img.image.max() < 2**img.bits_stored
        length = scheme.reference_length(img.landmarks) * img.pixel_spacing_mm
        assert 55.0 < length < 110.0  # the plateau, magnified
        assert abs(img.atfa_fnts_deg - img.atfa_axes_deg) < 8.0
        h, w = img.image.shape
        inside = (img.landmarks[:, 0] >= 0) & (img.landmarks[:, 0] <= w - 1) & (img.landmarks[:, 1] >= 0) & (
            img.landmarks[:, 1] <= h - 1)
        assert not (img.visible & ~inside).any()  # visible implies inside the image


def test_tight_fields_show_little_shaft():
    """The tight field of view shows the plateau at 42-62 % of the image width."""
    for seed in range(40, 60):
        case = sample_case(seed, "preop")
        if case.acquisition.fov != "tight":
            continue
        img = render_case(case, 1.0)
        width = load_scheme("preop").reference_length(img.landmarks)
        assert 0.3 < width / img.image.shape[1] < 0.75


def test_the_dicom_files_of_the_renderer(tmp_path):
    """``knee-train synth --renderer 3d`` writes valid DX/CR instances with their ground truth; UIDs differ from
    the 2D generator's for the same seed."""
    import json

    import pydicom

    from tests.conftest import require_tool
    from train.synth import generate

    three = generate(2, tmp_path / "3d", seed=4, renderer="3d", progress=False)
    two = generate(1, tmp_path / "2d", seed=4, progress=False)
    ds = pydicom.dcmread(three[0])
    truth = json.loads(three[0].with_suffix(".json").read_text())
    assert truth["parameters"]["renderer"].startswith("xray3d@")
    assert len(truth["landmarks"]) == load_scheme(truth["phase"]).n_points
    assert ds.SOPInstanceUID != pydicom.dcmread(two[0]).SOPInstanceUID
    assert ds.Rows == truth["rows"] and ds.Modality in ("DX", "CR")
    import subprocess

    out = subprocess.run([require_tool("dciodvfy"), str(three[0])], capture_output=True, text=True, check=False)
    assert not [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize(("seed", "phase", "laterality"), [(3, "preop", "L"), (4, "postop", "R"), (5, "preop", "R")])
def test_the_tibial_flare_points_run_down_their_own_side(seed, phase, laterality):
    """The 4 metaphyseal points of each tibial outline lie between their plateau corner and the first shaft level
    (0.6 reference lengths), on that corner's side, in order: a walk round the far side of the bone would put them on
    the other corner and far down the shaft (renderer 1.0 did)."""
    img = render_case(sample_case(seed, phase, laterality=laterality), pixel_spacing_mm=1.0)
    scheme = load_scheme(phase)
    pts = mirror_points(img.landmarks, img.image.shape[1]) if laterality == "R" else img.landmarks
    ref = pts[list(scheme.roles["reference"])]
    length = np.linalg.norm(ref[1] - ref[0])
    x = (ref[1] - ref[0]) / length  # medial to lateral
    frame = (pts - ref.mean(axis=0)) @ np.column_stack([x, [-x[1], x[0]]]) / length  # (across, down) in widths
    for name, sign in (("tibia_medial_outline", -1.0), ("tibia_lateral_outline", 1.0)):
        curve = next(c for c in scheme.curves if c.name == name)
        flare = frame[list(curve.indices)[:4]]
        assert np.all((flare[:, 1] > 0.0) & (flare[:, 1] < 0.6)), (name, flare)
        assert np.all(np.diff(flare[:, 1]) > 0), (name, flare)
        assert np.all(sign * flare[:, 0] > 0.1), (name, flare)


def _boxy_femur(tilt_deg: float) -> np.ndarray:
    """A hand-built left femur outline in the canonical frame (L = 100, y distal): straight shaft, round condyles
    with their tips on the plateau line, and a flat-roofed notch (an implant's box) 10 to the sides of x = 0, its roof
    25 above the tips; the whole bone then tilted by ``tilt_deg`` about the origin, as a varus or valgus femur is."""
    def arc(cx: float, a0: float, a1: float) -> np.ndarray:
        a = np.radians(np.linspace(a0, a1, 40))
        return np.column_stack([cx + 20 * np.cos(a), -20 + 20 * np.sin(a)])

    edge = np.degrees(np.arccos(0.75))  # where a condyle's circle meets its notch wall (x = -10 or 10)
    pts = np.vstack([[[-30, -160], [-30, -60]], arc(-25, 180, edge), [[-10, -25], [10, -25]],
                     arc(25, 180 - edge, 0), [[30, -60], [30, -160]], [[-30, -160]]])
    c, s = np.cos(np.radians(tilt_deg)), np.sin(np.radians(tilt_deg))
    return pts @ np.array([[c, s], [-s, c]])


@pytest.mark.parametrize("tilt", [-6.0, 0.0, 6.0])
def test_the_notch_apex_is_the_middle_of_a_flat_roof_however_the_femur_tilts(tilt):
    """The roof's most proximal point would slide to one end of a flat roof as soon as the femur tilts (10 off the
    middle here, which moves the FNTS notch midpoint and so the angle); the apex rule takes the roof's middle, to
    within 1 % of the corner distance (its walls are cut along the plateau, not the femur: 0.5 off at 6 degrees)."""
    from train.xray3d.outlines import _femur_points

    parts, anchors = _femur_points(Contour(_boxy_femur(tilt)), 100.0)
    c, s = np.cos(np.radians(tilt)), np.sin(np.radians(tilt))
    untilted = anchors["apex"] @ np.array([[c, -s], [s, c]])
    assert untilted == pytest.approx([0.0, -25.0], abs=1.0)
    notch = parts[3] @ np.array([[c, -s], [s, c]])
    assert notch[[2, 6]].mean(axis=0)[0] == pytest.approx(0.0, abs=1.0)  # the FNTS notch midpoint, centred


def test_a_post_op_notch_is_the_component_box_even_where_the_native_notch_is_shallower():
    """The box cut removes the bone in the femoral component's box (renderer 1.3): a native notch 11 mm deep under
    a 20 mm box left a shelf of bone in the box, faint in the image, on which the ground-truth notch lay (7.8 px
    from the metal here with renderer 1.2). Every notch landmark is now on the component's own silhouette (to 0.5 px,
    0.3 mm: the bone behind the metal shifts the joint's silhouette a little), and no bone is left in the box under
    the notch points."""
    case = posed(11, "postop", **STILL)
    knee = dataclasses.replace(case.knee, femur=dataclasses.replace(case.knee.femur, notch_height=11.0),
                               implant=dataclasses.replace(case.knee.implant, box_height=20.0))
    case = dataclasses.replace(case, knee=knee)
    model = build_knee(case.knee)
    lay = _layout(case, model, SPACING)
    proj = project(model.parts, lay.canvas, step=0.95 * SPACING, dz=1.5)
    component = Contour(outline(proj.thickness["femoral_component"]))
    img = render_case(case, SPACING)
    notch = load_scheme("postop").curve("intercondylar_notch")
    pts = img.landmarks[list(notch.indices)] + list(lay.fov[:2])
    gaps = [float(np.min(np.linalg.norm(component.pts - p, axis=1))) for p in pts]
    assert max(gaps) < 0.5, gaps
    below_roof = np.round(pts[[2, 6]].mean(axis=0) + [0.0, 3.0 / SPACING]).astype(int)  # 3 mm under the roof
    assert proj.thickness["femur"][below_roof[1], below_roof[0]] == pytest.approx(0.0, abs=0.05)
