"""Losses against hand-computed values and the network's heatmap convention."""

from __future__ import annotations

import math

import pytest
import torch

from model.network import soft_argmax
from train.losses import (
    adaptive_wing_loss,
    aux_bce_loss,
    gaussian_targets,
    input_to_heatmap_px,
    js_heatmap_loss,
    kl_heatmap_loss,
    wing,
    wing_loss,
)


def test_wing_hand_values():
    x = torch.tensor([0.0, 2.0, -2.0, 10.0, -20.0])
    c = 10 - 10 * math.log(6)  # w - w ln(1 + w/eps)
    expected = [0.0, 10 * math.log(2), 10 * math.log(2), 10 - c, 20 - c]
    assert torch.allclose(wing(x), torch.tensor(expected), atol=1e-5)
    # continuous at |x| = w: 10 ln(1 + 10/2) == 10 - C
    assert 10 * math.log(6) == pytest.approx(10 - c)


def test_wing_loss_mean_and_weights():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    assert float(wing_loss(pred, target)) == pytest.approx(10 * math.log(2) / 4, rel=1e-6)
    assert float(wing_loss(pred, target, weight=torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.0)
    assert float(wing_loss(pred, target, weight=torch.tensor([[0.0, 1.0]]))) == pytest.approx(10 * math.log(2) / 2)


def test_wing_is_in_pixels_not_l1():
    # Errors of 1 px and 0.01 px: the log region makes them differ by far less than 100x (unlike L1).
    small = float(wing_loss(torch.full((1, 1, 2), 0.01), torch.zeros(1, 1, 2)))
    one = float(wing_loss(torch.full((1, 1, 2), 1.0), torch.zeros(1, 1, 2)))
    assert one / small == pytest.approx(math.log(1.5) / math.log(1.005), rel=1e-4)


def test_adaptive_wing_hand_values():
    # y = 0, p = 0.25 (small branch): 14 ln(1 + 0.25^2.1)
    small = adaptive_wing_loss(torch.tensor([0.25]), torch.tensor([0.0]))
    assert float(small) == pytest.approx(14 * math.log(1 + 0.25**2.1), rel=1e-5)
    # y = 0, p = 1 (large branch): A - C
    a = 14 * (1 / (1 + 0.5**2.1)) * 2.1 * 0.5**1.1
    c = 0.5 * a - 14 * math.log(1 + 0.5**2.1)
    assert float(adaptive_wing_loss(torch.tensor([1.0]), torch.tensor([0.0]))) == pytest.approx(a - c, rel=1e-5)
    # exact prediction costs nothing; the two branches meet at theta
    assert float(adaptive_wing_loss(torch.tensor([0.7]), torch.tensor([0.7]))) == pytest.approx(0.0, abs=1e-7)
    below = adaptive_wing_loss(torch.tensor([0.5 - 1e-5]), torch.tensor([0.0]))
    above = adaptive_wing_loss(torch.tensor([0.5 + 1e-5]), torch.tensor([0.0]))
    assert float(below) == pytest.approx(float(above), abs=1e-3)


def test_gaussian_target_matches_network_coordinates():
    cells = torch.tensor([[[9.0, 11.5], [6.25, 12.0]]])  # heatmap cells, well inside a 24 x 20 map
    for stride in (1, 2, 4):
        coords = (cells + 0.5) * stride - 0.5  # the same points in input pixels
        assert torch.allclose(input_to_heatmap_px(coords, stride), cells)
        q = gaussian_targets(coords, (24, 20), stride, sigma=1.0)
        assert torch.allclose(q.sum(dim=(-2, -1)), torch.ones(1, 2))
        assert int(q[0, 0].argmax()) == 11 * 20 + 9  # row 11 or 12 tie broken low, column 9
        # The network's own soft-argmax of log q recovers the coordinates.
        recovered = soft_argmax(torch.log(q), stride)
        assert torch.allclose(recovered, coords, atol=1e-3 * stride)


def test_js_loss_zero_at_target_and_bounded():
    coords = torch.tensor([[[30.0, 40.0]]])
    q = gaussian_targets(coords, (32, 32), 4, sigma=1.0)
    assert float(js_heatmap_loss(torch.log(q), coords, 4, sigma=1.0)) == pytest.approx(0.0, abs=1e-6)
    flat = js_heatmap_loss(torch.zeros(1, 1, 32, 32), coords, 4, sigma=1.0)
    far = js_heatmap_loss(torch.log(gaussian_targets(torch.tensor([[[100.0, 100.0]]]), (32, 32), 4, 1.0)),
                          coords, 4, sigma=1.0)
    assert 0.0 < float(flat) < float(far) <= math.log(2) + 1e-6


def test_aux_bce_hand_value_and_mask():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert float(aux_bce_loss(logits, targets)) == pytest.approx(expected, rel=1e-6)
    assert float(aux_bce_loss(logits, targets, torch.tensor([[1.0, 0.0]]))) == pytest.approx(math.log(2), rel=1e-6)


def test_kl_loss_zero_at_target_and_gradient_is_p_minus_q():
    coords = torch.tensor([[[30.0, 40.0]]])
    q = gaussian_targets(coords, (16, 16), 4, sigma=1.0)
    assert float(kl_heatmap_loss(torch.log(q), coords, 4)) == pytest.approx(0.0, abs=1e-5)
    logits = torch.zeros(1, 1, 16, 16, requires_grad=True)
    loss = kl_heatmap_loss(logits, coords, 4)
    assert float(loss) == pytest.approx(math.log(256) + float((q * torch.log(q.clamp_min(1e-30))).sum()), rel=1e-5)
    loss.backward()
    assert torch.allclose(logits.grad, torch.full_like(q, 1 / 256) - q, atol=1e-6)
    # masked landmarks do not count
    assert float(kl_heatmap_loss(torch.zeros(1, 1, 16, 16), coords, 4, weight=torch.zeros(1, 1))) == 0.0


def test_validation_reports_each_label_of_an_auxiliary_logit_apart():
    """A classifier that calls everything post-op is right on every post-op knee and wrong on every pre-op one:
    ``implant_acc_1`` 1, ``implant_acc_0`` 0 (the overall ``implant_acc`` alone would hide which side fails)."""
    import torch

    from model.network import HourglassConfig, LandmarkNet
    from train.data.stages import Batch
    from train.fitting.objective import validation_errors

    net = LandmarkNet(HourglassConfig(depth=2, width=8, n_points=2, n_aux=1, stem_stride=2))
    with torch.no_grad():
        net.aux_head.weight.zero_()
        net.aux_head.bias.fill_(5.0)
    coords = torch.tensor([[[4.0, 8.0], [12.0, 8.0]]]).repeat(3, 1, 1)
    batch = Batch(torch.rand(3, 1, 16, 16), coords, torch.ones(3, 2), torch.tensor([[0.0], [1.0], [1.0]]))
    result = validation_errors(net, [batch], torch.device("cpu"), (0, 1), ("implant",))
    assert result["implant_acc_0"] == 0.0 and result["implant_acc_1"] == 1.0
    assert abs(result["implant_acc"] - 2 / 3) < 1e-6
    only_post = Batch(batch.images[1:], coords[1:], torch.ones(2, 2), batch.aux[1:])
    assert "implant_acc_0" not in validation_errors(net, [only_post], torch.device("cpu"), (0, 1), ("implant",))


def test_every_shaft_level_of_the_scheme_is_an_angle_landmark():
    """The landmarks ``axis_landmark_weight`` weights: the plateau corners, the notch, the paper's fixed shaft pairs
    and the pair of every other level the scheme marks (the adaptive axes' among them); the outlines' other points
    not."""
    from model.scheme import load_scheme

    for phase in ("preop", "postop"):
        scheme = load_scheme(phase)
        chosen = set(scheme.angle_landmarks)
        assert set(scheme.axis_indices) <= chosen
        assert set(scheme.roles["femoral_notch"]) | set(scheme.roles["reference"]) <= chosen
        for bone, levels in scheme.shaft_levels.items():
            for level, _, _ in levels:
                assert set(scheme.shaft_pair(bone, level)) <= chosen, (phase, bone, level)
        assert len(chosen) < scheme.n_points / 2


def test_axis_landmark_weight_scales_those_landmarks_share_of_the_loss():
    """The same 3-pixel miss costs ``axis_landmark_weight`` times more on an aTFA landmark than on an outline
    point, in the Wing and the heatmap terms; at weight 1 the loss is the unweighted one."""
    from model.network import NetOutput
    from model.scheme import load_scheme
    from train.data.stages import Batch
    from train.fitting.config import LossConfig
    from train.fitting.objective import landmark_weights, stage_loss

    scheme = load_scheme("postop")
    n = scheme.n_points
    axis = scheme.roles["femoral_notch"][0]
    other = next(i for i in range(n) if i not in set(scheme.angle_landmarks))
    rng = torch.Generator().manual_seed(0)
    coords = torch.rand(1, n, 2, generator=rng) * 40 + 8
    coords[0, other] = coords[0, axis]  # the same target, so that only the weight differs between the two misses
    heatmaps = torch.zeros(1, n, 16, 16)
    batch = Batch(torch.zeros(1, 1, 64, 64), coords, torch.ones(1, n), None)
    cfg = LossConfig(axis_landmark_weight=3.0, heatmap_kl_weight=1.0)

    def miss(i: int, weights) -> dict[str, float]:
        pred = coords.clone()
        pred[0, i, 0] += 3.0
        hm = heatmaps.clone()
        hm[0, i, 0, 0] = 5.0  # this landmark's map also peaks in the wrong place
        return stage_loss(NetOutput(hm, pred, None), batch, cfg, 4, weights)[1]

    weights = landmark_weights("postop", cfg.axis_landmark_weight)
    assert weights is not None and float(weights[axis]) == 3.0 and float(weights[other]) == 1.0
    on_axis, off_axis = miss(axis, weights), miss(other, weights)
    assert on_axis["wing"] == pytest.approx(3.0 * off_axis["wing"], rel=1e-5)
    unweighted = miss(axis, None)
    assert on_axis["wing"] > unweighted["wing"]
    assert landmark_weights("postop", 1.0) is None and landmark_weights(None, 3.0) is None
    # the heatmap term: the extra KL of the misplaced map counts 3 times on the aTFA landmark
    base = stage_loss(NetOutput(heatmaps, coords, None), batch, cfg, 4, weights)[1]["kl"]
    assert on_axis["kl"] - base == pytest.approx(3.0 * (off_axis["kl"] - base), rel=1e-3)


def _turned(points: torch.Tensor, degrees: float) -> torch.Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return points @ torch.tensor([[c, -s], [s, c]]).T


def test_axis_angle_loss_sees_a_tilt_and_ignores_a_shift_or_a_scale():
    """Every axis turned by 2 degrees costs smooth-L1(2) = 2 - beta/2 however far the points are; the same points
    shifted or scaled together cost nothing (the Wing term is there for those)."""
    from train.fitting.objective import angle_axes
    from train.losses import axis_angle_loss

    axes = angle_axes("preop")
    target = torch.rand(2, 134, 2, generator=torch.Generator().manual_seed(1)) * 200
    assert axis_angle_loss(target + torch.tensor([7.0, -3.0]), target, axes) == pytest.approx(0.0, abs=1e-5)
    assert axis_angle_loss(target * 1.3, target, axes) == pytest.approx(0.0, abs=1e-5)
    assert axis_angle_loss(_turned(target, 2.0), target, axes) == pytest.approx(2.0 - 0.25, abs=1e-4)
    assert axis_angle_loss(_turned(target, -0.2), target, axes) == pytest.approx(0.5 * 0.2 ** 2 / 0.5, abs=1e-5)


def test_axis_angle_loss_counts_only_axes_whose_landmarks_are_all_visible():
    """One tilted axis (the tibia's from 0.8 to 1.3) among straight ones: the loss is its share of the axes seen, and
    it drops out (not as a zero that dilutes the others) when one of its four landmarks is invisible."""
    from model.scheme import load_scheme
    from train.fitting.objective import angle_axes
    from train.losses import axis_angle_loss

    scheme = load_scheme("preop")
    axes = angle_axes("preop")
    far = scheme.shaft_pair("tibia", 1.3)
    rows = [k for k in range(len(axes)) if tuple(int(i) for i in axes[k, 2:]) == far]
    assert len(rows) == 1  # no other axis ends at the tibia's 1.3 level
    target = torch.zeros(1, 134, 2)
    target[0, :, 1] = torch.arange(134, dtype=torch.float32) * 3.0  # points spread down the image
    target[0, :, 0] = torch.linspace(-60.0, 60.0, 134)
    pred = target.clone()
    pred[0, list(far), 0] += 40.0  # the far midpoint moved sideways: that axis, and only it, turns
    weight = torch.ones(1, 134)
    every = axis_angle_loss(pred, target, axes, weight)
    alone = axis_angle_loss(pred, target, axes[rows], weight)
    assert float(alone) > 1.0
    assert float(every) == pytest.approx(float(alone) / len(axes), rel=1e-5)
    weight[0, far[0]] = 0.0
    assert float(axis_angle_loss(pred, target, axes, weight)) == pytest.approx(0.0, abs=1e-5)
    weight[0] = 0.0
    assert float(axis_angle_loss(pred, target, axes, weight)) == 0.0


def test_angle_axes_are_the_axes_the_adaptive_levels_may_draw():
    """Per scheme: the tibial axis from 0.8 to each far level 1.0-1.3, the femoral FTS axis from each far level
    1.1-1.3 to 0.8 and the FNTS axis from each to the notch (model.alignment's levels); none for the global stage."""
    from model.alignment import MIN_LEVEL, NEAR_LEVEL
    from model.scheme import load_scheme
    from train.fitting.objective import angle_axes

    assert angle_axes(None) is None
    for phase in ("preop", "postop"):
        scheme = load_scheme(phase)
        rows = {tuple(int(i) for i in row) for row in angle_axes(phase)}
        notch = tuple(scheme.roles["femoral_notch"])
        expected = set()
        for far in (1.0, 1.1, 1.2, 1.3):
            expected.add((*scheme.shaft_pair("tibia", NEAR_LEVEL), *scheme.shaft_pair("tibia", far)))
            if far >= MIN_LEVEL["femur"]:
                expected.add((*scheme.shaft_pair("femur", far), *scheme.shaft_pair("femur", NEAR_LEVEL)))
                expected.add((*scheme.shaft_pair("femur", far), *notch))
        assert rows == expected, phase


def test_axis_angle_weight_adds_the_term_only_when_set():
    """``axis_angle_weight`` 0 (the default, the paper's loss): no axis term; 2: the total grows by twice the axis
    term for a prediction whose axes are tilted, and the term pulls the points back (a step down its gradient
    lowers it)."""
    from model.network import NetOutput
    from train.data.stages import Batch
    from train.fitting.config import LossConfig
    from train.fitting.objective import angle_axes, stage_loss

    n = 134
    coords = torch.rand(1, n, 2, generator=torch.Generator().manual_seed(3)) * 40 + 8
    batch = Batch(torch.zeros(1, 1, 64, 64), coords, torch.ones(1, n), None)
    pred = _turned(coords - 28.0, 3.0) + 28.0
    pred.requires_grad_(True)
    hm = torch.zeros(1, n, 16, 16)
    plain_total, plain = stage_loss(NetOutput(hm, pred, None), batch, LossConfig(), 4, None, angle_axes("preop"))
    assert "axis" not in plain
    total, parts = stage_loss(NetOutput(hm, pred, None), batch, LossConfig(axis_angle_weight=2.0), 4, None,
                              angle_axes("preop"))
    assert parts["axis"] == pytest.approx(3.0 - 0.25, abs=1e-3)
    assert float(total - plain_total) == pytest.approx(2.0 * parts["axis"], rel=1e-4)
    from train.losses import axis_angle_loss  # the term alone, on points far apart: a small step down its gradient
    far = coords * 5.0
    tilted = (_turned(far, 3.0)).requires_grad_(True)
    before = axis_angle_loss(tilted, far, angle_axes("preop"))
    before.backward()
    after = axis_angle_loss((tilted - 0.01 * tilted.grad).detach(), far, angle_axes("preop"))
    assert float(after) < float(before)


def test_validation_reports_the_axes_angle_error_where_they_are_visible():
    """``axis_err_deg``: the mean absolute angle between the predicted axes (inference decoder) and the true ones, over
    the axes whose four landmarks are visible; absent without axes (the global and implant stages)."""
    from model.network import HourglassConfig, LandmarkNet, decode_heatmaps
    from train.data.stages import Batch
    from train.fitting.objective import angle_axes, validation_errors
    from train.losses import axis_angle_errors

    torch.manual_seed(0)
    net = LandmarkNet(HourglassConfig(depth=2, width=8, n_points=134, stem_stride=2))
    coords = torch.rand(2, 134, 2, generator=torch.Generator().manual_seed(4)) * 28 + 2
    weight = torch.ones(2, 134)
    axes = angle_axes("preop")
    weight[1, int(axes[0, 0])] = 0.0  # one landmark of the first axis unseen in the second image
    batch = Batch(torch.rand(2, 1, 32, 32), coords, weight, None)
    result = validation_errors(net, [batch], torch.device("cpu"), (0, 1), (), axes)
    net.eval()
    with torch.no_grad():
        pred, _ = decode_heatmaps(net(batch.images).heatmaps, 2, method="peak")
    err = axis_angle_errors(pred, coords, axes).abs()
    through = [k for k in range(len(axes)) if int(axes[0, 0]) in axes[k].tolist()]  # the FTS and FNTS axes of a level
    assert len(through) == 2
    expected = (err.sum() - err[1, through].sum()) / (err.numel() - 2)
    assert result["axis_err_deg"] == pytest.approx(float(expected), rel=1e-5)
    assert "axis_err_deg" not in validation_errors(net, [batch], torch.device("cpu"), (0, 1))
