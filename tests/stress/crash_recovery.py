"""Kill -9 of the whole node at random moments while it receives, processes and sends back a few hundred images:
every acknowledged image must end with exactly one SR and one SC (the same SOP Instance UIDs if it was sent
twice), and duplicate copies at the destination are counted.

    python tests/stress/crash_recovery.py [--images 200] [--kills 10] [--resend 20] [--seed 1] [--keep]

Starts ``dicomnode serve`` (shipped weights, one worker; its receiver, worker and sandbox in one process group)
and a dcmtk ``storescp`` destination that keeps every copy it receives. A sender thread sends each synthetic knee
with dcmtk's ``storescu`` (one association per image, retried until acknowledged while the node is down), then
sends ``--resend`` of them again. The main thread kills the whole process group with SIGKILL at ``--kills``
random moments (when a random number of results have arrived, plus a random 0-3 s), and starts the node again
each time. At the end it prints the counts and checks: every acknowledged image has exactly one SR and one SC
SOP Instance UID at the destination; copies of the same UID beyond the first are reported as duplicates.
"""

from __future__ import annotations

import argparse
import collections
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from dicomnode.vocabulary import kind_of  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.node.nodehelpers import synthetic_knee, write  # noqa: E402
from tests.node.nodeproc import (  # noqa: E402
    MODALITY_AE,
    NODE_AE,
    STORESCU,
    NodeProcess,
    StoreSCP,
    node_config,
    wait_for,
)
from tests.stress.common import finish  # noqa: E402


def source_of(ds) -> str:
    if kind_of(ds) == "sr":
        return str(ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                   .ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)


def received(destination: StoreSCP) -> list[tuple[str, str, str]]:
    """(source SOP UID, kind, output SOP UID) of every copy the destination holds."""
    import pydicom

    out = []
    for path in destination.files():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - a file storescp is still writing
            continue
        out.append((source_of(ds), kind_of(ds), str(ds.SOPInstanceUID)))
    return out


class Sender(threading.Thread):
    """Sends every file until acknowledged (0x0000), one association each, then the re-sends."""

    def __init__(self, port: int, files: list[Path], resend: list[Path]) -> None:
        super().__init__(daemon=True)
        self.port, self.queue = port, [*files, *resend]
        self.acknowledged: list[Path] = []
        self.refusals = 0

    def run(self) -> None:
        for path in self.queue:
            while True:
                done = subprocess.run([STORESCU, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1", str(self.port),
                                       str(path)], check=False, capture_output=True, text=True, timeout=300)
                if done.returncode == 0:
                    self.acknowledged.append(path)
                    break
                self.refusals += 1
                time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--resend", type=int, default=20, help="images sent a second time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="kneealign-crash-"))
    started = time.monotonic()
    files = [write(synthetic_knee(5000 + n, laterality="LR"[n % 2]), workdir / "in" / f"knee{n:04d}.dcm")
             for n in range(args.images)]
    uids = {path: __import__("pydicom").dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in files}
    resend = rng.sample(files, min(args.resend, len(files)))
    print(f"{len(files)} images written in {time.monotonic() - started:.0f} s", flush=True)
    destination = StoreSCP(workdir / "received", free_port()).start()
    port = free_port()
    config = node_config(workdir, port, destination.port, None, processing={"retry_base_seconds": 1})
    node = NodeProcess(config).start()
    sender = Sender(port, files, resend)
    sender.start()
    thresholds = sorted(rng.sample(range(1, args.images), min(args.kills, args.images - 1)))
    kills: list[str] = []
    try:
        for n, threshold in enumerate(thresholds, start=1):
            wait_for(lambda t=threshold: len({s for s, k, _ in received(destination) if k == "sr"}) >= t, 3600,
                     f"{threshold} results before kill {n}", interval=0.5)
            time.sleep(rng.uniform(0, 3))
            with sqlite3.connect(f"file:{workdir / 'node.sqlite'}?mode=ro", uri=True, timeout=30) as connection:
                running = connection.execute("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetchone()[0]
            node.kill()
            kills.append(f"kill {n} after {threshold} results ({running} job(s) running, sender at "
                         f"{len(sender.acknowledged)} acknowledged)")
            print(kills[-1], flush=True)
            time.sleep(0.5)
            node = NodeProcess(config).start()
        sender.join(3600)
        expected = {str(uids[p]) for p in sender.acknowledged}

        def complete() -> bool:
            got = collections.defaultdict(set)
            for source, kind, _ in received(destination):
                got[source].add(kind)
            return all(got.get(uid) == {"sr", "sc"} for uid in expected)

        wait_for(complete, 7200, "every acknowledged image's SR and SC", interval=2)
        time.sleep(5)  # copies still in flight after the last recorded delivery
        copies = received(destination)
        per_source: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: {"sr": set(), "sc": set()})
        for source, kind, uid in copies:
            per_source[source][kind].add(uid)
        counts = collections.Counter(uid for _, _, uid in copies)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        wrong = [s for s in expected if len(per_source[s]["sr"]) != 1 or len(per_source[s]["sc"]) != 1]
        strays = set(per_source) - expected
        with sqlite3.connect(f"file:{workdir / 'node.sqlite'}?mode=ro", uri=True, timeout=30) as connection:
            attempts = collections.Counter(a for (a,) in connection.execute("SELECT attempts FROM jobs"))
            dead = connection.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetchone()[0]
        print(f"{len(kills)} kills; {len(sender.acknowledged)} acknowledgements ({len(resend)} re-sends), "
              f"{sender.refusals} sends refused or failed while the node was down")
        print(f"{len(expected)} acknowledged images: {len(expected) - len(wrong)} with exactly one SR and one SC "
              f"SOP Instance UID; {len(wrong)} otherwise; {len(strays)} results for images never acknowledged")
        print(f"{len(copies)} copies received, {len(counts)} distinct output UIDs, {duplicates} duplicate "
              f"copies (the same UID received again)")
        print(f"job attempts: {dict(sorted(attempts.items()))}; dead jobs: {dead}")
        print(f"{time.monotonic() - started:.0f} s in all")
        return 1 if wrong or dead else 0
    finally:
        finish(workdir, args.keep, node, destination)


if __name__ == "__main__":
    sys.exit(main())
