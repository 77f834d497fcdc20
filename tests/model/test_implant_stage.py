"""The optional implant stage: a bundle carries it (or not), and when it does, it alone decides pre/post-op."""

from __future__ import annotations

import json

import pytest
import torch

from model.frames import FrameSpec
from model.inference import KneeAligner
from model.network import HourglassConfig, LandmarkNet
from model.vocabulary import IMPLANT_STAGE
from model.weights import DEFAULT_WEIGHTS, ModelBundle, WeightsError, load_bundle, save_bundle
from tests.model.test_inference import synthetic_knee_dx

TINY_LOCAL = {"preop": HourglassConfig(2, 8, 134), "postop": HourglassConfig(2, 8, 181)}
IMPLANT_FRAME = FrameSpec(half_width=1.0, above=1.0, below=1.0, width_px=32, height_px=32)


def test_a_bundle_with_an_implant_stage_round_trips(tmp_path):
    bundle = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2), TINY_LOCAL,
                                   implant_cfg=HourglassConfig(2, 8, 2, n_aux=1), implant_frame=IMPLANT_FRAME)
    path = save_bundle(bundle, tmp_path / "w.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card[IMPLANT_STAGE]["frame"]["width_px"] == 32 and card[IMPLANT_STAGE]["network"]["n_aux"] == 1
    loaded = load_bundle(path)
    assert loaded.stages[-1] == IMPLANT_STAGE and loaded.implant_frame == IMPLANT_FRAME
    x = torch.randn(1, 1, 32, 32)
    a, b = bundle.build_networks()[IMPLANT_STAGE].eval(), loaded.build_networks()[IMPLANT_STAGE].eval()
    with torch.no_grad():
        assert torch.equal(a(x).aux, b(x).aux)


def test_an_implant_stage_with_the_wrong_outputs_or_no_weights_is_refused(tmp_path):
    two_logits = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2), TINY_LOCAL,
                                       implant_cfg=HourglassConfig(2, 8, 2, n_aux=2), implant_frame=IMPLANT_FRAME)
    with pytest.raises(WeightsError, match="implant network must predict 2 points and 1 auxiliary logit"):
        load_bundle(save_bundle(two_logits, tmp_path / "a.safetensors"))
    no_weights = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2), TINY_LOCAL,
                                       implant_cfg=HourglassConfig(2, 8, 2, n_aux=1), implant_frame=IMPLANT_FRAME)
    del no_weights.state[IMPLANT_STAGE]
    with pytest.raises(WeightsError, match="no weights for stage"):
        load_bundle(save_bundle(no_weights, tmp_path / "b.safetensors"))
    with pytest.raises(WeightsError, match="both a network configuration and a frame"):
        ModelBundle(HourglassConfig(2, 8, 2, n_aux=2), TINY_LOCAL, FrameSpec(), 64,
                    implant_cfg=HourglassConfig(2, 8, 2, n_aux=1))


def test_a_bundle_without_an_implant_stage_decides_with_the_global_stage():
    """kneealign-v1 (kept in the repository beside the shipped weights) has no implant stage: the global stage's implant
    logit decides, as before the stage existed."""
    bundle = load_bundle(DEFAULT_WEIGHTS.parent / "kneealign-v1.safetensors")
    assert IMPLANT_STAGE not in bundle.stages
    with pytest.raises(WeightsError, match="no implant stage"):
        bundle.config_of(IMPLANT_STAGE)
    pred = KneeAligner(bundle, consistency=False).predict(synthetic_knee_dx("L"))
    assert IMPLANT_STAGE not in pred.timings_ms and pred.phase == "preop" and pred.phase_probability < 0.1


def _with_fixed_implant_answer(bundle: ModelBundle, logit: float) -> ModelBundle:
    """``bundle`` with an implant stage whose answer is ``logit`` whatever the image (zero weights, that bias)."""
    cfg = HourglassConfig(2, 8, 2, n_aux=1, stem_stride=2)
    net = LandmarkNet(cfg)
    with torch.no_grad():
        net.aux_head.weight.zero_()
        net.aux_head.bias.fill_(logit)
    state = {**bundle.state, IMPLANT_STAGE: net.state_dict()}
    return ModelBundle(bundle.global_cfg, bundle.local_cfgs, bundle.frame_spec, bundle.global_size, state,
                       implant_cfg=cfg, implant_frame=IMPLANT_FRAME)


@pytest.mark.parametrize(("logit", "phase"), [(8.0, "postop"), (-8.0, "preop")])
def test_the_implant_stage_decides_the_phase(shipped_weights, logit, phase, monkeypatch):
    """A pre-op knee: an implant stage that says "implant" with certainty makes it post-op (and the global stage's
    own logit is not consulted); one that says "no implant" keeps it pre-op; either way the decision is certain.
    (The landmark stages' check of the phase is set to agree with any decision here; the next test lets it speak.)"""
    import model.inference as inference

    monkeypatch.setattr(inference, "IMPLANT_OUTLINE_EVIDENCE", -1.01 if logit > 0 else 1.01)
    aligner = KneeAligner(_with_fixed_implant_answer(load_bundle(shipped_weights), logit), consistency=False)
    pred = aligner.predict(synthetic_knee_dx("L"))
    assert pred.phase == phase
    assert pred.phase_probability == pytest.approx(float(torch.sigmoid(torch.tensor(logit))), abs=1e-6)
    assert not any("pre/post-op uncertain" in w for w in pred.warnings)
    assert IMPLANT_STAGE in pred.timings_ms


def test_the_landmark_stages_overrule_an_implant_stage_that_sees_an_implant_in_a_native_knee(shipped_weights):
    """The shipped landmark stages on a pre-op knee find no implant outline: an implant stage certain of an implant
    is contradicted, and the knee is measured as pre-op with low confidence and the reason."""
    aligner = KneeAligner(_with_fixed_implant_answer(load_bundle(shipped_weights), 8.0), consistency=False)
    pred = aligner.predict(synthetic_knee_dx("L"))
    assert pred.phase == "preop" and pred.phase_probability > 0.99 and pred.low_confidence
    assert any(w.startswith("pre/post-op uncertain: implant classifier says post-op, landmark stages find none")
               for w in pred.warnings)


def test_an_undecided_implant_stage_makes_the_result_low_confidence(shipped_weights):
    aligner = KneeAligner(_with_fixed_implant_answer(load_bundle(shipped_weights), 0.2), consistency=False)
    pred = aligner.predict(synthetic_knee_dx("L"))
    assert pred.low_confidence and any("pre/post-op uncertain (implant probability 0.55)" in w for w in pred.warnings)
