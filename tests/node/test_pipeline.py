"""Running jobs in-process with the real model code (tiny untrained weights) and the real output builders:
results written once, re-runs after a crash idempotent, unusable images skipped, failures retried."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select

from dicomnode.config import NodeConfig, load_config
from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import claim_job, complete_job, requeue_running
from dicomnode.db.models import Delivery, Instance, Job, Output, Result
from dicomnode.runtime.runner import JobRunner, task_for
from dicomnode.pipeline.task import run_task
from dicomnode.runtime.worker import load_predictor, work_loop
from tests.node.nodehelpers import arrival, radiograph_dataset, set_raw, synthetic_knee, write
from tests.node.nodeproc import node_config


@pytest.fixture
def config(tmp_path, tiny_weights, db_url) -> NodeConfig:
    path = node_config(tmp_path, 11112, 11113, tiny_weights, database={"url": db_url},
                       processing={"outputs": ["sr", "sc", "gsps"]})
    return load_config(path, env={})


@pytest.fixture(scope="module")
def predictor(tiny_weights, tmp_path_factory):
    cfg = load_config(node_config(tmp_path_factory.mktemp("cfg"), 1, 2, tiny_weights), env={})
    return load_predictor(cfg)


def test_the_nodes_predictor_is_traced_before_its_first_job(predictor):
    assert set(predictor.nets) >= {"global", "local_preop", "local_postop"}
    for stage, net in predictor.nets.items():  # each stage traced at load, at the shape it runs at
        assert net.traced and len(net._traced) == 1 and None not in net._traced.values(), stage


def _receive(db: Database, config: NodeConfig, ds: pydicom.Dataset, peer: str | None = "modality") -> int:
    path = write(ds, Path(config.storage.dir) / "instances" / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm")
    return record_instance(db, arrival(study=ds.StudyInstanceUID, sop=ds.SOPInstanceUID, path=str(path),
                                       peer_name=peer), "instance", 3).job_id


def _count(db: Database, model) -> int:
    with db.session() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_job_writes_its_outputs_and_one_result(config, db, predictor):
    ds = synthetic_knee(24)  # every shaft level exposed (seed 21 has its distal tibia collimated)
    _receive(db, config, ds)
    runner = JobRunner(config, db, predictor)
    job = claim_job(db, "host:1")
    assert runner.run(job) == 1
    complete_job(db, job.id, "host:1")
    with db.session() as session:
        result = session.scalars(select(Result)).one()
        outputs = list(session.scalars(select(Output)))
        deliveries = list(session.scalars(select(Delivery)))
        assert session.get(Instance, job.instance_id).state == "processed"
    assert result.status == "ok" and result.summary["sop_instance_uid"] == ds.SOPInstanceUID
    assert sorted(o.kind for o in outputs) == ["gsps", "sc", "sr"]
    assert [d.peer for d in deliveries] == ["modality"] * 3
    for output in outputs:
        written = pydicom.dcmread(output.path)
        assert written.SOPInstanceUID == output.sop_instance_uid
        assert written.StudyInstanceUID == ds.StudyInstanceUID
        assert Path(output.path).parent.name == ds.SOPInstanceUID


def test_a_rerun_after_a_crash_adds_nothing(config, db, predictor):
    ds = synthetic_knee(22)
    _receive(db, config, ds)
    runner = JobRunner(config, db, predictor)
    job = claim_job(db, "host:1")
    item = runner.work_items(job.id)[0]
    first = run_task(task_for(config, item), predictor).files
    # the worker dies here: outputs on disk, no result recorded
    assert requeue_running(db, claimed_by_prefix="host:") == 1
    job = claim_job(db, "host:2")
    assert job.attempts == 2
    assert runner.run(job) == 1
    # ... and dies again after recording the result, before completing the job
    requeue_running(db, claimed_by_prefix="host:")
    job = claim_job(db, "host:3")
    assert runner.run(job) == 0, "the finished instance is passed over"
    assert complete_job(db, job.id, "host:3")
    assert (_count(db, Result), _count(db, Output), _count(db, Delivery)) == (1, 3, 3)
    with db.session() as session:
        recorded = {o.kind: o.sop_instance_uid for o in session.scalars(select(Output))}
    assert recorded == {f.kind: f.sop_instance_uid for f in first}, "the same UIDs as the interrupted run"


def test_results_go_only_to_peers_that_want_them(config, db, predictor):
    _receive(db, config, synthetic_knee(23), peer=None)
    job = claim_job(db, "host:1")
    JobRunner(config, db, predictor).run(job)
    assert _count(db, Result) == 1 and _count(db, Delivery) == 0


def test_an_image_the_model_cannot_use_is_skipped(config, db, predictor):
    blank = radiograph_dataset(pixels=np.zeros((64, 64), np.uint16))
    _receive(db, config, blank)
    job = claim_job(db, "host:1")
    assert JobRunner(config, db, predictor).run(job) == 0
    with db.session() as session:
        instance = session.get(Instance, job.instance_id)
    assert instance.state == "skipped" and instance.reason.startswith("unusable image: image is blank")
    assert _count(db, Result) == 0


def _run_loop_until(config, db, predictor, job_id: int, states: tuple[str, ...]) -> Job:
    stop = threading.Event()
    loop = threading.Thread(target=work_loop, args=(JobRunner(config, db, predictor), db, "host:1", 60.0, stop))
    loop.start()

    def job_state() -> Job:
        with db.session() as session:
            return session.get(Job, job_id)

    try:
        for _ in range(600):
            if job_state().state in states:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        loop.join(30)
    return job_state()


def test_a_transient_failure_is_retried_by_the_work_loop(config, db, predictor):
    ds = synthetic_knee(22)
    job_id = _receive(db, config, ds)
    Path(config.storage.dir, "outputs").mkdir(parents=True)
    Path(config.storage.dir, "outputs", ds.StudyInstanceUID).write_text("a file where a directory should be")
    job = _run_loop_until(config, db, predictor, job_id, ("failed", "dead"))
    assert (job.state, job.attempts) == ("failed", 1)
    assert job.last_error.startswith("transient: NotADirectoryError: the result files cannot be written")
    assert (job.next_attempt_at - job.started_at).total_seconds() == pytest.approx(60, abs=2)


def test_an_image_that_can_never_succeed_fails_once_with_its_reason(config, db, predictor):
    ds = set_raw(synthetic_knee(22), "NumberOfFrames", "IS", "abc")
    job_id = _receive(db, config, ds)
    job = _run_loop_until(config, db, predictor, job_id, ("failed", "dead"))
    assert (job.state, job.attempts) == ("dead", 1)
    assert job.last_error == "permanent: InvalidImage: NumberOfFrames is not a number"
    with db.session() as session:
        instance = session.get(Instance, job.instance_id)
    assert (instance.state, instance.reason) == ("failed", job.last_error)


def test_a_missing_spool_file_is_a_permanent_failure(config, db, predictor):
    ds = synthetic_knee(22)
    job_id = _receive(db, config, ds)
    Path(config.storage.dir, "instances", ds.StudyInstanceUID, f"{ds.SOPInstanceUID}.dcm").unlink()
    job = _run_loop_until(config, db, predictor, job_id, ("failed", "dead"))
    assert (job.state, job.attempts) == ("dead", 1)
    assert job.last_error.startswith("permanent: FileNotFoundError: the received file is missing")
