"""The receiver: a pynetdicom Storage/Verification SCP bound to ``node.bind:node.port``.

It configures the application entity once from ``NodeConfig`` (AE title, PDU size, ACSE/DIMSE/network
timeouts), attaches the access check and the C-STORE handler, and runs them on the guarded server of
``dicomnode.receive.transport`` (connection limits, PDU deadlines and size limits, TLS handshakes off the accept
loop). Associations, instances and refusals go to the audit trail when one is given.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from pynetdicom import AE, evt

from dicomnode.audit import AuditTrail
from dicomnode.config import NodeConfig
from dicomnode.receive.access import AccessControl
from dicomnode.receive.contexts import supported_contexts
from dicomnode.receive.instance import OnStored
from dicomnode.receive.spool import Spool
from dicomnode.receive.store import StoreHandler
from dicomnode.receive.transport import ConnectionPolicy, GuardedServer, start_guarded_server
from dicomnode.scu import node_ae
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


class Receiver:
    """Receives instances from configured peers into the spool and calls ``on_stored`` for each one.

    ``on_stored`` runs in pynetdicom's association threads (several at once): it must be thread-safe and quick,
    and raise if the instance could not be queued (the peer then gets a failure status and resends).
    """

    def __init__(self, config: NodeConfig, on_stored: OnStored, audit: AuditTrail | None = None) -> None:
        self._config = config
        self._spool = Spool(config.storage)
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
        handlers = [
            (evt.EVT_REQUESTED, self._access.on_requested),
            (evt.EVT_ACCEPTED, self._access.on_accepted),
            (evt.EVT_REJECTED, self._access.on_rejected),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._store),
        ]
        self._stopped.clear()
        self._server = start_guarded_server(self._ae, (node.bind, node.port), handlers, self.policy, self._tls)
        limits = self._config.limits
        LOG.info("receiver %s listening on %s:%d%s (max %d associations, %d per source, %d unknown; PDU %d; "
                 "%d peer(s) allowed)", node.ae_title, node.bind, self.port, " with TLS" if self._tls else "",
                 node.max_associations, limits.max_connections_per_source, limits.unknown_source_connections,
                 node.max_pdu_size, len(self._config.peers))
        if block:
            self._stopped.wait()
            self.stop()  # no-op normally; closes the server if stop() came before it was listening

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting associations, give running ones ``grace_seconds`` to finish, then abort the rest.

        An aborted transfer was never acknowledged, so its sender still holds the instance and will resend it.
        """
        server, self._server = self._server, None
        if server is None:
            self._stopped.set()
            return
        server.shutdown()  # no new associations
        deadline = time.monotonic() + grace_seconds
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        remaining = server.active_associations
        for assoc in remaining:
            assoc.abort()
        self.policy.flush_refusals(force=True)
        LOG.info("receiver stopped%s", f" ({len(remaining)} association(s) aborted)" if remaining else "")
        self._stopped.set()

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _on_echo(event: evt.Event) -> int:
    """C-ECHO: always Success (0x0000) for an accepted association."""
    return 0x0000
