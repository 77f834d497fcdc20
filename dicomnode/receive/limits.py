"""Admission of TCP connections: caps in total, per source address and for unknown sources.

Every accepted TCP connection is a :class:`Connection` until it closes. Admission (``ConnectionLimiter.admit``)
runs in the accept loop, before any byte is read and before a thread is started, so a flood costs no threads:

* A source address that no configured peer's ``allowed_hosts`` matches is *unknown*. At most
  ``limits.unknown_source_connections`` unknown connections are held at once (they are only ever answered with
  an A-ASSOCIATE-RJ, which tells a misconfigured peer what is wrong); more are closed at once.
* No source holds more than ``limits.max_connections_per_source``, and all together no more than
  ``node.max_associations``.
* A connection is *pending* until its association is accepted. When a known source needs a slot and the caps
  are reached, the oldest pending connection (unknown sources first, then the same source, then any) is closed
  to make room: half-open or trickling connections cannot keep a configured peer out. Only when every slot
  holds an accepted association is a known source refused. The evicted connection's slot is free at once, but
  its threads take a moment to notice the closed socket: the server waits for them (``Connection.ended``)
  before it starts threads for the newcomer, so the threads stay bounded by the caps during a flood too.

The limiter keeps its counts in one process. Its interface (admit / mark accepted / release) is what a shared
implementation across receiver processes would offer too.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

_ids = itertools.count(1)


@dataclass(eq=False)
class Connection:
    """One TCP connection held by the receiver, from accept to close (also the audit record's subject)."""

    ip: str
    port: int
    known: bool  # the address matches some peer's allowed_hosts
    id: int = field(default_factory=lambda: next(_ids))
    accepted_at: float = field(default_factory=time.monotonic)
    opened_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    authenticated: bool = False  # its association was accepted
    evicted: bool = False
    close: Callable[[], None] = lambda: None  # shuts the socket down (from any thread)
    # What happened, for the log and the audit trail (filled in as the connection goes along).
    calling_ae: str = ""
    called_ae: str = ""
    peer: str | None = None
    tls: bool = False
    closed_reason: str | None = None  # why the node closed it before an association was accepted
    instances: int = 0
    ended: threading.Event = field(default_factory=threading.Event)  # its threads are done (or never started)

    @property
    def source(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Admission:
    """Whether a new connection may proceed, why not, and which pending connections must close for it."""

    admitted: bool
    reason: str = ""
    evicted: tuple[Connection, ...] = ()


class ConnectionLimiter:
    """Thread-safe counts of the connections held, and the admission rule of the module docstring."""

    def __init__(self, max_total: int, max_per_source: int, max_unknown: int) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.max_unknown = max_unknown
        self._held: list[Connection] = []  # in order of arrival
        self._per_source: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _oldest_pending(self, *, ip: str | None = None, unknown_only: bool = False,
                        skip: tuple[Connection, ...] = ()) -> Connection | None:
        return next((c for c in self._held if not c.authenticated and c not in skip
                     and (ip is None or c.ip == ip) and (not unknown_only or not c.known)), None)

    def admit(self, conn: Connection) -> Admission:
        """Admit ``conn`` (it is then held until :meth:`release`), or say why not."""
        with self._lock:
            unknown_held = sum(1 for c in self._held if not c.known)
            if not conn.known:
                if unknown_held >= self.max_unknown:
                    return Admission(False, f"unknown source address: limits.unknown_source_connections "
                                            f"({self.max_unknown}) in use")
                if self._per_source[conn.ip] >= self.max_per_source or len(self._held) >= self.max_total:
                    return Admission(False, "connection limit reached")
                self._hold(conn)
                return Admission(True)
            victims: list[Connection] = []
            if self._per_source[conn.ip] >= self.max_per_source:
                victim = self._oldest_pending(ip=conn.ip)
                if victim is None:
                    return Admission(False, f"limits.max_connections_per_source ({self.max_per_source}) "
                                            "reached with accepted associations")
                victims.append(victim)
            if len(self._held) - len(victims) >= self.max_total:
                victim = (self._oldest_pending(unknown_only=True, skip=tuple(victims))
                          or self._oldest_pending(skip=tuple(victims)))
                if victim is None:
                    return Admission(False, f"node.max_associations ({self.max_total}) reached with accepted "
                                            "associations")
                victims.append(victim)
            for victim in victims:
                victim.evicted = True
                self._drop(victim)
            self._hold(conn)
            return Admission(True, evicted=tuple(victims))

    def _hold(self, conn: Connection) -> None:
        self._held.append(conn)
        self._per_source[conn.ip] += 1

    def _drop(self, conn: Connection) -> None:
        self._held.remove(conn)
        self._per_source[conn.ip] -= 1
        if self._per_source[conn.ip] <= 0:
            del self._per_source[conn.ip]

    def mark_accepted(self, conn: Connection) -> None:
        """The connection's association was accepted: it is no longer pending (never evicted)."""
        with self._lock:
            conn.authenticated = True

    def release(self, conn: Connection) -> None:
        """The connection closed; idempotent, and a no-op for an evicted one (already released)."""
        with self._lock:
            if conn in self._held:
                self._drop(conn)
