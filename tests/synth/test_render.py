"""The synthetic radiograph as an image: reproducibility, storage, photometric inversion, right knees,
resolution, the hard set, and speed."""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest

from model.frames import mirror_points
from train.synth import render_case, sample_case
from train.synth.acquisition import MAX_PX, MIN_PX


def _with_acquisition(case, **changes):
    return dataclasses.replace(case, acquisition=dataclasses.replace(case.acquisition, **changes))


def test_same_seed_gives_identical_pixels_and_landmarks():
    a = render_case(sample_case(77), 0.4)
    b = render_case(sample_case(77), 0.4)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.landmarks, b.landmarks)
    c = render_case(sample_case(78), 0.4)
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)


def test_generator_rng_gives_self_contained_cases():
    rng = np.random.default_rng(5)
    case = sample_case(rng)
    assert sample_case(case.seed) == case  # the case's own seed regenerates it


def test_detector_resolution_image_and_stored_bits():
    for seed in range(3):
        case = sample_case(seed)
        img = render_case(case)
        assert img.pixel_spacing_mm == case.acquisition.spacing_mm
        assert 0.1 <= img.pixel_spacing_mm <= 0.2
        assert all(MIN_PX <= n <= MAX_PX for n in img.image.shape)
        assert img.image.dtype == np.uint16
        assert 10 <= img.bits_stored <= 16 and int(img.image.max()) < (1 << img.bits_stored)
        assert img.image.std() > 0.05 * (1 << img.bits_stored)  # a real image, not a flat field


def test_monochrome1_stores_inverted_values():
    case = sample_case(12)
    mono2 = render_case(_with_acquisition(case, photometric="MONOCHROME2"), 0.5)
    mono1 = render_case(_with_acquisition(case, photometric="MONOCHROME1"), 0.5)
    maxval = (1 << case.acquisition.bits_stored) - 1
    assert mono1.photometric == "MONOCHROME1"
    assert np.array_equal(mono1.image.astype(int), maxval - mono2.image.astype(int))
    assert np.array_equal(mono1.landmarks, mono2.landmarks)


def _mean_x(img, curve_range) -> float:
    return float(img.landmarks[list(curve_range), 0].mean())


@pytest.mark.parametrize("phase", ["preop", "postop"])
def test_right_knee_is_the_mirrored_left_knee(phase):
    left = render_case(sample_case(31, phase=phase, laterality="L"), 0.5, clean=True)
    right = render_case(sample_case(31, phase=phase, laterality="R"), 0.5, clean=True)
    assert (left.laterality, right.laterality) == ("L", "R")
    assert np.array_equal(right.image, cv2.flip(left.image, 1))
    assert np.allclose(right.landmarks, mirror_points(left.landmarks, left.image.shape[1]))
    fibula, tibia = range(112, 134), range(88, 112)
    assert _mean_x(left, fibula) > _mean_x(left, tibia)  # left knee: fibula (lateral) on the image's right
    assert _mean_x(right, fibula) < _mean_x(right, tibia)  # right knee as acquired: on the image's left
    assert right.atfa_fts_deg == pytest.approx(left.atfa_fts_deg, abs=1e-9)
    assert right.atfa_fnts_deg == pytest.approx(left.atfa_fnts_deg, abs=1e-9)


def test_coarser_spacing_renders_the_same_anatomy():
    case = sample_case(44)
    fine, coarse = render_case(case, 0.25), render_case(case, 0.5)
    # pixel centres at integers: x_mm = (x + 0.5) * spacing
    assert np.allclose((fine.landmarks + 0.5) * 0.25, (coarse.landmarks + 0.5) * 0.5, atol=1e-9)
    assert abs(coarse.image.shape[0] * 2 - fine.image.shape[0]) <= 1
    assert coarse.atfa_fnts_deg == pytest.approx(fine.atfa_fnts_deg, abs=1e-9)


def test_hard_cases_cut_the_shafts_and_rotate_more():
    rotations, cut = [], []
    for seed in range(12):
        case = sample_case(600 + seed, hard=True)
        img = render_case(case, 0.6)
        rotations.append(abs(case.acquisition.rotation_deg))
        cut.append(not img.visible[[0, 22, 99, 111]].any())  # shaft ends 1.3 L from the joint
        assert img.visible[65] and img.visible[87]  # the plateau corners stay in the field
    assert max(rotations) <= 25.0 and max(rotations) > 15.0
    assert np.mean(cut) > 0.8
    normal = [render_case(sample_case(600 + s), 0.6).visible.mean() for s in range(6)]
    assert np.mean(normal) > 0.9


def test_marker_and_collimation_only_in_the_full_render():
    case = _with_acquisition(sample_case(50, laterality="L"), marker="L", marker_corner=0)
    full = render_case(case, 0.3)
    clean = render_case(case, 0.3, clean=True)
    assert full.image.shape == clean.image.shape
    assert not np.array_equal(full.image, clean.image)


@pytest.mark.slow
def test_render_speed():
    """Loose bounds (the targets are 0.3 s and 50 ms on an idle 2-core CPU); prints the figures."""
    base = sample_case(2024, phase="postop")
    big = _with_acquisition(base, spacing_mm=0.12, width_mm=2000 * 0.12, height_mm=2500 * 0.12)
    render_case(big)
    timings = {}
    for name, case, spacing in (("2000x2500 px", big, None), ("0.5 mm/px", base, 0.5)):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            img = render_case(case, spacing)
            runs.append(time.perf_counter() - t0)
        timings[name] = (min(runs), img.image.shape)
    print({k: f"{v[0] * 1000:.0f} ms {v[1]}" for k, v in timings.items()})
    assert timings["2000x2500 px"][0] < 1.5
    assert timings["0.5 mm/px"][0] < 0.25
