"""Association access control: only configured peers (calling AE title + IP) may talk to the node.

Bound to pynetdicom's ``EVT_REQUESTED``, which fires after the A-ASSOCIATE-RQ arrived and before negotiation, so a
refused peer gets an A-ASSOCIATE-RJ (rejected-permanent, service user, "calling/called AE title not recognised")
and never reaches a C-STORE. Every rejection is logged with the peer's IP and AE titles (no patient data).
"""

from __future__ import annotations

import logging
import threading
import weakref

from pynetdicom.association import Association
from pynetdicom.events import Event

from dicomnode.config import NodeConfig, PeerConfig
from dicomnode.web import events

LOG = logging.getLogger(__name__)

REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
DIAG_NO_REASON = 0x01
DIAG_CALLING_AE_NOT_RECOGNISED = 0x03
DIAG_CALLED_AE_NOT_RECOGNISED = 0x07


class AccessControl:
    """Decides who may associate, and remembers which configured peer each accepted association belongs to."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self._peers: weakref.WeakKeyDictionary[Association, PeerConfig] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def peer_of(self, assoc: Association) -> PeerConfig | None:
        """The configured peer an accepted association was matched to."""
        with self._lock:
            return self._peers.get(assoc)

    def check(self, calling_ae: str, called_ae: str, ip: str) -> tuple[PeerConfig | None, int, str]:
        """Return (peer, 0, "") when allowed, else (None, A-ASSOCIATE-RJ diagnostic, reason)."""
        if called_ae.strip() != self._config.node.ae_title:
            return None, DIAG_CALLED_AE_NOT_RECOGNISED, "called AE title is not this node's"
        peer = self._config.peer_by_ae(calling_ae, ip)
        if peer is None:
            known_ae = any(p.ae_title == calling_ae.strip() for p in self._config.peers)
            reason = "calling AE title not allowed from this address" if known_ae else "unknown calling AE title"
            return None, DIAG_CALLING_AE_NOT_RECOGNISED, reason
        return peer, 0, ""

    def on_requested(self, event: Event) -> None:
        """``EVT_REQUESTED`` handler: accept silently or send A-ASSOCIATE-RJ. Fails closed on any error."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling_ae = str(getattr(request, "calling_ae_title", "") or "")
        called_ae = str(getattr(request, "called_ae_title", "") or "")
        try:
            ip = assoc.requestor.address
            port = assoc.requestor.port
            peer, diagnostic, reason = self.check(calling_ae, called_ae, ip)
        except Exception:  # noqa: BLE001 - pynetdicom would swallow it and let the association through
            LOG.exception("access check failed; rejecting association")
            ip, port, peer, diagnostic, reason = "?", 0, None, DIAG_NO_REASON, "access check error"
        if peer is not None:
            with self._lock:
                self._peers[assoc] = peer
            LOG.info("association requested by %s (%s) from %s:%s: allowed as peer %r",
                     calling_ae, called_ae, ip, port, peer.name)
            return
        LOG.warning("association REJECTED from %s:%s calling AE %r called AE %r: %s",
                    ip, port, calling_ae, called_ae, reason)
        events.association_rejected(diagnostic)
        assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, diagnostic)
        assoc.kill()
