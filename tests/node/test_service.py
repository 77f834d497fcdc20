"""``dicomnode serve`` end to end with real peers: dcmtk's storescu sends, dcmtk's storescp receives the
results, dciodvfy checks them; a destination that is down, SIGKILL mid-work, and a study trigger."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomnode.db import Database
from dicomnode.db.models import Delivery, Instance, Job
from tests.conftest import free_port, require_tool
from tests.node.nodehelpers import (
    CT_IMAGE_STORAGE,
    radiograph_dataset,
    synthetic_knee,
    write,
)
from tests.node.nodeproc import (
    NodeProcess,
    StoreSCP,
    node_config,
    results_by_source,
    storescu,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def tools(dcmtk) -> dict[str, str]:
    return {**dcmtk, "dciodvfy": require_tool("/usr/bin/dciodvfy"), "dsrdump": require_tool("/usr/bin/dsrdump")}


@pytest.fixture
def cleanup():
    """Processes to stop at the end of the test, whatever happens."""
    started: list = []
    yield started
    for thing in reversed(started):
        stop = getattr(thing, "stop", None)
        try:
            stop()
        except AssertionError:
            thing.kill()


def _db(workdir: Path) -> Database:
    return Database(f"sqlite:///{workdir / 'node.sqlite'}", create=False)


def _instances(workdir: Path) -> dict[str, Instance]:
    db = _db(workdir)
    with db.session() as session:
        rows = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    db.dispose()
    return rows


def _knees(workdir: Path, count: int, study_uid: str | None = None) -> list[Path]:
    return [write(synthetic_knee(100 + n, study_uid=study_uid, laterality="LR"[n % 2]), workdir / f"knee{n}.dcm")
            for n in range(count)]


def _start(tmp_path: Path, weights: Path, cleanup: list, destination_up: bool = True,
           **sections) -> tuple[NodeProcess, StoreSCP, int]:
    """A node and its dcmtk destination (started unless ``destination_up`` is false); returns the node,
    the destination and the node's port."""
    node_port, dest_port = free_port(), free_port()
    destination = StoreSCP(tmp_path / "received", dest_port)
    cleanup.append(destination)
    if destination_up:
        destination.start()
    node = NodeProcess(node_config(tmp_path, node_port, dest_port, weights, **sections)).start()
    cleanup.append(node)
    return node, destination, node_port


