"""A real ENOSPC: the node's spool and SQLite database on a small tmpfs filled to the brim while images are being
processed. Every acknowledged image must still end with exactly one SR and one SC once space is back; no job may
die of the full disk (jobs wait in the queue instead), and the node must not stop.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN); where that is refused the test is skipped and says why. The
larger run with figures is ``tests/stress/enospc.py``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.node.nodehelpers import synthetic_knee, write
from tests.node.nodeproc import NodeProcess, StoreSCP, node_config, results_by_source, storescu, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MiB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator:
    """``mount(size_mib)``: a tmpfs of that size at tmp_path/fs (unmounted afterwards)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    mounted = []

    def do_mount(size_mib: int) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0750", "tmpfs", str(mount)],
                              check=False, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here (needs root or CAP_SYS_ADMIN): "
                        f"{done.stderr.strip()}")
        mounted.append(mount)
        return mount

    yield do_mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def fill(mount: Path, leave_bytes: int) -> Path:
    """A file taking all but ``leave_bytes`` of the free space."""
    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_a_full_disk_delays_results_and_loses_none(tmp_path, small_fs, shipped_weights, dcmtk):
    knees = [write(synthetic_knee(200 + n), tmp_path / "in" / f"knee{n}.dcm") for n in range(3)]
    size = sum(p.stat().st_size for p in knees)
    # Room for the images, their results (an RGB Secondary Capture and an SR: about 6 times the image) and the
    # database once the filler is gone; less would leave a disk full of legitimate data, where the node (rightly)
    # waits for an admin.
    small_fs = small_fs(int(7 * size / MiB) + 24)
    destination = StoreSCP(tmp_path / "received", free_port()).start()
    config = node_config(tmp_path, free_port(), destination.port, None,
                         storage={"dir": str(small_fs / "spool"), "min_free_mb": 0},
                         database={"url": f"sqlite:///{small_fs / 'node.sqlite'}"},
                         processing={"retry_base_seconds": 1})
    node = NodeProcess(config).start()
    try:
        filler = fill(small_fs, size + 600 * 1024)  # room for the images and an SR, not for an SC
        acknowledged = [p for p in knees if storescu(int(node_port(config)), [p]).returncode == 0]
        assert acknowledged, "at least one image must have been acknowledged before the disk filled"
        wait_for(lambda: "no attempt used" in node.log() or "cannot record" in node.log(), 120,
                 "a job held back by the full disk")
        filler.unlink()
        expected = {str(__import__("pydicom").dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                    for p in acknowledged}

        def complete() -> bool:
            grouped = results_by_source(destination.datasets())
            return expected <= set(grouped) and all(grouped[u]["sr"] and grouped[u]["sc"] for u in expected)

        wait_for(complete, 240, "every acknowledged image's SR and SC")
        grouped = results_by_source(destination.datasets())
        assert all(len(grouped[u]["sr"]) == 1 and len(grouped[u]["sc"]) == 1 for u in expected), grouped
        assert node.process.poll() is None, "the node kept running"
        assert "(dead)" not in node.log(), "no job died of the full disk"
    finally:
        node.stop()
        destination.stop()


def node_port(config: Path) -> int:
    import yaml

    return int(yaml.safe_load(config.read_text())["node"]["port"])
