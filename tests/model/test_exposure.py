"""The exposed-field check: which shaft levels show their cortices, and what the axes do with it."""

import numpy as np
import pytest

from model.exposure import MIN_CORTEX_STEP, cortex_steps, exposed_levels, pair_step
from model.scheme import load_scheme


def two_shafts(rows=400, cols=200, tissue=0.3, bone=0.7):
    """Soft tissue with a vertical bright band (the shaft, columns 80-119) from top to bottom."""
    image = np.full((rows, cols), tissue, np.float32)
    image[:, 80:120] = bone
    return image


LEVELS = ("femur_far", "femur_near", "tibia_near", "tibia_far")
ROLES = {name: (2 * i, 2 * i + 1) for i, name in enumerate(LEVELS)}


def cortex_points(levels=(40, 90, 310, 360)):
    """Cortex pairs on the band's edges at four shaft levels (rows), in the order of ``LEVELS``."""
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


def test_collimated_levels_are_not_exposed():
    """Every shaft level of the pre-op scheme on one drawn shaft: a collimator blade hides those below it."""
    scheme = load_scheme("preop")
    image = two_shafts(rows=600)
    points = np.full((scheme.n_points, 2), 100.0)
    for bone, rows in scheme.shaft_levels.items():
        for level, med, lat in rows:
            y = 300 + (100 * level if bone == "tibia" else -100 * level)  # L = 100 px, plateau line at row 300
            points[med], points[lat] = (79.5, y), (119.5, y)
    everything = exposed_levels(image, points, scheme, reference_length_px=100.0)
    assert everything == {bone: {lv for lv, _, _ in rows} for bone, rows in scheme.shaft_levels.items()}
    image[395:] = 1.0  # a collimator blade over the tibia below 0.95 L, white as unexposed film is
    shown = exposed_levels(image, points, scheme, reference_length_px=100.0)
    assert shown["tibia"] == {0.6, 0.7, 0.8, 0.9}
    assert shown["femur"] == everything["femur"]
    points[scheme.shaft_pair("femur", 1.3)[0]] = (-5.0, 170.0)  # a cortex point off the image is not exposed
    assert 1.3 not in exposed_levels(image, points, scheme, reference_length_px=100.0)["femur"]


def test_a_faint_shaft_beside_bright_metal_is_exposed_and_its_collimated_part_is_not():
    """A post-op knee's metal takes the top of the display range, so the shaft steps by only 0.06 (the 3D
    renderer's exposed shafts go as low as that): still exposed; the flat field under the collimator is not."""
    scheme = load_scheme("preop")
    image = two_shafts(rows=600, tissue=0.30, bone=0.36)
    image[280:320, 60:140] = 1.0  # the implant at the joint line
    points = np.full((scheme.n_points, 2), 100.0)
    for bone, rows in scheme.shaft_levels.items():
        for level, med, lat in rows:
            y = 300 + (100 * level if bone == "tibia" else -100 * level)
            points[med], points[lat] = (79.5, y), (119.5, y)
    image[:195] = 0.30  # the collimator over the femur above 1.05 L: a flat field
    shown = exposed_levels(image, points, scheme, reference_length_px=100.0)
    assert shown["tibia"] == {lv for lv, _, _ in scheme.shaft_levels["tibia"]}
    assert shown["femur"] == {lv for lv, _, _ in scheme.shaft_levels["femur"] if lv <= 1.0}


def test_noise_under_the_collimator_is_averaged_away():
    rng = np.random.default_rng(0)
    image = two_shafts(rows=2000, cols=1000)
    image[:1000] = 0.5  # upper half collimated ...
    image += rng.normal(0, 0.05, image.shape).astype(np.float32)  # ... and everything noisy
    pts = cortex_points()
    pts[:, 1] *= 5
    pts[:, 0] = np.where(pts[:, 0] < 100, 79.5, 119.5)  # the band keeps its columns in the larger image
    steps = cortex_steps(image, pts, ROLES, reference_length_px=500.0)  # works at 64 px per L: 8x smaller
    assert steps["femur_far"] < MIN_CORTEX_STEP < steps["tibia_far"]


def test_shaft_levels_adapt_to_a_shutter_and_too_little_shaft_is_low_confidence(shipped_weights):
    """A synthetic knee; the same image with a shutter over the distal tibia (axes move to the exposed levels);
    and with the shutter just below the plateau (too little tibia: not measurable)."""
    from model.alignment import MIN_LEVEL
    from model.inference import KneeAligner
    from model.preprocess import normalize_image
    from train.data.splits import validation_seeds
    from train.synth import render_case, sample_case

    roles = load_scheme("preop").roles
    far_pairs = [*roles["femoral_shaft_proximal"], *roles["tibial_shaft_distal"]]
    for seed in validation_seeds("preop", 20):  # the first knee whose shafts reach 0.1 L past the paper's levels
        img = render_case(sample_case(seed, "preop", atfa_deg=6.0, laterality="L"), pixel_spacing_mm=0.3, clean=True)
        ref = np.linalg.norm(np.subtract(*img.landmarks[list(roles["reference"])]))
        rows = img.landmarks[far_pairs, 1]
        if rows.min() > 0.1 * ref and rows.max() < img.image.shape[0] - 0.1 * ref:
            break
    else:
        pytest.fail("no validation knee shows both shafts well past the paper's levels")
    image = normalize_image(img.image, img.photometric)
    aligner = KneeAligner.load(shipped_weights, consistency=False)
    whole = aligner.predict_image(image, "L", (0.3, 0.3))
    assert not whole.low_confidence, whole.warnings
    assert whole.alignment.levels.fixed  # everything exposed: the paper's levels

    scheme = aligner.schemes["preop"]
    pts = whole.landmarks
    row = lambda level: pts[list(scheme.shaft_pair("tibia", level))][:, 1].max()  # noqa: E731
    cut = image.copy()
    cut[int((row(1.0) + row(1.1)) / 2):] = 0.0  # a black shutter between the tibial levels 1.0 and 1.1
    short = aligner.predict_image(cut, "L", (0.3, 0.3))
    assert short.alignment.levels.tibia == (0.8, 1.0), short.alignment.levels
    assert short.alignment.levels.femur == (1.3, 0.8)
    assert not short.low_confidence, short.warnings
    assert short.alignment.atfa_fnts_deg == pytest.approx(whole.alignment.atfa_fnts_deg, abs=1.5)

    cut[int(row(MIN_LEVEL["tibia"]) - 0.3 * whole.reference_length_px):] = 0.0  # less than the minimum left
    none = aligner.predict_image(cut, "L", (0.3, 0.3))
    assert none.low_confidence
    assert any("of tibial shaft exposed" in w for w in none.warnings), none.warnings
