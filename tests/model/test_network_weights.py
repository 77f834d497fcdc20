"""Network shapes for the paper's and the shipped configurations, decoding, weight bundles and the API."""

import json

import numpy as np
import pytest
import torch

from model.network import (CPU_GLOBAL, CPU_LOCAL_POSTOP, CPU_LOCAL_PREOP, PAPER_GLOBAL, PAPER_LOCAL_POSTOP,
                           PAPER_LOCAL_PREOP, HourglassConfig, LandmarkNet, decode_heatmaps, decode_two_modes,
                           soft_argmax)
from model.weights import ModelBundle, WeightsError, load_bundle, save_bundle

TINY = dict(global_cfg=HourglassConfig(2, 8, 2, n_aux=2),
            local_cfgs={"preop": HourglassConfig(2, 8, 134), "postop": HourglassConfig(2, 8, 181)})


@pytest.mark.parametrize("cfg,shape", [
    (PAPER_GLOBAL, (256, 256)), (PAPER_LOCAL_PREOP, (288, 192)), (PAPER_LOCAL_POSTOP, (288, 192)),
    (CPU_GLOBAL, (256, 256)), (CPU_LOCAL_PREOP, (288, 192)), (CPU_LOCAL_POSTOP, (288, 192)),
])
def test_configurations_build_and_give_right_shapes(cfg, shape):
    net = LandmarkNet(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *shape))
    h, w = shape[0] // cfg.stem_stride, shape[1] // cfg.stem_stride
    assert out.heatmaps.shape == (1, cfg.n_points, h, w)
    assert out.coords.shape == (1, cfg.n_points, 2)
    assert (out.aux is None) == (cfg.n_aux == 0)
    if cfg.n_aux:
        assert out.aux.shape == (1, cfg.n_aux)


def test_paper_local_has_attention_gates_on_all_six_levels():
    net = LandmarkNet(PAPER_LOCAL_PREOP)
    gates = [m for m in net.modules() if m.__class__.__name__ == "AttentionGate"]
    assert len(gates) == 6


def test_growing_widths_double_down_the_hourglass_up_to_the_cap():
    cfg = HourglassConfig(depth=4, width=8, n_points=3, max_width=32)
    net = LandmarkNet(cfg).eval()
    widths, level = [], net.hourglass
    while hasattr(level, "inner"):
        widths.append(level.skip.body[-1].out_channels)
        level = level.inner
    widths.append(level.body[-1].out_channels)  # the innermost residual block
    assert widths == [8, 16, 32, 32, 32]
    with torch.no_grad():
        out = net(torch.randn(2, 1, 64, 48))
    assert out.heatmaps.shape == (2, 3, 16, 12)
    constant = LandmarkNet(HourglassConfig(depth=4, width=8, n_points=3))
    assert sum(p.numel() for p in net.parameters()) > sum(p.numel() for p in constant.parameters())
    with pytest.raises(ValueError, match="max_width"):
        HourglassConfig(depth=4, width=16, n_points=3, max_width=8)


def test_bundles_written_before_max_width_load_with_constant_widths(tmp_path):
    old_header = {k: v for k, v in CPU_LOCAL_PREOP.to_dict().items() if k != "max_width"}
    assert HourglassConfig.from_dict(old_header) == CPU_LOCAL_PREOP
    grown = dict(TINY, local_cfgs={"preop": HourglassConfig(3, 8, 134, max_width=16),
                                   "postop": HourglassConfig(2, 8, 181)})
    bundle = ModelBundle.untrained(**grown)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "w.safetensors"))
    assert loaded.local_cfgs["preop"].max_width == 16
    x = torch.randn(1, 1, 288, 192)
    with torch.no_grad():
        assert torch.equal(bundle.build_networks()["local_preop"].eval()(x).heatmaps,
                           loaded.build_networks()["local_preop"].eval()(x).heatmaps)


