"""The receiver's audit trail, against real peers: what a security officer finds after a mixed session.

An accepted dcmtk storescu sending one good and one refused image, an echo from an unknown AE title, a stranger
over the unknown-source pool, and a half-open connection cut at its deadline: each leaves its record in the
``audit_events`` table, readable with ``dicomnode audit``, with UIDs and network identities only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml
from hostile_peers import STRANGER_IP, closed_by_node, connect, echo_seconds, held
from receive_helpers import NODE_AE, SENDER_AE, Recorder, node_config, run_storescu, store_statuses
from receive_samples import image_dataset, write_part10

from dicomnode.audit import AuditTrail
from dicomnode.db import Database
from dicomnode.db.audit import list_events
from dicomnode.receive import Receiver
from tests.conftest import REPO, free_port


def _wait_for_events(db: Database, predicate, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        events = list_events(db, limit=1000)
        if predicate(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_a_mixed_session_leaves_a_complete_trail(tmp_path, dcmtk):
    db_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    config = node_config(tmp_path / "spool", free_port(), node={"acse_timeout": 2},
                         limits={"unknown_source_connections": 1, "pdu_timeout": 2},
                         database={"url": db_url})
    db = Database(db_url)
    trail = AuditTrail.for_config(config, db)
    receiver = Receiver(config, Recorder(), trail)
    receiver.start()
    try:
        good = write_part10(image_dataset("DX"), tmp_path / "good.dcm")
        bad = image_dataset("DX")
        bad.SeriesInstanceUID = "1.2.3\r\n2026 INFO forged"
        bad_path = write_part10(bad, tmp_path / "bad.dcm")
        result = run_storescu(dcmtk, receiver.port, [good, bad_path])
        assert store_statuses(result) == [0x0000, 0xC001]
        stranger = subprocess.run([dcmtk["echoscu"], "-aet", "STRANGER", "-aec", NODE_AE, "127.0.0.1",
                                   str(receiver.port)], capture_output=True, timeout=30)
        assert stranger.returncode != 0
        with held([connect(receiver.port, STRANGER_IP), connect(receiver.port, STRANGER_IP)]) as (_, late):
            assert closed_by_node(late, 1.0)
            with held([connect(receiver.port)]) as (half_open,):
                half_open.sendall(b"\x01\x00")
                assert closed_by_node(half_open, 5)
        assert echo_seconds(receiver.port) is not None
    finally:
        receiver.stop(grace_seconds=1)
        trail.close()

    kinds = {"association-accepted", "association-ended", "instance-received", "instance-refused",
             "association-rejected", "connection-refused", "connection-closed"}
    events = _wait_for_events(db, lambda evs: kinds <= {e.event for e in evs})
    by_kind: dict[str, list] = {}
    for event in events:
        by_kind.setdefault(event.event, []).append(event)
    assert kinds <= set(by_kind), sorted(by_kind)

    received = by_kind["instance-received"][0]
    assert (received.calling_ae, received.called_ae, received.peer) == (SENDER_AE, NODE_AE, "sender")
    assert received.source.startswith("127.0.0.1:") and received.sop_instance_uid and received.study_instance_uid
    refused = by_kind["instance-refused"][0]
    assert refused.outcome == "minor-failure" and refused.reason.startswith("0xC001 SeriesInstanceUID")
    rejected = by_kind["association-rejected"][0]
    assert (rejected.calling_ae, rejected.reason) == ("STRANGER", "unknown calling AE title")
    assert any(STRANGER_IP in e.source and "unknown source" in e.reason for e in by_kind["connection-refused"])
    assert any("no complete PDU" in (e.reason or "") for e in by_kind["connection-closed"])
    ended = [e for e in by_kind["association-ended"] if "1 instance(s) stored" in e.reason]
    assert ended and ended[0].outcome == "success"
    for event in events:  # escaped and free of patient data
        for value in (event.reason, event.calling_ae, event.source, event.sop_instance_uid):
            assert value is None or ("\n" not in value and "\r" not in value)
        assert "RCV-0001" not in json.dumps([event.reason, event.details]) and "Receiver^Test" not in str(event.reason)

    # The same trail through the command line, filtered.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"database": {"url": db_url}}))
    run = subprocess.run([sys.executable, "-m", "dicomnode", "audit", "--config", str(tmp_path / "config.yaml"),
                          "--since", "1h", "--event", "association-rejected", "--event", "connection-refused",
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines and {line["event"] for line in lines} == {"association-rejected", "connection-refused"}
    run = subprocess.run([sys.executable, "-m", "dicomnode", "audit", "--config", str(tmp_path / "config.yaml"),
                          "--source", STRANGER_IP], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout and all(STRANGER_IP in line for line in run.stdout.splitlines())
    db.dispose()
