"""The C-STORE handler: check, write durably, hand over to the pipeline, and answer with the right status.

It does the minimum in pynetdicom's association thread: parse the header (no pixel decoding), write the encoded
bytes as received, call ``on_stored``. What a sending peer gets back:

* ``0x0000`` Success: the file is fsynced, renamed into ``instances/<study>/<sop>.dcm``, its directory fsynced, and
  ``on_stored`` returned (the instance is queued). Also for a re-sent SOP Instance UID (the file is replaced
  atomically; the pipeline de-duplicates).
* ``0xA700`` Out of resources: free space under ``storage.dir`` would drop below ``storage.min_free_mb`` (checked
  before writing), or the write failed with ENOSPC/EDQUOT. Nothing stored; the peer should retry later.
* ``0xA900`` Data set does not match SOP class: the dataset's SOP Class or SOP Instance UID differs from the
  request's Affected SOP Class/Instance UID. Nothing stored.
* ``0xC000`` Cannot understand: the dataset cannot be parsed. Nothing stored, nothing queued.
* ``0xC001`` Cannot understand: SOP Instance UID or Study Instance UID missing or unusable. Nothing stored.
* ``0xC002`` Cannot understand: not an image (no Pixel Data), e.g. an SR sent to us. Nothing stored.
* ``0xC211`` Cannot understand (internal): an unexpected error while writing; the partial file was removed.
* ``0x0110`` Processing failure: the instance was written but could not be queued (``on_stored`` raised); the new
  file was removed again (an earlier acknowledged copy is kept) so the peer's retry starts clean.

Failure responses carry an Error Comment (0000,0902) saying why.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dicomnode.receive.access import AccessControl
from dicomnode.receive.instance import OnStored, StoredInstance, filter_attributes, has_pixel_data, parse_header
from dicomnode.receive.spool import Spool, SpoolWrite, is_safe_uid
from dicomnode.web import events

LOG = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
CANNOT_UNDERSTAND_MISSING_UID = 0xC001
CANNOT_UNDERSTAND_NOT_AN_IMAGE = 0xC002
CANNOT_UNDERSTAND_INTERNAL = 0xC211
PROCESSING_FAILURE = 0x0110

_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class Refused(Exception):
    """A C-STORE refused with ``status``; the message becomes the response's Error Comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]  # LO: at most 64 characters
    return status


def _text(dataset: Dataset, keyword: str) -> str:
    return str(dataset.get(keyword, "") or "").strip()


def _required_uid(dataset: Dataset, keyword: str) -> str:
    value = _text(dataset, keyword)
    if not value or not is_safe_uid(value):
        raise Refused(CANNOT_UNDERSTAND_MISSING_UID, f"{keyword} missing or invalid")
    return value


@dataclass(frozen=True)
class _Header:
    sop_instance: str
    sop_class: str
    study: str
    series: str
    attributes: dict[str, str | None]


def _examine(encoded: bytes, request: C_STORE) -> _Header:
    """Parse and check the received header; ``Refused`` with the status to answer if it is not acceptable."""
    try:
        dataset = parse_header(encoded)
        sop_instance = _required_uid(dataset, "SOPInstanceUID")
        sop_class = _text(dataset, "SOPClassUID")
        if sop_class != str(request.AffectedSOPClassUID) or sop_instance != str(request.AffectedSOPInstanceUID):
            raise Refused(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Class/Instance UID differ from the request")
        study = _required_uid(dataset, "StudyInstanceUID")
        if not has_pixel_data(dataset):
            raise Refused(CANNOT_UNDERSTAND_NOT_AN_IMAGE, "not an image (no Pixel Data)")
        return _Header(sop_instance, sop_class, study, _text(dataset, "SeriesInstanceUID"),
                       filter_attributes(dataset))
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds of errors on garbage
        raise Refused(CANNOT_UNDERSTAND, "dataset cannot be parsed") from exc


class StoreHandler:
    """``EVT_C_STORE`` handler bound by the :class:`~dicomnode.receive.server.Receiver`; thread-safe."""

    def __init__(self, spool: Spool, access: AccessControl, on_stored: OnStored) -> None:
        self._spool = spool
        self._access = access
        self._on_stored = on_stored

    def __call__(self, event: Event) -> Dataset:
        request = event.request
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        try:
            self._store(event)
        except Refused as refusal:
            LOG.warning("C-STORE of %s refused with 0x%04X: %s", sop_instance, refusal.status, refusal)
            events.instance_refused(refusal.status)
            return _status(refusal.status, str(refusal))
        except Exception:  # noqa: BLE001 - never let an unexpected error become a Success
            LOG.exception("C-STORE of %s failed unexpectedly", sop_instance)
            events.instance_refused(CANNOT_UNDERSTAND_INTERNAL)
            return _status(CANNOT_UNDERSTAND_INTERNAL, "internal error while storing")
        return _status(SUCCESS)

    def _store(self, event: Event) -> None:
        encoded = event.encoded_dataset()  # preamble + file meta + dataset exactly as received
        if not self._spool.has_room(len(encoded)):
            raise Refused(OUT_OF_RESOURCES, "storage below the free-space reserve")
        header = _examine(encoded, event.request)
        written = self._write(encoded, header.study, header.sop_instance)

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
        except Exception as exc:  # noqa: BLE001 - the pipeline could not queue it: do not acknowledge
            LOG.exception("could not queue %s; removing the new file", header.sop_instance)
            self._spool.discard(written)
            raise Refused(PROCESSING_FAILURE, "could not queue the instance") from exc
        LOG.debug("stored %s (%d bytes, %s)%s", header.sop_instance, written.size_bytes, instance.transfer_syntax,
                  " replacing an earlier copy" if written.replaced else "")

    def _write(self, encoded: bytes, study: str, sop_instance: str) -> SpoolWrite:
        try:
            return self._spool.write(encoded, study, sop_instance)
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise Refused(OUT_OF_RESOURCES, "no space left while writing") from exc
            raise
