"""A real ENOSPC with figures: the node's spool and SQLite database on a small tmpfs that fills up while images
arrive and are processed.

    python tests/stress/enospc.py [--images 30] [--size-mib N] [--reserve-mib 0] [--keep]

Mounts a tmpfs of ``--size-mib`` (by default what the images and their results need once space is back; needs
root or CAP_SYS_ADMIN, without which the script says so and exits 2), puts
``storage.dir`` and the database on it with ``storage.min_free_mb = --reserve-mib`` (0: nothing stops the disk
from filling, so writes really fail with ENOSPC; with a reserve, the receiver answers 0xA700 and the worker pauses
before that), fills the rest but a few MiB with a file, and sends ``--images`` synthetic knees with dcmtk's
``storescu``, each retried until acknowledged. The filler leaves room for ``--fit`` images but not for their
results; once processing has been held back by the full disk (5 s after it first was), the filler is deleted.
Prints: refused sends, jobs deferred without using an attempt, database writes retried, dead jobs, and whether
every acknowledged image ended with exactly one SR and one SC (duplicate copies counted).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests.conftest import free_port  # noqa: E402
from tests.node.nodehelpers import synthetic_knee, write  # noqa: E402
from tests.node.nodeproc import NodeProcess, StoreSCP, node_config, results_by_source, wait_for  # noqa: E402
from tests.stress.common import finish  # noqa: E402
from tests.stress.crash_recovery import Sender  # noqa: E402

MiB = 1024 * 1024


def mount_tmpfs(path: Path, size_mib: int) -> str | None:
    """Mount a tmpfs at ``path``; the error text if that is not allowed here."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0750", "tmpfs", str(path)],
                          check=False, capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--size-mib", type=int, default=0,
                        help="tmpfs size; default: what the images and their results need once the filler is gone")
    parser.add_argument("--reserve-mib", type=int, default=0, help="storage.min_free_mb")
    parser.add_argument("--fit", type=int, default=5,
                        help="the filler leaves room for this many images (not for their results)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kneealign-enospc-"))
    files = [write(synthetic_knee(7000 + n), workdir / "in" / f"knee{n:03d}.dcm") for n in range(args.images)]
    # Results take about 6 times the image (an RGB Secondary Capture and the SR): the disk must hold them all
    # once space is back, or the node (rightly) waits for an admin forever.
    size_mib = args.size_mib or int(7 * sum(p.stat().st_size for p in files) / MiB) + 32
    mount = workdir / "fs"
    mount.mkdir()
    error = mount_tmpfs(mount, size_mib)
    if error:
        print(f"cannot mount a size-limited tmpfs here ({error}); this needs root or CAP_SYS_ADMIN")
        shutil.rmtree(workdir, ignore_errors=True)
        return 2
    started = time.monotonic()
    node = destination = None
    try:
        destination = StoreSCP(workdir / "received", free_port()).start()
        port = free_port()
        config = node_config(workdir, port, destination.port, None,
                             storage={"dir": str(mount / "spool"), "min_free_mb": args.reserve_mib},
                             database={"url": f"sqlite:///{mount / 'node.sqlite'}"},
                             processing={"retry_base_seconds": 1})
        node = NodeProcess(config).start()
        filler = mount / "filler"
        leave = sum(p.stat().st_size for p in files[:args.fit]) + MiB
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(0, free_bytes(mount) - leave))
        print(f"disk filled: {free_bytes(mount) / MiB:.1f} MiB free of {size_mib} MiB", flush=True)
        sender = Sender(port, files, [])
        sender.start()
        held_back = re.compile(r"no attempt used|cannot record|processing paused")  # the worker, not the receiver
        wait_for(lambda: held_back.search(node.log()), 900, "processing to be held back by the full disk",
                 interval=0.2)
        time.sleep(5)  # let it run into the full disk for a while
        filler.unlink()
        freed = time.monotonic()
        print(f"filler deleted {freed - started:.0f} s after the start", flush=True)
        sender.join(1800)
        expected = {str(__import__("pydicom").dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                    for p in sender.acknowledged}

        def complete() -> bool:
            grouped = results_by_source(destination.datasets())
            return all(grouped.get(u, {}).get("sr") and grouped.get(u, {}).get("sc") for u in expected)

        wait_for(complete, 3600, "every acknowledged image's SR and SC", interval=1)
        time.sleep(3)
        grouped = results_by_source(destination.datasets())
        wrong = [u for u in expected if len(grouped[u]["sr"]) != 1 or len(grouped[u]["sc"]) != 1]
        copies = collections.Counter(str(ds.SOPInstanceUID) for ds in destination.datasets())
        log = node.log()
        with sqlite3.connect(f"file:{mount / 'node.sqlite'}?mode=ro", uri=True, timeout=30) as connection:
            dead = connection.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetchone()[0]
        print(f"{len(sender.acknowledged)} images acknowledged; {sender.refusals} sends refused or failed while "
              f"the disk was full (the sender retried them)")
        print(f"jobs deferred without using an attempt: {log.count('no attempt used')}; database writes retried: "
              f"{log.count('cannot record') + log.count('cannot claim')}; processing paused: "
              f"{log.count('processing paused')}; C-STOREs refused 0xA700: {log.count('0xA700')}, 0x0110: "
              f"{log.count('0x0110')}")
        print(f"dead jobs: {dead}; node still running: {node.process.poll() is None}")
        print(f"{len(expected) - len(wrong)} of {len(expected)} acknowledged images with exactly one SR and one SC; "
              f"{sum(n - 1 for n in copies.values() if n > 1)} duplicate copies; done "
              f"{time.monotonic() - freed:.0f} s after space came back, {time.monotonic() - started:.0f} s in all")
        return 1 if wrong or dead or node.process.poll() is not None else 0
    finally:
        if node is not None:
            node.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True, timeout=30)
        finish(workdir, args.keep, destination)


if __name__ == "__main__":
    sys.exit(main())
