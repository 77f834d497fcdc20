"""Helpers for the receiver and SCU tests: a node configuration for tests, a recording ``on_stored``, spool
inspection, and running dcmtk's storescu.
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

from dicomnode.config import NodeConfig
from dicomnode.receive import Receiver, StoredInstance

NODE_AE = "KNEEALIGN"
SENDER_AE = "SENDER"


class Recorder:
    """A thread-safe ``on_stored`` that records every instance (optionally failing instead)."""

    def __init__(self) -> None:
        self.calls: list[StoredInstance] = []
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, instance: StoredInstance) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.calls.append(instance)


def node_config(spool: Path, port: int, *, peer_host: str = "127.0.0.1", min_free_mb: int = 1,
                extra_peers: list[dict] | None = None, node: dict | None = None,
                **sections: dict) -> NodeConfig:
    """A node config for tests: our AE on ``port``, one sending peer SENDER at ``peer_host``; ``node`` keys
    and whole further sections (``limits={...}``, ``tls={...}``) override the defaults."""
    peers = [{"name": "sender", "ae_title": SENDER_AE, "host": peer_host, "port": 104}] + (extra_peers or [])
    return NodeConfig.model_validate({
        "node": {"ae_title": NODE_AE, "bind": "127.0.0.1", "port": port, "acse_timeout": 10,
                 "dimse_timeout": 20, "network_timeout": 20, **(node or {})},
        "peers": peers,
        "storage": {"dir": str(spool), "min_free_mb": min_free_mb},
        **sections,
    })


def stored_files(receiver: Receiver) -> list[Path]:
    """Every ``.dcm`` under the receiver's instances directory."""
    return sorted(receiver._spool.instances_dir.rglob("*.dcm"))


def partial_files(receiver: Receiver) -> list[Path]:
    return sorted(receiver._spool.incoming_dir.iterdir())


def run_storescu(dcmtk: dict[str, str], port: int, files: list[Path], *options: str,
                 calling: str = SENDER_AE, called: str = NODE_AE) -> subprocess.CompletedProcess:
    """dcmtk's storescu with debug output (it prints each response's DIMSE status), one association for all."""
    command = [dcmtk["storescu"], "-d", "-aet", calling, "-aec", called, *options, "127.0.0.1", str(port),
               *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def store_statuses(result: subprocess.CompletedProcess) -> list[int]:
    """The C-STORE response statuses storescu received, in order (from its debug output)."""
    output = result.stdout + result.stderr
    return [int(code, 16) for code in re.findall(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", output)]


class PidRecorder:
    """Picklable receiver hooks for several association processes: each stored instance is appended to a file as
    ``<pid> <SOP Instance UID>`` (one short ``O_APPEND`` write per line: whole lines from any process)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self):
        import os

        def on_stored(instance: StoredInstance) -> None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{os.getpid()} {instance.sop_instance_uid}\n".encode())
            finally:
                os.close(fd)

        return on_stored, None

    def lines(self) -> list[tuple[int, str]]:
        if not self.path.exists():
            return []
        return [(int(pid), uid) for pid, uid in (line.split() for line in self.path.read_text().splitlines())]
