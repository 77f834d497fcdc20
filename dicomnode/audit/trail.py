"""``AuditTrail``: where every part of the node records audit events.

``record(...)`` never blocks and never raises: the record goes on a bounded queue, and a background thread
writes batches to the ``audit_events`` table and, when ``audit.syslog`` is set, sends each to the collector. If
the queue is full (a flood outpacing the database) records are dropped and counted, and the count is written as
soon as there is room, so a gap in the trail is itself on the trail. Short-lived commands use
``synchronous=True`` (each record written at once).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Any

from dicomnode.audit.events import MAJOR_FAILURE, SUCCESS, AuditRecord
from dicomnode.audit.syslog import SyslogSender
from dicomnode.config import NodeConfig
from dicomnode.db.audit import append_records
from dicomnode.db.engine import Database

LOG = logging.getLogger(__name__)
QUEUE_CAPACITY = 10_000
BATCH = 500


class AuditTrail:
    """The node's audit trail for one process (see the module docstring)."""

    def __init__(self, db: Database | None, *, syslog: SyslogSender | None = None, host: str | None = None,
                 synchronous: bool = False, capacity: int = QUEUE_CAPACITY) -> None:
        self.db = db
        self.syslog = syslog
        self.host = host or socket.gethostname()
        self.synchronous = synchronous
        self.dropped = 0
        self._queue: queue.Queue[AuditRecord | threading.Event | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if not synchronous:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    @classmethod
    def for_config(cls, config: NodeConfig, db: Database | None, *, synchronous: bool = False) -> AuditTrail:
        host = socket.gethostname()
        syslog = None
        if config.audit.syslog is not None:
            target = config.audit.syslog
            syslog = SyslogSender(target.host, target.port, target.protocol, app_name=target.app_name,
                                  node_ae=config.node.ae_title, local_host=host, site=target.enterprise_site_id)
        return cls(db, syslog=syslog, host=config.node.instance_name, synchronous=synchronous)

    def record(self, event: str, outcome: str = SUCCESS, **fields: Any) -> None:
        """Add an event (see ``dicomnode.audit.events.EVENTS``); text fields are escaped and capped."""
        try:
            entry = AuditRecord.make(event, outcome, **fields)
        except (TypeError, ValueError):
            LOG.exception("invalid audit record %s", event)
            return
        if self.synchronous:
            self._write([entry])
            return
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _take_dropped(self) -> AuditRecord | None:
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        if not dropped:
            return None
        return AuditRecord.make("connection-refused", MAJOR_FAILURE, count=dropped,
                                reason=f"audit queue full: {dropped} audit event(s) were lost")

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[AuditRecord] = []
            markers: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if stopping or len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            lost = self._take_dropped()
            self._write(batch + ([lost] if lost else []))
            for marker in markers:
                marker.set()

    def _write(self, batch: list[AuditRecord]) -> None:
        if self.db is not None:
            try:
                self.db.retrying(lambda: append_records(self.db, batch, self.host))
            except Exception as exc:  # noqa: BLE001 - the trail must not take the node down
                LOG.error("audit trail: could not store %d event(s): %s", len(batch), type(exc).__name__)
        if self.syslog is not None:
            for entry in batch:
                self.syslog.send(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written; False if that took longer than ``timeout``."""
        if self._thread is None:
            return True
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                LOG.error("audit trail: writer stalled; %d event(s) not written", self._queue.qsize())
            thread.join(timeout)
        if self.syslog is not None:
            self.syslog.close()
