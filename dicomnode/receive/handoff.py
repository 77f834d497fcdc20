"""Receiving with several processes (``node.receivers`` > 1): one acceptor, N association processes.

One process of Python runs pynetdicom's associations on one core. With several receivers, the receiver process
becomes the *acceptor*: it still accepts every TCP connection and admits it with the one
:class:`~dicomnode.receive.limits.ConnectionLimiter` (so ``node.max_associations`` and ``limits.*`` hold across
all processes, exactly as with one), then passes the socket (``SCM_RIGHTS``, through a pipe) to the association
process holding the fewest connections. That process runs the association exactly as the single-process receiver
does (TLS handshake, bounded PDU reads, access control, spool writes with fsync before Success, ``on_stored``),
and tells the acceptor when the association was accepted (no longer evictable) and when the connection closed
(its slot is free). The acceptor reads those reports in its accept loop, all of them before it admits the next
connection (``drain``), so its counts are never older than what a peer can have seen. It keeps its copy of each
socket until the connection closed, so it can still close a pending connection to make room for a configured
peer.

If an association process dies, the acceptor frees its connections' slots (their peers see the connection close
without a C-STORE response, and resend: nothing acknowledged is lost) and starts a new one. Messages on the pipe:
acceptor -> process ``Handover`` then the descriptor, or ``None`` (finish and stop); process -> acceptor
``("accepted", id)`` and ``("released", id)``.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from dicomnode.receive.limits import Connection, ConnectionLimiter

LOG = logging.getLogger(__name__)
READY_TIMEOUT_S = 120.0
RESTART_DELAY_S = 1.0


@dataclass(frozen=True)
class Handover:
    """What an association process needs to know of a connection the acceptor admitted."""

    conn_id: int
    ip: str
    port: int
    known: bool
    accepted_at: float  # time.monotonic(): one clock for every process of the machine
    opened_at: datetime

    @classmethod
    def of(cls, conn: Connection) -> Handover:
        return cls(conn.id, conn.ip, conn.port, conn.known, conn.accepted_at, conn.opened_at)

    def connection(self) -> Connection:
        return Connection(self.ip, self.port, self.known, id=self.conn_id, accepted_at=self.accepted_at,
                          opened_at=self.opened_at)


# -- in the acceptor -----------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    number: int
    process: Any  # a multiprocessing process
    pipe: Pipe
    held: dict[int, tuple[Connection, socket.socket]] = field(default_factory=dict)
    alive: bool = True


ProcessFactory = Callable[[int, Pipe, Any], Any]  # (number, child's pipe end, ready semaphore) -> Process


class AssociationPool:
    """The acceptor's side: starts the association processes, hands connections to them, keeps the limiter's
    counts in step with what they report, and replaces a process that died."""

    def __init__(self, count: int, limiter: ConnectionLimiter, make_process: ProcessFactory) -> None:
        self.count = count
        self.limiter = limiter
        self._make_process = make_process
        self._mp = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        workers = [self._spawn(n) for n in range(self.count)]
        for worker, ready in workers:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready.acquire(timeout=0.2):
                if not worker.process.is_alive() or time.monotonic() > deadline:
                    self.stop(0)
                    raise RuntimeError(f"association process {worker.number} did not start "
                                       f"(exit code {worker.process.exitcode})")

    def _spawn(self, number: int) -> tuple[_Worker, Any]:
        ours, theirs = self._mp.Pipe(duplex=True)
        ready = self._mp.Semaphore(0)
        process = self._make_process(number, theirs, ready)
        process.start()
        theirs.close()
        worker = _Worker(number, process, ours)
        with self._lock:
            if number < len(self._workers):
                self._workers[number] = worker
            else:
                self._workers.append(worker)
        return worker, ready

    def hand_over(self, sock: socket.socket, conn: Connection) -> bool:
        """Pass ``sock`` to the least busy live association process; False if none could take it."""
        with self._lock:
            candidates = sorted((w for w in self._workers if w.alive), key=lambda w: len(w.held))
            for worker in candidates:
                try:
                    worker.pipe.send(Handover.of(conn))
                    send_handle(worker.pipe, sock.fileno(), worker.process.pid)
                except OSError as exc:
                    LOG.error("association process %d cannot take a connection: %s", worker.number, exc)
                    self._lost(worker)
                    continue
                worker.held[conn.id] = (conn, sock)
                return True
        return False

    def drain(self) -> None:
        """Apply every report the association processes have sent so far (accepted, released, or their end)."""
        with self._lock:
            for worker in self._workers:
                if not worker.alive:
                    continue
                try:
                    while worker.pipe.poll(0):
                        kind, conn_id = worker.pipe.recv()
                        self._apply(worker, kind, conn_id)
                except (EOFError, OSError):
                    self._lost(worker)

    def _apply(self, worker: _Worker, kind: str, conn_id: int) -> None:
        entry = worker.held.get(conn_id) if kind == "accepted" else worker.held.pop(conn_id, None)
        if entry is None:
            return
        conn, sock = entry
        if kind == "accepted":
            self.limiter.mark_accepted(conn)
        else:
            sock.close()
            self.limiter.release(conn)
            conn.ended.set()

    def _lost(self, worker: _Worker) -> None:
        """An association process ended (or its pipe broke): free its connections' slots. Lock held."""
        worker.alive = False
        orphans = list(worker.held.values())
        worker.held.clear()
        for conn, sock in orphans:
            sock.close()
            self.limiter.release(conn)
            conn.ended.set()
        if not self._stopping.is_set():
            LOG.error("association process %d (pid %s) ended; %d connection(s) closed with it", worker.number,
                      worker.process.pid, len(orphans))

    def supervise(self) -> None:
        """Start a new association process in place of one that died (called about once a second)."""
        if self._stopping.is_set():
            return
        self.drain()
        with self._lock:
            for worker in self._workers:
                if worker.alive and not worker.process.is_alive():
                    self._lost(worker)
            dead = [w for w in self._workers if not w.alive]
        for worker in dead:
            worker.process.join(RESTART_DELAY_S)
            worker.pipe.close()
            LOG.warning("starting association process %d again (the last one ended with exit code %s)",
                        worker.number, worker.process.exitcode)
            self._spawn(worker.number)

    def stop(self, grace_seconds: float) -> None:
        """Ask every association process to finish its associations within ``grace_seconds``, then stop."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            try:
                worker.pipe.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + grace_seconds + 5
        for worker in workers:
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
        with self._lock:
            for worker in workers:
                self._lost(worker)
                worker.pipe.close()


# -- in an association process -------------------------------------------------------------------------------
class RemoteLimiter:
    """The limiter as an association process sees it: marks and releases go to the acceptor's limiter."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()

    def _tell(self, kind: str, conn: Connection) -> None:
        with self._lock:
            try:
                self._pipe.send((kind, conn.id))
            except OSError:  # the acceptor is gone; this process stops with it
                pass

    def mark_accepted(self, conn: Connection) -> None:
        conn.authenticated = True
        self._tell("accepted", conn)

    def release(self, conn: Connection) -> None:
        self._tell("released", conn)


def receive_handovers(pipe: Pipe, run: Callable[[socket.socket, Connection], None],
                      stop: threading.Event) -> None:
    """Take connections from the acceptor and ``run`` each one (which must not block), until the acceptor says
    stop, closes the pipe, or ``stop`` is set."""
    while not stop.is_set():
        try:
            if not pipe.poll(0.5):
                continue
            handover = pipe.recv()
            if handover is None:
                return
            fd = recv_handle(pipe)
        except (EOFError, OSError):
            return
        sock = socket.socket(fileno=fd)
        run(sock, handover.connection())
