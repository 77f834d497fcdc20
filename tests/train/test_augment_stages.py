"""Augmentation keeps image and landmarks together; stage inputs match what inference builds."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.frames import FrameSpec, apply_affine, mirror_points
from model.scheme import load_scheme
from train.augment import (
    ElasticAug,
    FrameJitter,
    GlobalAug,
    ImplantAug,
    IntensityAug,
    augment_global,
    augment_intensity,
    elastic_warp,
    jitter_reference,
    maybe_elastic,
)
from train.data.sample import KneeSample
from train.data.stages import global_batch, global_example, implant_batch, implant_example, local_batch, local_example

NEUTRAL = IntensityAug(gamma=(1, 1), contrast=(1, 1), brightness=0, blur_p=0, noise_p=0, cutout_p=0)


def _blobs(size: int, points: np.ndarray) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    for x, y in points:
        cv2.circle(img, (round(x), round(y)), 3, 1.0, -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def _peak(img: np.ndarray, near: np.ndarray, r: int = 12) -> np.ndarray:
    x0, y0 = int(near[0]) - r, int(near[1]) - r
    win = img[y0:y0 + 2 * r, x0:x0 + 2 * r]
    ys, xs = np.mgrid[0:win.shape[0], 0:win.shape[1]]
    w = win / win.sum()
    return np.array([(w * xs).sum() + x0, (w * ys).sum() + y0])


@pytest.mark.parametrize("seed", range(6))
def test_global_augmentation_moves_points_with_the_image(seed):
    pts = np.array([[100.0, 140.0], [160.0, 135.0]])
    params = GlobalAug(intensity=NEUTRAL)
    out, moved, mirrored = augment_global(_blobs(256, pts), pts, np.random.default_rng(seed), params)
    for p in moved:
        assert np.linalg.norm(_peak(out, p) - p) < 0.6
    assert np.all((moved > 0.03 * 256) & (moved < 0.97 * 256 - 1))
    if mirrored:  # points keep their order: the medial point is now to the right
        assert moved[0, 0] > moved[1, 0]


def test_global_example_labels():
    scheme = load_scheme("postop")
    h, w = 500, 400
    pts = np.random.default_rng(0).uniform(50, 350, size=(scheme.n_points, 2))
    sample = KneeSample(np.random.default_rng(1).random((h, w), dtype=np.float32), pts, "R", "postop", None, "t")
    _, ref, aux = global_example(sample, 128, None, None)
    assert aux.tolist() == [1.0, 1.0]
    # 400 x 500 -> 102 x 128 centred in 128 x 128 (13 px of padding left and right)
    assert np.allclose(ref[:, 0], (pts[list(scheme.roles["reference"]), 0] + 0.5) * 102 / 400 - 0.5 + 13)
    assert np.allclose(ref[:, 1], (pts[list(scheme.roles["reference"]), 1] + 0.5) * 128 / 500 - 0.5)
    always_mirror = GlobalAug(mirror_p=1.0, intensity=NEUTRAL)
    _, _, aux = global_example(sample, 128, np.random.default_rng(0), always_mirror)
    assert aux.tolist() == [0.0, 1.0]  # a mirrored right knee looks like a left one
    batch = global_batch([sample, sample], 128, np.random.default_rng(0), GlobalAug())
    assert batch.images.shape == (2, 1, 128, 128) and batch.coords.shape == (2, 2, 2) and batch.aux.shape == (2, 2)


def test_jitter_reference_bounds():
    ref = np.array([[100.0, 200.0], [180.0, 210.0]])
    length = np.linalg.norm(ref[1] - ref[0])
    base_angle = math.atan2(10, 80)
    params = FrameJitter()
    rng = np.random.default_rng(0)
    scales, angles = [], []
    for _ in range(300):
        j = jitter_reference(ref, rng, params)
        d = j[1] - j[0]
        scales.append(np.linalg.norm(d) / length)
        angles.append(math.degrees(math.atan2(d[1], d[0]) - base_angle))
        assert np.linalg.norm(j.mean(0) - ref.mean(0)) <= 0.05 * length * math.sqrt(2) + 1e-9
    assert 0.9 - 1e-9 <= min(scales) < 0.93 and 1.07 < max(scales) <= 1.1 + 1e-9
    assert -10 - 1e-9 <= min(angles) < -8 and 8 < max(angles) <= 10 + 1e-9


def _knee(laterality: str, phase: str = "preop") -> KneeSample:
    scheme = load_scheme(phase)
    rng = np.random.default_rng(5)
    h, w = 420, 360
    pts = rng.uniform([60, 60], [300, 360], size=(scheme.n_points, 2))
    a, b = scheme.roles["reference"]
    pts[a], pts[b] = (140.0, 210.0), (220.0, 215.0)  # medial left of lateral: a left knee
    img = rng.random((h, w)).astype(np.float32)
    if laterality == "R":  # the same knee seen as a right knee as acquired
        img, pts = np.ascontiguousarray(img[:, ::-1]), mirror_points(pts, w)
    return KneeSample(img, pts, laterality, phase, (0.5, 0.5), laterality)


def test_local_example_frame_geometry():
    spec = FrameSpec(width_px=64, height_px=96)
    left = _knee("L")
    frame, pts, matrix = local_example(left, spec, None, None)
    assert frame.shape == (96, 64)
    ref = pts[list(left.scheme.roles["reference"])]
    assert np.allclose(ref, spec.reference_points_px)
    assert np.allclose(apply_affine(matrix, left.landmarks), pts)
    # a right knee gives exactly the frame and frame landmarks of the same knee acquired as a left one
    frame_r, pts_r, _ = local_example(_knee("R"), spec, None, None)
    assert np.allclose(pts_r, pts)
    assert np.allclose(frame_r, frame, atol=1e-5)


def test_local_batch_masks_points_outside_the_frame():
    spec = FrameSpec(width_px=64, height_px=96)
    s = _knee("L", "postop")
    s.landmarks[3] = (5.0, 5.0)  # far outside the frame around the plateau
    batch = local_batch([s], spec, np.random.default_rng(0), FrameJitter())
    assert batch.images.shape == (1, 1, 96, 64) and batch.coords.shape == (1, 181, 2)
    assert batch.weight[0, 3] == 0 and batch.weight[0].sum() > 0


def test_intensity_stays_in_range_and_is_reproducible():
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    params = IntensityAug(blur_p=1, noise_p=1, cutout_p=1)
    a = augment_intensity(img, np.random.default_rng(7), params)
    b = augment_intensity(img, np.random.default_rng(7), params)
    assert np.array_equal(a, b)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert not np.allclose(a, img)
    assert np.array_equal(augment_intensity(img, np.random.default_rng(7), NEUTRAL), img)


def test_a_tight_field_keeps_landmarks_on_their_pixels():
    """A crop moves the landmarks with the image; shutters leave them and paint outside a box around the knee."""
    from train.augment import FieldAug, tight_field

    rng = np.random.default_rng(3)
    image = rng.random((400, 300)).astype(np.float32)
    points = np.array([[100.0, 200.0], [180.0, 205.0], [140.0, 60.0], [140.0, 350.0]])
    reference = points[:2]
    params = FieldAug(p=1.0, above=(0.5, 0.6), below=(0.5, 0.6), plateau_fraction=(0.6, 0.6), shutter_p=0.0)
    crop, moved = tight_field(image, points, reference, rng, params)
    assert crop.shape[0] < 400 and crop.shape[1] < 300
    for (x, y), (cx, cy) in zip(points[:2], moved[:2]):
        assert crop[int(cy), int(cx)] == image[int(y), int(x)]
    assert moved[2, 1] < 0 and moved[3, 1] > crop.shape[0]  # the far shaft points are outside the crop
    shut, same = tight_field(image, points, reference, np.random.default_rng(4),
                             params.model_copy(update={"shutter_p": 1.0}))
    assert shut.shape == image.shape and np.array_equal(same, points)
    assert shut[200, 140] == image[200, 140]  # the knee is left alone
    assert len(np.unique(shut[0:5, 0:5])) == 1  # a corner is painted over


def test_domain_randomisation_stays_in_range_and_changes_the_image():
    rng = np.random.default_rng(0)
    image = np.tile(np.linspace(0, 1, 128, dtype=np.float32), (128, 1))
    params = IntensityAug(curve_p=1.0, unsharp_p=1.0, grid_p=1.0, glyph_p=1.0, noise_p=0.0, blur_p=0.0, cutout_p=0.0)
    out = augment_intensity(image, rng, params)
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - image).mean() > 0.01
    curve_only = IntensityAug(curve_p=1.0, gamma=(1, 1), contrast=(1, 1), brightness=0, blur_p=0, noise_p=0,
                              cutout_p=0)
    mono = augment_intensity(image, np.random.default_rng(1), curve_only)
    assert np.all(np.diff(mono[0]) >= -1e-6)  # a tone curve keeps the order of intensities


def _only(**kwargs) -> IntensityAug:
    """One appearance change alone: the neutral settings plus ``kwargs``."""
    return NEUTRAL.model_copy(update=kwargs)


def test_a_saturating_window_burns_the_brightest_exposed_part_to_flat_white():
    image = np.zeros((128, 128), np.float32)
    image[:, 64:] = np.linspace(0.1, 0.9, 64, dtype=np.float32)  # the left half is collimated background
    out = augment_intensity(image, np.random.default_rng(0), _only(saturate_p=1.0, saturate_quantile=(0.8, 0.8)))
    white = (out >= 1.0).mean(axis=0)
    # the top 20 % of the exposed part (the quantile of the whole image would burn out the top 40 %)
    assert np.all(white[-8:] == 1.0) and np.all(white[64:110] == 0.0)
    assert np.all(np.diff(out[0]) >= 0) and np.all(out[:, :64] == 0.0)  # monotone; background stays black


def test_the_gain_field_is_smooth_and_changes_the_whole_image():
    flat = np.full((128, 128), 0.5, np.float32)
    out = augment_intensity(flat, np.random.default_rng(2), _only(shading_p=1.0, shading_strength=(0.4, 0.4)))
    assert out.std() > 0.02 and out.max() - out.min() > 0.1
    assert np.abs(np.diff(out, axis=0)).max() < 0.02 and np.abs(np.diff(out, axis=1)).max() < 0.02


def test_texture_grows_with_brightness():
    image = np.full((128, 128), 0.1, np.float32)
    image[:, 64:] = 0.8
    out = augment_intensity(image, np.random.default_rng(3), _only(texture_p=1.0, texture_amount=(0.1, 0.1)))
    dark, bright = out[:, :60].std(), out[:, 68:].std()
    assert bright > 5 * dark > 0
    assert abs(out[:, 68:].mean() - 0.8) < 0.02  # texture, not a change of brightness


def test_local_equalisation_raises_the_contrast_of_a_dull_image():
    rng = np.random.default_rng(4)
    dull = (0.45 + 0.1 * cv2.GaussianBlur(rng.random((128, 128)).astype(np.float32), (0, 0), 4.0)).astype(np.float32)
    out = augment_intensity(dull, np.random.default_rng(5), _only(equalize_p=1.0))
    assert out.std() > 2 * dull.std()
    assert np.corrcoef(out.ravel(), dull.ravel())[0, 1] > 0.5  # the same picture, stretched


@pytest.mark.parametrize("phase", ["preop", "postop"])
def test_implant_example_labels_and_mirrors_with_its_points(phase):
    spec = FrameSpec(half_width=1.0, above=1.0, below=1.0, width_px=48, height_px=48)
    s = _knee("R", phase)
    frame, pts, label = implant_example(s, spec, None, None)
    assert frame.shape == (48, 48) and label.tolist() == [float(phase == "postop")]
    assert np.allclose(pts, spec.reference_points_px)
    plain = ImplantAug(scale=0, rotation_deg=0, shift=0, mirror_p=1.0, intensity=NEUTRAL)
    m_frame, m_pts, m_label = implant_example(s, spec, np.random.default_rng(0), plain)
    assert np.allclose(m_frame, frame[:, ::-1], atol=1e-6)  # the mirror is the only change
    assert np.allclose(m_pts[:, 0], 47 - pts[:, 0]) and np.allclose(m_pts[:, 1], pts[:, 1])
    assert m_label.tolist() == label.tolist()
    batch = implant_batch([s, _knee("L", "postop")], spec, np.random.default_rng(1), ImplantAug())
    assert batch.images.shape == (2, 1, 48, 48) and batch.coords.shape == (2, 2, 2)
    assert batch.aux[:, 0].tolist() == [float(phase == "postop"), 1.0]


@pytest.mark.parametrize("seed", range(4))
def test_an_elastic_bend_moves_points_with_the_image(seed):
    """Shape randomisation: every blob's centre lands on its moved point, and the points really move."""
    pts = np.array([[60.0, 70.0], [128.0, 128.0], [190.0, 100.0], [80.0, 200.0], [200.0, 210.0]])
    params = ElasticAug(p=1.0, amplitude=(0.03, 0.03), cells=(3, 5))
    out, moved = elastic_warp(_blobs(256, pts), pts, np.random.default_rng(seed), params)
    assert out.shape == (256, 256) and out.dtype == np.float32
    for p in moved:
        assert np.linalg.norm(_peak(out, p) - p) < 0.6
    shift = np.linalg.norm(moved - pts, axis=1)
    assert shift.max() > 1.5 and shift.max() <= 0.03 * 256 * math.sqrt(2) + 1e-6
    assert np.ptp(moved - pts, axis=0).max() > 0.5  # a bend, not a plain shift


