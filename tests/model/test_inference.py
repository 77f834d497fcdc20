"""The inference API end to end on untrained networks: plumbing, coordinates, status and laterality rules.

Accuracy is measured on the trained weights by ``knee-train evaluate`` (see the model card), not here.
"""

import json

import numpy as np
import pytest

from model.inference import KneeAligner, resolve_device
from model.network import HourglassConfig
from model.weights import ModelBundle, save_bundle
from tests.model.test_preprocess import make_dx


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    bundle = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2),
                                   {"preop": HourglassConfig(2, 8, 134), "postop": HourglassConfig(2, 8, 181)})
    return save_bundle(bundle, tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def shipped(shipped_weights):
    return shipped_weights


def synthetic_knee_dx(laterality="R", tags=True):
    """A synthetic right knee (validation seed, coarse spacing for speed) as a DICOM dataset."""
    from train.data.splits import validation_seeds
    from train.synth import build_dataset, render_case, sample_case

    case = sample_case(validation_seeds("preop", 40)[-1], "preop", atfa_deg=7.0, laterality=laterality)
    return build_dataset(render_case(case, pixel_spacing_mm=0.3), laterality_tags=tags)


def knee_like_dx(**tags):
    rng = np.random.default_rng(5)
    px = (1000 + 2000 * rng.random((600, 480))).astype(np.uint16)
    return make_dx(px, 12, ImagerPixelSpacing=[0.15, 0.15], **tags)


def test_predict_returns_a_complete_result_in_source_pixels(shipped):
    ds = synthetic_knee_dx("R")
    pred = KneeAligner.load(shipped, device="cpu").predict(ds)
    assert pred.phase == "preop" and pred.landmarks.shape == (134, 2)
    assert pred.landmark_confidence.shape == (134,)
    assert pred.scheme_id == "kneealign-preop@1.0"
    assert pred.laterality == "R" and pred.laterality_source == "tag"
    assert 0 <= pred.landmarks[:, 0].min() and pred.landmarks[:, 0].max() < ds.Columns  # source pixels
    assert set(pred.timings_ms) >= {"decode", "global", "local", "refine", "total"}
    assert 0.0 <= pred.confidence <= 1.0
    line = json.loads(json.dumps(pred.to_json()))
    for key in ("laterality", "phase", "atfa_fts_deg", "atfa_fnts_deg", "confidence", "status", "landmarks"):
        assert key in line
    assert len(line["landmarks"]) == 134


def test_threshold_decides_the_status(shipped):
    ds = synthetic_knee_dx("L")
    assert KneeAligner.load(shipped, confidence_threshold=0.0).predict(ds).status == "ok"
    low = KneeAligner.load(shipped, confidence_threshold=1.01).predict(ds)
    assert low.status == "low_confidence" and low.low_confidence


def test_untrained_networks_never_give_a_confident_number(tiny_weights):
    from model.preprocess import UnsupportedImage

    try:
        pred = KneeAligner.load(tiny_weights).predict(knee_like_dx(ImageLaterality="L"))
    except UnsupportedImage as exc:
        assert "no knee found" in str(exc)
    else:
        assert pred.status == "low_confidence"


def test_missing_tag_means_laterality_from_the_image(shipped):
    pred = KneeAligner.load(shipped).predict(synthetic_knee_dx("R", tags=False))
    assert pred.laterality == "R" and pred.laterality_source == "image"


def test_laterality_rule():
    warnings = []
    decide = KneeAligner._decide_laterality
    assert decide("L", False, 0.99, warnings) == ("L", "tag")  # order says left: the logit alone cannot overrule
    assert decide("L", True, 0.6, warnings) == ("L", "tag")  # order says right, logit unsure: keep the tag
    assert warnings and "disagree" in warnings[-1]
    assert decide("L", True, 0.99, warnings) == ("R", "image-over-tag")
    assert "contradicted" in warnings[-1]
    assert decide(None, False, 0.9, []) == ("L", "image")
    assert decide(None, True, 0.1, []) == ("R", "image")


def test_cuda_request_without_cuda_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")


def test_no_knee_found_is_an_unsupported_image(tmp_path):
    from model.preprocess import UnsupportedImage

    bundle = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2),
                                   {"preop": HourglassConfig(2, 8, 134), "postop": HourglassConfig(2, 8, 181)})
    # A global network whose heatmaps are flat puts both reference points on the same cell.
    head = [k for k in bundle.state["global"] if k.startswith("head.") and k.endswith((".weight", ".bias"))]
    for key in head[-2:]:
        bundle.state["global"][key] = bundle.state["global"][key] * 0
    aligner = KneeAligner(bundle)
    with pytest.raises(UnsupportedImage, match="no knee found"):
        aligner.predict(knee_like_dx(ImageLaterality="L"))
