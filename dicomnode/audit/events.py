"""The audit vocabulary, defined once: each event kind, what it means, and how it maps onto a DICOM audit
message (PS3.15 A.5.3: Event ID, Event Type Code, Event Action Code); and the record the trail stores.

Outcomes follow the DICOM Event Outcome Indicator: success (0), minor failure (4), serious failure (8),
major failure (12).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dicomnode.db.models import utcnow
from dicomnode.safetext import escape


@dataclass(frozen=True)
class Code:
    """A coded value of the DICOM audit message (``csd-code``, ``codeSystemName``, ``originalText``)."""

    value: str
    meaning: str
    scheme: str = "DCM"


APPLICATION_ACTIVITY = Code("110100", "Application Activity")
INSTANCES_TRANSFERRED = Code("110104", "DICOM Instances Transferred")
SECURITY_ALERT = Code("110113", "Security Alert")
USER_AUTHENTICATION = Code("110114", "User Authentication")
APPLICATION_START = Code("110120", "Application Start")
APPLICATION_STOP = Code("110121", "Application Stop")
LOGIN = Code("110122", "Login")
LOGOUT = Code("110123", "Logout")
NODE_AUTHENTICATION = Code("110126", "Node Authentication")
RESTRICTED_FUNCTION = Code("110132", "Use of Restricted Function")


@dataclass(frozen=True)
class EventKind:
    """One kind of audit event."""

    name: str
    meaning: str
    event_id: Code
    event_type: Code | None
    action: str  # DICOM Event Action Code: C(reate), R(ead), U(pdate), D(elete), E(xecute)
    remote_is_requestor: bool = True  # the remote node started the activity (receiving side)


EVENTS: dict[str, EventKind] = {kind.name: kind for kind in (
    EventKind("node-start", "the node started; details hold the effective configuration",
              APPLICATION_ACTIVITY, APPLICATION_START, "E"),
    EventKind("node-stop", "the node stopped", APPLICATION_ACTIVITY, APPLICATION_STOP, "E"),
    EventKind("connection-refused", "a TCP connection closed at once by a connection limit (count = how many "
              "in the aggregation window)", SECURITY_ALERT, NODE_AUTHENTICATION, "E"),
    EventKind("connection-closed", "a connection closed before an association was accepted: TLS handshake "
              "failed, deadline passed, oversized or invalid PDU, or evicted for a configured peer",
              SECURITY_ALERT, NODE_AUTHENTICATION, "E"),
    EventKind("association-rejected", "an A-ASSOCIATE-RJ was sent (reason says why)",
              USER_AUTHENTICATION, LOGIN, "E"),
    EventKind("association-accepted", "an association was accepted", USER_AUTHENTICATION, LOGIN, "E"),
    EventKind("association-ended", "an accepted association ended (released, aborted, timed out)",
              USER_AUTHENTICATION, LOGOUT, "E"),
    EventKind("instance-received", "an instance was stored and acknowledged with Success",
              INSTANCES_TRANSFERRED, None, "C"),
    EventKind("instance-refused", "a C-STORE was answered with a failure status (reason says which and why)",
              INSTANCES_TRANSFERRED, None, "C"),
    EventKind("result-sent", "a result object was sent to a peer (or the attempt failed)",
              INSTANCES_TRANSFERRED, None, "R", remote_is_requestor=False),
    EventKind("job-requeued", "a job was queued again: by an operator (`jobs retry`) or after a crash",
              SECURITY_ALERT, RESTRICTED_FUNCTION, "E", remote_is_requestor=False),
    EventKind("job-taken-over", "a running job whose lease ran out (its node died or hung) went back to the queue "
              "for any node; reason names the node that held it", SECURITY_ALERT, RESTRICTED_FUNCTION, "E",
              remote_is_requestor=False),
    EventKind("delivery-requeued", "dead deliveries were queued again by an operator (`deliveries retry`)",
              SECURITY_ALERT, RESTRICTED_FUNCTION, "E", remote_is_requestor=False),
)}

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = "success", "minor-failure", "serious-failure", \
    "major-failure"
OUTCOMES: dict[str, int] = {SUCCESS: 0, MINOR_FAILURE: 4, SERIOUS_FAILURE: 8, MAJOR_FAILURE: 12}

# Field caps: AE titles are 16 characters, UIDs 64; anything longer came from a misbehaving peer.
_LIMITS = {"source": 64, "calling_ae": 16, "called_ae": 16, "peer": 64, "study_instance_uid": 64,
           "sop_instance_uid": 64, "sop_class_uid": 64, "reference": 64, "reason": 500}


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as stored: every text field escaped (no control characters) and capped."""

    event: str
    outcome: str = SUCCESS
    at: datetime = field(default_factory=utcnow)
    source: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    peer: str | None = None
    study_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    reference: str | None = None
    reason: str | None = None
    count: int = 1
    details: dict[str, Any] | None = None

    @classmethod
    def make(cls, event: str, outcome: str = SUCCESS, **fields: Any) -> AuditRecord:
        """A record with its text fields made safe; ``ValueError`` for an unknown event or outcome."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {outcome!r}")
        for key, limit in _LIMITS.items():
            value = fields.get(key)
            if value is not None:
                fields[key] = escape(value, limit).strip() or None
        return cls(event=event, outcome=outcome, **fields)
