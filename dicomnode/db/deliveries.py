"""The delivery queue: which output files are due for which destination, and the record of each C-STORE
attempt (delivered, retried after an exponential backoff, or dead after the configured attempts).

A dispatcher claims the due deliveries it is about to send (``claim_deliveries``): ``claimed_by`` names its node
and ``next_attempt_at`` moves to the end of the claim, so that other nodes sharing the database leave them alone
while they are sent; if the node dies while sending, they become due again when the claim ends and another
node sends them, or at once when the node itself starts again (``release_delivery_claims``). A copy may then
reach the peer twice, with the same UIDs, which a PACS stores once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from dicomnode.db.engine import Database
from dicomnode.db.jobs import backoff_seconds
from dicomnode.db.models import (
    DELIVERY_DEAD,
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    Delivery,
    DeliveryAttempt,
    Output,
    utcnow,
)


@dataclass(frozen=True)
class PendingDelivery:
    id: int
    peer: str
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    attempts: int


@dataclass(frozen=True)
class AttemptOutcome:
    delivery_id: int
    ok: bool
    status: str  # e.g. "0x0000 Success", "association rejected: ..."


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float


DELIVERY_CLAIM_SECONDS = 600.0  # how long a claimed batch may take to send before another node may send it


def _pending_columns():
    return select(Delivery.id, Delivery.peer, Output.path, Output.sop_class_uid, Output.sop_instance_uid,
                  Delivery.attempts).join(Output, Output.id == Delivery.output_id)


def _by_peer(rows) -> dict[str, list[PendingDelivery]]:
    grouped: dict[str, list[PendingDelivery]] = {}
    for row in rows:
        grouped.setdefault(row.peer, []).append(PendingDelivery(*row))
    return grouped


def due_deliveries(db: Database, now: datetime | None = None, limit: int = 1000) -> dict[str, list[PendingDelivery]]:
    """Pending deliveries whose next attempt is due, grouped by destination peer, oldest first (a read only)."""
    now = now or utcnow()
    with db.session() as session:
        rows = session.execute(
            _pending_columns().where(Delivery.state == DELIVERY_PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)).all()
    return _by_peer(rows)


def claim_deliveries(db: Database, claimer: str, now: datetime | None = None, limit: int = 1000,
                     claim_seconds: float = DELIVERY_CLAIM_SECONDS) -> dict[str, list[PendingDelivery]]:
    """Claim the due pending deliveries for ``claimer`` (a node's name) and return them grouped by destination
    peer, oldest first; deliveries another node claims at the same moment are skipped."""
    now = now or utcnow()
    until = now + timedelta(seconds=claim_seconds)

    def work() -> dict[str, list[PendingDelivery]]:
        with db.transaction() as session:
            due = (select(Delivery.id).where(Delivery.state == DELIVERY_PENDING, Delivery.next_attempt_at <= now)
                   .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit))
            if db.is_postgres:
                due = due.with_for_update(skip_locked=True)
            ids = list(session.scalars(due))
            if not ids:
                return {}
            session.execute(update(Delivery).where(
                Delivery.id.in_(ids), Delivery.state == DELIVERY_PENDING, Delivery.next_attempt_at <= now)
                .values(claimed_by=claimer, next_attempt_at=until))
            rows = session.execute(_pending_columns().where(
                Delivery.id.in_(ids), Delivery.claimed_by == claimer, Delivery.next_attempt_at == until)
                .order_by(Delivery.id)).all()
        return _by_peer(rows)

    return db.retrying(work)


def release_delivery_claims(db: Database, claimer: str, now: datetime | None = None) -> int:
    """Make the pending deliveries ``claimer`` had claimed due at once (its start-up after a crash: they were
    never sent, or their outcome was never recorded). Returns how many."""
    now = now or utcnow()
    with db.transaction() as session:
        return session.execute(update(Delivery).where(
            Delivery.state == DELIVERY_PENDING, Delivery.claimed_by == claimer, Delivery.next_attempt_at > now)
            .values(next_attempt_at=now)).rowcount


def record_attempts(db: Database, outcomes: Sequence[AttemptOutcome], policy: RetryPolicy,
                    now: datetime | None = None) -> dict[int, str]:
    """Record attempts (one transaction) and move each delivery on. Returns each delivery's new state."""
    now = now or utcnow()

    def work() -> dict[int, str]:
        states: dict[int, str] = {}
        with db.transaction() as session:
            for outcome in outcomes:
                delivery = session.get(Delivery, outcome.delivery_id, with_for_update=db.is_postgres)
                if delivery is None or delivery.state != DELIVERY_PENDING:
                    continue
                delivery.attempts += 1
                delivery.last_status = outcome.status[:2000]
                delivery.last_attempt_at = now
                session.add(DeliveryAttempt(delivery_id=delivery.id, at=now, ok=outcome.ok,
                                            status=outcome.status[:2000]))
                if outcome.ok:
                    delivery.state = DELIVERY_DELIVERED
                    delivery.delivered_at = now
                elif delivery.attempts >= policy.max_attempts:
                    delivery.state = DELIVERY_DEAD
                else:
                    delay = backoff_seconds(policy.base_seconds, delivery.attempts, policy.max_seconds)
                    delivery.next_attempt_at = now + timedelta(seconds=delay)
                states[delivery.id] = delivery.state
            return states

    return db.retrying(work)


def retry_dead_deliveries(db: Database, peer: str | None = None, delivery_id: int | None = None,
                          since: datetime | None = None, reason: str | None = None, dry_run: bool = False) -> int:
    """Give dead deliveries a fresh set of attempts, due now: all of them, or only one delivery, or those to
    ``peer``, whose last attempt was at or after ``since``, and whose last status contains ``reason``
    (case-insensitive). Returns how many (would be, with ``dry_run``)."""
    now = utcnow()
    conditions = [Delivery.state == DELIVERY_DEAD]
    if peer is not None:
        conditions.append(Delivery.peer == peer)
    if delivery_id is not None:
        conditions.append(Delivery.id == delivery_id)
    if since is not None:
        conditions.append(Delivery.last_attempt_at >= since)
    if reason:
        conditions.append(func.lower(Delivery.last_status).contains(reason.lower(), autoescape=True))
    with db.transaction() as session:
        if dry_run:
            return session.execute(select(func.count()).select_from(Delivery).where(*conditions)).scalar_one()
        return session.execute(update(Delivery).where(*conditions).values(
            state=DELIVERY_PENDING, attempts=0, next_attempt_at=now)).rowcount
