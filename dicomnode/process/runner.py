"""Running one claimed job: read each of its instances from the spool, analyse it, write the result objects
durably and record the result with one pending delivery per destination (or the reason it was skipped).

Safe to run again after a crash at any point: finished instances are passed over, output files are
overwritten in place (with the same UIDs, which the outputs derive from the source and the prediction),
and the database keeps at most one result per source instance.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.jobs import ClaimedJob, job_instances
from dicomnode.db.models import INSTANCE_PROCESSED, INSTANCE_SKIPPED, Job
from dicomnode.db.results import OutputFile, mark_skipped, save_result
from dicomnode.process.analysis import (
    STATUS_SKIPPED,
    Analysis,
    Predictor,
    analyse,
    output_kind,
)
from dicomnode.process.output_files import spool_output_path, write_durably
from dicomnode.web import events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    instance_id: int
    sop_instance_uid: str
    study_instance_uid: str
    path: str
    peer: str | None
    state: str


def destinations_for(config: NodeConfig, peer_name: str | None) -> list[str]:
    """Where the results of an instance received from ``peer_name`` go: back to it if ``send_results``."""
    if peer_name is None:
        return []
    try:
        peer = config.peer_by_name(peer_name)
    except KeyError:
        return []
    return [peer.name] if peer.send_results else []


class JobRunner:
    """Runs claimed jobs with one predictor (loaded once per worker process)."""

    def __init__(self, config: NodeConfig, db: Database, predictor: Predictor) -> None:
        self.config = config
        self.db = db
        self.predictor = predictor

    def work_items(self, job_id: int) -> list[WorkItem]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return []
            return [WorkItem(i.id, i.sop_instance_uid, i.study_instance_uid, i.path, i.peer, i.state)
                    for i in job_instances(session, job)]

    def run(self, job: ClaimedJob) -> int:
        """Process every unfinished instance of ``job``; raises on the first failure. Returns how many
        instances produced a new result."""
        created = 0
        for item in self.work_items(job.id):
            if item.state in (INSTANCE_PROCESSED, INSTANCE_SKIPPED):
                continue
            created += self.process(job.id, item)
        return created

    def process(self, job_id: int, item: WorkItem) -> bool:
        started = time.perf_counter()
        ds = pydicom.dcmread(item.path)
        analysis = analyse(ds, self.predictor, self.config.processing.outputs)
        if analysis.status == STATUS_SKIPPED:
            mark_skipped(self.db, item.instance_id, analysis.reason or "skipped")
            events.result_recorded(STATUS_SKIPPED)
            log.info("instance %s skipped: %s", item.sop_instance_uid, analysis.reason)
            return False
        files = self.write_outputs(item, analysis)
        summary = json.loads(json.dumps(analysis.summary(), default=float))
        _, created = save_result(
            self.db, job_id=job_id, instance_id=item.instance_id, source_sop_instance_uid=item.sop_instance_uid,
            status=analysis.status, summary=summary, outputs=files,
            destinations=destinations_for(self.config, item.peer))
        if created:
            events.result_recorded(analysis.status)
        log.info("instance %s processed in %.0f ms: %s, aTFA FTS %.1f deg, FNTS %.1f deg, %d output(s)%s",
                 item.sop_instance_uid, 1000 * (time.perf_counter() - started), analysis.status,
                 summary.get("atfa_fts_deg", float("nan")), summary.get("atfa_fnts_deg", float("nan")),
                 len(files), "" if created else " (result already recorded)")
        return created

    def write_outputs(self, item: WorkItem, analysis: Analysis) -> Sequence[OutputFile]:
        files = []
        for ds in analysis.outputs:
            kind = output_kind(ds)
            path = spool_output_path(Path(self.config.storage.dir), item.study_instance_uid,
                                     item.sop_instance_uid, kind)
            write_durably(ds, path)
            files.append(OutputFile(kind, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                    str(ds.SeriesInstanceUID), str(path)))
        return files
