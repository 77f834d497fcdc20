"""Read-only views of the database for operators (``dicomnode jobs`` and ``dicomnode deliveries``):
plain dicts, ready for JSON or a table. No patient data is stored, so none is shown: reasons and errors are
curated when they are written (see dicomnode.pipeline.failures), and escaped again here to one printable line,
so that a row written by an older version cannot forge lines in a terminal either."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from dicomnode.db import Database
from dicomnode.db.jobs import job_instances
from dicomnode.db.models import (
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    Output,
    Result,
    Study,
)
from dicomnode.safetext import escape


def _line(text: str | None) -> str | None:
    return escape(text) if text is not None else None


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def job_row(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "state": job.state, "attempts": job.attempts,
            "max_attempts": job.max_attempts, "instance_id": job.instance_id, "study_id": job.study_id,
            "next_attempt_at": _when(job.next_attempt_at), "claimed_by": job.claimed_by,
            "created_at": _when(job.created_at), "started_at": _when(job.started_at),
            "finished_at": _when(job.finished_at), "last_error": _line(job.last_error)}


def _delivery_row(delivery: Delivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {"id": delivery.id, "peer": delivery.peer, "state": delivery.state, "attempts": delivery.attempts,
            "next_attempt_at": _when(delivery.next_attempt_at), "last_status": _line(delivery.last_status),
            "delivered_at": _when(delivery.delivered_at),
            "history": [{"at": _when(a.at), "ok": a.ok, "status": _line(a.status)} for a in attempts]}


def _result_row(session, result: Result) -> dict[str, Any]:
    summary = {k: v for k, v in result.summary.items() if k not in ("landmarks", "axes")}
    outputs = []
    for output in result.outputs:
        deliveries = session.scalars(select(Delivery).where(Delivery.output_id == output.id)).all()
        outputs.append({
            "kind": output.kind, "sop_instance_uid": output.sop_instance_uid, "path": output.path,
            "deliveries": [_delivery_row(d, list(session.scalars(select(DeliveryAttempt).where(
                DeliveryAttempt.delivery_id == d.id).order_by(DeliveryAttempt.id)))) for d in deliveries]})
    return {"id": result.id, "status": result.status, "created_at": _when(result.created_at),
            "summary": summary, "outputs": outputs}


def describe_job(db: Database, job_id: int) -> dict[str, Any]:
    """A job with its instances, their state, and each result with its outputs and delivery history.
    Raises LookupError if there is no such job."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        out = job_row(job)
        if job.study_id is not None:
            study = session.get(Study, job.study_id)
            out["study_instance_uid"] = study.study_instance_uid if study else None
            instances = list(session.scalars(select(Instance).where(Instance.study_id == job.study_id)))
        else:
            instances = job_instances(session, job)
        out["instances"] = []
        for instance in instances:
            result = session.scalars(select(Result).where(Result.instance_id == instance.id)).first()
            out["instances"].append({
                "id": instance.id, "sop_instance_uid": instance.sop_instance_uid,
                "study_instance_uid": instance.study_instance_uid, "peer": instance.peer,
                "state": instance.state, "reason": _line(instance.reason), "receive_count": instance.receive_count,
                "received_at": _when(instance.received_at), "path": instance.path,
                "result": _result_row(session, result) if result else None})
        return out


def list_deliveries(db: Database, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent deliveries, newest first, optionally in one state."""
    with db.session() as session:
        query = (select(Delivery, Output.kind, Output.sop_instance_uid).join(Output, Output.id == Delivery.output_id)
                 .order_by(Delivery.id.desc()).limit(limit))
        if state is not None:
            query = query.where(Delivery.state == state)
        return [{"id": d.id, "peer": d.peer, "state": d.state, "kind": kind, "sop_instance_uid": uid,
                 "attempts": d.attempts, "next_attempt_at": _when(d.next_attempt_at),
                 "last_status": _line(d.last_status), "delivered_at": _when(d.delivered_at)}
                for d, kind, uid in session.execute(query).all()]
