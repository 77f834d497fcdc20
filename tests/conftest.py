"""Shared test helpers: locating real third-party tools, and skipping (locally) or failing (in CI) without them."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[1]


def require_tool(path_or_name: str, version_flag: str | None = None, must_mention: str | None = None) -> str:
    """Return the tool's path; skip the test when it is missing locally, fail in CI (where .ci/run installs it)."""
    path = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if not path or not os.path.exists(path):
        message = f"required tool {path_or_name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    if version_flag and must_mention:
        out = subprocess.run([path, version_flag], check=False, capture_output=True, text=True, timeout=30)
        text = out.stdout + out.stderr
        assert must_mention.lower() in text.lower(), f"{path} is not {must_mention}: {text[:200]}"
    return path


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port free now, chosen outside the kernel's ephemeral range.

    A port the kernel hands out for bind(0) comes from the same range as the local ports of outgoing
    connections, so between choosing it and a server binding it a client connection (to Orthanc, PostgreSQL,
    a node) can take it: a rare "Address already in use" (seen once in CI). Ports below the ephemeral range
    are never given to outgoing connections; each is checked free and handed out once per process.
    """
    low = _ephemeral_low()
    for _ in range(200 if low > 21000 else 0):
        port = random.randrange(20000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # an unusual port range: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, frontier = [pid], [pid]
    while frontier:
        children = child_pids(frontier.pop())
        tree += children
        frontier += children
    return tree


@pytest.fixture(scope="session")
def shipped_weights() -> Path:
    """The weights in model/weights/ (required in CI, where they are part of the checkout)."""
    from model.weights import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        if IN_CI:
            pytest.fail(f"shipped weights missing: {DEFAULT_WEIGHTS}")
        pytest.skip("no shipped weights in this checkout")
    return DEFAULT_WEIGHTS


@pytest.fixture
def dcmtk():
    """Absolute paths of dcmtk's tools (pynetdicom's own storescu/storescp would shadow them on a venv PATH)."""
    tools = {name: require_tool(f"/usr/bin/{name}") for name in ("storescu", "storescp", "echoscu", "dcmdump")}
    require_tool(tools["storescu"], "--version", "DCMTK")
    return tools
