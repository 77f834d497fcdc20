"""What the status page and the metrics scrape read from the job database: counts by state, the recent jobs
with what became of their instances, the deliveries still open, and delivery latencies. Read-only; the
requeue actions use ``dicomnode.db.jobs.retry_job`` and ``dicomnode.db.deliveries.retry_dead_deliveries``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text

from dicomnode.db import Database
from dicomnode.db.models import (
    DELIVERY_DEAD,
    DELIVERY_PENDING,
    DELIVERY_STATES,
    INSTANCE_SKIPPED,
    INSTANCE_STATES,
    JOB_DEAD,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_STATES,
    Delivery,
    Instance,
    Job,
    Output,
    Result,
)


@dataclass(frozen=True)
class StateCounts:
    """Rows per state (every known state present, zero if none) and when the oldest waiting job was queued."""

    jobs: dict[str, int]
    deliveries: dict[str, int]
    instances: dict[str, int]
    oldest_waiting_job: datetime | None

    @property
    def queue_depth(self) -> int:
        """Jobs waiting to run: queued, or failed and waiting for their retry."""
        return self.jobs[JOB_QUEUED] + self.jobs[JOB_FAILED]


def _grouped(session, column, states: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(states, 0)
    for state, count in session.execute(select(column, func.count()).group_by(column)):
        counts[state] = count
    return counts


def ping(db: Database) -> None:
    """Raise if the database does not answer."""
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def state_counts(db: Database) -> StateCounts:
    with db.session() as session:
        oldest = session.execute(select(func.min(Job.created_at)).where(
            Job.state.in_([JOB_QUEUED, JOB_FAILED]))).scalar()
        return StateCounts(_grouped(session, Job.state, JOB_STATES),
                           _grouped(session, Delivery.state, DELIVERY_STATES),
                           _grouped(session, Instance.state, INSTANCE_STATES), oldest)


@dataclass(frozen=True)
class InstanceView:
    """An instance of a job, with its result if it has one (no patient data: the database holds none)."""

    id: int
    sop_instance_uid: str
    state: str
    reason: str | None
    path: str
    result_status: str | None = None
    atfa_fnts_deg: float | None = None
    atfa_fts_deg: float | None = None
    laterality: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    state: str
    attempts: int
    max_attempts: int
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None
    instances: list[InstanceView] = field(default_factory=list)

    @property
    def requeueable(self) -> bool:
        return self.state in (JOB_DEAD, JOB_FAILED)

    @property
    def reason(self) -> str:
        """Why the job is where it is: its last error while it fails, else what happened to its instances."""
        if self.state in (JOB_FAILED, JOB_DEAD) and self.last_error:
            return self.last_error
        parts = []
        for instance in self.instances:
            if instance.reason:
                parts.append(instance.reason)
            parts.extend(instance.warnings)
        return "; ".join(parts)


def _instance_view(instance: Instance, result: Result | None) -> InstanceView:
    if result is None:
        return InstanceView(instance.id, instance.sop_instance_uid, instance.state, instance.reason, instance.path)
    summary = result.summary or {}
    return InstanceView(instance.id, instance.sop_instance_uid, instance.state, instance.reason, instance.path,
                        result.status, summary.get("atfa_fnts_deg"), summary.get("atfa_fts_deg"),
                        summary.get("laterality"), tuple(str(w) for w in summary.get("warnings") or ()))


def recent_jobs(db: Database, limit: int = 50) -> list[JobView]:
    """The newest jobs first, each with its instance (or its study's instances) and their results."""
    with db.session() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))
        instance_ids = {j.instance_id for j in jobs if j.instance_id is not None}
        study_ids = {j.study_id for j in jobs if j.study_id is not None}
        query = select(Instance).where(Instance.id.in_(instance_ids) | Instance.study_id.in_(study_ids))
        instances = list(session.scalars(query.order_by(Instance.id)))
        results = {r.instance_id: r for r in session.scalars(
            select(Result).where(Result.instance_id.in_([i.id for i in instances])))}
        views = {i.id: _instance_view(i, results.get(i.id)) for i in instances}
        by_study: dict[int, list[InstanceView]] = {}
        for instance in instances:
            by_study.setdefault(instance.study_id, []).append(views[instance.id])
        return [JobView(j.id, j.kind, j.state, j.attempts, j.max_attempts, j.created_at, j.finished_at, j.last_error,
                        [views[j.instance_id]] if j.instance_id in views else by_study.get(j.study_id, []))
                for j in jobs]


@dataclass(frozen=True)
class SkippedView:
    """An image the node does not measure, and why (decided from its attributes at receipt, or by a worker)."""

    sop_instance_uid: str
    calling_ae: str
    received_at: datetime
    reason: str | None


def recent_skipped(db: Database, limit: int = 20) -> list[SkippedView]:
    """The newest skipped instances first."""
    with db.session() as session:
        rows = session.execute(select(Instance.sop_instance_uid, Instance.calling_ae, Instance.received_at,
                                      Instance.reason).where(Instance.state == INSTANCE_SKIPPED)
                               .order_by(Instance.id.desc()).limit(limit)).all()
    return [SkippedView(*row) for row in rows]


@dataclass(frozen=True)
class DeliveryView:
    id: int
    peer: str
    state: str
    kind: str
    source_sop_instance_uid: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: str | None

    @property
    def requeueable(self) -> bool:
        return self.state == DELIVERY_DEAD


def open_deliveries(db: Database, limit: int = 100) -> list[DeliveryView]:
    """Deliveries waiting for their next attempt or dead, oldest first."""
    with db.session() as session:
        rows = session.execute(
            select(Delivery, Output.kind, Result.source_sop_instance_uid)
            .join(Output, Output.id == Delivery.output_id).join(Result, Result.id == Output.result_id)
            .where(Delivery.state.in_([DELIVERY_PENDING, DELIVERY_DEAD]))
            .order_by(Delivery.id).limit(limit)).all()
        return [DeliveryView(d.id, d.peer, d.state, kind, source, d.attempts,
                             d.next_attempt_at if d.state == DELIVERY_PENDING else None, d.last_attempt_at,
                             d.last_status) for d, kind, source in rows]


def delivery_latencies(db: Database, delivery_ids: Iterable[int]) -> list[float]:
    """For delivered deliveries: seconds from the receipt of the source instance to the delivery."""
    with db.session() as session:
        rows = session.execute(
            select(Delivery.delivered_at, Instance.received_at)
            .join(Output, Output.id == Delivery.output_id).join(Result, Result.id == Output.result_id)
            .join(Instance, Instance.id == Result.instance_id)
            .where(Delivery.id.in_(list(delivery_ids)), Delivery.delivered_at.is_not(None))).all()
    return [(delivered - received).total_seconds() for delivered, received in rows]
