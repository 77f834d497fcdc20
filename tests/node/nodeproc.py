"""Real processes for the node's integration tests and benchmark: ``dicomnode serve`` as a subprocess with
a temporary configuration, dcmtk's storescu/storescp (by absolute path), and a tiny untrained model bundle.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import yaml

from dicomnode.vocabulary import kind_of
from tests.conftest import child_pids, free_port

REPO = Path(__file__).resolve().parents[2]
STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
MODALITY_AE = "MODALITY"
NODE_AE = "KNEEALIGN"
READY_LINE = "KneeAlign node up"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def make_tiny_weights(path: Path) -> Path:
    """An untrained bundle of the smallest networks: the real inference code, fast, never confident."""
    from model.network import HourglassConfig
    from model.weights import ModelBundle, save_bundle

    bundle = ModelBundle.untrained(HourglassConfig(2, 8, 2, n_aux=2),
                                   {"preop": HourglassConfig(2, 8, 134), "postop": HourglassConfig(2, 8, 181)})
    return save_bundle(bundle, path)


def node_config(workdir: Path, port: int, destination_port: int, weights: Path | None, **sections: Any) -> Path:
    """Write a configuration for a node on loopback whose only peer is ``MODALITY`` (results go back to
    ``destination_port``), with its status page on a free loopback port; ``sections`` update whole sections,
    e.g. ``processing={"trigger": "study"}``."""
    config: dict[str, Any] = {
        "node": {"ae_title": NODE_AE, "bind": "127.0.0.1", "port": port, "acse_timeout": 10,
                 "dimse_timeout": 20, "network_timeout": 20},
        "peers": [{"name": "modality", "ae_title": MODALITY_AE, "host": "127.0.0.1", "port": destination_port,
                   "send_results": True}],
        "storage": {"dir": "spool", "retention_days": 7, "min_free_mb": 1},
        "database": {"url": "sqlite:///node.sqlite"},
        "processing": {"trigger": "instance", "outputs": ["sr", "sc"], "workers": 1, "device": "cpu",
                       "retry_base_seconds": 1, "max_attempts": 5},
        "dispatch": {"max_attempts": 30, "retry_base_seconds": 1, "retry_max_seconds": 2},
        "model": {"weights": str(weights) if weights else None},
        "http": {"enabled": True, "bind": "127.0.0.1", "port": free_port()},
        "logging": {"level": "INFO"},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    path = workdir / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMNODE__")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class NodeProcess:
    """``python -m dicomnode serve`` in its own session (so SIGKILL can take all its processes at once)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.log_path = config_path.parent / "serve.log"
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self, timeout: float = 180, wait: bool = True) -> NodeProcess:
        """Start the node; with ``wait`` (the default) return once it is serving (see :meth:`wait_ready`)."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dicomnode", "serve", "--config", str(self.config_path), "--grace", "20"],
            cwd=self.config_path.parent, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self.wait_ready(timeout) if wait else self

    def wait_ready(self, timeout: float = 180) -> NodeProcess:
        wait_for(lambda: READY_LINE in self.log() or self.process.poll() is not None, timeout, "the node to start")
        assert self.process.poll() is None, f"the node exited at start-up:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[self._log_offset:] if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """The node's processes: the main one and its children (receiver, workers)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *child_pids(self.process.pid)]

    def kill(self) -> None:
        """SIGKILL every process of the node at once (a power cut, as far as the node can tell)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it does not come."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the node did not stop within {timeout} s:\n{self.log()[-3000:]}") from None


class StoreSCP:
    """dcmtk's storescp as a result destination, keeping every received copy (``+uf``) in ``directory``.

    storescp writes each file in place, so a reader polling its output directory could read a file half written
    (this made tests fail about one run in eight). It writes into ``directory/.incoming`` instead, and moves each
    file into ``directory`` once it is complete, before it answers the C-STORE (``--exec-on-reception`` with
    ``--exec-sync``): every file in ``directory`` is whole, and is there when the sender sees Success."""

    def __init__(self, directory: Path, port: int, ae_title: str = MODALITY_AE) -> None:
        self.directory, self.port, self.ae_title = directory, port, ae_title
        self.process: subprocess.Popen | None = None
        self.log_path = directory.parent / f"storescp-{port}.log"

    def start(self) -> StoreSCP:
        incoming = self.directory / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        move = f"mv -f #p/#f {shlex.quote(str(self.directory))}/"
        self.process = subprocess.Popen(
            [STORESCP, "-v", "-aet", self.ae_title, "+uf", "-od", str(incoming), "-xcr", move, "-xs", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        time.sleep(0.3)
        assert self.process.poll() is None, self.log_path.read_text()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file()) if self.directory.exists() else []

    def datasets(self) -> list[pydicom.Dataset]:
        """The headers of the received files (all complete, see the class docstring)."""
        return [pydicom.dcmread(path, stop_before_pixels=True) for path in self.files()]

    def associations(self) -> int:
        return self.log_path.read_text(errors="replace").count("Association Received")


def storescu(port: int, files: list[Path], calling_ae: str = MODALITY_AE) -> subprocess.CompletedProcess:
    """dcmtk's storescu: all ``files`` over one association to the node."""
    command = [STORESCU, "-aet", calling_ae, "-aec", NODE_AE, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


def results_by_source(datasets: list[pydicom.Dataset]) -> dict[str, dict[str, set[str]]]:
    """Received result objects grouped by the source SOP Instance UID they reference:
    ``{source_uid: {"sr": {uids}, "sc": {uids}}}``."""
    grouped: dict[str, dict[str, set[str]]] = {}
    for ds in datasets:
        kind = kind_of(ds)
        assert kind in ("sr", "sc"), f"unexpected result object: {kind}"
        if kind == "sr":
            evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            source = evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        else:
            source = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        grouped.setdefault(str(source), {"sr": set(), "sc": set()})[kind].add(str(ds.SOPInstanceUID))
    return grouped