def test_no_elastic_bend_draws_nothing_from_the_generator():
    """Configurations without the bend stay reproducible: p = 0 returns the inputs and leaves the generator as it
    was; p = 1 bends."""
    image, pts = _blobs(64, np.array([[30.0, 30.0]])), np.array([[30.0, 30.0]])
    rng = np.random.default_rng(5)
    out, moved = maybe_elastic(image, pts, rng, ElasticAug())
    assert out is image and moved is pts
    assert rng.random() == np.random.default_rng(5).random()
    out, _ = maybe_elastic(image, pts, np.random.default_rng(5), ElasticAug(p=1.0))
    assert not np.allclose(out, image)


def test_global_and_local_examples_bend_landmarks_with_the_pixels():
    """Through the stages' own builders: the global square's reference points and the local frame's landmarks
    stay on their blobs when the bend is on."""
    pts = np.array([[100.0, 140.0], [160.0, 135.0]])
    params = GlobalAug(intensity=NEUTRAL, elastic=ElasticAug(p=1.0, amplitude=(0.03, 0.03)))
    out, moved, _ = augment_global(_blobs(256, pts), pts, np.random.default_rng(2), params)
    for p in moved:
        assert np.linalg.norm(_peak(out, p) - p) < 0.6
    spec = FrameSpec(half_width=1.0, above=1.5, below=1.5, width_px=192, height_px=288)
    knee = _knee("L")
    smooth = cv2.GaussianBlur(knee.image, (0, 0), 6.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    sample = KneeSample(smooth, knee.landmarks, "L", "preop", (0.5, 0.5), "L")
    jitter = FrameJitter(scale=0, rotation_deg=0, shift=0, intensity=NEUTRAL)
    plain, plain_pts, _ = local_example(sample, spec, np.random.default_rng(0), jitter)
    bent, bent_pts, _ = local_example(sample, spec, np.random.default_rng(0),
                                      jitter.model_copy(update={"elastic": ElasticAug(p=1.0)}))
    inside = (plain_pts[:, 0] > 20) & (plain_pts[:, 0] < 172) & (plain_pts[:, 1] > 20) & (plain_pts[:, 1] < 268)
    assert inside.sum() > 10
    assert np.abs(bent_pts - plain_pts)[inside].max() > 0.5
    # the bent frame at a bent landmark shows what the plain frame showed at the landmark
    for (px, py), (bx, by) in zip(plain_pts[inside][:20], bent_pts[inside][:20]):
        assert abs(float(cv2.getRectSubPix(bent, (1, 1), (bx, by))[0, 0])
                   - float(cv2.getRectSubPix(plain, (1, 1), (px, py))[0, 0])) < 0.02


@pytest.mark.parametrize("settings", [{"p": 1.5}, {"amplitude": (0.03, 0.01)}, {"cells": (1, 3)},
                                      {"amplitude": (0.01, 0.05), "cells": (3, 4)}])
def test_an_elastic_setting_that_could_fold_the_image_is_refused(settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ElasticAug(**settings)
    assert ElasticAug(amplitude=(0.01, 0.04), cells=(3, 4)).p == 0.0  # the ablation's setting is the limit
