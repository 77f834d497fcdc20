"""The dispatcher against a real dcmtk storescp: one association per destination per run, every attempt
recorded, a destination that is down retried until it is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomnode.config import load_config
from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import claim_job
from dicomnode.db.models import Delivery, DeliveryAttempt
from dicomnode.db.results import OutputFile, save_result
from dicomnode.dispatch import Dispatcher
from tests.conftest import free_port
from tests.node.nodehelpers import arrival, radiograph_dataset, write
from tests.node.nodeproc import StoreSCP, node_config

pytestmark = pytest.mark.integration


def _pending_outputs(db: Database, workdir: Path, count: int, peers: list[str]) -> list[str]:
    """A recorded result with ``count`` output files (small radiographs stand in for SR/SC)."""
    record_instance(db, arrival(), "instance", 3)
    job = claim_job(db, "host:1")
    outputs = []
    for n in range(count):
        ds = radiograph_dataset()
        outputs.append(OutputFile("sc", ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID,
                                  str(write(ds, workdir / "outputs" / f"{n}.dcm"))))
    save_result(db, job_id=job.id, instance_id=job.instance_id, source_sop_instance_uid="1.2.3.4",
                status="ok", summary={}, outputs=outputs, destinations=peers)
    return [o.sop_instance_uid for o in outputs]


def _deliveries(db: Database) -> list[Delivery]:
    with db.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
def setup(tmp_path, dcmtk):
    port = free_port()
    config = load_config(node_config(tmp_path, free_port(), port, None,
                                     dispatch={"retry_base_seconds": 0.5, "retry_max_seconds": 1,
                                               "max_attempts": 3}), env={})
    db = Database(config.database.url)
    destination = StoreSCP(tmp_path / "received", port)
    yield config, db, destination
    destination.stop()
    db.dispose()


def test_one_association_delivers_a_whole_batch(setup, tmp_path):
    config, db, destination = setup
    destination.start()
    uids = _pending_outputs(db, tmp_path, 3, ["modality"])
    report = Dispatcher(config, db).run_once()
    assert report.delivered == {"modality": 3} and report.failed == {"modality": 0}
    assert sorted(str(ds.SOPInstanceUID) for ds in destination.datasets()) == sorted(uids)
    assert destination.associations() == 1
    assert {d.state for d in _deliveries(db)} == {"delivered"}
    assert Dispatcher(config, db).run_once().total_delivered == 0, "nothing is sent twice"


def test_a_destination_that_is_down_gets_everything_once_back(setup, tmp_path):
    config, db, destination = setup
    uids = _pending_outputs(db, tmp_path, 2, ["modality"])
    dispatcher = Dispatcher(config, db)
    assert dispatcher.run_once().failed == {"modality": 2}
    assert all(d.state == "pending" and d.attempts == 1 and "connection-failed" in d.last_status
               for d in _deliveries(db))
    assert dispatcher.run_once().failed == {}, "not due again before the backoff"
    destination.start()
    time.sleep(0.6)
    assert dispatcher.run_once().delivered == {"modality": 2}
    assert sorted(str(ds.SOPInstanceUID) for ds in destination.datasets()) == sorted(uids)
    with db.session() as session:
        history = [(a.ok, a.delivery_id) for a in session.scalars(select(DeliveryAttempt))]
    assert sorted(history) == sorted([(False, 1), (False, 2), (True, 1), (True, 2)])


def test_deliveries_die_after_max_attempts(setup, tmp_path):
    config, db, _ = setup
    _pending_outputs(db, tmp_path, 1, ["modality", "nowhere"])
    dispatcher = Dispatcher(config, db)
    for _ in range(3):
        dispatcher.run_once()
        time.sleep(1.05)
    deliveries = {d.peer: d for d in _deliveries(db)}
    assert deliveries["modality"].state == "dead" and deliveries["modality"].attempts == 3
    assert deliveries["nowhere"].state == "dead"
    assert "destination not configured" in deliveries["nowhere"].last_status


def test_a_missing_or_broken_output_file_fails_alone(setup, tmp_path):
    config, db, destination = setup
    destination.start()
    _pending_outputs(db, tmp_path, 3, ["modality"])
    (tmp_path / "outputs" / "0.dcm").unlink()
    (tmp_path / "outputs" / "1.dcm").write_bytes(b"truncated")
    report = Dispatcher(config, db).run_once()
    assert report.delivered == {"modality": 1} and report.failed == {"modality": 2}
    missing, broken, sent = _deliveries(db)
    assert "output file missing" in missing.last_status and "output file unreadable" in broken.last_status
    assert sent.state == "delivered"
