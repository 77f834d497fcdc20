"""Fixtures for the receiver and SCU tests: a running Receiver on a free loopback port with a tmp spool and an
``on_stored`` that records its calls, and dcmtk ``storescp`` destinations.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from receive_helpers import Recorder, node_config

from dicomnode.receive import Receiver
from tests.conftest import free_port


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., tuple[Receiver, Recorder]]]:
    """Start a Receiver on a free port with a tmp spool; keyword arguments go to :func:`node_config`."""
    started: list[Receiver] = []

    def start(**overrides) -> tuple[Receiver, Recorder]:
        recorder = Recorder()
        receiver = Receiver(node_config(tmp_path / "spool", free_port(), **overrides), recorder)
        receiver.start()
        started.append(receiver)
        return receiver, recorder

    yield start
    for receiver in started:
        receiver.stop(grace_seconds=1)


@pytest.fixture
def start_storescp(dcmtk: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., tuple[int, Path]]]:
    """Start dcmtk's storescp as AE ``DEST`` on a free port writing to a temp dir; returns (port, output dir).

    Options are passed on (e.g. ``+xa`` to accept all transfer syntaxes; by default only uncompressed ones).
    """
    processes: list[subprocess.Popen] = []

    def start(*options: str) -> tuple[int, Path]:
        out = tmp_path / f"storescp-out-{len(processes)}"
        out.mkdir()
        port = free_port()
        process = subprocess.Popen([dcmtk["storescp"], "-aet", "DEST", *options, "-od", str(out), str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        deadline = time.monotonic() + 10
        while subprocess.run([dcmtk["echoscu"], "-aec", "DEST", "127.0.0.1", str(port)],
                             capture_output=True).returncode != 0:
            assert process.poll() is None, "storescp exited at start-up"
            assert time.monotonic() < deadline, "storescp did not start listening"
            time.sleep(0.1)
        return port, out

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
