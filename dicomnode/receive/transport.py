"""The receiver's transport: pynetdicom's association server with admission, deadlines and bounded reads.

pynetdicom 3.0, as shipped, trusts the peer: it blocks on the socket without a deadline while reading a PDU (so
3 bytes of a header and then silence hold a connection and its threads forever, past every timeout), reads
whatever length a PDU header declares into memory before any AE title is checked, does the TLS handshake in the
accept loop (one silent TLS client stops all accepts), and starts threads for every connection it accepts.
This module changes exactly those points, through pynetdicom's own extension points (the server class, the
request handler and a subclass of its DUL provider), and leaves the DICOM state machine to pynetdicom:

* ``GuardedServer.verify_request`` admits or refuses each TCP connection in the accept loop, before a thread
  exists (``dicomnode.receive.limits``); refusals are logged and audited, aggregated per source and reason.
* ``GuardedRequestHandler`` does the TLS handshake in the connection's own thread with the negotiation
  deadline, then runs the association and releases the connection's slot when it ends.
* ``BoundedDUL`` reads each PDU with a deadline (``limits.pdu_timeout``; before the association, also
  ``node.acse_timeout`` counted from the TCP accept) and a size limit that depends on the state: before the
  association only an A-ASSOCIATE-RQ of at most ``limits.max_associate_request_bytes``; after it P-DATA up to
  the advertised maximum PDU size, and at most ``limits.max_dataset_bytes`` for one dataset. A length over the
  limit is refused from the 6-byte header, before anything of the body is read.

What the peer sees: before its association is accepted, any violation (deadline, size, a PDU other than
A-ASSOCIATE-RQ, a failed TLS handshake) closes the TCP connection without a reply. After it, a violation sends
an A-ABORT (source: service provider) and closes. Data sent after the node replied with A-ASSOCIATE-RJ or
A-ABORT closes the connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import make_target

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS
from dicomnode.config import NodeConfig
from dicomnode.receive.limits import Connection, ConnectionLimiter
from dicomnode.safetext import escape

LOG = logging.getLogger(__name__)

A_ASSOCIATE_RQ, P_DATA = 0x01, 0x04
CONTROL_PDU_TYPES = (0x05, 0x06, 0x07)  # A-RELEASE-RQ/RP, A-ABORT: 4 bytes of body
MAX_CONTROL_PDU = 64
PDV_COMMAND, PDV_LAST = 0x01, 0x02
READ_CHUNK = 64 * 1024
REFUSAL_WINDOW_S = 10.0
EVICTION_WAIT_S = 1.0  # how long the accept loop waits for an evicted connection's threads to end
LISTEN_BACKLOG = 128  # a flood fills the kernel's queue, not a configured peer's SYN retries


class _Violation(Exception):
    """The peer broke a limit or the protocol; the message is the curated reason."""


class _PeerClosed(Exception):
    """The peer closed its side of the connection."""


# -- policy shared by all connections --------------------------------------------------------------------
@dataclass
class _Refusals:
    """Refused connections per (source IP, reason) in the current window, for aggregated reports."""

    first_at: float
    count: int = 0


@dataclass
class ConnectionPolicy:
    """What every connection of one server shares: the limits, the admission counts, the audit trail."""

    config: NodeConfig
    limiter: ConnectionLimiter
    is_known_source: Callable[[str], bool]
    audit: AuditTrail | None = None
    _refusals: dict[tuple[str, str], _Refusals] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_config(cls, config: NodeConfig, is_known_source: Callable[[str], bool],
                   audit: AuditTrail | None) -> ConnectionPolicy:
        limits = config.limits
        limiter = ConnectionLimiter(config.node.max_associations, limits.max_connections_per_source,
                                    limits.unknown_source_connections)
        return cls(config, limiter, is_known_source, audit)

    def record(self, event: str, outcome: str, conn: Connection | None = None, **fields: Any) -> None:
        if self.audit is None:
            return
        if conn is not None:
            fields = {"source": conn.source, "calling_ae": conn.calling_ae or None,
                      "called_ae": conn.called_ae or None, "peer": conn.peer, **fields}
        self.audit.record(event, outcome, **fields)

    def refused(self, conn: Connection, reason: str) -> None:
        """A connection closed at admission: the first per (IP, reason) in a window is reported at once,
        the rest as one count when the window ends (a flood must not flood the log and the trail)."""
        key = (conn.ip, reason)
        now = time.monotonic()
        with self._lock:
            entry = self._refusals.get(key)
            if entry is None:
                self._refusals[key] = _Refusals(now)
        if entry is None:
            LOG.warning("connection from %s refused: %s", conn.source, reason)
            self.record("connection-refused", MINOR_FAILURE, conn, reason=reason)
        else:
            with self._lock:
                entry.count += 1

    def flush_refusals(self, force: bool = False) -> None:
        """Report the refusals counted in windows that have ended."""
        now = time.monotonic()
        with self._lock:
            due = [(key, entry) for key, entry in self._refusals.items()
                   if force or now - entry.first_at >= REFUSAL_WINDOW_S]
            for key, _ in due:
                del self._refusals[key]
        for (ip, reason), entry in due:
            if entry.count:
                LOG.warning("%d more connection(s) from %s refused in %.0f s: %s", entry.count, ip,
                            REFUSAL_WINDOW_S, reason)
                self.record("connection-refused", MINOR_FAILURE, source=ip, count=entry.count, reason=reason)

    def ended(self, conn: Connection, assoc: Association | None) -> None:
        """Log and audit how a connection ended (rejections were reported when they were sent)."""
        elapsed = time.monotonic() - conn.accepted_at
        if conn.authenticated:
            how = "released" if assoc is not None and assoc.is_released else "aborted"
            reason = f"{how}; {conn.instances} instance(s) stored" + (
                f"; {conn.closed_reason}" if conn.closed_reason else "")
            log = LOG.warning if conn.closed_reason else LOG.info
            log("association with %s (%s) from %s ended: %s", conn.peer, escape(conn.calling_ae), conn.source,
                reason)
            self.record("association-ended", SUCCESS if how == "released" else MINOR_FAILURE, conn,
                        reason=reason)
            return
        if assoc is not None and assoc.is_rejected:
            return
        reason = conn.closed_reason
        requested = assoc is not None and assoc.requestor.primitive is not None
        if reason is None and not requested and elapsed >= self.config.node.acse_timeout * 0.95:
            reason = f"no A-ASSOCIATE-RQ within node.acse_timeout ({self.config.node.acse_timeout:g} s)"
        if reason is None:
            LOG.debug("connection from %s closed by the peer after %.1f s", conn.source, elapsed)
            return
        LOG.warning("connection from %s closed: %s", conn.source, reason)
        self.record("connection-closed", SERIOUS_FAILURE if conn.known else MINOR_FAILURE, conn, reason=reason)


# -- bounded PDU reading ---------------------------------------------------------------------------------
class BoundedDUL(DULServiceProvider):
    """pynetdicom's DUL provider with deadlines and size limits on every PDU read (module docstring)."""

    def __init__(self, assoc: Association, conn: Connection, policy: ConnectionPolicy) -> None:
        super().__init__(assoc)
        self._conn = conn
        self._policy = policy
        self._dataset_bytes = 0  # of the dataset being received

    def _pdu_limit(self, pdu_type: int, before_association: bool) -> int | None:
        """The largest acceptable length for ``pdu_type`` now, or None if the type is not acceptable."""
        limits = self._policy.config.limits
        if before_association:
            return limits.max_associate_request_bytes if pdu_type == A_ASSOCIATE_RQ else None
        if pdu_type == P_DATA:
            advertised = self._policy.config.node.max_pdu_size
            return advertised if advertised else limits.max_dataset_bytes + READ_CHUNK
        return MAX_CONTROL_PDU if pdu_type in CONTROL_PDU_TYPES else None

    def _recv_exact(self, count: int, deadline: float) -> bytearray:
        raw = self.socket.socket if self.socket is not None else None
        if raw is None:
            raise _PeerClosed
        data = bytearray()
        while len(data) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            raw.settimeout(remaining)
            chunk = raw.recv(min(count - len(data), READ_CHUNK))
            if not chunk:
                raise _PeerClosed
            data += chunk
        return data

    def _read_pdu_data(self) -> None:
        state = self.state_machine.current_state
        if state == "Sta1":
            return  # closed already; the association thread is stopping this provider
        if state == "Sta13":  # we answered with A-ASSOCIATE-RJ or A-ABORT: only the peer's close is awaited
            self._close_now()
            return
        before = state == "Sta2"
        limits, node = self._policy.config.limits, self._policy.config.node
        deadline = time.monotonic() + limits.pdu_timeout
        if before:
            deadline = min(deadline, self._conn.accepted_at + node.acse_timeout)
        try:
            header = self._recv_exact(6, deadline)
            pdu_type, _, length = struct.unpack(">BBL", header)
            limit = self._pdu_limit(pdu_type, before)
            if limit is None:
                raise _Violation(f"PDU type 0x{pdu_type:02X} not acceptable "
                                 f"{'before the association' if before else 'now'}")
            if length > limit:
                raise _Violation(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds the limit of {limit}")
            body = self._recv_exact(length, deadline)
            try:
                pdu, event = self._decode_pdu(header + body)
            except Exception:  # noqa: BLE001 - any garbage the decoder chokes on
                raise _Violation(f"undecodable PDU of type 0x{pdu_type:02X}") from None
            if isinstance(pdu, P_DATA_TF):
                self._count_dataset(pdu)
        except _PeerClosed:
            if before:
                self._close_now()
            else:
                self.event_queue.put("Evt17")
            return
        except TimeoutError:
            self._violated(before, f"no complete PDU within "
                           f"{'node.acse_timeout' if before else 'limits.pdu_timeout'} "
                           f"({node.acse_timeout if before else limits.pdu_timeout:g} s)")
            return
        except OSError as exc:
            self._conn.closed_reason = self._conn.closed_reason or f"connection error: {type(exc).__name__}"
            self._close_now() if before else self.event_queue.put("Evt17")
            return
        except _Violation as exc:
            self._violated(before, str(exc))
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _count_dataset(self, pdu: P_DATA_TF) -> None:
        for item in pdu.presentation_data_value_items:
            value = item.presentation_data_value or b"\x00"
            if value[0] & PDV_COMMAND:
                continue
            self._dataset_bytes += len(value) - 1
            limit = self._policy.config.limits.max_dataset_bytes
            if self._dataset_bytes > limit:
                raise _Violation(f"dataset larger than limits.max_dataset_bytes ({limit})")
            if value[0] & PDV_LAST:
                self._dataset_bytes = 0

    def _violated(self, before: bool, reason: str) -> None:
        self._conn.closed_reason = self._conn.closed_reason or reason
        if before:
            self._close_now()
        else:
            self.event_queue.put("Evt19")  # pynetdicom sends an A-ABORT and waits for the close

    def _close_now(self) -> None:
        """Close the transport at once; wake the association thread if it still waits for the request."""
        if self.socket is not None:
            self.socket.close()
        self.event_queue.put("Evt17")
        if self.assoc.requestor.primitive is None:
            self.to_user_queue.put(None)  # type: ignore[arg-type] - read as "no A-ASSOCIATE-RQ came"


class GuardedAssociation(Association):
    """An acceptor association whose DUL provider is a :class:`BoundedDUL`."""

    def __init__(self, ae: Any, conn: Connection, policy: ConnectionPolicy) -> None:
        super().__init__(ae, "acceptor")
        self.connection = conn
        self.dul = BoundedDUL(self, conn, policy)
        # The timers live in the DUL provider: apply the AE's timeouts to the new one.
        self.acse_timeout = self.ae.acse_timeout
        self.network_timeout = self.ae.network_timeout


def connection_of(assoc: Association) -> Connection | None:
    """The :class:`Connection` behind an association accepted by a :class:`GuardedServer`."""
    return getattr(assoc, "connection", None)


# -- server and per-connection handler ------------------------------------------------------------------
def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class GuardedRequestHandler(RequestHandler):
    """Runs one connection in its own thread: TLS handshake, association, release of the slot."""

    server: GuardedServer

    def handle(self) -> None:
        server = self.server
        conn = server.take_connection(self.request)
        assoc: GuardedAssociation | None = None
        try:
            if conn is None:
                return
            sock = self._secure(conn, self.request)
            if sock is None:
                return
            self.request = sock
            sock.settimeout(server.policy.config.limits.pdu_timeout)  # also bounds sends to a non-reader
            assoc = self._create_association(conn)
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
        finally:
            try:
                self.request.close()
            finally:
                if conn is not None:
                    try:
                        server.policy.limiter.release(conn)
                        server.policy.ended(conn, assoc)
                    finally:
                        conn.ended.set()  # even if the log or the audit trail failed: the accept loop waits on it

    def _secure(self, conn: Connection, sock: socket.socket) -> socket.socket | None:
        """The TLS-wrapped socket after a handshake within the negotiation deadline, or ``sock`` itself."""
        context = self.server.tls_context
        if context is None:
            return sock
        deadline = conn.accepted_at + self.server.policy.config.node.acse_timeout
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            secure = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn.close = lambda: _shutdown(secure)
            secure.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            why = getattr(exc, "reason", None) or ("timed out" if isinstance(exc, TimeoutError)
                                                  else type(exc).__name__)
            conn.closed_reason = conn.closed_reason or f"TLS handshake failed: {why}"
            return None
        conn.tls = True
        return secure

    def _create_association(self, conn: Connection) -> GuardedAssociation:  # type: ignore[override]
        """An acceptor association for this connection, configured like pynetdicom's own."""
        ae, server = self.ae, self.server
        assoc = GuardedAssociation(ae, conn, server.policy)
        assoc._server = server
        assoc.name = f"AcceptorThread@{conn.id}"  # pynetdicom finds its associations by this prefix
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = ae.implementation_version_name
        # Shared, not deep-copied as pynetdicom does: negotiation only reads them (presentation.
        # negotiate_as_acceptor builds new contexts), and the copy of ~170 contexts x ~45 transfer syntaxes
        # costs about 100 ms of CPU per connection, which a flood of connections would turn into minutes.
        assoc.acceptor.supported_contexts = server.contexts
        assoc.requestor.address_info = self.remote
        for event, handlers in server._handlers.items():
            if event.is_intervention:
                if handlers:  # one (handler, args)
                    assoc.bind(event, *handlers)
            else:
                for handler, args in handlers:
                    assoc.bind(event, handler, args)
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """A threaded association server that admits connections before starting threads for them."""

    daemon_threads = True  # associations end by their own deadlines; never hold up process exit
    block_on_close = False  # and do not keep a list of every thread ever started
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, ae: Any, address: tuple[str, int], ae_title: str, contexts: list, ssl_context: Any = None,
                 evt_handlers: list | None = None, *, policy: ConnectionPolicy,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.tls_context = tls_context  # handshakes happen in the connections' threads, not in accept()
        self._admitted: dict[socket.socket, Connection] = {}
        self._admitted_lock = threading.Lock()
        super().__init__(ae, address, ae_title, contexts, ssl_context=None, evt_handlers=evt_handlers,
                         request_handler=GuardedRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        return self.socket.accept()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        ip, port = str(client_address[0]), int(client_address[1])
        if ip.startswith("::ffff:"):
            ip = ip.removeprefix("::ffff:")
        conn = Connection(ip, port, known=self.policy.is_known_source(ip))
        conn.close = lambda: _shutdown(request)
        admission = self.policy.limiter.admit(conn)
        for victim in admission.evicted:
            victim.closed_reason = "evicted before its association to make room for a configured peer"
            victim.close()
        if admission.evicted:
            self.await_ended(admission.evicted, time.monotonic() + EVICTION_WAIT_S)
        if not admission.admitted:
            self.policy.refused(conn, admission.reason)
            return False
        with self._admitted_lock:
            self._admitted[request] = conn
        return True

    def await_ended(self, conns: tuple[Connection, ...], deadline: float) -> None:
        """Wait (in the accept loop) until the threads of ``conns``, just closed, have ended, or ``deadline``.

        An evicted connection's slot is free at once, but its threads run on until they notice the closed
        socket, which takes milliseconds, longer on a loaded machine. Starting the newcomer's threads only after
        theirs have ended keeps the node's threads bounded by the caps even when every new connection of a
        flood from a configured peer's address evicts one. A thread stuck past the deadline is not waited for:
        the configured peer's connection is not held back for it."""
        for conn in conns:
            conn.ended.wait(max(0.0, deadline - time.monotonic()))

    def take_connection(self, request: socket.socket) -> Connection | None:
        with self._admitted_lock:
            return self._admitted.pop(request, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            conn = self.take_connection(request)
            if conn is not None:
                conn.closed_reason = "no thread could be started for it"
                self.policy.limiter.release(conn)
                self.policy.ended(conn, None)
                conn.ended.set()
            raise

    def service_actions(self) -> None:
        super().service_actions()
        self.policy.flush_refusals()

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.exception("error while handling a connection from %s", escape(client_address))


class HandingOverServer(GuardedServer):
    """The acceptor of several receiver processes: admits each connection as :class:`GuardedServer` does, then
    hands it to an association process (``dicomnode.receive.handoff``) instead of starting a thread for it."""

    def __init__(self, *args: Any, pool: Any, **kwargs: Any) -> None:
        self.pool = pool
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.pool.drain()  # the counts as of now: every association accepted or closed so far is known
        return super().verify_request(request, client_address)

    def service_actions(self) -> None:
        super().service_actions()
        self.pool.drain()

    def await_ended(self, conns: tuple[Connection, ...], deadline: float) -> None:
        """As :meth:`GuardedServer.await_ended`; the threads are in the association processes, which report
        a connection's end on the pipe."""
        while not all(conn.ended.is_set() for conn in conns) and time.monotonic() < deadline:
            self.pool.drain()
            time.sleep(0.002)

    def process_request(self, request: Any, client_address: Any) -> None:
        conn = self.take_connection(request)
        if conn is None:
            self.shutdown_request(request)
            return
        if not self.pool.hand_over(request, conn):
            conn.closed_reason = "no association process could take it"
            self.policy.limiter.release(conn)
            self.policy.ended(conn, None)
            conn.ended.set()
            self.shutdown_request(request)


class HandedOverServer(GuardedServer):
    """An association process's server: never bound nor listening; it runs the connections handed to it
    (:meth:`run_connection`) in threads, exactly as :class:`GuardedServer` runs the ones it accepts."""

    def server_bind(self) -> None:
        self.socket.close()

    def server_activate(self) -> None:
        pass

    def server_close(self) -> None:
        pass

    def run_connection(self, sock: socket.socket, conn: Connection) -> None:
        conn.close = lambda: _shutdown(sock)
        with self._admitted_lock:
            self._admitted[sock] = conn
        super().process_request(sock, (conn.ip, conn.port))


def start_guarded_server(ae: Any, address: tuple[str, int], evt_handlers: list, policy: ConnectionPolicy,
                         tls_context: ssl.SSLContext | None, pool: Any = None) -> GuardedServer:
    """Start a :class:`GuardedServer` for ``ae`` in a daemon thread, as ``AE.start_server(block=False)`` does;
    with ``pool``, a :class:`HandingOverServer` that passes each admitted connection to it."""
    extra = {"server_class": HandingOverServer, "pool": pool} if pool is not None else {"server_class": GuardedServer}
    server = ae.make_server(address, evt_handlers=evt_handlers, policy=policy, tls_context=tls_context, **extra)
    thread = threading.Thread(target=make_target(server.serve_forever), name="AcceptorServer", daemon=True)
    thread.start()
    ae._servers.append(server)
    return server
