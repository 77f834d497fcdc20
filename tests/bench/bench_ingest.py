"""C-STORE ingest benchmark: our Receiver versus dcmtk's storescp, fed the same ~10 MB DX files in the same run.

Run: ``python tests/bench/bench_ingest.py [--count 40] [--size 2294] [--parallel 1 4] [--repeat 2]
[--receivers 4]``. dcmtk's storescu sends the files over 1 and over 4 parallel associations (the files split
between 4 storescu processes) to (a) our Receiver with one process (``node.receivers: 1``), (b) our Receiver with
an acceptor and ``--receivers`` association processes, each recording every instance to SQLite from
``on_stored`` as the pipeline would, and (c) dcmtk's storescp (``--fork``: a process per association, same
maximum PDU) writing to a temp dir. Prints MB/s and images/s for each, the ratios ours/dcmtk (goals: at least 1.0
over one association, 0.8 over four), and the receiver processes' peak RSS. Our receiver fsyncs every file and
its directory before answering; storescp does not fsync at all.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "receive")]

import yaml  # noqa: E402
from receive_samples import image_dataset, write_part10  # noqa: E402

from dicomnode.config import load_config  # noqa: E402
from dicomnode.receive import Receiver, StoredInstance  # noqa: E402
from tests.conftest import free_port, process_tree  # noqa: E402

STORESCU, STORESCP, ECHOSCU = "/usr/bin/storescu", "/usr/bin/storescp", "/usr/bin/echoscu"
NODE_AE, DCMTK_AE, SENDER_AE = "KNEEALIGN", "DCMTKSCP", "BENCH"
MAX_PDU = 131072


def check_dcmtk() -> None:
    for tool in (STORESCU, STORESCP, ECHOSCU):
        version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        if "dcmtk" not in version.lower():
            sys.exit(f"{tool} is not dcmtk's: {version[:80]!r}")


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    """``count`` distinct size x size 16-bit DX files (Explicit VR Little Endian, ~2*size^2 bytes each)."""
    return [write_part10(image_dataset("DX", rows=size, columns=size, seed=i), directory / f"dx{i:03d}.dcm")
            for i in range(count)]


# --- our receiver, in a process of its own ------------------------------------------------------------------

class SqliteRecorder:
    """``on_stored`` that records each instance in SQLite (WAL), as a job table insert would."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS arrivals (sop TEXT PRIMARY KEY, path TEXT, bytes INT)")
        self._lock = threading.Lock()

    def __call__(self, instance: StoredInstance) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO arrivals VALUES (?, ?, ?)",
                             (instance.sop_instance_uid, str(instance.path), instance.size_bytes))


