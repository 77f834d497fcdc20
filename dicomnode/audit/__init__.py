"""The audit trail: what a security officer asks of a DICOM node.

Every association (accepted, rejected, refused by a limit, closed for a protocol violation), every instance
received or refused, every result sent, every requeue and every start and stop, kept in the ``audit_events``
table with a retention of its own (``audit.retention_days``), read with ``dicomnode audit``, and optionally
mirrored to a syslog collector as RFC 5424 messages carrying DICOM audit messages (PS3.15 A.5).
"""

from dicomnode.audit.events import EVENTS, OUTCOMES, AuditRecord
from dicomnode.audit.trail import AuditTrail

__all__ = ["EVENTS", "OUTCOMES", "AuditRecord", "AuditTrail"]
