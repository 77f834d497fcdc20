"""The receiver: a pynetdicom Storage/Verification SCP bound to ``node.bind:node.port``.

It configures the application entity once from ``NodeConfig`` (AE title, PDU size, ACSE/DIMSE/network
timeouts), attaches the access check and the C-STORE handler, and runs them on the guarded server of
``dicomnode.receive.transport`` (connection limits, PDU deadlines and size limits, TLS handshakes off the accept
loop). Associations, instances and refusals go to the audit trail when one is given.

With ``node.receivers`` > 1 this process is the acceptor and the associations run in association processes
(``dicomnode.receive.handoff``); each of them builds its ``on_stored`` and audit trail with the picklable
``hooks`` given to the Receiver, and runs :func:`association_process_main`.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from types import TracebackType
from typing import Any

from pynetdicom import AE, evt

from dicomnode.ae import node_ae
from dicomnode.audit import AuditTrail
from dicomnode.config import NodeConfig
from dicomnode.receive.access import AccessControl
from dicomnode.receive.contexts import supported_contexts
from dicomnode.receive.handoff import (
    AssociationPool,
    RemoteLimiter,
    receive_handovers,
)
from dicomnode.receive.instance import OnStored
from dicomnode.receive.spool import Spool
from dicomnode.receive.store import StoreHandler
from dicomnode.receive.transport import (
    ConnectionPolicy,
    GuardedServer,
    HandedOverServer,
    start_guarded_server,
)
from dicomnode.tls import server_context

LOG = logging.getLogger(__name__)


def build_ae(config: NodeConfig) -> AE:
    """The acceptor AE with this node's identity, limits, timeouts and presentation contexts."""
    ae = node_ae(config)
    # The connection limiter (node.max_associations, limits.*) decides first; pynetdicom's own count, which
    # includes connections still closing, is only a backstop and must never reject a configured peer first.
    ae.maximum_associations = 4 * config.node.max_associations
    # Defence in depth: pynetdicom's own AE title checks, behind the per-peer IP check of AccessControl.
    ae.require_called_aet = True
    ae.require_calling_aet = sorted({peer.ae_title for peer in config.peers})
    ae.supported_contexts = supported_contexts()
    return ae


ReceiverHooks = Callable[[], tuple[OnStored, "AuditTrail | None"]]  # picklable; run once in each process


