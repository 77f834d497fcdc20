"""The dispatcher: sends due deliveries with C-STORE, one association per destination per run, and records
every attempt. A destination that is down gets each of its deliveries retried with exponential backoff
(``dispatch.retry_base_seconds`` doubling up to ``retry_max_seconds``) until delivered or, after
``dispatch.max_attempts``, dead (``dicomnode deliveries retry`` revives them).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE, SUCCESS
from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.deliveries import (
    AttemptOutcome,
    PendingDelivery,
    RetryPolicy,
    claim_deliveries,
    record_attempts,
)
from dicomnode.dispatch.scu import DeliveryError, Outgoing, SendResult, StoreSession, outgoing
from dicomnode.web import events

log = logging.getLogger(__name__)
BATCH_LIMIT = 500  # deliveries per run (all destinations together)


@dataclass
class DispatchReport:
    """What one run did, per destination: how many delivered and how many failed."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def total_delivered(self) -> int:
        return sum(self.delivered.values())


def _prepare(path: Path) -> Outgoing | str:
    """What the SCU needs to send ``path`` (its file meta read once), or why it cannot be sent."""
    if not path.is_file():
        return f"output file missing: {path}"
    try:
        return outgoing(path)
    except (OSError, InvalidDicomError, ValueError) as exc:
        return f"output file unreadable: {path}: {exc}"


def _describe(result: SendResult) -> str:
    if result.ok:
        return f"0x{result.status:04X} success" if result.status is not None else "success"
    return result.error or "failed"


class Dispatcher:
    """Sends pending deliveries; ``run_once`` is safe to call from one thread at a time (the scheduler runs
    it with ``max_instances=1``; a lock guards direct calls too)."""

    def __init__(self, config: NodeConfig, db: Database, audit: AuditTrail | None = None) -> None:
        self.config = config
        self.db = db
        self.audit = audit
        self.policy = RetryPolicy(config.dispatch.max_attempts, config.dispatch.retry_base_seconds,
                                  config.dispatch.retry_max_seconds)
        self._lock = threading.Lock()
        self.claimer = config.node.instance_name

    def run_once(self) -> DispatchReport:
        report = DispatchReport()
        with self._lock:
            for peer_name, batch in claim_deliveries(self.db, self.claimer, limit=BATCH_LIMIT).items():
                outcomes = self.send_batch(peer_name, batch)
                states = record_attempts(self.db, outcomes, self.policy)
                events.deliveries_recorded(self.db, peer_name, states)
                self._audit(peer_name, batch, outcomes)
                report.delivered[peer_name] = sum(1 for o in outcomes if o.ok)
                report.failed[peer_name] = len(outcomes) - report.delivered[peer_name]
                dead = sum(1 for s in states.values() if s == "dead")
                if report.failed[peer_name]:
                    log.warning("delivery to %s: %d delivered, %d failed (%d now dead); last: %s", peer_name,
                                report.delivered[peer_name], report.failed[peer_name], dead,
                                next(o.status for o in reversed(outcomes) if not o.ok))
                else:
                    log.info("delivery to %s: %d object(s) delivered", peer_name, report.delivered[peer_name])
        return report

    def _audit(self, peer_name: str, batch: list[PendingDelivery], outcomes: list[AttemptOutcome]) -> None:
        """One ``result-sent`` audit event per attempt: the object's UIDs, the peer, the status."""
        if self.audit is None:
            return
        by_id = {delivery.id: delivery for delivery in batch}
        try:
            peer = self.config.peer_by_name(peer_name)
            where = f"{peer.host}:{peer.port}"
            called = peer.ae_title
        except KeyError:
            where, called = None, None
        for outcome in outcomes:
            delivery = by_id[outcome.delivery_id]
            self.audit.record("result-sent", SUCCESS if outcome.ok else MINOR_FAILURE, source=where,
                              calling_ae=self.config.node.ae_title, called_ae=called, peer=peer_name,
                              sop_instance_uid=delivery.sop_instance_uid, sop_class_uid=delivery.sop_class_uid,
                              reference=f"delivery {delivery.id}", reason=outcome.status)

    def send_batch(self, peer_name: str, batch: list[PendingDelivery]) -> list[AttemptOutcome]:
        """C-STORE ``batch`` to one destination over one association; one outcome per delivery."""
        try:
            peer = self.config.peer_by_name(peer_name)
        except KeyError as exc:
            return [AttemptOutcome(d.id, False, f"destination not configured: {exc}") for d in batch]
        outcomes: list[AttemptOutcome] = []
        present: list[tuple[PendingDelivery, Outgoing]] = []
        for delivery in batch:
            prepared = _prepare(Path(delivery.path))
            if isinstance(prepared, str):  # one bad file must not hold up the rest of the batch
                outcomes.append(AttemptOutcome(delivery.id, False, prepared))
            else:
                present.append((delivery, prepared))
        if not present:
            return outcomes
        sent: set[int] = set()
        try:
            with StoreSession(peer, self.config, [item for _, item in present]) as session:
                for delivery, item in present:
                    result = session.send(item)
                    outcomes.append(AttemptOutcome(delivery.id, result.ok, _describe(result)))
                    sent.add(delivery.id)
        except DeliveryError as exc:
            outcomes.extend(AttemptOutcome(d.id, False, str(exc)) for d, _ in present if d.id not in sent)
        except (OSError, ValueError) as exc:  # an unreadable file or a batch that cannot be proposed
            outcomes.extend(AttemptOutcome(d.id, False, f"{type(exc).__name__}: {exc}")
                            for d, _ in present if d.id not in sent)
        return outcomes
        sent: set[int] = set()
        try:
            with StoreSession(peer, self.config, [d.path for d in present]) as session:
                for delivery in present:
                    result = session.send(delivery.path)
                    outcomes.append(AttemptOutcome(delivery.id, result.ok, _describe(result)))
                    sent.add(delivery.id)
        except DeliveryError as exc:
            outcomes.extend(AttemptOutcome(d.id, False, str(exc)) for d in present if d.id not in sent)
        except (OSError, ValueError) as exc:  # an unreadable file or a batch that cannot be proposed
            outcomes.extend(AttemptOutcome(d.id, False, f"{type(exc).__name__}: {exc}")
                            for d in present if d.id not in sent)
        return outcomes
