"""Raw-socket peers for the hostile-network tests: hand-built PDUs, half-open and trickling connections, and a
real configured peer's C-ECHO (pynetdicom) to prove the node still serves.

Every connection binds a loopback source address (127.0.0.1 for the configured peer's own address, 127.0.0.x
for strangers), so "unknown source" cases run on one machine.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pynetdicom import AE
from pynetdicom.sop_class import Verification
from receive_helpers import NODE_AE, SENDER_AE

from dicomnode.dispatch.responses import keep_responses

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
STRANGER_IP = "127.0.0.2"


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def associate_rq(calling: str = SENDER_AE, called: str = NODE_AE, *, transfer_syntaxes: int = 1,
                 contexts: int = 1, max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification (``contexts`` times, ``transfer_syntaxes`` each)."""
    items = _item(0x10, APPLICATION_CONTEXT)
    for index in range(contexts):
        body = struct.pack(">BBBB", 2 * index + 1, 0, 0, 0) + _item(0x30, VERIFICATION)
        body += b"".join(_item(0x40, IMPLICIT_LE) for _ in range(transfer_syntaxes))
        items += _item(0x20, body)
    items += _item(0x50, _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.9.1"))
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32) + items
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def pdu(pdu_type: int, body: bytes, declared: int | None = None) -> bytes:
    """A PDU with ``body``, its header declaring ``declared`` bytes (default: the real length)."""
    return struct.pack(">BBL", pdu_type, 0, len(body) if declared is None else declared) + body


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV (``control``: bit 0 command, bit 1 last fragment)."""
    value = struct.pack(">B", control) + data
    return pdu(0x04, struct.pack(">LB", len(value) + 1, context_id) + value)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_pdu_type(sock: socket.socket, timeout: float = 10.0) -> int | None:
    """The type of the next PDU the node sends (its body is drained), or None if the node closed."""
    sock.settimeout(timeout)
    header = b""
    try:
        while len(header) < 6:
            chunk = sock.recv(6 - len(header))
            if not chunk:
                return None
            header += chunk
        pdu_type, _, length = struct.unpack(">BBL", header)
        while length:
            chunk = sock.recv(min(length, 65536))
            if not chunk:
                return None
            length -= len(chunk)
    except (ConnectionResetError, TimeoutError):
        return None
    return pdu_type


def closed_by_node(sock: socket.socket, within: float) -> bool:
    """True if the node closes (or resets) the connection within ``within`` seconds, reading and dropping
    whatever it sends first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


@contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def echo_seconds(port: int, calling: str = SENDER_AE, source: str = "127.0.0.1") -> float | None:
    """Seconds a C-ECHO by a configured peer takes (association, echo, release), or None if it failed."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    started = time.monotonic()
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=NODE_AE, bind_address=(source, 0)))
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return time.monotonic() - started if status and status.Status == 0 else None


def logged(caplog, *needles: str, within: float = 5.0, times: int = 1) -> bool:
    """True once `times` captured log records each contain every needle (records of closing connections are
    written by their threads a moment after the socket closed)."""
    deadline = time.monotonic() + within
    while True:
        if sum(all(n in r.getMessage() for n in needles) for r in list(caplog.records)) >= times:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Streamer(threading.Thread):
    """Streams ``total`` bytes to a socket after a header, counting what the kernel accepted before the node
    closed the connection."""

    def __init__(self, sock: socket.socket, header: bytes, total: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.header, self.total = sock, header, total
        self.sent = 0
        self.error: str | None = None

    def run(self) -> None:
        chunk = bytes(1024 * 1024)
        try:
            self.sock.sendall(self.header)
            while self.sent < self.total:
                self.sent += self.sock.send(chunk)
        except OSError as exc:
            self.error = type(exc).__name__
