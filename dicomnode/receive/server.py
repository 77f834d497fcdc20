"""The receiver: a pynetdicom Storage/Verification SCP bound to ``node.bind:node.port``.

It configures the application entity once from ``NodeConfig`` (AE title, association limit, PDU size, ACSE/DIMSE/
network timeouts), attaches the access check and the C-STORE handler, and runs pynetdicom's threaded server.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from dicomnode.config import NodeConfig
from dicomnode.receive.access import AccessControl
from dicomnode.receive.contexts import supported_contexts
from dicomnode.receive.instance import OnStored
from dicomnode.receive.spool import Spool
from dicomnode.receive.store import StoreHandler
from dicomnode.scu import node_ae

LOG = logging.getLogger(__name__)


def build_ae(config: NodeConfig) -> AE:
    """The acceptor AE with this node's identity, limits, timeouts and presentation contexts."""
    ae = node_ae(config)
    ae.maximum_associations = config.node.max_associations
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

    def __init__(self, config: NodeConfig, on_stored: OnStored) -> None:
        self._config = config
        self._spool = Spool(config.storage)
        self._access = AccessControl(config)
        self._store = StoreHandler(self._spool, self._access, on_stored)
        self._ae = build_ae(config)
        self._server: ThreadedAssociationServer | None = None
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
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._store),
        ]
        self._stopped.clear()
        self._server = self._ae.start_server((node.bind, node.port), block=False, evt_handlers=handlers)
        LOG.info("receiver %s listening on %s:%d (max %d associations, PDU %d, %d peer(s) allowed)",
                 node.ae_title, node.bind, self.port, node.max_associations, node.max_pdu_size,
                 len(self._config.peers))
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
