"""Audit events as RFC 5424 syslog messages carrying a DICOM audit message (PS3.15 A.5), over UDP or TCP.

No well-kept Python library does either part (the RFC 5424 handlers on PyPI are unmaintained and none writes
DICOM audit messages), so this is a small encoder:

* ``audit_message_xml`` builds the ``AuditMessage`` XML: Event Identification (Event ID, Event Type Code,
  action, outcome, the curated reason as Event Outcome Description), the remote node and this node as Active
  Participants (AE title, network address, source/destination role), the Audit Source (this host) and, for
  instance events, the study as Participant Object with its SOP class and instance. The patient participant
  object is left out on purpose: the trail carries UIDs, never patient data.
* ``syslog_frame`` wraps it as ``<PRI>1 TIMESTAMP HOST APP PROCID DICOM+RFC3881 - BOM XML`` (facility 10,
  security/authorization; severity notice for success, warning otherwise).
* ``SyslogSender`` sends one message per UDP datagram (RFC 5426), or on one TCP connection with octet-counting
  framing (RFC 6587), reconnecting after a failure. Sending never raises; failures are counted and logged.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from dicomnode.audit.events import EVENTS, OUTCOMES, SUCCESS, AuditRecord, Code

LOG = logging.getLogger(__name__)
FACILITY_AUTHPRIV = 10
SEVERITY_NOTICE, SEVERITY_WARNING = 5, 4
MSGID = "DICOM+RFC3881"
BOM = b"\xef\xbb\xbf"
SEND_TIMEOUT_S = 2.0

SOURCE_ROLE = Code("110153", "Source Role ID")
DESTINATION_ROLE = Code("110152", "Destination Role ID")
APPLICATION_ROLE = Code("110150", "Application")
STUDY_UID_TYPE = Code("110180", "Study Instance UID")


def _coded(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.scheme,
                                "originalText": code.meaning})


def _timestamp(at: datetime) -> str:
    return at.replace(tzinfo=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _remote_ip(source: str | None) -> str | None:
    if not source:
        return None
    host, _, _port = source.rpartition(":")
    return host.strip("[]") or source


def audit_message_xml(record: AuditRecord, *, node_ae: str, host: str, site: str | None = None) -> bytes:
    """The DICOM audit message (PS3.15 A.5.1) for ``record``, UTF-8 encoded."""
    kind = EVENTS[record.event]
    message = ET.Element("AuditMessage")
    event = ET.SubElement(message, "EventIdentification", {
        "EventActionCode": kind.action, "EventDateTime": _timestamp(record.at),
        "EventOutcomeIndicator": str(OUTCOMES[record.outcome])})
    _coded(event, "EventID", kind.event_id)
    if kind.event_type is not None:
        _coded(event, "EventTypeCode", kind.event_type)
    description = record.reason or (f"{record.event} x{record.count}" if record.count > 1 else None)
    if description:
        ET.SubElement(event, "EventOutcomeDescription").text = description

    remote_ip = _remote_ip(record.source)
    remote_ae = record.calling_ae if kind.remote_is_requestor else record.called_ae
    if remote_ip or remote_ae:
        remote = ET.SubElement(message, "ActiveParticipant", {
            "UserID": remote_ae or remote_ip or "",
            "UserIsRequestor": "true" if kind.remote_is_requestor else "false",
            **({"AlternativeUserID": f"AETITLES={remote_ae}"} if remote_ae else {}),
            **({"NetworkAccessPointID": remote_ip, "NetworkAccessPointTypeCode": "2"} if remote_ip else {})})
        _coded(remote, "RoleIDCode", SOURCE_ROLE if kind.remote_is_requestor else DESTINATION_ROLE)
    local = ET.SubElement(message, "ActiveParticipant", {
        "UserID": node_ae, "AlternativeUserID": f"AETITLES={node_ae};PID={os.getpid()}",
        "UserIsRequestor": "false" if kind.remote_is_requestor else "true",
        "NetworkAccessPointID": host, "NetworkAccessPointTypeCode": "1"})
    role = APPLICATION_ROLE if remote_ip is None and not remote_ae else (
        DESTINATION_ROLE if kind.remote_is_requestor else SOURCE_ROLE)
    _coded(local, "RoleIDCode", role)

    source = ET.SubElement(message, "AuditSourceIdentification",
                           {"AuditSourceID": host, **({"AuditEnterpriseSiteID": site} if site else {})})
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4", "codeSystemName": "DCM",
                                                   "originalText": "Application Server Process"})

    if record.study_instance_uid:
        study = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": record.study_instance_uid, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _coded(study, "ParticipantObjectIDTypeCode", STUDY_UID_TYPE)
        if record.sop_class_uid or record.sop_instance_uid:
            description_element = ET.SubElement(study, "ParticipantObjectDescription")
            sop_class = ET.SubElement(description_element, "SOPClass",
                                      {"UID": record.sop_class_uid or "", "NumberOfInstances": "1"})
            if record.sop_instance_uid:
                ET.SubElement(sop_class, "Instance", {"UID": record.sop_instance_uid})
    # One line: a syslog message must not carry a line break (collectors that write files split on them).
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(message, encoding="unicode").encode("utf-8")


def syslog_frame(record: AuditRecord, payload: bytes, *, host: str, app_name: str) -> bytes:
    """An RFC 5424 message around ``payload`` (no structured data; BOM before the UTF-8 message)."""
    severity = SEVERITY_NOTICE if record.outcome == SUCCESS else SEVERITY_WARNING
    header = (f"<{FACILITY_AUTHPRIV * 8 + severity}>1 {_timestamp(record.at)} {_header_field(host, 255)} "
              f"{_header_field(app_name, 48)} {os.getpid()} {MSGID} -")
    return header.encode("ascii") + b" " + BOM + payload


def _header_field(value: str, limit: int) -> str:
    text = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return text or "-"


class SyslogSender:
    """Sends audit messages to one collector; thread-safe, never raises."""

    def __init__(self, host: str, port: int, protocol: str, *, app_name: str, node_ae: str,
                 local_host: str, site: str | None = None) -> None:
        self.address = (host, port)
        self.protocol = protocol
        self.app_name = app_name
        self.node_ae = node_ae
        self.local_host = local_host
        self.site = site
        self.failures = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def encode(self, record: AuditRecord) -> bytes:
        payload = audit_message_xml(record, node_ae=self.node_ae, host=self.local_host, site=self.site)
        return syslog_frame(record, payload, host=self.local_host, app_name=self.app_name)

    def send(self, record: AuditRecord) -> bool:
        message = self.encode(record)
        with self._lock:
            try:
                if self.protocol == "udp":
                    with socket.socket(_family(self.address[0]), socket.SOCK_DGRAM) as udp:
                        udp.sendto(message, self.address)
                else:
                    self._connected().sendall(str(len(message)).encode("ascii") + b" " + message)
                return True
            except OSError as exc:
                self.failures += 1
                self._close()
                if self.failures == 1 or self.failures % 100 == 0:
                    LOG.warning("audit syslog to %s:%d (%s) failed (%d so far): %s", *self.address,
                                self.protocol, self.failures, type(exc).__name__)
                return False

    def _connected(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=SEND_TIMEOUT_S)
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]
    except OSError:
        return socket.AF_INET
