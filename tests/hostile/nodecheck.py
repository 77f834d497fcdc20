"""A real node for the hostile corpus, and the checks made after it: the node still serves (a valid knee gets its
SR and SC), the workers and their sandboxes stayed within their memory bounds, and nothing was written outside
the spool."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from tests.node.nodehelpers import synthetic_knee, write
from tests.node.nodeproc import NodeProcess, StoreSCP, node_config, results_by_source, storescu, wait_for

WORKER_PARENT_MAX_MIB = 512  # the worker process itself: database, pipe, no model (that is in the sandbox)
EXPECTED_TOP_LEVEL = {"node.yaml", "node.sqlite", "node.sqlite-wal", "node.sqlite-shm", "serve.log", "spool",
                      "received", "cases", "storescp-{port}.log"}
SPOOL_DIRS = {"incoming", "instances", "outputs"}


class HostileNode(NodeProcess):
    """``dicomnode serve`` for the corpus: its port and its SQLite database file."""

    def __init__(self, config_path: Path, port: int) -> None:
        super().__init__(config_path)
        self.port = port
        self.database = config_path.parent / "node.sqlite"


def start_node(workdir: Path, port: int, destination_port: int, wait: bool = True,
               **sections) -> tuple[HostileNode, StoreSCP]:
    """The node (shipped weights, one worker, retries after 1 s) and a dcmtk storescp as its destination;
    ``wait=False`` returns while the node is still loading (call ``node.wait_ready()``)."""
    destination = StoreSCP(workdir / "received", destination_port).start()
    processing = {"retry_base_seconds": 1, **sections.pop("processing", {})}
    node = HostileNode(node_config(workdir, port, destination_port, None, processing=processing, **sections), port)
    try:
        node.start(wait=wait)
    except BaseException:
        destination.stop()
        raise
    return node, destination


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def status_field(pid: int, name: str) -> int | None:
    """A ``/proc/<pid>/status`` field in KiB (VmHWM, VmRSS...), None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class AfterReport:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> None:
        self.lines.append(("ok       " if ok else "PROBLEM  ") + text)
        if not ok:
            self.problems.append(text)


def memory_figures(node: NodeProcess) -> dict[str, tuple[int, float]]:
    """{role: (pid, peak RSS MiB)} for the node's processes; sandboxes are the workers' children."""
    figures: dict[str, tuple[int, float]] = {}
    workers = [int(m) for m in re.findall(r"worker \S+:(\d+) ready", node.log())]
    sandboxes = {int(w): int(s) for w, s in re.findall(r"worker \S+:(\d+) ready \(sandbox pid (\d+)", node.log())}
    for pid in descendants(node.process.pid):
        peak = status_field(pid, "VmHWM")
        if peak is None:
            continue
        role = "worker" if pid in workers else "sandbox" if pid in sandboxes.values() else (
            "resource-tracker" if "resource_tracker" in process_name(pid) else "receiver-or-other")
        figures[f"{role}:{pid}"] = (pid, peak / 1024)
    return figures


def after_corpus_checks(node: HostileNode, destination: StoreSCP, workdir: Path, timeout: float = 120) -> AfterReport:
    report = AfterReport()
    report.check(node.process.poll() is None, "the node is still running")
    figures = memory_figures(node)
    caps = [int(c) for c in re.findall(r"address space capped at (\d+) MiB", node.log())]
    cap = max(caps) if caps else 0
    for role, (_, peak) in sorted(figures.items()):
        if role.startswith("sandbox"):
            report.check(peak <= cap, f"{role} peak RSS {peak:.0f} MiB (address space cap {cap} MiB)")
        elif role.startswith("worker"):
            report.check(peak <= WORKER_PARENT_MAX_MIB, f"{role} peak RSS {peak:.0f} MiB (bound "
                                                        f"{WORKER_PARENT_MAX_MIB} MiB)")
        else:
            report.lines.append(f"figure   {role} peak RSS {peak:.0f} MiB")
    knee = synthetic_knee(31)
    path = write(knee, workdir / "after" / "knee.dcm")
    sent = storescu(node.port, [path])
    report.check(sent.returncode == 0, "a valid knee sent after the corpus is acknowledged")
    def results() -> dict[str, set[str]]:
        return results_by_source(destination.datasets()).get(str(knee.SOPInstanceUID), {})

    try:
        wait_for(lambda: all(results().get(kind) for kind in ("sr", "sc")), timeout, "the valid knee's SR and SC")
        got = results()
        report.check(len(got.get("sr", ())) == 1 and len(got.get("sc", ())) == 1,
                     "the valid knee got exactly one SR and one SC")
    except AssertionError as exc:
        report.check(False, str(exc))
    report.check(not outside_spool(workdir, destination.port), "no file outside the spool: "
                 + (", ".join(outside_spool(workdir, destination.port)) or "none"))
    report.check(not world_accessible(workdir / "spool") and not world_accessible(node.database),
                 "spool and database without world access")
    with sqlite3.connect(f"file:{node.database}?mode=ro", uri=True) as connection:
        retried = connection.execute("SELECT COUNT(*) FROM jobs WHERE attempts > 1 AND last_error LIKE "
                                     "'permanent:%'").fetchone()[0]
    report.check(retried == 0, f"{retried} permanent failure(s) attempted more than once")
    return report


def outside_spool(workdir: Path, destination_port: int) -> list[str]:
    """Files the node wrote outside its spool (anything in the work directory it had no business creating)."""
    expected = {name.format(port=destination_port) for name in EXPECTED_TOP_LEVEL} | {"after"}
    strays = [p.name for p in workdir.iterdir() if p.name not in expected]
    spool = workdir / "spool"
    if spool.exists():
        strays += [f"spool/{p.name}" for p in spool.iterdir() if p.name not in SPOOL_DIRS]
    return strays


def world_accessible(path: Path) -> list[str]:
    """Paths at or below ``path`` that others may read, write or enter."""
    if not path.exists():
        return []
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    return [str(p) for p in paths if p.stat().st_mode & 0o007]
