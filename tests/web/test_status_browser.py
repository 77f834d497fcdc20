"""The status page and /metrics of a real ``dicomnode serve``, looked at in headless Chromium: dcmtk's storescu
sends a synthetic knee (and a few things the node refuses or skips), the page shows the job, a dead delivery's
Requeue button gets it delivered to dcmtk's storescp, and /metrics, read with prometheus-client's parser,
counts what the test did. Then /readyz of a node below its disk reserve whose model stops loading."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dicomnode.db import Database
from dicomnode.db.models import Delivery, Job
from dicomnode.receive.spool import free_space_mb
from tests.browser import browser, page  # noqa: F401 - fixtures
from tests.conftest import free_port
from tests.node.nodehelpers import radiograph_dataset, synthetic_knee, write
from tests.node.nodeproc import NodeProcess, StoreSCP, make_tiny_weights, node_config, storescu, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "status-page-test-token-0123456789"
HOSTILE_BODY_PART = "<B ID=PWNED>"  # CS, 12 characters: markup if any page quoted it (skip reasons never do)


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _deliveries(workdir: Path) -> dict[int, str]:
    db = Database(f"sqlite:///{workdir / 'node.sqlite'}", create=False)
    try:
        with db.session() as session:
            return {d.id: d.state for d in session.scalars(select(Delivery))}
    finally:
        db.dispose()


def _jobs_finished(workdir: Path, count: int) -> bool:
    db = Database(f"sqlite:///{workdir / 'node.sqlite'}", create=False)
    try:
        with db.session() as session:
            states = [j.state for j in session.scalars(select(Job))]
    finally:
        db.dispose()
    return len(states) == count and all(state == "done" for state in states)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _sent_images(workdir: Path) -> tuple[Path, Path, Path]:
    knee = write(synthetic_knee(300, laterality="L"), workdir / "send" / "knee.dcm")
    with pytest.warns(UserWarning, match="Invalid value for VR CS"):  # hostile on purpose
        chest = radiograph_dataset(body_part=HOSTILE_BODY_PART, description="CHEST PA")
    chest = write(chest, workdir / "send" / "chest.dcm")
    no_pixels = radiograph_dataset()
    del no_pixels.PixelData
    return knee, chest, write(no_pixels, workdir / "send" / "no-pixels.dcm")


def test_page_shows_the_job_just_sent_and_requeues_a_dead_delivery(tmp_path, shipped_weights, dcmtk, page):  # noqa: F811
    http_port, node_port, dest_port = free_port(), free_port(), free_port()
    destination = StoreSCP(tmp_path / "received", dest_port)  # down: the results' deliveries die
    node = NodeProcess(node_config(tmp_path, node_port, dest_port, shipped_weights,
                                   dispatch={"max_attempts": 1, "retry_base_seconds": 1, "retry_max_seconds": 1},
                                   http={"port": http_port, "token": TOKEN}))
    try:
        node.start()
        knee, chest, no_pixels = _sent_images(tmp_path)
        assert storescu(node_port, [knee, chest]).returncode == 0
        storescu(node_port, [no_pixels])  # refused: 0xC002, not an image
        storescu(node_port, [knee], calling_ae="STRANGER")  # association rejected
        wait_for(lambda: _jobs_finished(tmp_path, 1), 120, "the knee processed (the chest skipped at receipt: no job)")
        wait_for(lambda: (states := _deliveries(tmp_path)) and set(states.values()) == {"dead"} and states, 60,
                 "the SR and SC deliveries to die (destination down, one attempt)")
        knee_uid = str(pydicom.dcmread(knee, stop_before_pixels=True).SOPInstanceUID)

        base = f"http://127.0.0.1:{http_port}"
        page.goto(base + "/")
        assert page.url == base + "/login"
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == base + "/"
        job_row = page.locator("#jobs tr", has=page.locator(f'[data-sop-instance-uid="{knee_uid}"]'))
        assert job_row.get_attribute("data-state") == "done"
        assert re.search(r"(ok|low confidence): aTFA FNTS -?\d+\.\d°, FTS -?\d+\.\d° \(L\)",
                         job_row.locator(".result").inner_text())
        assert page.inner_text("#training-data-kind") == "SYNTHETIC"
        assert "Not for clinical use" in page.inner_text("#not-for-clinical-use")
        assert "SYNTH^KNEE" not in page.content() and "SYNTH-" not in page.content()  # no patient data
        skipped = page.locator("#skipped tr", has=page.locator("td.reason", has_text="is not KNEE"))
        assert skipped.locator("td.reason").inner_text() == "BodyPartExamined is not KNEE"  # the value is not quoted
        assert page.locator("#jobs td.reason", has_text="is not KNEE").count() == 0, "the chest never had a job"
        assert page.locator("#PWNED").count() == 0, "a value from the network became markup"

        dead = page.locator('#deliveries tr[data-state="dead"]')
        assert dead.count() == 2
        destination.start()
        wait_for(lambda: _accepts(dest_port), 30, "storescp to listen")
        peer = page.locator('#peers tr[data-peer="modality"]')
        with page.expect_navigation():
            peer.get_by_role("button", name="C-ECHO").click()
        assert peer.locator("td.echo").inner_text().startswith("success in")

        requeued = int(dead.first.get_attribute("id").removeprefix("delivery-"))
        with page.expect_navigation():
            dead.first.get_by_role("button", name="Requeue").click()
        assert f"delivery {requeued} queued again" in page.inner_text("#actions")
        wait_for(lambda: _deliveries(tmp_path)[requeued] == "delivered", 60, "the requeued delivery to arrive")
        page.reload()
        assert page.locator(f"#delivery-{requeued}").count() == 0
        assert page.locator('#deliveries tr[data-state="dead"]').count() == 1
        assert len(destination.files()) == 1

        status, text = _get(base + "/metrics")
        assert status == 401
        status, text = _get(base + "/metrics", TOKEN)
        assert status == 200
        metrics = _samples(text)
        assert metrics[("kneealign_instances_received_total", (("peer", "modality"),))] == 2
        assert metrics[("kneealign_instances_refused_total", (("reason", "not_an_image"),))] == 1
        assert metrics[("kneealign_instances_refused_total", (("reason", "out_of_resources"),))] == 0  # there at 0
        assert metrics[("kneealign_associations_rejected_total", (("reason", "calling_ae_not_recognised"),))] == 1
        assert metrics[("kneealign_jobs_finished_total", (("outcome", "done"),))] == 1  # the chest had no job
        assert metrics[("kneealign_results_total", (("status", "skipped"),))] == 1
        assert sum(v for (name, labels), v in metrics.items() if name == "kneealign_results_total") == 2
        assert metrics[("kneealign_processing_seconds_count", ())] == 1  # one job processed
        assert metrics[("kneealign_delivery_attempts_total", (("outcome", "dead"), ("peer", "modality")))] == 2
        assert metrics[("kneealign_delivery_attempts_total", (("outcome", "delivered"), ("peer", "modality")))] == 1
        assert metrics[("kneealign_end_to_end_seconds_count", ())] == 1
        assert metrics[("kneealign_end_to_end_seconds_sum", ())] > 0
        assert metrics[("kneealign_deliveries", (("state", "dead"),))] == 1
        assert metrics[("kneealign_deliveries", (("state", "delivered"),))] == 1
        assert metrics[("kneealign_jobs", (("state", "done"),))] == 1
        assert metrics[("kneealign_queue_depth", ())] == 0 and metrics[("kneealign_workers_ready", ())] == 1
        assert node.stop() == 0
    finally:
        node.kill()
        destination.stop()


def _worker_pid(node: NodeProcess) -> int:
    found = re.findall(r"worker-0 dicomnode\.runtime\.worker: worker \S+:(\d+) ready", node.log())
    assert found, node.log()
    return int(found[-1])


def test_readyz_unready_below_the_disk_reserve_and_when_the_model_cannot_load(tmp_path, page):  # noqa: F811
    weights = make_tiny_weights(tmp_path / "weights" / "tiny.safetensors")
    reserve = int(free_space_mb(tmp_path)) + 100_000
    http_port = free_port()
    node = NodeProcess(node_config(tmp_path, free_port(), free_port(), weights, http={"port": http_port},
                                   storage={"dir": "spool", "min_free_mb": reserve}))
    readyz = f"http://127.0.0.1:{http_port}/readyz"
    try:
        node.start()
        status, text = _get(readyz)
        checks = {name: check["ok"] for name, check in json.loads(text)["checks"].items()}
        assert status == 503 and checks == {"node": True, "receiver": True, "model": True, "database": True,
                                            "disk": False}

        weights.write_bytes(b"not a safetensors file")
        os.kill(_worker_pid(node), signal.SIGKILL)
        wait_for(lambda: "cannot load the model" in node.log(), 60, "the restarted worker to fail loading the model")
        status, text = _get(readyz)
        model = json.loads(text)["checks"]["model"]
        assert status == 503 and not model["ok"] and "none of 1 worker(s) has the model" in model["detail"]
        assert _get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200

        page.goto(f"http://127.0.0.1:{http_port}/")
        assert page.inner_text("#readiness") == "Not ready"
        assert page.inner_text("#check-model td:nth-child(2)") == "NOT OK"
        assert page.inner_text("#check-disk td:nth-child(2)") == "NOT OK"
    finally:
        node.stop()