def _dciodvfy_errors(dciodvfy: str, path: Path) -> list[str]:
    out = subprocess.run([dciodvfy, str(path)], check=False, capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_results_come_back_valid_and_non_knees_are_skipped(tmp_path, tiny_weights, tools, cleanup):
    node, destination, node_port = _start(tmp_path, tiny_weights, cleanup)
    knee = _knees(tmp_path, 1)[0]
    chest = write(radiograph_dataset(body_part="CHEST", description="CHEST PA"), tmp_path / "chest.dcm")
    ct = write(radiograph_dataset(modality="CT", sop_class_uid=CT_IMAGE_STORAGE, body_part="KNEE"),
               tmp_path / "ct.dcm")
    lateral = write(radiograph_dataset(view="LL"), tmp_path / "lateral.dcm")
    sent = storescu(node_port, [knee, chest, ct, lateral])
    assert sent.returncode == 0, sent.stderr

    wait_for(lambda: len(destination.files()) >= 2, 90, "the SR and the SC at the destination")
    states = wait_for(lambda: (rows := _instances(tmp_path)) and all(
        r.state in ("processed", "skipped") for r in rows.values()) and rows, 30, "every instance to finish")
    reasons = {path.stem: states[str(radiograph_dataset_uid(path))] for path in (knee, chest, ct, lateral)}
    assert reasons["knee0"].state == "processed"
    assert (reasons["chest"].state, reasons["chest"].reason) == ("skipped", "BodyPartExamined is not KNEE")
    assert reasons["ct"].state == "skipped" and "Modality is not DX" in reasons["ct"].reason
    assert reasons["lateral"].state == "skipped" and "ViewPosition is not AP" in reasons["lateral"].reason

    grouped = results_by_source(destination.datasets())
    assert set(grouped) == {str(radiograph_dataset_uid(knee))}
    assert [len(v) for v in grouped[str(radiograph_dataset_uid(knee))].values()] == [1, 1]
    for path in destination.files():
        assert _dciodvfy_errors(tools["dciodvfy"], path) == [], path
    (sr_path,) = [p for p in destination.files() if p.name.startswith("SR")]
    tree = subprocess.run([tools["dsrdump"], str(sr_path)], check=False, capture_output=True, text=True, timeout=60)
    assert tree.returncode == 0 and "Imaging Measurement Report" in tree.stdout, tree.stderr
    assert destination.associations() == 1, "SR and SC travelled over one association"
    assert node.stop() == 0
    assert "KneeAlign node stopped" in node.log()


def radiograph_dataset_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_destination_down_receives_everything_once_back(tmp_path, tiny_weights, tools, cleanup):
    _, destination, node_port = _start(tmp_path, tiny_weights, cleanup, destination_up=False,
                                       processing={"trigger": "study", "study_quiet_seconds": 1})
    knees = _knees(tmp_path, 2, study_uid="1.2.826.0.1.3680043.8.498.777")
    assert storescu(node_port, knees).returncode == 0

    def failed_attempts_after_the_study() -> bool:
        db = _db(tmp_path)
        with db.session() as session:
            count = sum(d.attempts for d in session.scalars(select(Delivery)))
            done = all(j.state == "done" for j in session.scalars(select(Job)))
        db.dispose()
        return done and count >= 4

    wait_for(failed_attempts_after_the_study, 90,
             "the study processed and delivery attempts to the destination that is down")
    db = _db(tmp_path)
    with db.session() as session:
        jobs = list(session.scalars(select(Job)))
        assert [(j.kind, j.state) for j in jobs] == [("process_study", "done")], "one job for the study"
        assert {d.state for d in session.scalars(select(Delivery))} == {"pending"}
    db.dispose()
    destination.start()
    wait_for(lambda: len(destination.files()) >= 4, 60, "all four results after the destination came back")
    grouped = results_by_source(destination.datasets())
    assert set(grouped) == {radiograph_dataset_uid(p) for p in knees}
    assert all(len(v["sr"]) == 1 and len(v["sc"]) == 1 for v in grouped.values())


def test_sigkill_mid_work_loses_nothing_and_duplicates_nothing(tmp_path, tiny_weights, tools, cleanup):
    node, destination, node_port = _start(tmp_path, tiny_weights, cleanup)
    knees = _knees(tmp_path, 6)
    sent = storescu(node_port, knees)
    assert sent.returncode == 0, sent.stderr  # every instance acknowledged: the node owns them now

    def mid_inference_after_a_first_result() -> bool:
        db = _db(tmp_path)
        with db.session() as session:
            states = {i.state for i in session.scalars(select(Instance))}
            running = session.scalars(select(Job).join(Instance, Instance.id == Job.instance_id).where(
                Job.state == "running", Instance.state == "queued")).first() is not None
        db.dispose()
        return running and "processed" in states

    wait_for(mid_inference_after_a_first_result, 90, "a job running after another finished", interval=0.01)
    node.kill()
    interrupted = [i.state for i in _instances(tmp_path).values()]
    assert interrupted.count("queued") >= 1, interrupted

    node = NodeProcess(node.config_path).start()
    cleanup.append(node)
    assert "job(s) left running by the previous run" in node.log()
    expected = {radiograph_dataset_uid(p) for p in knees}

    def all_delivered() -> bool:
        grouped = results_by_source(destination.datasets())
        return set(grouped) == expected and all(v["sr"] and v["sc"] for v in grouped.values())

    def delivery_states() -> set[str]:
        db = _db(tmp_path)
        with db.session() as session:
            states = {d.state for d in session.scalars(select(Delivery))}
        db.dispose()
        return states

    wait_for(all_delivered, 120, "every acknowledged instance's results")
    wait_for(lambda: delivery_states() == {"delivered"}, 30, "the deliveries to be recorded")
    grouped = results_by_source(destination.datasets())
    assert all(len(v["sr"]) == 1 and len(v["sc"]) == 1 for v in grouped.values()), grouped
    assert node.stop() == 0


def test_two_workers_share_the_queue_on_postgresql(tmp_path, tiny_weights, tools, cleanup, pg_url):
    node, destination, node_port = _start(tmp_path, tiny_weights, cleanup, database={"url": pg_url},
                                          processing={"workers": 2})
    knees = _knees(tmp_path, 4)
    assert storescu(node_port, knees).returncode == 0
    expected = {radiograph_dataset_uid(p) for p in knees}
    def complete() -> bool:
        grouped = results_by_source(destination.datasets())
        return set(grouped) == expected and all(v["sr"] and v["sc"] for v in grouped.values())

    wait_for(complete, 120, "an SR and an SC for all four images")
    db = Database(pg_url, create=False)
    with db.session() as session:
        wait_for(lambda: {j.state for j in session.scalars(select(Job))} == {"done"}, 30, "all jobs done")
        claimants = {j.claimed_by for j in session.scalars(select(Job))}
    db.dispose()
    assert len(claimants) == 2, f"both workers took jobs: {claimants}"
    grouped = results_by_source(destination.datasets())
    assert all(len(v["sr"]) == 1 and len(v["sc"]) == 1 for v in grouped.values())
    assert node.stop() == 0


def test_a_worker_that_dies_is_replaced_and_its_job_redone(tmp_path, tiny_weights, tools, cleanup):
    node, destination, node_port = _start(tmp_path, tiny_weights, cleanup)
    worker_pid = int(node.log().split("worker ")[1].split()[0].rsplit(":", 1)[1])
    knees = _knees(tmp_path, 2)
    assert storescu(node_port, knees).returncode == 0

    def running() -> bool:
        db = _db(tmp_path)
        with db.session() as session:
            found = session.scalars(select(Job).where(Job.state == "running")).first() is not None
        db.dispose()
        return found

    wait_for(running, 60, "a running job", interval=0.01)
    os.kill(worker_pid, signal.SIGKILL)
    expected = {radiograph_dataset_uid(p) for p in knees}
    wait_for(lambda: set(results_by_source(destination.datasets())) == expected, 120, "both results")
    assert f"worker-0 (pid {worker_pid}) died" in node.log()
    db = _db(tmp_path)
    with db.session() as session:
        assert max(j.attempts for j in session.scalars(select(Job))) == 2, "the interrupted job ran again"
    db.dispose()
    assert node.stop() == 0


def test_children_stop_when_the_main_process_dies(tmp_path, tiny_weights, cleanup):
    config = node_config(tmp_path, free_port(), free_port(), tiny_weights)
    node = NodeProcess(config).start()
    cleanup.append(node)
    children = [pid for pid in node.pids() if pid != node.process.pid]
    assert len(children) >= 2, "a receiver and a worker"
    os.kill(node.process.pid, signal.SIGKILL)
    node.process.wait(10)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(lambda: all(gone(pid) for pid in children), 30, "the orphaned receiver and worker to exit")
    node = NodeProcess(config).start()  # the port is free again
    cleanup.append(node)
    assert node.stop() == 0
