"""The width comparison's driver (tests/bench/widths_gpu.py): both runs see the same images and schedule, and
bundles too large for one file come back in parts that join to the original; the CPU widths' configs
(widths-mid/grow.yaml) share those images and that schedule; the two leave-one-renderer-out
configs (loro-2d-narrow/grow.yaml) differ only in the network."""

from __future__ import annotations

import pytest
import yaml

from tests.bench.widths_gpu import CONFIGS, PART, STAGE, copy_out, write_config
from train.fitting import load_config


def test_the_two_widths_share_data_and_schedule_and_differ_only_in_the_network(tmp_path):
    cfgs = {k: load_config(write_config(v, tmp_path, 1234, None)) for k, v in CONFIGS.items()}
    narrow, paper = cfgs["narrow"], cfgs["paper"]
    assert narrow.data == paper.data  # one rendering, shared through the cache files
    assert narrow.stages[STAGE].iterations == paper.stages[STAGE].iterations == 1234
    assert narrow.stages[STAGE].from_scratch and paper.stages[STAGE].from_scratch
    same = {k: v for k, v in narrow.stages[STAGE].model_dump().items() if k != "network"}
    assert same == {k: v for k, v in paper.stages[STAGE].model_dump().items() if k != "network"}
    assert (paper.stages[STAGE].network.depth, paper.stages[STAGE].network.width) == (6, 256)
    assert narrow.output != paper.output and narrow.checkpoint_dir != paper.checkpoint_dir

    dry = yaml.safe_load(write_config(CONFIGS["paper"], tmp_path, 20, 4).read_text())
    assert dry["data"]["n_train_preop"] == dry["data"]["xray3d"]["n_train_preop"] == 4
    assert dry["data"]["cache_file"] != paper.data.cache_file  # a dry run never overwrites the real cache
    assert dry["stages"][STAGE]["warmup"] == 2


@pytest.mark.parametrize("name", ["mid", "grow"])
def test_the_cpu_widths_train_on_the_same_images_and_schedule_as_the_gpu_ones(name):
    """widths-mid/grow.yaml (docs/results/widths-on-cpu.md) compare with the GPU runs at 2000 iterations only if
    they read the same cached images and keep the schedule; they differ in the network and the CPU's threads."""
    narrow = load_config(CONFIGS["narrow"])
    cpu = load_config(CONFIGS["narrow"].with_name(f"widths-{name}.yaml"))
    machine = {"render_workers"}
    assert cpu.data.model_dump(exclude=machine) == narrow.data.model_dump(exclude=machine)
    keep = {"network", "iterations"}
    assert cpu.stages[STAGE].model_dump(exclude=keep) == narrow.stages[STAGE].model_dump(exclude=keep)
    assert cpu.stages[STAGE].iterations == 2000 and cpu.stages[STAGE].from_scratch
    assert cpu.init_weights == narrow.init_weights and cpu.frame == narrow.frame
    assert cpu.output != narrow.output and cpu.checkpoint_dir != narrow.checkpoint_dir
    net = cpu.stages[STAGE].network.hourglass(134)
    assert net.depth == 6 and (net.width, net.max_width) in {(96, None), (64, 256)}


def test_the_leave_one_renderer_out_widths_differ_only_in_the_network():
    """loro-2d-narrow/grow.yaml (docs/results/widths-across-renderers.md) compare widths across renderers only if
    both train from random weights on the 2D-only images and augmentation of loro-2d-preop.yaml, with one schedule,
    on top of the same 2D-only stages, and never train on the 3D renderer."""
    loro = load_config(CONFIGS["narrow"].with_name("loro-2d-preop.yaml"))
    narrow, grow = (load_config(CONFIGS["narrow"].with_name(f"loro-2d-{k}.yaml")) for k in ("narrow", "grow"))
    assert narrow.data == grow.data == loro.data
    assert loro.data.n_train_postop == loro.data.xray3d.n_train_preop == loro.data.xray3d.n_train_postop == 0
    keep = {"network"}
    assert narrow.stages[STAGE].model_dump(exclude=keep) == grow.stages[STAGE].model_dump(exclude=keep)
    assert narrow.stages[STAGE].augment == loro.stages[STAGE].augment and narrow.stages[STAGE].from_scratch
    assert set(narrow.stages) == set(grow.stages) == {STAGE}
    assert narrow.init_weights == grow.init_weights == loro.init_weights and narrow.frame == grow.frame == loro.frame
    assert narrow.output != grow.output and narrow.checkpoint_dir != grow.checkpoint_dir
    nets = [cfg.stages[STAGE].network.hourglass(134) for cfg in (narrow, grow)]
    assert [(n.depth, n.width, n.max_width) for n in nets] == [(5, 64, None), (6, 64, 256)]


def test_large_files_come_back_in_parts_that_join(tmp_path):
    big, small = tmp_path / "big.safetensors", tmp_path / "small.json"
    big.write_bytes(bytes(range(256)) * (PART // 256 + 5))
    small.write_text("{}")
    names = copy_out([big, small], tmp_path / "out")
    assert names == ["big.safetensors.part-00", "big.safetensors.part-01", "small.json"]
    joined = b"".join((tmp_path / "out" / n).read_bytes() for n in names[:2])
    assert joined == big.read_bytes() and (tmp_path / "out" / "small.json").read_text() == "{}"
