"""The audit table's operations: append records, read them back with filters, purge past the retention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select

from dicomnode.db.engine import Database
from dicomnode.db.models import AuditEvent, utcnow


def append_records(db: Database, records: Iterable[object], host: str) -> int:
    """Insert audit records (``dicomnode.audit.AuditRecord``) in one transaction; returns how many."""
    rows = [{**asdict(record), "host": host} for record in records]  # type: ignore[call-overload]
    if not rows:
        return 0
    with db.transaction() as session:
        session.execute(insert(AuditEvent), rows)
    return len(rows)


def list_events(db: Database, *, since: datetime | None = None, until: datetime | None = None,
                events: Sequence[str] = (), outcome: str | None = None, source: str | None = None,
                limit: int = 100) -> list[AuditEvent]:
    """The newest audit events first, filtered (``source`` matches the IP, with or without the port)."""
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if events:
        query = query.where(AuditEvent.event.in_(list(events)))
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    if source is not None:
        query = query.where((AuditEvent.source == source)
                            | AuditEvent.source.startswith(f"{source}:", autoescape=True))
    with db.session() as session:
        return list(session.scalars(query))


def purge_audit(db: Database, retention_days: float, now: datetime | None = None) -> int:
    """Delete audit events older than ``retention_days``; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with db.transaction() as session:
        return session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)).rowcount
