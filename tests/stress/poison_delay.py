"""Poison images against a real node: each must cost at most one bounded attempt, and a valid knee sent right
after it must not be delayed by more than 10 s.

    python tests/stress/poison_delay.py [--bomb-mib 1024] [--limits] [--keep]

Starts ``dicomnode serve`` (shipped weights, one worker) with a dcmtk ``storescp`` as the destination. First a
valid knee alone, for the baseline: the time from its acknowledgement (dcmtk ``storescu`` returns) to its SR and
SC at the destination. Then, for each poison image (2 MB of 400 nested sequences, RLE 30000 x 30000, RLE
16384 x 16384, a deflate bomb, an RLE stream that makes the Rust decoder panic), ``storescu`` sends the poison and
then a fresh valid knee; printed: the poison's attempts, state and reason, and the knee's queue wait (job start
minus receipt, from the database) and its end-to-end time minus the baseline (the delay the poison caused).

``--limits`` runs a second node whose decoded-size bound is raised (``processing.max_decoded_mb: 4096``) and whose
sandbox gets 1024 MiB (``job_memory_mb``), so that the 16384 x 16384 image is decoded and hits the memory limit
instead: retried once, then dead; the delay of the knee after it is printed too.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import pydicom  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.hostile import builders as b  # noqa: E402
from tests.hostile.corpus import knee, small  # noqa: E402
from tests.hostile.nodecheck import start_node  # noqa: E402
from tests.node.nodeproc import MODALITY_AE, NODE_AE, STORESCU, results_by_source, wait_for  # noqa: E402
from tests.stress.common import finish  # noqa: E402

MiB = 1024 * 1024
DELAY_BOUND_S = 10.0


def poisons(bomb_mib: int) -> dict[str, bytes]:
    from functools import partial

    return {
        "400 nested sequences (2 MB)": b.splice(b.encode(small()), b.nested(400, 5000), 0x00100000),
        "RLE 30000 x 30000": b.rle_image(small(), 30000, 30000, b.rle_header([64, 68]) + bytes(8)),
        "RLE 16384 x 16384 (flat)": b.rle_image(small(), 16384, 16384, b.rle_flat_frame(16384, 16384, 16)),
        f"deflate bomb ({bomb_mib} MiB inflated)": partial(b.deflate_bomb, small(), bomb_mib * MiB)(),
        "RLE that panics the Rust decoder": b.rle_image(small(), 4, 4,
                                                        b.rle_header([64, 68]) + b"\x81\x00\x81\x00" * 2),
    }


def send(port: int, path: Path, raw: bool = False) -> tuple[bool, float, str]:
    """One file over one association: dcmtk storescu, or (``raw``) pynetdicom sending the file's bytes as they
    are (dcmtk refuses to send some malformed files, and inflates a deflated one before sending it).
    Returns (acknowledged with 0x0000, when the sender returned, which sender)."""
    if raw:
        from tests.hostile.corpus import Case, Expect
        from tests.hostile.harness import send as raw_send

        (sent,) = raw_send(port, [(Case(path.name, "poison", lambda: b"", Expect("never")), path)])
        return sent.status == 0, time.monotonic(), "pynetdicom (raw bytes)"
    done = subprocess.run([STORESCU, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1", str(port), str(path)],
                          check=False, capture_output=True, text=True, timeout=600)
    return done.returncode == 0, time.monotonic(), "dcmtk storescu"


def job_row(database: Path, sop_uid: str) -> tuple | None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(
            "SELECT j.state, j.attempts, j.last_error, i.state, i.received_at, j.started_at, j.finished_at "
            "FROM instances i JOIN jobs j ON j.instance_id = i.id WHERE i.sop_instance_uid = ? ORDER BY j.id DESC",
            (sop_uid,)).fetchone()


def knee_latency(node, destination, workdir: Path, name: str) -> tuple[float, tuple | None]:
    ds = knee()
    path = b.encode(ds)
    file = workdir / f"{name}.dcm"
    file.write_bytes(path)
    ok, acknowledged, _ = send(node.port, file)
    assert ok, "the valid knee was refused"
    uid = str(ds.SOPInstanceUID)

    def arrived() -> bool:
        got = results_by_source(destination.datasets()).get(uid, {})
        return bool(got.get("sr")) and bool(got.get("sc"))

    wait_for(arrived, 600, "the valid knee's SR and SC", interval=0.05)
    return time.monotonic() - acknowledged, job_row(node.database, uid)


def _seconds(row: tuple | None, start: int, end: int) -> float:
    from datetime import datetime

    if row is None or row[start] is None or row[end] is None:
        return float("nan")
    return (datetime.fromisoformat(row[end]) - datetime.fromisoformat(row[start])).total_seconds()


def queue_wait(row: tuple | None) -> float:
    """From the instance's receipt to its job's (last) start."""
    return _seconds(row, 4, 5)


def run(workdir: Path, bomb_mib: int, processing: dict, label: str) -> list[str]:
    problems = []
    node, destination = start_node(workdir, free_port(), free_port(), processing=processing)
    try:
        baseline, _ = knee_latency(node, destination, workdir, "baseline")
        print(f"[{label}] baseline: valid knee acknowledged -> SR and SC in {baseline:.1f} s", flush=True)
        for n, (name, data) in enumerate(poisons(bomb_mib).items()):
            path = workdir / f"poison{n}{'-deflate' if 'deflate' in name else ''}.dcm"
            path.write_bytes(data)
            uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
            raw = "deflate" in name or "RLE" in name  # dcmtk will not send these as they are
            ok, _, sender = send(node.port, path, raw=raw)
            latency, knee_row = knee_latency(node, destination, workdir, f"after{n}")
            wait_for(lambda: (row := job_row(node.database, uid)) is None or row[0] in ("dead", "done"), 600,
                     "the poison's job to end")
            row = job_row(node.database, uid)
            delay = latency - baseline
            verdict = "ok" if delay <= DELAY_BOUND_S else "TOO LATE"
            if row is None:
                print(f"[{label}] {name} (sent by {sender}): "
                      f"{'refused at receipt' if not ok else 'acknowledged, not recorded'}; "
                      f"knee after it: queue wait {queue_wait(knee_row):.1f} s, delay {delay:+.1f} s ({verdict})")
            else:
                attempts_ok = row[1] == 1 or row[2].startswith("limit:")
                print(f"[{label}] {name} (sent by {sender}): {row[0]} after {row[1]} attempt(s), the last taking "
                      f"{_seconds(row, 5, 6):.1f} s: {row[2]}; "
                      f"knee after it: queue wait "
                      f"{queue_wait(knee_row):.1f} s, delay {delay:+.1f} s ({verdict})", flush=True)
                if not attempts_ok:
                    problems.append(f"{name}: {row[1]} attempts")
            if delay > DELAY_BOUND_S:
                problems.append(f"{name}: the knee after it was delayed {delay:.1f} s")
    finally:
        node.stop()
        destination.stop()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bomb-mib", type=int, default=1024, help="inflated size of the deflate bomb")
    parser.add_argument("--limits", action="store_true", help="also run with the decoded-size bound raised")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kneealign-poison-"))
    try:
        problems = run(workdir / "default", args.bomb_mib, {}, "default bounds")
        if args.limits:
            problems += run(workdir / "limits", args.bomb_mib, {"max_decoded_mb": 4096, "job_memory_mb": 1024},
                            "memory limit")
    finally:
        finish(workdir, args.keep)
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
