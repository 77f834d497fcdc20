"""Recording what processing produced: a skipped instance with its reason, or a result with its output
files and one pending delivery per destination, written at most once per source instance.

A worker passes its ``holder`` (job id, worker id): the write then happens only while it still holds the job's
lease (``dicomnode.db.jobs.hold_job``, in the same transaction), and raises LeaseLost otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from dicomnode.db.engine import Database
from dicomnode.db.jobs import hold_job
from dicomnode.db.models import (
    INSTANCE_FAILED,
    INSTANCE_PROCESSED,
    INSTANCE_SKIPPED,
    Delivery,
    Instance,
    Output,
    Result,
    utcnow,
)


@dataclass(frozen=True)
class OutputFile:
    """One built DICOM object already written (fsync + rename) to ``path``."""

    kind: str  # "sr" | "sc" | "gsps"
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    path: str


Holder = tuple[int, str]  # (job id, worker id) of the job a write belongs to


def _fence(session, holder: Holder | None) -> None:
    if holder is not None:
        hold_job(session, *holder)


def mark_skipped(db: Database, instance_id: int, reason: str, holder: Holder | None = None) -> None:
    """Record that an instance is not processed (not a knee AP/PA DX/CR, or unusable), and why."""
    with db.transaction() as session:
        _fence(session, holder)
        session.execute(update(Instance).where(Instance.id == instance_id).values(
            state=INSTANCE_SKIPPED, reason=reason[:2000]))


def mark_failed(db: Database, instance_id: int, reason: str, holder: Holder | None = None) -> None:
    """Record that an instance can never be processed (its job goes dead), and why (a curated reason)."""
    with db.transaction() as session:
        _fence(session, holder)
        session.execute(update(Instance).where(Instance.id == instance_id).values(
            state=INSTANCE_FAILED, reason=reason[:2000]))


def save_result(db: Database, *, job_id: int | None, instance_id: int, source_sop_instance_uid: str,
                status: str, summary: dict[str, Any], outputs: Sequence[OutputFile],
                destinations: Sequence[str], holder: Holder | None = None) -> tuple[int, bool]:
    """Store the result of one instance with its outputs and deliveries, and mark the instance processed.

    Idempotent: if the instance already has a result (a job re-run after a crash) nothing is added and the
    existing result is returned. Returns ``(result_id, created)``.
    """
    now = utcnow()

    def work() -> tuple[int, bool]:
        with db.transaction() as session:
            _fence(session, holder)
            result_id = session.execute(db.insert(Result).values(
                job_id=job_id, instance_id=instance_id, source_sop_instance_uid=source_sop_instance_uid,
                status=status, summary=summary, created_at=now,
            ).on_conflict_do_nothing().returning(Result.id)).scalar_one_or_none()
            if result_id is None:
                existing = session.execute(select(Result.id).where(Result.instance_id == instance_id)).scalar()
                if existing is None:  # the conflict was on the source UID of another instance row
                    existing = session.execute(select(Result.id).where(
                        Result.source_sop_instance_uid == source_sop_instance_uid)).scalar_one()
                return existing, False
            for item in outputs:
                output = Output(result_id=result_id, kind=item.kind, sop_class_uid=item.sop_class_uid,
                                sop_instance_uid=item.sop_instance_uid,
                                series_instance_uid=item.series_instance_uid, path=item.path)
                session.add(output)
                session.flush()
                session.add_all(Delivery(output_id=output.id, peer=peer, next_attempt_at=now, created_at=now)
                                for peer in destinations)
            session.execute(update(Instance).where(Instance.id == instance_id).values(
                state=INSTANCE_PROCESSED, reason=None))
            return result_id, True

    return db.retrying(work)
