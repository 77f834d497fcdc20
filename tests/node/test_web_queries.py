"""What the status page and the metrics scrape read from the database, on SQLite and on a real PostgreSQL
server: counts by state, recent jobs with their reasons and results, open deliveries, delivery latencies."""

from __future__ import annotations

from sqlalchemy import select

from dicomnode.db.models import Delivery
from dicomnode.web.queries import delivery_latencies, open_deliveries, ping, recent_jobs, state_counts
from tests.web.webhelpers import HOSTILE_ERROR, HOSTILE_STATUS, populate


def test_page_and_scrape_queries(db, tmp_path):
    populated = populate(db, tmp_path)
    ping(db)
    counts = state_counts(db)
    assert counts.jobs == {"queued": 0, "running": 0, "done": 2, "failed": 0, "dead": 1}
    assert counts.deliveries == {"pending": 0, "delivered": 1, "dead": 1}
    assert counts.instances["processed"] == 2 and counts.instances["failed"] == 1
    assert counts.queue_depth == 0 and counts.oldest_waiting_job is None

    jobs = recent_jobs(db)
    assert [job.id for job in jobs] == sorted((job.id for job in jobs), reverse=True) and len(jobs) == 3
    dead = next(job for job in jobs if job.id == populated.dead_job_id)
    assert dead.requeueable and dead.reason == HOSTILE_ERROR and dead.instances[0].state == "failed"
    done = next(job for job in jobs if job.instances[0].sop_instance_uid == populated.done_uid)
    assert not done.requeueable and done.instances[0].result_status == "ok"
    assert (done.instances[0].atfa_fnts_deg, done.instances[0].laterality) == (5.25, "L")

    (open_delivery,) = open_deliveries(db)
    assert (open_delivery.id, open_delivery.state, open_delivery.kind) == (populated.dead_delivery_id, "dead", "sc")
    assert open_delivery.requeueable and open_delivery.last_status == HOSTILE_STATUS

    with db.session() as session:
        delivered = session.scalars(select(Delivery.id).where(Delivery.state == "delivered")).one()
    (latency,) = delivery_latencies(db, [delivered])
    assert 0 <= latency < 60
    assert delivery_latencies(db, [populated.dead_delivery_id]) == []
