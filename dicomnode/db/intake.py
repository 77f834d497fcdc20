"""Recording received instances (de-duplicated by SOP Instance UID) and turning them into jobs: at once
(``trigger: instance``) or once their study has been quiet for a while (``trigger: study``).

De-duplication policy: a re-sent instance whose SOP Instance UID is already known is *not* processed
again. It only bumps ``receive_count`` and ``last_received_at`` (the receiver has overwritten the same
spool file). The one exception is an instance whose processing failed for good (state ``failed``): a
re-send queues it again, as ``dicomnode jobs retry`` would. The same SOP Instance UID arriving in another
study is refused (:class:`StudyConflict`): nothing is recorded, and the first copy and its row stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update

from dicomnode.db.engine import Database
from dicomnode.db.models import (
    INSTANCE_FAILED,
    INSTANCE_QUEUED,
    INSTANCE_RECEIVED,
    INSTANCE_SKIPPED,
    JOB_PROCESS_INSTANCE,
    JOB_PROCESS_STUDY,
    Instance,
    Job,
    Study,
    utcnow,
)


class Arrival(Protocol):
    """What the receiver reports for each stored instance (``dicomnode.receive.StoredInstance`` fits)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    path: object  # str or Path
    size_bytes: int
    calling_ae: str
    peer_name: str | None  # the configured peer's name


class StudyConflict(Exception):
    """The SOP Instance UID is already recorded in another study (the receiver answers 0xC006)."""


@dataclass(frozen=True)
class IntakeOutcome:
    instance_id: int
    duplicate: bool  # the SOP Instance UID was already known
    job_id: int | None  # the job queued for it, if one was
    state: str  # the instance's state afterwards


def _upsert_study(db: Database, session, study_uid: str, now: datetime) -> int:
    session.execute(db.insert(Study).values(study_instance_uid=study_uid, first_received_at=now,
                                            last_received_at=now, pending=False)
                    .on_conflict_do_nothing(index_elements=["study_instance_uid"]))
    session.execute(update(Study).where(Study.study_instance_uid == study_uid).values(last_received_at=now))
    return session.execute(select(Study.id).where(Study.study_instance_uid == study_uid)).scalar_one()


def _queue_instance_job(session, instance_id: int, max_attempts: int, now: datetime) -> int:
    job = Job(kind=JOB_PROCESS_INSTANCE, instance_id=instance_id, max_attempts=max_attempts,
              next_attempt_at=now, created_at=now, updated_at=now)
    session.add(job)
    session.flush()
    return job.id


def record_instance(db: Database, arrival: Arrival, trigger: str, max_attempts: int,
                    now: datetime | None = None, skip: str | None = None) -> IntakeOutcome:
    """Record one stored instance and queue what it needs, in one transaction (see the module docstring). With
    ``skip`` (the reason an image is not for us, read from its attributes at receipt) it is recorded as skipped
    and gets no job."""
    now = now or utcnow()
    by_study = trigger == "study"

    def work() -> IntakeOutcome:
        with db.transaction() as session:
            study_id = _upsert_study(db, session, arrival.study_instance_uid, now)
            state = INSTANCE_SKIPPED if skip else INSTANCE_RECEIVED if by_study else INSTANCE_QUEUED
            inserted = session.execute(db.insert(Instance).values(
                sop_instance_uid=arrival.sop_instance_uid, sop_class_uid=arrival.sop_class_uid,
                study_id=study_id, study_instance_uid=arrival.study_instance_uid,
                series_instance_uid=arrival.series_instance_uid, path=str(arrival.path),
                size_bytes=arrival.size_bytes, peer=arrival.peer_name, calling_ae=arrival.calling_ae,
                received_at=now, last_received_at=now, receive_count=1, state=state, reason=skip,
            ).on_conflict_do_nothing(index_elements=["sop_instance_uid"]).returning(Instance.id)).first() is not None
            query = select(Instance).where(Instance.sop_instance_uid == arrival.sop_instance_uid)
            instance = session.execute(query.with_for_update() if db.is_postgres else query).scalar_one()
            if not inserted:
                if instance.study_instance_uid != arrival.study_instance_uid:
                    raise StudyConflict(f"instance {instance.id} belongs to another study")
                instance.receive_count += 1
                instance.last_received_at = now
                instance.path = str(arrival.path)
                if instance.state != INSTANCE_FAILED:
                    return IntakeOutcome(instance.id, True, None, instance.state)
                instance.state, instance.reason = state, skip
            job_id = None
            if by_study and not skip:
                session.execute(update(Study).where(Study.id == study_id).values(pending=True))
            elif not skip:
                job_id = _queue_instance_job(session, instance.id, max_attempts, now)
            return IntakeOutcome(instance.id, not inserted, job_id, instance.state)

    return db.retrying(work)


def queue_quiet_studies(db: Database, quiet_seconds: float, max_attempts: int,
                        now: datetime | None = None) -> list[int]:
    """Queue one ``process_study`` job for each pending study that has received nothing for
    ``quiet_seconds``; its waiting instances become ``queued``. Returns the new job ids."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=quiet_seconds)
    job_ids: list[int] = []
    with db.transaction() as session:
        query = select(Study.id).where(Study.pending.is_(True), Study.last_received_at <= cutoff)
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        for study_id in session.scalars(query).all():
            # Conditional: a concurrent arrival may have just made the study noisy again.
            if session.execute(update(Study).where(Study.id == study_id, Study.pending.is_(True),
                                                   Study.last_received_at <= cutoff)
                               .values(pending=False)).rowcount != 1:
                continue
            session.execute(update(Instance).where(Instance.study_id == study_id,
                                                   Instance.state == INSTANCE_RECEIVED)
                            .values(state=INSTANCE_QUEUED))
            job = Job(kind=JOB_PROCESS_STUDY, study_id=study_id, max_attempts=max_attempts,
                      next_attempt_at=now, created_at=now, updated_at=now)
            session.add(job)
            session.flush()
            job_ids.append(job.id)
    return job_ids
