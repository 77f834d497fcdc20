"""The audit trail itself: records made safe, the table's retention, a full queue that says so, operators'
requeues, and the syslog mirror checked by a real RFC 5424 collector (rsyslog, on loopback, over UDP and TCP).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from dicomnode.audit import AuditRecord, AuditTrail
from dicomnode.audit.syslog import SyslogSender
from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.audit import list_events, purge_audit
from dicomnode.db.models import utcnow
from tests.conftest import REPO, free_port, require_tool


def test_records_are_escaped_capped_and_checked():
    record = AuditRecord.make("association-rejected", "minor-failure", calling_ae="EVIL\r\n2026 INFO x",
                              reason="line one\nline two\x1b[2J", source="127.0.0.1:5")
    assert record.calling_ae == "EVIL\\r\\n2026 ..." and len(record.calling_ae) == 16  # escaped, then cut
    assert record.reason == "line one\\nline two\\x1b[2J"
    with pytest.raises(ValueError):
        AuditRecord.make("made-up-event")
    with pytest.raises(ValueError):
        AuditRecord.make("node-start", "so-so")


def test_retention_removes_only_old_events(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    trail = AuditTrail(db, synchronous=True)
    trail.record("node-start")
    old = AuditRecord.make("node-stop", at=utcnow() - timedelta(days=400))
    trail._write([old])
    assert purge_audit(db, retention_days=365) == 1
    assert [e.event for e in list_events(db)] == ["node-start"]


class _StalledDatabase:
    """A database whose writes wait until ``release`` is set (a database slower than a flood)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.release = threading.Event()

    def retrying(self, work):
        self.release.wait(30)
        return self.db.retrying(work)

    def transaction(self):
        return self.db.transaction()


def test_a_full_queue_is_itself_recorded(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    stalled = _StalledDatabase(db)
    trail = AuditTrail(stalled, capacity=5)
    for _ in range(500):
        trail.record("connection-refused", "minor-failure", source="127.0.0.9:1")
    stalled.release.set()
    assert trail.flush()  # the batch after the stall carries the count of what was lost
    trail.close()
    events = list_events(db, limit=1000)
    lost = [e for e in events if e.reason and "audit queue full" in e.reason]
    assert lost and all(e.outcome == "major-failure" for e in lost)
    kept = [e for e in events if e.event == "connection-refused" and e not in lost]
    assert sum(e.count for e in lost) + len(kept) == 500, "every record is either kept or counted as lost"


def test_an_operators_requeue_is_audited(tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'a.sqlite'}"}}))
    Database(f"sqlite:///{tmp_path / 'a.sqlite'}").dispose()
    run = subprocess.run([sys.executable, "-m", "dicomnode", "deliveries", "retry", "--config", str(config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "0 dead" in run.stdout
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert list_events(db) == [], "nothing requeued, nothing to audit"
    from tests.node.nodehelpers import arrival
    from dicomnode.db.intake import record_instance
    from dicomnode.db.jobs import claim_job, fail_job

    record_instance(db, arrival(), "instance", 1)
    job = claim_job(db, "test:1")
    assert fail_job(db, job.id, "boom", 1.0) == "dead"
    run = subprocess.run([sys.executable, "-m", "dicomnode", "jobs", "retry", str(job.id), "--config",
                          str(config_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (event,) = list_events(db)
    assert (event.event, event.reference) == ("job-requeued", f"job {job.id}")
    assert "by operator" in event.reason


@pytest.fixture
def rsyslog(tmp_path: Path):
    """A real rsyslogd on loopback (UDP and TCP) writing each parsed RFC 5424 field to a file."""
    binary = require_tool("/usr/sbin/rsyslogd")
    udp, tcp = free_port(), free_port()
    out = tmp_path / "collected.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{tmp_path}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string"
         string="%pri%|%protocol-version%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
action(type="omfile" file="{out}" template="fields")
""")
    process = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "rsyslogd did not start listening"
            time.sleep(0.1)
    yield {"udp": udp, "tcp": tcp, "out": out}
    process.terminate()
    process.wait(10)


def _collected(out: Path, count: int) -> list[list[str]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        if len(lines) >= count:
            return [line.split("|", 7) for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"rsyslog collected {out.read_text() if out.exists() else 'nothing'}")


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_messages_parse_as_rfc5424_dicom_audit_messages(rsyslog, protocol, tmp_path):
    config = NodeConfig.model_validate({"audit": {"syslog": {"host": "127.0.0.1", "port": rsyslog[protocol],
                                                             "protocol": protocol, "app_name": "kneealign",
                                                             "enterprise_site_id": "RADIOLOGY"}}})
    trail = AuditTrail.for_config(config, Database(f"sqlite:///{tmp_path / 'a.sqlite'}"))
    trail.record("instance-received", source="127.0.0.1:40000", calling_ae="PACS", called_ae="KNEEALIGN",
                 peer="pacs", study_instance_uid="1.2.3", sop_instance_uid="1.2.3.4",
                 sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1")
    trail.record("association-rejected", "minor-failure", source="127.0.0.2:40001", calling_ae="EVIL\nAE",
                 reason="unknown calling AE title\r\nforged line")
    trail.record("node-start", details={"node": {"port": 11112}})
    trail.close()

    rows = _collected(rsyslog["out"], 3)
    assert len(rows) == 3, rows
    for pri, version, host, app, procid, msgid, structured, message in rows:
        assert version == "1" and app == "kneealign" and msgid == "DICOM+RFC3881" and structured == "-"
        assert host == socket.gethostname()[:255] and procid.isdigit()
        assert int(pri) in (10 * 8 + 5, 10 * 8 + 4)
        ET.fromstring(message.lstrip("\ufeff").encode("utf-8"))  # well-formed XML, one line
    received, rejected, started = (ET.fromstring(r[7].lstrip("\ufeff").encode()) for r in rows)
    assert received.find("EventIdentification/EventID").get("csd-code") == "110104"
    assert received.find("EventIdentification").get("EventActionCode") == "C"
    participants = received.findall("ActiveParticipant")
    assert [p.get("UserID") for p in participants] == ["PACS", "KNEEALIGN"]
    assert participants[0].get("NetworkAccessPointID") == "127.0.0.1"
    assert participants[0].find("RoleIDCode").get("csd-code") == "110153"
    study = received.find("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == "1.2.3"
    assert study.find("ParticipantObjectDescription/SOPClass/Instance").get("UID") == "1.2.3.4"
    assert received.find("AuditSourceIdentification").get("AuditEnterpriseSiteID") == "RADIOLOGY"
    assert rejected.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert rejected.find("EventIdentification/EventTypeCode").get("csd-code") == "110122"
    assert "\n" not in rejected.find("EventIdentification/EventOutcomeDescription").text
    assert rejected.find("ActiveParticipant").get("UserID") == "EVIL\\nAE"
    assert started.find("EventIdentification/EventTypeCode").get("csd-code") == "110120"


def test_syslog_sender_survives_a_dead_collector():
    sender = SyslogSender("127.0.0.1", free_port(), "tcp", app_name="kneealign", node_ae="KNEEALIGN",
                          local_host="node")
    assert sender.send(AuditRecord.make("node-start")) is False
    assert sender.failures == 1
