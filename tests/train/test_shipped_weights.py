"""The shipped weights on a few synthetic radiographs written as real DICOM: a regression guard.

The full figures come from ``knee-train evaluate --data synthetic:test`` (the model card); this test only makes
sure that the weights in the repository still find the knee, its side and phase, and a sensible angle.
Seeds are from the validation range, never from the held-out test range.
"""

import numpy as np
import pydicom
import pytest

from model.inference import CONSISTENCY_ROTATION_DEG, KneeAligner
from train.data.splits import validation_seeds
from train.data.synthetic import render_synthetic
from train.synth import build_dataset, render_case, sample_case


@pytest.fixture(scope="module")
def aligner(shipped_weights):
    return KneeAligner.load(shipped_weights)


CASES = [("preop", "L", 6.0), ("preop", "R", -9.0), ("postop", "L", 3.0), ("postop", "R", 12.0)]


@pytest.mark.parametrize("phase,laterality,atfa", CASES)
def test_shipped_weights_measure_a_synthetic_knee(aligner, phase, laterality, atfa, tmp_path):
    seed = validation_seeds(phase, 10)[CASES.index((phase, laterality, atfa))]
    image = render_case(sample_case(seed, phase, atfa_deg=atfa, laterality=laterality))
    path = tmp_path / "knee.dcm"
    build_dataset(image, laterality_tags=False).save_as(path, enforce_file_format=True)
    pred = aligner.predict(pydicom.dcmread(path))  # no laterality tag: the side must come from the image
    assert pred.laterality == laterality and pred.laterality_source == "image"
    assert pred.phase == phase
    length = np.linalg.norm(np.subtract(*image.landmarks[list(pred_scheme_reference(pred))]))
    rp2p = 100 * np.linalg.norm(pred.landmarks - image.landmarks, axis=1).mean() / length
    assert rp2p < 5.0
    assert pred.alignment.atfa_fnts_deg == pytest.approx(image.atfa_fnts_deg, abs=2.5)


def pred_scheme_reference(pred):
    from model.scheme import load_scheme

    return load_scheme(pred.phase).roles["reference"]


@pytest.mark.parametrize("renderer", ["2d", "3d"])
def test_the_shipped_implant_stage_tells_the_phase_on_both_renderers(aligner, renderer):
    """The implant stage alone, in its frame built from the true plateau corners: certain and right on both
    renderers' validation cases (the global stage's corners are tested above and by knee-train evaluate)."""
    from train.data.synthetic import synthetic_sample

    assert aligner.bundle.implant_frame is not None, "the shipped weights decide the phase with an implant stage"
    for phase in ("preop", "postop"):
        for seed in validation_seeds(phase, 6):
            sample = synthetic_sample(seed, phase, spacing_mm=1.0, renderer=renderer)
            image, points = sample.left_view()
            p_implant = aligner._implant_probability(image, points[list(sample.scheme.roles["reference"])])
            assert (p_implant > 0.9) if phase == "postop" else (p_implant < 0.1), (renderer, seed, p_implant)


def test_the_shipped_weights_measure_the_3d_renderers_knees_or_say_they_cannot(aligner, tmp_path):
    """The shipped weights were trained on both renderers. On 6 + 6 of the 3D renderer's validation cases, written as
    DICOM with their laterality tags: every result reported as confident has the right side and phase and an FNTS
    angle within 4 degrees of the truth (on its held-out set the confident pre-op MAD is about 1.4 degrees, see
    docs/results/), and some are measured at all (on that set 31 %; a bundle that flags everything would pass the
    rest). A regression guard, not a figure."""
    confident = 0
    for phase in ("preop", "postop"):
        for seed in validation_seeds(phase, 6):
            image = render_synthetic(seed, phase, renderer="3d")
            path = tmp_path / f"{seed}.dcm"
            build_dataset(image, laterality_tags=True).save_as(path, enforce_file_format=True)
            pred = aligner.predict(pydicom.dcmread(path))
            if pred.low_confidence:
                continue
            confident += 1
            assert (pred.laterality, pred.phase) == (image.laterality, phase), seed
            assert pred.alignment.atfa_fnts_deg == pytest.approx(image.atfa_fnts_deg, abs=4.0), seed
    assert confident >= 2


def test_evaluation_splits_a_real_prediction_error_between_the_axes(aligner):
    from train.data.synthetic import synthetic_sample
    from train.evaluate import evaluate_case

    sample = synthetic_sample(validation_seeds("postop", 10)[5], "postop")
    case = evaluate_case(aligner, sample, 0, use_tags=False)
    assert case.phase_pred == sample.phase and case.laterality_pred == sample.laterality
    # the consistency copies' differences are kept per case (for offline analysis)
    assert set(case.consistency) == {"mirrored copy", f"copy rotated by {CONSISTENCY_ROTATION_DEG:g} deg"}
    assert all(abs(d["FNTS"]) < 1.5 for d in case.consistency.values())
    src = case.error_sources
    assert src is not None and abs(src["notch_lateral_pct"]) < 5.0 and abs(src["notch_distal_pct"]) < 5.0
    # the angle's error against the truth at the same levels is the tibial axis's minus the femoral axis's
    assert case.atfa_fnts_pred - case.atfa_fnts_same_levels == pytest.approx(
        src["tibial_deg"] - src["femoral_fnts_deg"], abs=1e-6)
    assert case.atfa_fts_pred - case.atfa_fts_same_levels == pytest.approx(
        src["tibial_deg"] - src["femoral_fts_deg"], abs=1e-6)


def test_invariance_compares_copies_over_every_case_and_over_the_confident_ones(shipped_weights):
    """`knee-train invariance` on two cases: a 2D-generator knee as rendered (measured confidently) and the same
    knee cut to the joint (too little shaft: low confidence). Both count among every case, only the first (whose
    copies are confident too) among the pairs measured confidently; its copies measure nearly the same angle."""
    from dataclasses import replace

    from train.data.synthetic import synthetic_sample
    from train.evaluate import EvalData, invariance

    full = synthetic_sample(validation_seeds("preop", 10)[2], "preop")
    corners = full.landmarks[list(full.scheme.roles["reference"])]
    plateau_row, width = int(corners[:, 1].mean()), float(np.linalg.norm(corners[1] - corners[0]))
    cut = replace(full, image=np.ascontiguousarray(
        full.image[max(0, int(plateau_row - 0.6 * width)):int(plateau_row + 0.6 * width)]), source="cut")
    samples = [full, cut]
    data = EvalData("two", 2, lambda: iter(samples), lambda i: samples[i])
    result = invariance(shipped_weights, data, angles=(10.0,), progress=False)
    assert set(result["copies"]) == {"mirrored", "rotated +10 deg"}
    assert all(block["fnts"]["n"] == 2 for block in result["copies"].values()), result
    assert all(block["fnts"]["n"] == 1 for block in result["copies_confident"].values()), result
    for block in result["copies_confident"].values():
        assert block["fnts"]["max"] < 1.0 and block["fts"]["max"] < 1.5, result
