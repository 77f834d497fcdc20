"""Latency benchmark of the running node: from an image's C-STORE completion to its SR and SC being received
by the destination, with ``trigger: instance``; and the node's peak memory.

    python tests/bench/bench_latency.py [--images 10] [--weights W] [--spacing MM] [--workers 1] [--keep]
                                        [--http on|off] [--scrape S]

Starts ``dicomnode serve`` (subprocess, temporary directory) with a dcmtk ``storescp`` as the destination,
sends M synthetic knee radiographs (``train.synth``, full detector resolution unless ``--spacing``) one by one
with dcmtk's ``storescu``, each after the previous one's results arrived, and prints per-image figures, the
median and 95th percentile (goal: median <= 3 s on this CPU) and the peak RSS of each of the node's processes.
Reception time is the modification time of the file storescp wrote. Without shipped weights (or with
``--weights tiny``) an untrained bundle of the smallest networks is used and said so. ``--http on`` (default)
serves the status page and /metrics as a production node does, and a thread fetches both every ``--scrape``
seconds during the run (an admin's open page and a busy Prometheus); ``--http off`` disables them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import pydicom

from tests.conftest import free_port
from tests.node.nodehelpers import synthetic_knee, write
from tests.node.nodeproc import (
    NodeProcess,
    StoreSCP,
    make_tiny_weights,
    node_config,
    results_by_source,
    storescu,
    wait_for,
)


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set size over the process's life) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (a cost that the machine's other load does not inflate
    as much as it does wall-clock latency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_roles(node: NodeProcess) -> dict[int, str]:
    """pid -> "main", "receiver", "worker-N" or "helper" (multiprocessing's resource tracker)."""
    roles = {node.process.pid: "main"}
    names = {}
    for pid in node.pids()[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        names[pid] = "helper" if "resource_tracker" in cmdline else None
    log = node.log()
    workers = [int(line.split("worker ", 1)[1].split()[0].rsplit(":", 1)[1])
               for line in log.splitlines() if " ready" in line and "runtime.worker" in line]
    for n, pid in enumerate(workers):
        if pid in names:
            names[pid] = f"worker-{n}"
    for pid, name in names.items():
        roles[pid] = name or "receiver"
    return roles


def arrival_times(destination: StoreSCP, source_uid: str) -> dict[str, float] | None:
    """When the SR and the SC of ``source_uid`` were written by the destination (None until both were)."""
    found: dict[str, float] = {}
    for file in destination.files():
        try:
            grouped = results_by_source([pydicom.dcmread(file, stop_before_pixels=True)])
        except Exception:  # noqa: BLE001 - storescp is still writing it (it writes in place): next poll
            return None
        if source_uid in grouped:
            kind = next(k for k, v in grouped[source_uid].items() if v)
            found[kind] = file.stat().st_mtime
    return found if {"sr", "sc"} <= set(found) else None


def scrape_loop(port: int, every_s: float, stop: threading.Event, counts: dict[str, int]) -> None:
    """Fetch /metrics and the status page every ``every_s`` seconds until ``stop``."""
    while not stop.wait(every_s):
        for path in ("/metrics", "/"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
                response.read()
                counts[path] = counts.get(path, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--weights", default=None, help="weights file, or 'tiny' (default: shipped, else tiny)")
    parser.add_argument("--spacing", type=float, default=None, help="render spacing in mm (default: detector's)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for one image's results")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (log, database, files)")
    parser.add_argument("--http", choices=("on", "off"), default="on", help="status page and /metrics (default on)")
    parser.add_argument("--scrape", type=float, default=5.0, help="with --http on: fetch /metrics and / every S s")
    args = parser.parse_args()

    from model.weights import DEFAULT_WEIGHTS

    workdir = Path(tempfile.mkdtemp(prefix="kneealign-bench-"))
    if args.weights == "tiny" or (args.weights is None and not DEFAULT_WEIGHTS.exists()):
        weights, label = make_tiny_weights(workdir / "tiny.safetensors"), "UNTRAINED tiny bundle (no shipped weights)"
    else:
        weights = Path(args.weights) if args.weights else DEFAULT_WEIGHTS
        label = str(weights)
    node_port, dest_port = free_port(), free_port()
    destination = StoreSCP(workdir / "received", dest_port).start()
    http_port = free_port()
    config = node_config(workdir, node_port, dest_port, weights, processing={"workers": args.workers},
                         http={"enabled": args.http == "on", "port": http_port})
    images = [write(synthetic_knee(5000 + n, spacing_mm=args.spacing, laterality="LR"[n % 2]),
                    workdir / "send" / f"knee{n}.dcm") for n in range(args.images)]
    size_mb = statistics.mean(p.stat().st_size for p in images) / 1e6
    print(f"KneeAlign latency benchmark: {len(images)} synthetic knee DX, {size_mb:.1f} MB each; weights: {label}; "
          f"workers: {args.workers}; status page and metrics: {args.http}"
          + (f" (scraped every {args.scrape:g} s)" if args.http == "on" else "")
          + f"; CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    node = NodeProcess(config)
    started = time.monotonic()
    node.start()
    print(f"node start-up: {time.monotonic() - started:.1f} s")
    latencies: list[float] = []
    stop_scraping, scrapes = threading.Event(), {}
    if args.http == "on":
        threading.Thread(target=scrape_loop, args=(http_port, args.scrape, stop_scraping, scrapes), daemon=True).start()
    try:
        print(f"{'image':<8} {'C-STORE s':>9} {'SR s':>7} {'SC s':>7} {'latency s':>9}")
        for path in images:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            before = time.time()
            sent = storescu(node_port, [path])
            done = time.time()  # storescu has its C-STORE response (and released the association)
            if sent.returncode != 0:
                raise SystemExit(f"storescu failed: {sent.stderr}")

            times = wait_for(lambda source=uid: arrival_times(destination, source), args.timeout,
                             f"the results of {path.name}", interval=0.05)
            latency = max(times.values()) - done
            latencies.append(latency)
            print(f"{path.stem:<8} {done - before:>9.2f} {times['sr'] - done:>7.2f} {times['sc'] - done:>7.2f} "
                  f"{latency:>9.2f}")
        roles = process_roles(node)
        peaks = {role: peak_rss_mib(pid) for pid, role in roles.items()}
        cpu = {role: cpu_seconds(pid) for pid, role in roles.items()}
    finally:
        stop_scraping.set()
        node.stop()
        destination.stop()
    print(f"latency C-STORE done -> SR and SC received: median {statistics.median(latencies):.2f} s, "
          f"p95 {percentile(latencies, 0.95):.2f} s, max {max(latencies):.2f} s (goal: median <= 3 s)")
    print("node peak RSS (VmHWM): " + ", ".join(f"{role} {mib:.0f} MiB" for role, mib in sorted(peaks.items()))
          + f"; sum {sum(peaks.values()):.0f} MiB")
    print("node CPU time (user+system) until the end of the run: "
          + ", ".join(f"{role} {seconds:.1f} s" for role, seconds in sorted(cpu.items())))
    if scrapes:
        print("scrapes during the run: " + ", ".join(f"{path} {count}" for path, count in sorted(scrapes.items())))
    if args.keep:
        print(f"workdir (log, database, received files): {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
