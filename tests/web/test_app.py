"""The web side in this process with the real HTTP server (uvicorn), a real configuration and a real database:
probes, metrics against the database, the Host check, the token, forged POSTs, escaping, patient data."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dicomnode.config import load_config
from dicomnode.db import Database
from dicomnode.db.models import Delivery, Job
from dicomnode.receive.spool import free_space_mb
from dicomnode.web.app import create_app
from dicomnode.web.control import ProcessState
from dicomnode.web.server import HttpServer
from tests.conftest import free_port
from tests.node.nodeproc import node_config
from tests.web.webhelpers import HOSTILE_ERROR, HOSTILE_STATUS, FakeNode, call, csrf_of, populate

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def serve(tmp_path):
    """``serve(**sections)`` -> (node, port, populated): a populated database and the app on a free port."""
    servers: list[HttpServer] = []
    databases: list[Database] = []

    def start(db_url: str | None = None, patient: tuple[str, str] = ("Doe^Jane", "PID42"), **sections):
        sections.setdefault("storage", {"dir": "spool", "min_free_mb": 1})
        config = load_config(node_config(tmp_path, free_port(), free_port(), None, **sections), env={})
        db = Database(config.database.url)
        databases.append(db)
        populated = populate(db, tmp_path, *patient)
        if db_url is not None:
            db = Database(db_url, create=False)
            databases.append(db)
        node = FakeNode(config, db)
        server = HttpServer(create_app(node), "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return node, server.port, populated

    yield start
    for server in servers:
        server.stop()
    for db in databases:
        db.dispose()


def _metrics(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_healthy_node_is_alive_and_ready_and_its_page_lists_jobs_and_deliveries(serve):
    node, port, populated = serve()
    assert call(port, "GET", "/healthz").status == 200
    ready = call(port, "GET", "/readyz")
    assert ready.status == 200, ready.text
    assert {name for name, check in json.loads(ready.text)["checks"].items() if check["ok"]} == {
        "node", "receiver", "model", "database", "disk"}
    page = call(port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert populated.done_uid in page.text
    assert f'id="job-{populated.dead_job_id}" data-state="dead"' in page.text
    assert f'id="delivery-{populated.dead_delivery_id}" data-state="dead"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_metrics_report_the_database_and_the_disk(serve, tmp_path):
    _, port, _ = serve()
    reply = call(port, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain; version=")
    values = _metrics(reply.text)
    assert values[("kneealign_jobs", (("state", "dead"),))] == 1
    assert values[("kneealign_jobs", (("state", "done"),))] == 2
    assert values[("kneealign_queue_depth", ())] == 0
    assert values[("kneealign_deliveries", (("state", "dead"),))] == 1
    assert values[("kneealign_deliveries", (("state", "delivered"),))] == 1
    assert values[("kneealign_instances", (("state", "failed"),))] == 1
    assert values[("kneealign_ready", ())] == 1 and values[("kneealign_database_up", ())] == 1
    free = free_space_mb(tmp_path) * 1024 * 1024
    assert values[("kneealign_disk_reserve_bytes", ())] == 1024 * 1024
    assert abs(values[("kneealign_disk_free_bytes", ())] - free) < 0.05 * free
    info = next(labels for (name, labels) in values if name == "kneealign_info")
    assert dict(info)["model"] == "kneealign" and dict(info)["training_data_kind"] == "SYNTHETIC"


def test_readyz_turns_unready_below_the_disk_reserve(serve, tmp_path):
    reserve = int(free_space_mb(tmp_path)) + 100_000
    _, port, _ = serve(storage={"dir": "spool", "min_free_mb": reserve})
    ready = call(port, "GET", "/readyz")
    assert ready.status == 503
    checks = json.loads(ready.text)["checks"]
    assert not checks["disk"]["ok"] and "below the reserve" in checks["disk"]["detail"]
    assert all(check["ok"] for name, check in checks.items() if name != "disk")
    values = _metrics(call(port, "GET", "/metrics").text)
    assert values[("kneealign_ready", ())] == 0 and values[("kneealign_disk_headroom_bytes", ())] < 0
    assert "Below the reserve" in call(port, "GET", "/").text


def test_readyz_turns_unready_when_the_database_does_not_answer(serve):
    _, port, _ = serve(db_url=f"postgresql+psycopg://kneealign@127.0.0.1:{free_port()}/kneealign")
    ready = call(port, "GET", "/readyz")
    assert ready.status == 503
    assert json.loads(ready.text)["checks"]["database"] == {"ok": False, "detail": "unreachable (OperationalError)"}
    assert _metrics(call(port, "GET", "/metrics").text)[("kneealign_database_up", ())] == 0
    page = call(port, "GET", "/")
    assert page.status == 200 and "The database does not answer." in page.text


def test_readyz_turns_unready_when_no_worker_has_the_model(serve):
    node, port, _ = serve()
    node.processes = [ProcessState("worker-0", None, False, False, restarts=3), ProcessState("receiver", 9, True, True)]
    ready = call(port, "GET", "/readyz")
    assert ready.status == 503
    model = json.loads(ready.text)["checks"]["model"]
    assert not model["ok"] and "none of 1 worker(s) has the model" in model["detail"]
    node.stopping = True
    assert call(port, "GET", "/healthz").status == 503


def test_values_from_the_network_are_escaped(serve):
    _, port, _ = serve()
    page = call(port, "GET", "/").text
    assert "&lt;script&gt;document.title=&#39;pwned-job&#39;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned-delivery&#39;&#34;&gt;" in page
    assert HOSTILE_ERROR not in page and HOSTILE_STATUS not in page


def test_no_patient_data_by_default(serve):
    _, port, _ = serve()
    page = call(port, "GET", "/").text
    assert "Doe" not in page and "PID42" not in page


def test_patient_data_shown_escaped_when_the_option_allows_it(serve):
    _, port, _ = serve(patient=("Doe^<b>Jane</b>", "PID42"), http={"show_patient_data": True, "port": free_port()})
    page = call(port, "GET", "/").text
    assert page.count("Doe^&lt;b&gt;Jane&lt;/b&gt; PID42") == 3 and "<b>Jane" not in page


def test_host_header_must_name_loopback_on_a_loopback_bind(serve):
    _, port, _ = serve()
    assert call(port, "GET", "/", {"Host": "rebound.example:8080"}).status == 400
    assert call(port, "GET", "/healthz", {"Host": "rebound.example"}).status == 400
    assert call(port, "GET", "/", {"Host": f"localhost:{port}"}).status == 200
    assert call(port, "GET", "/", {"Host": f"[::1]:{port}"}).status == 200


def test_the_token_guards_everything_but_the_probes(serve):
    _, port, _ = serve(http={"token": TOKEN, "port": free_port()})
    page = call(port, "GET", "/")
    assert page.status == 303 and page.headers["location"] == "/login"
    assert call(port, "GET", "/metrics").status == 401
    assert call(port, "GET", "/metrics", {"Authorization": "Bearer wrong-token-but-long-enough"}).status == 401
    assert call(port, "GET", "/metrics", {"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert call(port, "GET", "/healthz").status == 200 and call(port, "GET", "/readyz").status == 200
    assert call(port, "POST", "/deliveries/requeue-dead", form={}).status == 401

    origin = {"Origin": f"http://127.0.0.1:{port}"}
    login = call(port, "GET", "/login")
    wrong = call(port, "POST", "/login", origin, {"csrf": csrf_of(login.text), "token": "not-the-token-at-all"})
    assert wrong.status == 401 and "Wrong token." in wrong.text and "set-cookie" not in wrong.headers
    right = call(port, "POST", "/login", origin, {"csrf": csrf_of(login.text), "token": TOKEN})
    assert right.status == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    assert call(port, "GET", "/", session).status == 200
    assert call(port, "GET", "/metrics", session).status == 200


def _delivery_state(node: FakeNode, delivery_id: int) -> str:
    with node.db.session() as session:
        return session.get(Delivery, delivery_id).state


def test_posts_need_this_origin_and_the_page_s_form_token(serve):
    node, port, populated = serve()
    action = f"/deliveries/{populated.dead_delivery_id}/requeue"
    own = f"http://127.0.0.1:{port}"
    csrf = csrf_of(call(port, "GET", "/").text)
    assert call(port, "POST", action, {}, {"csrf": csrf}).status == 403  # no Origin, no Referer
    assert call(port, "POST", action, {"Origin": "http://evil.example"}, {"csrf": csrf}).status == 403
    assert call(port, "POST", action, {"Origin": "null"}, {"csrf": csrf}).status == 403
    assert call(port, "POST", action, {"Origin": own}, {}).status == 403
    assert call(port, "POST", action, {"Origin": own}, {"csrf": "0" * 64}).status == 403
    assert _delivery_state(node, populated.dead_delivery_id) == "dead" and node.dispatched == 0

    done = call(port, "POST", action, {"Origin": own}, {"csrf": csrf})
    assert done.status == 303 and done.headers["location"] == "/"
    assert _delivery_state(node, populated.dead_delivery_id) == "pending" and node.dispatched == 1
    assert call(port, "POST", action, {"Origin": own}, {"csrf": csrf}).status == 409

    job = f"/jobs/{populated.dead_job_id}/requeue"
    assert call(port, "POST", job, {"Referer": f"{own}/"}, {"csrf": csrf}).status == 303  # Referer without Origin
    with node.db.session() as session:
        assert session.get(Job, populated.dead_job_id).state == "queued"
    assert node.woken == 1
    assert call(port, "POST", "/jobs/99999/requeue", {"Origin": own}, {"csrf": csrf}).status == 404
    assert f"delivery {populated.dead_delivery_id} queued again" in call(port, "GET", "/").text
    with node.db.session() as session:
        assert {d.state for d in session.scalars(select(Delivery))} == {"delivered", "pending"}


def test_behind_a_reverse_proxy_its_public_origin_is_accepted(serve):
    proxy = "https://kneealign.example.org"
    node, port, populated = serve(http={"public_origin": proxy + "/", "port": free_port()})
    via_proxy = {"Host": "kneealign.example.org"}
    page = call(port, "GET", "/", via_proxy)
    assert page.status == 200
    action = f"/deliveries/{populated.dead_delivery_id}/requeue"
    assert call(port, "POST", action, {**via_proxy, "Origin": "https://elsewhere.example.org"},
                {"csrf": csrf_of(page.text)}).status == 403
    assert call(port, "POST", action, {**via_proxy, "Origin": proxy}, {"csrf": csrf_of(page.text)}).status == 303
    assert call(port, "GET", "/", {"Host": "other.example.org"}).status == 400
