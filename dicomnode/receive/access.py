"""Association access control: only configured peers (calling AE title + IP) may talk to the node.

``on_requested`` is bound to pynetdicom's ``EVT_REQUESTED``, which fires after the A-ASSOCIATE-RQ arrived and
before negotiation, so a refused peer gets an A-ASSOCIATE-RJ (rejected-permanent, service user, "calling/called
AE title not recognised") and never reaches a C-STORE. ``is_known_source`` answers the earlier question the
accept loop asks (does any peer's ``allowed_hosts`` match this address?).

What is logged and audited: an association is reported as accepted only once the A-ASSOCIATE-AC went out
(``EVT_ACCEPTED``), and as rejected with the reason, whoever rejected it (this check, or pynetdicom's own:
``local limit exceeded``...). Values from the peer (AE titles) are escaped; no patient data is involved.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import weakref

from pynetdicom.association import Association
from pynetdicom.events import Event

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE, SUCCESS
from dicomnode.config import NodeConfig, PeerConfig, _resolve_host
from dicomnode.receive.limits import ConnectionLimiter
from dicomnode.receive.transport import connection_of
from dicomnode.safetext import escape
from dicomnode.web import events

LOG = logging.getLogger(__name__)

REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
DIAG_NO_REASON = 0x01
DIAG_CALLING_AE_NOT_RECOGNISED = 0x03
DIAG_CALLED_AE_NOT_RECOGNISED = 0x07
HOST_NAME_TTL_S = 60.0

# (result source, diagnostic) of an A-ASSOCIATE-RJ, in words (PS3.8 9.3.4)
REJECTION_REASONS = {
    (0x01, 0x01): "no reason given", (0x01, 0x02): "application context name not supported",
    (0x01, 0x03): "calling AE title not recognised", (0x01, 0x07): "called AE title not recognised",
    (0x02, 0x01): "no reason given (ACSE)", (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion", (0x03, 0x02): "local limit exceeded",
}


class AccessControl:
    """Decides who may associate, and remembers which configured peer each accepted association belongs to."""

    def __init__(self, config: NodeConfig, audit: AuditTrail | None = None,
                 limiter: ConnectionLimiter | None = None) -> None:
        self._config = config
        self._audit = audit
        self.limiter = limiter
        self._peers: weakref.WeakKeyDictionary[Association, PeerConfig] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._host_names: list[str] = []
        for peer in config.peers:
            for entry in peer.allowed_hosts or []:
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    self._host_names.append(entry)
        self._resolved: set[str] = set()
        self._resolved_at = float("-inf")

    def peer_of(self, assoc: Association) -> PeerConfig | None:
        """The configured peer an accepted association was matched to."""
        with self._lock:
            return self._peers.get(assoc)

    def is_known_source(self, ip: str) -> bool:
        """True if ``ip`` matches some peer's ``allowed_hosts``. Host names are resolved at most once a minute
        here (the accept loop must not wait for DNS on every connection); the AE check resolves them afresh."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._networks):
            return True
        if not self._host_names:
            return False
        now = time.monotonic()
        if now - self._resolved_at > HOST_NAME_TTL_S:
            self._resolved = set().union(*(_resolve_host(name) for name in self._host_names))
            self._resolved_at = now
        return str(address) in self._resolved

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

    def _report(self, event: str, outcome: str, assoc: Association, reason: str | None = None) -> None:
        conn = connection_of(assoc)
        if self._audit is None or conn is None:
            return
        self._audit.record(event, outcome, source=conn.source, calling_ae=conn.calling_ae or None,
                           called_ae=conn.called_ae or None, peer=conn.peer, reason=reason)

    def on_requested(self, event: Event) -> None:
        """``EVT_REQUESTED`` handler: go on to negotiation or send A-ASSOCIATE-RJ. Fails closed on any error."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling_ae = str(getattr(request, "calling_ae_title", "") or "").strip()
        called_ae = str(getattr(request, "called_ae_title", "") or "").strip()
        conn = connection_of(assoc)
        if conn is not None:
            conn.calling_ae, conn.called_ae = calling_ae, called_ae
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
            if conn is not None:
                conn.peer = peer.name
            LOG.debug("association requested by %s from %s:%s matches peer %r", escape(calling_ae), ip, port,
                      peer.name)
            return
        LOG.warning("association REJECTED from %s:%s calling AE %r called AE %r: %s",
                    ip, port, escape(calling_ae), escape(called_ae), reason)
        events.association_rejected(diagnostic)
        self._report("association-rejected", MINOR_FAILURE, assoc, reason)
        assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, diagnostic)
        assoc.kill()

    def on_accepted(self, event: Event) -> None:
        """``EVT_ACCEPTED``: the A-ASSOCIATE-AC went out; from now on the connection is no longer pending."""
        assoc = event.assoc
        conn = connection_of(assoc)
        if conn is not None and self.limiter is not None:
            self.limiter.mark_accepted(conn)
        peer = self.peer_of(assoc)
        LOG.info("association accepted: %s (%s) from %s:%s as peer %r%s", escape(assoc.requestor.ae_title),
                 escape(assoc.acceptor.ae_title), assoc.requestor.address, assoc.requestor.port,
                 peer.name if peer else None, " over TLS" if conn is not None and conn.tls else "")
        self._report("association-accepted", SUCCESS, assoc, "over TLS" if conn is not None and conn.tls else None)

    def on_rejected(self, event: Event) -> None:
        """``EVT_REJECTED``: pynetdicom's own rejections (e.g. local limit exceeded), with their reason."""
        assoc = event.assoc
        rejection = assoc.acceptor.primitive
        key = (getattr(rejection, "result_source", None), getattr(rejection, "diagnostic", None))
        reason = REJECTION_REASONS.get(key, f"source {key[0]} diagnostic {key[1]}")
        LOG.warning("association REJECTED from %s:%s calling AE %r: %s", assoc.requestor.address,
                    assoc.requestor.port, escape(assoc.requestor.ae_title), reason)
        self._report("association-rejected", MINOR_FAILURE, assoc, reason)