class SqliteHooks:
    """The receiver's hooks (picklable): each process records into the same SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> tuple[SqliteRecorder, None]:
        return SqliteRecorder(self.path), None


def serve(config_path: Path) -> None:
    """Child process: run the Receiver until SIGTERM."""
    config = load_config(config_path, env={})
    hooks = SqliteHooks(config.storage.dir / "arrivals.sqlite")
    receiver = Receiver(config, hooks()[0], hooks=hooks)
    signal.signal(signal.SIGTERM, lambda *_: receiver.stop(grace_seconds=1))
    receiver.start(block=True)


def wait_until_listening(port: int, called_ae: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while subprocess.run([ECHOSCU, "-aet", SENDER_AE, "-aec", called_ae, "127.0.0.1", str(port)],
                         capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{called_ae} did not start")
        time.sleep(0.2)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Target:
    """A receiving SCP under test: its process, port, AE title, and how to count and clear what it received."""

    def __init__(self, name: str, command: list[str], port: int, ae: str, store_dir: Path) -> None:
        self.name, self.port, self.ae, self.store_dir = name, port, ae, store_dir
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(port, ae, self.process)

    def received(self) -> int:
        return sum(1 for _ in self.store_dir.rglob("*.dcm"))

    def clear(self) -> None:
        for path in list(self.store_dir.rglob("*.dcm")):
            path.unlink()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_ours(root: Path, receivers: int) -> Target:
    name = f"ours x{receivers}"
    spool, port = root / f"ours-{receivers}", free_port()
    config = {
        "node": {"ae_title": NODE_AE, "bind": "127.0.0.1", "port": port, "max_associations": 10,
                 "max_pdu_size": MAX_PDU, "receivers": receivers},
        "peers": [{"name": "bench", "ae_title": SENDER_AE, "host": "127.0.0.1", "port": 104}],
        "storage": {"dir": str(spool), "min_free_mb": 1024},
    }
    spool.mkdir(parents=True)
    config_path = root / f"config-{receivers}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return Target(name, [sys.executable, __file__, "--serve", str(config_path)], port, NODE_AE,
                  spool / "instances")


def start_dcmtk(root: Path) -> Target:
    out, port = root / "dcmtk", free_port()
    out.mkdir(parents=True)
    command = [STORESCP, "--fork", "-aet", DCMTK_AE, "--max-pdu", str(MAX_PDU), "-od", str(out), "-fe", ".dcm",
               str(port)]
    return Target("dcmtk storescp", command, port, DCMTK_AE, out)


# --- sending --------------------------------------------------------------------------------------------------

def send(target: Target, files: list[Path], parallel: int) -> float:
    """Send ``files`` split over ``parallel`` storescu processes (one association each); seconds taken."""
    chunks = [files[i::parallel] for i in range(parallel)]
    started = time.perf_counter()
    senders = [subprocess.Popen([STORESCU, "-aet", SENDER_AE, "-aec", target.ae, "127.0.0.1", str(target.port),
                                 *map(str, chunk)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for chunk in chunks]
    outcomes = [(sender.communicate()[1], sender.returncode) for sender in senders]
    failures = [stderr for stderr, code in outcomes if code != 0]
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"storescu to {target.name} failed: {failures[0][:500]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="number of DX files (default 40)")
    parser.add_argument("--size", type=int, default=2294, help="rows = columns of each 16-bit image")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4], help="associations at once")
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the median is reported")
    parser.add_argument("--receivers", type=int, default=4, help="association processes of the second receiver")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # child mode: run our receiver
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    check_dcmtk()
    root = Path(tempfile.mkdtemp(prefix="kneealign-bench-ingest-"))
    try:
        files = make_files(root / "send", args.count, args.size)
        total_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{args.count} DX files, {total_mb / args.count:.1f} MB each ({total_mb:.0f} MB), "
              f"max PDU {MAX_PDU}, median of {args.repeat} run(s)")
        targets = [start_ours(root, 1), start_ours(root, args.receivers), start_dcmtk(root)]
        try:
            results: dict[tuple[str, int], float] = {}
            for parallel in args.parallel:
                for target in targets:
                    times = []
                    for _ in range(args.repeat):
                        target.clear()
                        times.append(send(target, files, parallel))
                        assert target.received() == args.count, f"{target.name} stored {target.received()}"
                    results[(target.name, parallel)] = statistics.median(times)
            rss = {target.name: [peak_rss_mb(pid) for pid in process_tree(target.process.pid)]
                   for target in targets[:2]}
        finally:
            for target in targets:
                target.stop()
        print(f"{'receiver':<16}{'assocs':>7}{'seconds':>9}{'MB/s':>9}{'images/s':>10}")
        for (name, parallel), seconds in results.items():
            rate = f"{total_mb / seconds:>9.1f}{args.count / seconds:>10.2f}"
            print(f"{name:<16}{parallel:>7}{seconds:>9.2f}{rate}")
        goals = {1: 1.0, 4: 0.8}
        for target in targets[:2]:
            for parallel in args.parallel:
                ratio = results[("dcmtk storescp", parallel)] / results[(target.name, parallel)]
                goal = f" (goal >= {goals[parallel]})" if parallel in goals else ""
                print(f"ratio {target.name}/dcmtk throughput, {parallel} association(s): {ratio:.2f}{goal}")
        for name, peaks in rss.items():
            print(f"{name}: peak RSS {' + '.join(f'{mb:.0f}' for mb in peaks)} MB (acceptor first), "
                  f"{sum(peaks):.0f} MB in all")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
