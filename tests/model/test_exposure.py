"""The exposed-field check: shaft levels whose cortices do not show make the result low-confidence."""

import numpy as np
import pytest

from model.exposure import MIN_CORTEX_STEP, SHAFT_ROLES, cortex_steps, pair_step, unexposed_levels


def two_shafts(rows=400, cols=200, tissue=0.3, bone=0.7):
    """Soft tissue with a vertical bright band (the shaft, columns 80-119) from top to bottom."""
    image = np.full((rows, cols), tissue, np.float32)
    image[:, 80:120] = bone
    return image


ROLES = {name: (2 * i, 2 * i + 1) for i, name in enumerate(SHAFT_ROLES)}


def cortex_points(levels=(40, 90, 310, 360)):
    """Cortex pairs on the band's edges at the four shaft levels (rows), in the order of ``SHAFT_ROLES``."""
    return np.array([p for y in levels for p in ([79.5, y], [119.5, y])], np.float64)


def test_step_across_a_drawn_shaft_is_its_contrast():
    image = two_shafts()
    assert pair_step(image, np.array([79.5, 100.0]), np.array([119.5, 100.0])) == pytest.approx(0.4, abs=0.02)


def test_no_step_in_a_flat_field():
    image = np.full((200, 200), 0.9, np.float32)
    assert pair_step(image, np.array([80.0, 100.0]), np.array([120.0, 100.0])) == 0.0


def test_points_off_the_edges_see_a_smaller_step():
    image = two_shafts()
    on = pair_step(image, np.array([79.5, 100.0]), np.array([119.5, 100.0]))
    inside = pair_step(image, np.array([95.0, 100.0]), np.array([105.0, 100.0]))  # both in the medullary band
    assert inside < MIN_CORTEX_STEP < on


def test_collimated_levels_are_named():
    image = two_shafts()
    image[300:] = 1.0  # a collimator blade over the lower shaft, white as unexposed film is
    assert unexposed_levels(image, cortex_points(), ROLES, reference_length_px=100.0) == [
        "tibial_shaft_proximal", "tibial_shaft_distal"]
    assert unexposed_levels(two_shafts(), cortex_points(), ROLES, reference_length_px=100.0) == []


def test_noise_under_the_collimator_is_averaged_away():
    rng = np.random.default_rng(0)
    image = two_shafts(rows=2000, cols=1000)
    image[:1000] = 0.5  # upper half collimated ...
    image += rng.normal(0, 0.05, image.shape).astype(np.float32)  # ... and everything noisy
    pts = cortex_points()
    pts[:, 1] *= 5
    pts[:, 0] = np.where(pts[:, 0] < 100, 79.5, 119.5)  # the band keeps its columns in the larger image
    steps = cortex_steps(image, pts, ROLES, reference_length_px=500.0)  # works at 64 px per L: 8x smaller
    assert steps["femoral_shaft_proximal"] < MIN_CORTEX_STEP < steps["tibial_shaft_distal"]


def test_a_blanked_shaft_level_makes_the_prediction_low_confidence(shipped_weights):
    """A synthetic knee, then the same image with everything below the proximal tibial level blanked out."""
    from model.inference import KneeAligner
    from model.preprocess import normalize_image
    from train.data.splits import validation_seeds
    from train.synth import render_case, sample_case

    case = sample_case(validation_seeds("preop", 41)[-1], "preop", atfa_deg=6.0, laterality="L")
    img = render_case(case, pixel_spacing_mm=0.3, clean=True)
    image = normalize_image(img.image, img.photometric)
    aligner = KneeAligner.load(shipped_weights)
    whole = aligner.predict_image(image, "L", (0.3, 0.3))
    assert not whole.low_confidence, whole.warnings

    roles = whole.landmarks
    scheme = aligner.schemes["preop"]
    proximal = roles[list(scheme.roles["tibial_shaft_proximal"])][:, 1].max()
    distal = roles[list(scheme.roles["tibial_shaft_distal"])][:, 1].min()
    cut = image.copy()
    cut[int((proximal + distal) / 2):] = 0.0  # a black shutter between the two tibial levels
    pred = aligner.predict_image(cut, "L", (0.3, 0.3))
    assert pred.low_confidence
    assert any("tibial shaft distal" in w for w in pred.warnings), pred.warnings
