"""The C-STORE handler: check, write durably, hand over to the pipeline, and answer with the right status.

It does the minimum in pynetdicom's association thread: read the header and the structure of the Pixel Data
(``dicomnode.receive.checks``; no pixel decoding), write the encoded bytes as received, call ``on_stored``. The
statuses a sending peer can get back, and what each means for it, are listed in ``dicomnode.receive.statuses``.
Each instance stored or refused is logged (UIDs only) and, with an audit trail, audited.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS
from dicomnode.config import LimitsSection
from dicomnode.db.intake import StudyConflict
from dicomnode.receive.access import AccessControl
from dicomnode.receive.checks import check_image_size, check_pixel_data, check_uid, read_header
from dicomnode.receive.instance import OnStored, StoredInstance, filter_attributes
from dicomnode.receive.spool import Spool, SpoolWrite, is_safe_uid
from dicomnode.receive.statuses import (
    CANNOT_UNDERSTAND,
    CANNOT_UNDERSTAND_BAD_UID,
    CANNOT_UNDERSTAND_INTERNAL,
    CANNOT_UNDERSTAND_NOT_AN_IMAGE,
    CANNOT_UNDERSTAND_OTHER_STUDY,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SUCCESS as STATUS_SUCCESS,
    Refused,
)
from dicomnode.receive.transport import connection_of
from dicomnode.safetext import escape
from dicomnode.web import events

LOG = logging.getLogger(__name__)

_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]  # LO: at most 64 characters
    return status


@dataclass(frozen=True)
class _Header:
    sop_instance: str
    sop_class: str
    study: str
    series: str
    attributes: dict[str, str | None]


def _examine(request: C_STORE, transfer_syntax: UID, limits: LimitsSection) -> _Header:
    """Read and check the received header; ``Refused`` with the status to answer if it is not acceptable."""
    try:
        header, stream = read_header(request.DataSet, transfer_syntax, limits)
        sop_instance = check_uid(header, "SOPInstanceUID")
        sop_class = check_uid(header, "SOPClassUID")
        if sop_class != str(request.AffectedSOPClassUID) or sop_instance != str(request.AffectedSOPInstanceUID):
            raise Refused(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Class/Instance UID differ from the request")
        study = check_uid(header, "StudyInstanceUID")
        series = check_uid(header, "SeriesInstanceUID")
        if not (is_safe_uid(study) and is_safe_uid(sop_instance)):
            raise Refused(CANNOT_UNDERSTAND_BAD_UID, "UID not usable as a file name")
        if not check_pixel_data(stream, transfer_syntax):
            raise Refused(CANNOT_UNDERSTAND_NOT_AN_IMAGE, "not an image (no Pixel Data)")
        check_image_size(header, limits)
        return _Header(sop_instance, sop_class, study, series, filter_attributes(header))
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds of errors on garbage
        raise Refused(CANNOT_UNDERSTAND, "dataset cannot be parsed") from exc


class StoreHandler:
    """``EVT_C_STORE`` handler bound by the :class:`~dicomnode.receive.server.Receiver`; thread-safe."""

    def __init__(self, spool: Spool, access: AccessControl, on_stored: OnStored, limits: LimitsSection,
                 audit: AuditTrail | None = None) -> None:
        self._spool = spool
        self._access = access
        self._on_stored = on_stored
        self._limits = limits
        self._audit = audit

    def __call__(self, event: Event) -> Dataset:
        request = event.request
        sop_instance = escape(request.AffectedSOPInstanceUID or "", 64)
        try:
            header = self._store(event)
        except Refused as refusal:
            LOG.warning("C-STORE of %s refused with 0x%04X: %s", sop_instance, refusal.status, refusal)
            events.instance_refused(refusal.status)
            self._report(event, MINOR_FAILURE, None, f"0x{refusal.status:04X} {refusal}")
            return _status(refusal.status, str(refusal))
        except Exception as exc:  # noqa: BLE001 - never let an unexpected error become a Success
            LOG.exception("C-STORE of %s failed unexpectedly", sop_instance)
            events.instance_refused(CANNOT_UNDERSTAND_INTERNAL)
            self._report(event, SERIOUS_FAILURE, None,
                         f"0x{CANNOT_UNDERSTAND_INTERNAL:04X} internal error: {type(exc).__name__}")
            return _status(CANNOT_UNDERSTAND_INTERNAL, "internal error while storing")
        self._report(event, SUCCESS, header, None)
        return _status(STATUS_SUCCESS)

    def _report(self, event: Event, outcome: str, header: _Header | None, reason: str | None) -> None:
        conn = connection_of(event.assoc)
        if conn is not None and header is not None:
            conn.instances += 1
        if self._audit is None:
            return
        request = event.request
        self._audit.record(
            "instance-received" if outcome == SUCCESS else "instance-refused", outcome,
            source=conn.source if conn else None, calling_ae=event.assoc.requestor.ae_title,
            called_ae=event.assoc.acceptor.ae_title, peer=conn.peer if conn else None,
            study_instance_uid=header.study if header else None,
            sop_instance_uid=header.sop_instance if header else str(request.AffectedSOPInstanceUID or ""),
            sop_class_uid=header.sop_class if header else str(request.AffectedSOPClassUID or ""), reason=reason)

    def _store(self, event: Event) -> _Header:
        request = event.request
        transfer_syntax = UID(str(event.context.transfer_syntax))
        if not self._spool.has_room(request.DataSet.getbuffer().nbytes):
            raise Refused(OUT_OF_RESOURCES, "storage below the free-space reserve")
        header = _examine(request, transfer_syntax, self._limits)
        encoded = event.encoded_dataset()  # preamble + file meta + dataset exactly as received
        written = self._write(encoded, header.study, header.sop_instance)
        del encoded

        assoc = event.assoc
        peer = self._access.peer_of(assoc)
        instance = StoredInstance(
            path=written.path,
            sop_instance_uid=header.sop_instance,
            sop_class_uid=header.sop_class,
            study_instance_uid=header.study,
            series_instance_uid=header.series,
            calling_ae=assoc.requestor.ae_title.strip(),
            peer_name=peer.name if peer else "",
            transfer_syntax=str(event.context.transfer_syntax),
            size_bytes=written.size_bytes,
            received_at=datetime.now(UTC),
            **header.attributes,
        )
        try:
            self._on_stored(instance)
        except StudyConflict as exc:
            self._spool.discard(written)
            raise Refused(CANNOT_UNDERSTAND_OTHER_STUDY, "SOP Instance UID already received in another "
                                                         "study") from exc
        except Exception as exc:  # noqa: BLE001 - the pipeline could not queue it: do not acknowledge
            LOG.exception("could not queue %s; removing the new file", header.sop_instance)
            self._spool.discard(written)
            raise Refused(PROCESSING_FAILURE, "could not queue the instance") from exc
        LOG.info("stored %s of study %s from %s (%d bytes, %s)%s", header.sop_instance, header.study,
                 instance.peer_name, written.size_bytes, instance.transfer_syntax,
                 " replacing an earlier copy" if written.replaced else "")
        return header

    def _write(self, encoded: bytes, study: str, sop_instance: str) -> SpoolWrite:
        try:
            return self._spool.write(encoded, study, sop_instance)
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise Refused(OUT_OF_RESOURCES, "no space left while writing") from exc
            raise
