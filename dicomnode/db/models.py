"""The job database's tables: studies, instances, jobs, results with their output files, deliveries and
every delivery attempt; and the audit trail, which has a retention of its own.

All timestamps are naive UTC (``utcnow()``), the same on SQLite and PostgreSQL. States are plain strings
listed in the ``*_STATES`` tuples; the meaning of each is documented on its table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)

# instances.state
INSTANCE_RECEIVED = "received"  # stored, waiting for its study's quiet period (trigger: study)
INSTANCE_QUEUED = "queued"  # a job will process it
INSTANCE_SKIPPED = "skipped"  # not a knee AP/PA DX/CR (reason says why); never retried
INSTANCE_PROCESSED = "processed"  # a result exists
INSTANCE_FAILED = "failed"  # its job went dead (reason = last error); a re-send or `jobs retry` queues it again
INSTANCE_STATES = (INSTANCE_RECEIVED, INSTANCE_QUEUED, INSTANCE_SKIPPED, INSTANCE_PROCESSED, INSTANCE_FAILED)

# jobs.kind
JOB_PROCESS_INSTANCE = "process_instance"
JOB_PROCESS_STUDY = "process_study"

# jobs.state
JOB_QUEUED = "queued"  # claimable once next_attempt_at has passed
JOB_RUNNING = "running"  # claimed by a worker (claimed_by) until lease_expires_at, which it renews
JOB_DONE = "done"
JOB_FAILED = "failed"  # an attempt failed; back to queued at next_attempt_at
JOB_DEAD = "dead"  # max_attempts used up; only `dicomnode jobs retry` revives it
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_DEAD)

# results.status (the model's verdict, see model.result)
RESULT_OK = "ok"
RESULT_LOW_CONFIDENCE = "low_confidence"

# deliveries.state
DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_DEAD = "dead"
DELIVERY_STATES = (DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_DEAD)


def utcnow() -> datetime:
    """The current time as naive UTC, the form every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=False), dict[str, Any]: JSON}


class Study(Base):
    """One study seen by the node; ``pending`` is set while instances wait for the quiet period."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    pending: Mapped[bool] = mapped_column(Boolean, default=False)

    instances: Mapped[list[Instance]] = relationship(back_populates="study", passive_deletes=True)


class Instance(Base):
    """A received SOP instance, unique by SOP Instance UID (a re-send only bumps ``receive_count``)."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID, default="")
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, default="")
    series_instance_uid: Mapped[str] = mapped_column(UID, default="")
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    peer: Mapped[str | None] = mapped_column(String(64))  # configured peer name, None if unknown
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    receive_count: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped or failed

    study: Mapped[Study] = relationship(back_populates="instances")


class Job(Base):
    """A unit of work for a worker: one instance, or every unprocessed instance of one study."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "next_attempt_at"),
                      Index("ix_jobs_lease", "state", "lease_expires_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JOB_QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    # A running job's claim holds until then; its worker renews it, another node takes the job over after it.
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Result(Base):
    """The model's result for one source instance (at most one: re-runs never add a second)."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    source_sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    outputs: Mapped[list[Output]] = relationship(back_populates="result", passive_deletes=True,
                                                 order_by="Output.id")


class Output(Base):
    """One DICOM object built from a result (SR, SC or GSPS) and its file in the spool."""

    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    sop_class_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)

    result: Mapped[Result] = relationship(back_populates="outputs")


class Delivery(Base):
    """Sending one output file to one destination peer, retried with backoff until delivered or dead."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("output_id", "peer", name="uq_delivery_output_peer"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("outputs.id", ondelete="CASCADE"), index=True)
    peer: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)  # while claimed: the end of the claim
    claimed_by: Mapped[str | None] = mapped_column(String(128))  # the node sending it now (or last)
    last_status: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    output: Mapped[Output] = relationship()


class DeliveryAttempt(Base):
    """The record of every C-STORE attempt of a delivery: when, and what came back."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(Text)


class AuditEvent(Base):
    """One entry of the audit trail (see ``dicomnode.audit``): who talked to the node, what it received and
    sent, what an operator or a recovery requeued, when the node started. UIDs and network identities only,
    never patient data; free text (``reason``) is escaped and curated by the writer."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255), default="")  # the node's host name
    source: Mapped[str | None] = mapped_column(String(64))  # remote "ip:port"
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    called_ae: Mapped[str | None] = mapped_column(String(16))
    peer: Mapped[str | None] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    sop_class_uid: Mapped[str | None] = mapped_column(UID)
    reference: Mapped[str | None] = mapped_column(String(64))  # e.g. "job 12", "delivery 7"
    reason: Mapped[str | None] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)  # > 1 for aggregated refusals
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