class Receiver:
    """Receives instances from configured peers into the spool and calls ``on_stored`` for each one.

    ``on_stored`` runs in pynetdicom's association threads (several at once): it must be thread-safe and quick,
    and raise if the instance could not be queued (the peer then gets a failure status and resends). With
    ``node.receivers`` > 1, ``hooks`` (picklable) gives each association process its own ``on_stored`` and
    audit trail; ``on_stored`` is then not called in this process.
    """

    def __init__(self, config: NodeConfig, on_stored: OnStored, audit: AuditTrail | None = None, *,
                 hooks: ReceiverHooks | None = None) -> None:
        if config.node.receivers > 1 and hooks is None:
            raise ValueError("node.receivers > 1 needs hooks to set up each association process")
        self._config = config
        self._hooks = hooks
        self._pool: AssociationPool | None = None
        self._spool = Spool(config.storage, owner=config.node.instance_name)
        self._access = AccessControl(config, audit)
        self.policy = ConnectionPolicy.for_config(config, self._access.is_known_source, audit)
        self._access.limiter = self.policy.limiter
        self._store = StoreHandler(self._spool, self._access, on_stored, config.limits, audit)
        self._ae = build_ae(config)
        self._tls = server_context(config.tls)
        self._server: GuardedServer | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        """The TCP port the receiver listens on."""
        if self._server is None:
            return self._config.node.port
        return int(self._server.server_address[1])

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def start(self, block: bool = False) -> None:
        """Prepare the spool and start listening; with ``block=True`` serve until :meth:`stop` is called."""
        if self._server is not None:
            raise RuntimeError("receiver already started")
        removed = self._spool.prepare()
        if removed:
            LOG.info("removed %d partial file(s) left in %s", removed, self._spool.incoming_dir)
        node = self._config.node
        self._stopped.clear()
        if node.receivers > 1:
            self._pool = AssociationPool(node.receivers, self.policy.limiter, self._association_process)
            self._pool.start()
        self._server = start_guarded_server(self._ae, (node.bind, node.port), self._handlers(), self.policy,
                                            self._tls, pool=self._pool)
        limits = self._config.limits
        LOG.info("receiver %s listening on %s:%d%s (max %d associations, %d per source, %d unknown; PDU %d; "
                 "%d peer(s) allowed; %d association process(es))", node.ae_title, node.bind, self.port,
                 " with TLS" if self._tls else "", node.max_associations, limits.max_connections_per_source,
                 limits.unknown_source_connections, node.max_pdu_size, len(self._config.peers),
                 node.receivers if node.receivers > 1 else 0)
        if block:
            self._stopped.wait()
            self.stop()  # no-op normally; closes the server if stop() came before it was listening

    def _handlers(self) -> list:
        return [
            (evt.EVT_REQUESTED, self._access.on_requested),
            (evt.EVT_ACCEPTED, self._access.on_accepted),
            (evt.EVT_REJECTED, self._access.on_rejected),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._store),
        ]

    def _association_process(self, number: int, pipe: Pipe, ready: Any) -> Any:
        context = multiprocessing.get_context("spawn")
        return context.Process(target=association_process_main, args=(self._config, self._hooks, pipe, ready),
                               name=f"receiver-{number}", daemon=True)

    def serve_handed_over(self, pipe: Pipe, stop: threading.Event, ready: Any = None,
                          grace_seconds: float = 5.0) -> None:
        """Run, in an association process, the connections the acceptor hands over until it says stop."""
        limiter = RemoteLimiter(pipe)
        self.policy.limiter = limiter  # type: ignore[assignment] - the same interface, counted in the acceptor
        self._access.limiter = limiter  # type: ignore[assignment]
        node = self._config.node
        server = HandedOverServer(self._ae, (node.bind, node.port), node.ae_title, self._ae.supported_contexts,
                                  evt_handlers=self._handlers(), policy=self.policy, tls_context=self._tls)

        if ready is not None:
            ready.release()
        receive_handovers(pipe, server.run_connection, stop)
        aborted = _finish(server, grace_seconds)
        if aborted:
            LOG.info("association process stopped (%d association(s) aborted)", aborted)

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting associations, give running ones ``grace_seconds`` to finish, then abort the rest.

        An aborted transfer was never acknowledged, so its sender still holds the instance and will resend it.
        """
        server, self._server = self._server, None
        if server is None:
            self._stopped.set()
            return
        server.shutdown()  # no new associations
        if self._pool is not None:
            self._pool.stop(grace_seconds)
        remaining = _finish(server, grace_seconds)
        self.policy.flush_refusals(force=True)
        LOG.info("receiver stopped%s", f" ({remaining} association(s) aborted)" if remaining else "")
        self._stopped.set()

    def supervise(self) -> None:
        """Replace an association process that died (no-op with one receiver process)."""
        if self._pool is not None:
            self._pool.supervise()

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _finish(server: GuardedServer, grace_seconds: float) -> int:
    """Give the server's associations ``grace_seconds`` to finish, abort the rest; returns how many were."""
    deadline = time.monotonic() + grace_seconds
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    remaining = server.active_associations
    for assoc in remaining:
        assoc.abort()
    return len(remaining)


def association_process_main(config: NodeConfig, hooks: ReceiverHooks, pipe: Pipe, ready: Any) -> None:
    """Entry point of an association process (``multiprocessing`` spawn target): SIGTERM or the acceptor's
    word lets the running associations finish; SIGINT is left to the acceptor."""
    on_stored, audit = hooks()
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        Receiver(config, on_stored, audit, hooks=hooks).serve_handed_over(pipe, stop, ready)
    finally:
        if audit is not None:
            audit.close()


def _on_echo(event: evt.Event) -> int:
    """C-ECHO: always Success (0x0000) for an accepted association."""
    return 0x0000