def gaussian_maps(centres, h=40, w=30, sigma=1.2):
    ys, xs = np.mgrid[0:h, 0:w]
    maps = [-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2) for cx, cy in centres]
    return torch.tensor(np.array(maps)[None], dtype=torch.float32)


def test_peak_decoder_is_subpixel_and_confident_on_sharp_peaks():
    centres = [(10.3, 20.6), (0.2, 5.0), (25.75, 38.1)]
    coords, conf = decode_heatmaps(gaussian_maps(centres), stride=4, method="peak")
    expected = (np.array(centres) + 0.5) * 4 - 0.5
    assert np.allclose(coords[0].numpy()[0], expected[0], atol=0.15)
    assert np.allclose(coords[0].numpy()[2], expected[2], atol=0.3)
    assert (conf[0] > 0.9).all()


def test_integral_decoder_matches_the_training_soft_argmax():
    maps = gaussian_maps([(10.3, 20.6), (15.0, 12.25)], sigma=2.0)
    coords, conf = decode_heatmaps(maps, stride=4)
    assert torch.equal(coords, soft_argmax(maps, 4))
    expected = (np.array([(10.3, 20.6), (15.0, 12.25)]) + 0.5) * 4 - 0.5
    assert np.allclose(coords[0].numpy(), expected, atol=0.05)  # well inside the map: unbiased
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps(maps, stride=4, method="argmax")


def test_two_modes_pull_the_soft_argmax_between_them_and_not_the_peak():
    """Why the global stage is read by its peak (model.inference.DECODER): an unsure map with a second mode drags the
    soft-argmax towards it; the peak stays on the stronger mode."""
    ys, xs = np.mgrid[0:40, 0:30]
    strong = -((xs - 8.0) ** 2 + (ys - 10.0) ** 2) / (2 * 1.2**2)
    weak = -((xs - 22.0) ** 2 + (ys - 30.0) ** 2) / (2 * 1.2**2) - 0.7  # half the mass of the strong mode
    maps = torch.tensor(np.logaddexp(strong, weak)[None, None], dtype=torch.float32)
    peak, conf = decode_heatmaps(maps, stride=1, method="peak")
    integral, _ = decode_heatmaps(maps, stride=1)
    assert np.allclose(peak[0, 0].numpy(), [8.0, 10.0], atol=0.1)
    assert np.linalg.norm(integral[0, 0].numpy() - [8.0, 10.0]) > 5.0  # a third of the way to the weaker mode
    assert 0.5 < conf.item() < 0.8  # the confidence says the map is unsure either way


def test_flat_map_gives_low_confidence_and_soft_argmax_centre_bias():
    flat = torch.zeros(1, 1, 40, 30)
    _, conf = decode_heatmaps(flat, stride=1)
    assert conf.item() < 0.05
    assert np.allclose(soft_argmax(flat, 1)[0, 0].numpy(), [14.5, 19.5])


def bimodal(a, b, weight_b, h=40, w=30, sigma=1.2):
    """A map peaking at ``a`` and at ``b``, ``b`` with ``weight_b`` of ``a``'s mass."""
    ys, xs = np.mgrid[0:h, 0:w]
    at_a = -((xs - a[0]) ** 2 + (ys - a[1]) ** 2) / (2 * sigma**2)
    at_b = -((xs - b[0]) ** 2 + (ys - b[1]) ** 2) / (2 * sigma**2) + np.log(weight_b)
    return np.logaddexp(at_a, at_b)


def test_two_modes_are_the_two_points_of_a_pair_of_maps_that_both_peak_at_one():
    """Both corners' maps peak at the same corner (the peak decoder puts both there); the second mode is the other
    corner, found in the maps taken together, with each map's share at each."""
    a, b = (8.0, 10.0), (22.0, 12.0)
    maps = torch.tensor(np.array([bimodal(a, b, 0.6), bimodal(a, b, 0.8)]), dtype=torch.float32)
    peaks, _ = decode_heatmaps(maps[None], stride=4, method="peak")
    assert np.linalg.norm(peaks[0, 0].numpy() - peaks[0, 1].numpy()) < 0.5  # one point
    modes, mass = decode_two_modes(maps, stride=4)
    expected = (np.array([a, b]) + 0.5) * 4 - 0.5
    assert np.allclose(modes.numpy(), expected, atol=0.1)  # strongest first
    m = mass.numpy()  # (map, mode): the share of each map in each mode's 5 x 5 window (about 94 % of a blob)
    assert np.allclose(m[:, 1] / m[:, 0], [0.6, 0.8], atol=0.01)
    assert np.allclose(m.sum(axis=1), 0.94, atol=0.02)


