"""Traced stages (``model.traced``): the network's outputs, per input shape, shared within a process, and the network
as built whenever tracing fails or disagrees."""

import logging

import pytest
import torch

import model.traced as traced_module
from model.network import HourglassConfig, LandmarkNet
from model.traced import StageNet, fingerprint


def tiny_net(n_aux: int = 2, seed: int = 0) -> LandmarkNet:
    """A small untrained network, the same for the same ``seed`` (the global random state is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = LandmarkNet(HourglassConfig(3, 16, 5, n_aux=n_aux)).eval()
        with torch.no_grad():  # BatchNorm statistics other than the initial 0 / 1, so that folding changes weights
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    return net


def image(shape=(1, 1, 64, 48), seed=1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_aux", [0, 2])
def test_a_traced_stage_gives_the_networks_outputs(n_aux):
    net = tiny_net(n_aux)
    stage = StageNet(net, traced=True)
    x = image()
    assert stage.prepare(tuple(x.shape))
    assert isinstance(stage._traced[tuple(x.shape)], torch.jit.ScriptModule)  # the traced one runs, not the net
    with torch.inference_mode():
        mine, theirs = stage(x), net(x)
    assert torch.allclose(mine.heatmaps, theirs.heatmaps, atol=1e-4)
    assert torch.allclose(mine.coords, theirs.coords, atol=1e-3)
    assert (mine.aux is None) == (n_aux == 0)
    if n_aux:
        assert torch.allclose(mine.aux, theirs.aux, atol=1e-4)


def test_each_input_shape_is_traced_for_itself():
    net = tiny_net()
    stage = StageNet(net, traced=True)
    small, large = image((1, 1, 32, 32)), image((1, 1, 64, 96))
    with torch.inference_mode():
        for x in (small, large, small):
            assert torch.allclose(stage(x).heatmaps, net(x).heatmaps, atol=1e-4)
    assert set(stage._traced) == {tuple(small.shape), tuple(large.shape)}


def test_untraced_stages_never_trace(monkeypatch):
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: pytest.fail("traced although not asked to"))
    stage = StageNet(tiny_net(), traced=False)
    assert not stage.prepare((1, 1, 32, 32))
    with torch.inference_mode():
        assert stage(image((1, 1, 32, 32))).heatmaps.shape[-2:] == (8, 8)


def _broken_trace(*args, **kwargs):
    raise RuntimeError("unsupported operator")


@pytest.mark.parametrize("breakage, warning, seed", [  # weights of their own: a failure is cached like a success
    ((torch.jit, "trace", _broken_trace), "tracing failed (unsupported operator)", 3),
    ((traced_module, "AGREEMENT_TOLERANCE", -1.0), "disagrees", 4),  # any difference at all counts as disagreement
], ids=["tracing fails", "traced outputs disagree"])
def test_a_stage_whose_tracing_fails_or_disagrees_runs_as_built_and_says_so(monkeypatch, caplog, breakage, warning,
                                                                            seed):
    monkeypatch.setattr(*breakage)
    net = tiny_net(seed=seed)
    stage = StageNet(net, traced=True)
    x = image()
    with caplog.at_level(logging.WARNING, logger="model.traced"):
        assert not stage.prepare(tuple(x.shape))
    assert warning in caplog.text
    with torch.inference_mode():
        assert torch.equal(stage(x).heatmaps, net(x).heatmaps)  # the network itself, bit for bit


def test_the_same_weights_are_traced_once_per_process_and_other_weights_anew():
    shape = (1, 1, 32, 48)
    first, again = StageNet(tiny_net(seed=5), traced=True), StageNet(tiny_net(seed=5), traced=True)
    first.prepare(shape), again.prepare(shape)
    assert again._traced[shape] is first._traced[shape]
    changed = tiny_net(seed=5)
    with torch.no_grad():
        changed.head[-1].bias[0] += 1.0
    assert fingerprint(changed) != fingerprint(first.net)
    other = StageNet(changed, traced=True)
    other.prepare(shape)
    assert other._traced[shape] is not first._traced[shape]
    with torch.inference_mode():
        x = image(shape)
        assert torch.allclose(other(x).heatmaps, changed(x).heatmaps, atol=1e-4)
