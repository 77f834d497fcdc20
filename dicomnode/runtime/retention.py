"""Retention clean-up: instances older than ``storage.retention_days`` whose work is over are removed with
their files and rows (jobs, result, outputs, deliveries, attempts), then studies left empty.

"Over" means skipped, or processed with every delivery delivered. Results with a pending or dead delivery,
failed instances and instances still waiting are never removed: nothing undelivered is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, delete, exists, or_, select

from dicomnode.db import Database
from dicomnode.db.models import (
    DELIVERY_DELIVERED,
    INSTANCE_PROCESSED,
    INSTANCE_SKIPPED,
    Delivery,
    Instance,
    Output,
    Result,
    Study,
    utcnow,
)

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class RetentionReport:
    instances: int = 0
    files: int = 0
    studies: int = 0


def _expired_instances(cutoff: datetime):
    undelivered = (select(Delivery.id).join(Output, Output.id == Delivery.output_id)
                   .join(Result, Result.id == Output.result_id)
                   .where(Result.instance_id == Instance.id, Delivery.state != DELIVERY_DELIVERED))
    return select(Instance.id, Instance.path).where(
        Instance.last_received_at < cutoff,
        or_(Instance.state == INSTANCE_SKIPPED,
            and_(Instance.state == INSTANCE_PROCESSED, ~exists(undelivered))),
    ).order_by(Instance.id).limit(BATCH)


def _remove(path: Path, stop_at: Path) -> bool:
    """Delete a file, then its parent directories up to ``stop_at`` while they are empty."""
    existed = path.is_file()
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != stop_at and stop_at in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return existed


def purge_expired(db: Database, storage_dir: Path, retention_days: float,
                  now: datetime | None = None) -> RetentionReport:
    """Remove what has been finished for longer than ``retention_days`` (see the module docstring)."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    report = RetentionReport()
    while True:
        with db.transaction() as session:
            rows = session.execute(_expired_instances(cutoff)).all()
            if not rows:
                break
            ids = [row.id for row in rows]
            outputs = session.scalars(select(Output.path).join(Result, Result.id == Output.result_id)
                                      .where(Result.instance_id.in_(ids))).all()
            session.execute(delete(Instance).where(Instance.id.in_(ids)))  # cascades to jobs, results, ...
        report.instances += len(ids)
        for path in [row.path for row in rows] + list(outputs):
            report.files += _remove(Path(path), storage_dir)
    with db.transaction() as session:
        report.studies = session.execute(delete(Study).where(
            Study.pending.is_(False), Study.last_received_at < cutoff,
            ~exists(select(Instance.id).where(Instance.study_id == Study.id)))).rowcount
    if report.instances:
        log.info("retention: removed %d instance(s), %d file(s), %d empty stud(ies) older than %s days",
                 report.instances, report.files, report.studies, retention_days)
    return report