def test_two_modes_need_a_second_point_with_mass():
    one = torch.tensor(np.array([bimodal((8, 10), (9, 11), 1.0), bimodal((8, 10), (9, 11), 1.0)]),
                       dtype=torch.float32)
    assert decode_two_modes(one, stride=4) is None  # a single blob, not two
    faint = torch.tensor(np.array([bimodal((8, 10), (22, 12), 0.05)] * 2), dtype=torch.float32)
    assert decode_two_modes(faint, stride=4) is None  # the second mode holds 9 % of the summed mass (2), under 0.2
    assert decode_two_modes(torch.zeros(2, 40, 30), stride=4) is None  # flat
    with pytest.raises(ValueError, match="pair"):
        decode_two_modes(torch.zeros(3, 40, 30), stride=4)


def test_bundle_round_trip_and_predictions_identical(tmp_path):
    bundle = ModelBundle.untrained(**TINY)
    path = save_bundle(bundle, tmp_path / "w.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["schemes"] == {"preop": "kneealign-preop@1.0", "postop": "kneealign-postop@1.0"}
    loaded = load_bundle(path)
    a = bundle.build_networks()["local_preop"].eval()
    b = loaded.build_networks()["local_preop"].eval()
    x = torch.randn(1, 1, 288, 192)
    with torch.no_grad():
        assert torch.equal(a(x).heatmaps, b(x).heatmaps)


def test_bundle_with_wrong_scheme_is_refused(tmp_path):
    bundle = ModelBundle.untrained(**TINY)
    path = save_bundle(bundle, tmp_path / "w.safetensors")
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["kneealign"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["schemes"]["preop"] = "kneealign-preop@0.9"
    save_file(tensors, str(path), metadata={"kneealign": json.dumps(meta)})
    with pytest.raises(WeightsError, match="preop@0.9"):
        load_bundle(path)


def test_a_bundle_carries_its_phase_check_split_and_a_hostile_one_is_refused(tmp_path):
    """The split belongs to the landmark stages it was chosen for: it travels in the header; without one the header
    has no such key (the node's default applies); a value no difference of two confidences can take is refused."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    plain = save_bundle(ModelBundle.untrained(**TINY), tmp_path / "plain.safetensors")
    assert "implant_outline_evidence" not in json.loads(plain.with_suffix(".json").read_text())
    assert load_bundle(plain).implant_outline_evidence is None
    bundle = ModelBundle.untrained(**TINY)
    bundle.implant_outline_evidence = -0.12
    path = save_bundle(bundle, tmp_path / "w.safetensors")
    assert load_bundle(path).implant_outline_evidence == -0.12
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["kneealign"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for hostile in (7.0, "much", float("nan")):
        meta["implant_outline_evidence"] = hostile
        save_file(tensors, str(path), metadata={"kneealign": json.dumps(meta)})
        with pytest.raises(WeightsError, match="implant_outline_evidence|could not convert"):
            load_bundle(path)


def test_bundle_with_wrong_point_count_is_refused(tmp_path):
    bad = dict(TINY, local_cfgs={"preop": HourglassConfig(2, 8, 100), "postop": HourglassConfig(2, 8, 181)})
    path = save_bundle(ModelBundle.untrained(**bad), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="100 points"):
        load_bundle(path)


def test_missing_or_garbage_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_bundle(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WeightsError, match="not a readable"):
        load_bundle(tmp_path / "bad.safetensors")
