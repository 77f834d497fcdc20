"""The node as an SCU: C-ECHO a configured peer, and C-STORE a batch of instances over one association.

Used by ``dicomnode echo PEER``, ``dicomnode send FILES --to PEER`` and the dispatcher. The node's own AE title is
the calling AE; timeouts and PDU size come from ``node``; a peer with ``tls: true`` is reached over DICOM TLS
(``dicomnode.tls``), its certificate checked against ``tls.ca_certificates`` and its host name; every response is
kept for the call waiting for it (``dicomnode.dispatch.responses``). Association-level failures (connection refused,
association rejected or aborted, timeouts) raise :class:`DeliveryError` with a short machine-readable ``reason``;
per-instance failures (a failure status, no accepted presentation context) are returned as :class:`SendResult`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification
from pynetdicom.status import code_to_category

from dicomnode.ae import node_ae
from dicomnode.config import NodeConfig, PeerConfig
from dicomnode.dispatch.responses import keep_responses
from dicomnode.tls import client_tls_args

Item = str | Path | Dataset
MAX_PRESENTATION_CONTEXTS = 128  # PS3.8: odd context IDs 1..255
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class DeliveryError(Exception):
    """The association with ``peer`` could not be opened or was lost.

    ``reason`` is one of ``connection-failed``, ``association-rejected``, ``association-aborted``.
    ``results`` holds the per-instance results obtained before the failure (from :meth:`StoreSession.send_all`).
    """

    def __init__(self, peer: str, reason: str, detail: str, results: list[SendResult] | None = None) -> None:
        super().__init__(f"{peer}: {reason}: {detail}")
        self.peer = peer
        self.reason = reason
        self.detail = detail
        self.results = results or []


@dataclass(frozen=True)
class EchoResult:
    """Outcome of a C-ECHO: ``ok`` with the status, or not ok with the ``reason``."""

    peer: str
    ok: bool
    status: int | None
    elapsed_s: float
    reason: str | None = None


@dataclass(frozen=True)
class SendResult:
    """Outcome of one C-STORE: ``ok`` for Success or Warning statuses."""

    sop_instance_uid: str
    sop_class_uid: str
    status: int | None
    ok: bool
    source: Path | None = None
    error: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """An item to send with the UIDs and transfer syntax needed to propose and pick a presentation context."""

    payload: Path | Dataset = field(repr=False)
    sop_class: UID
    sop_instance: UID
    transfer_syntax: UID

    @property
    def source(self) -> Path | None:
        return self.payload if isinstance(self.payload, Path) else None


def outgoing(item: Item | Outgoing) -> Outgoing:
    """Describe ``item`` (a file's meta header is read once, here); a Dataset without a transfer syntax is sent as
    Explicit VR Little Endian. Raises OSError or InvalidDicomError for an unreadable file, ValueError for one
    without the UIDs to send it."""
    if isinstance(item, Outgoing):
        return item
    if isinstance(item, Dataset):
        dataset = item
        if "TransferSyntaxUID" not in getattr(item, "file_meta", FileMetaDataset()):
            dataset = copy.copy(item)  # do not touch the caller's dataset
            dataset.file_meta = FileMetaDataset()
            dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        missing = [kw for kw in ("SOPClassUID", "SOPInstanceUID") if kw not in dataset]
        if missing:
            raise ValueError(f"dataset lacks {', '.join(missing)}")
        return Outgoing(dataset, UID(dataset.SOPClassUID), UID(dataset.SOPInstanceUID),
                         UID(dataset.file_meta.TransferSyntaxUID))
    path = Path(item)
    meta = read_file_meta_info(path)
    missing = [kw for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
               if kw not in meta]
    if missing:
        raise ValueError(f"{path}: file meta lacks {', '.join(missing)}")
    return Outgoing(path, UID(meta.MediaStorageSOPClassUID), UID(meta.MediaStorageSOPInstanceUID),
                     UID(meta.TransferSyntaxUID))


def proposed_contexts(items: Iterable[Outgoing], compressed: bool = True) -> list[PresentationContext]:
    """Per SOP class: each non-default transfer syntax in its own context, plus one uncompressed context.

    Separate contexts let the peer accept the data as it is, or fall back to uncompressed: pynetdicom converts
    between Explicit and Implicit VR Little Endian and inflates deflated data; compressed pixel data is
    decompressed with pydicom's decoders when the peer accepted only uncompressed contexts for its class.
    With ``compressed`` False (a peer configured with ``compression: none``) only uncompressed contexts are
    proposed, so every compressed item is decompressed before sending.
    """
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for item in items:
        if item.transfer_syntax not in UNCOMPRESSED and (compressed or not item.transfer_syntax.is_compressed):
            wanted[(item.sop_class, (item.transfer_syntax,))] = None
        wanted[(item.sop_class, UNCOMPRESSED)] = None
    if len(wanted) > MAX_PRESENTATION_CONTEXTS:
        raise ValueError(f"the batch needs {len(wanted)} presentation contexts, more than "
                         f"{MAX_PRESENTATION_CONTEXTS}: send it in smaller batches")
    return [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in wanted]


def _associate(peer: PeerConfig, config: NodeConfig, contexts: list[PresentationContext]) -> Association:
    """Open an association with ``peer`` or raise :class:`DeliveryError` saying why not."""
    connected: list[bool] = []
    assoc = node_ae(config).associate(
        peer.host, peer.port, contexts=contexts, ae_title=peer.ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))],
        tls_args=client_tls_args(config.tls, peer),
    )
    if assoc.is_established:
        return keep_responses(assoc)
    where = f"{peer.ae_title}@{peer.host}:{peer.port}{' (TLS)' if peer.tls else ''}"
    if not connected:
        raise DeliveryError(peer.name, "connection-failed", f"cannot connect to {where}")
    if assoc.is_rejected:
        rejection = assoc.acceptor.primitive
        detail = (f"{where} rejected the association: {rejection.result_str}, {rejection.source_str}, "
                  f"{rejection.reason_str}") if rejection is not None else f"{where} rejected the association"
        raise DeliveryError(peer.name, "association-rejected", detail)
    raise DeliveryError(peer.name, "association-aborted",
                        f"{where} aborted or did not answer the association request")


def echo(peer: PeerConfig, config: NodeConfig) -> EchoResult:
    """C-ECHO ``peer`` from this node's AE title; never raises for network problems."""
    started = time.monotonic()
    try:
        assoc = _associate(peer, config, [build_context(Verification)])
    except DeliveryError as exc:
        return EchoResult(peer.name, False, None, time.monotonic() - started, f"{exc.reason}: {exc.detail}")
    try:
        response = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    elapsed = time.monotonic() - started
    if "Status" not in response:
        return EchoResult(peer.name, False, None, elapsed, "association-aborted: no C-ECHO response")
    status = int(response.Status)
    reason = None if status == 0x0000 else f"C-ECHO status 0x{status:04X}"
    return EchoResult(peer.name, status == 0x0000, status, elapsed, reason)


class StoreSession:
    """One association to ``peer`` for a batch of instances (files or datasets).

    The association proposes exactly the SOP classes and transfer syntaxes of ``items``; use it as a context
    manager, then :meth:`send` each item (or :meth:`send_all`).
    """

    def __init__(self, peer: PeerConfig, config: NodeConfig, items: Iterable[Item | Outgoing]) -> None:
        self.peer = peer
        self._config = config
        self._items = [outgoing(item) for item in items]
        self._contexts = proposed_contexts(self._items, compressed=peer.compression != "none")
        self._assoc: Association | None = None
        self._message_id = 0

    def __enter__(self) -> StoreSession:
        self._assoc = _associate(self.peer, self._config, self._contexts)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is not None and assoc.is_established:
            assoc.release()

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

    def send(self, item: Item | Outgoing) -> SendResult:
        """C-STORE one item; :class:`DeliveryError` if the association is (or gets) lost."""
        prepared = outgoing(item)
        assoc = self._assoc
        if assoc is None or not assoc.is_established:
            raise DeliveryError(self.peer.name, "association-aborted", "the association is not open")
        uids = {"sop_instance_uid": str(prepared.sop_instance), "sop_class_uid": str(prepared.sop_class),
                "source": prepared.source}
        payload: Path | Dataset | None = prepared.payload
        if prepared.transfer_syntax.is_compressed and not self._accepted(prepared.sop_class,
                                                                         (prepared.transfer_syntax,)):
            payload = self._decompressed(prepared)
            if payload is None:
                return SendResult(status=None, ok=False, **uids, error=(
                    f"peer accepted neither {prepared.transfer_syntax.name} nor an uncompressed transfer syntax "
                    f"for {prepared.sop_class.name}, or the pixel data could not be decompressed"))
        try:
            response = assoc.send_c_store(payload, msg_id=self._next_message_id())
        except ValueError as exc:  # no accepted presentation context, or the dataset cannot be encoded
            return SendResult(status=None, ok=False, error=str(exc), **uids)
        if "Status" not in response:
            raise DeliveryError(self.peer.name, "association-aborted",
                                f"no C-STORE response for {prepared.sop_instance} (aborted or timed out)")
        status = int(response.Status)
        ok = code_to_category(status) in ("Success", "Warning")
        comment = response.get("ErrorComment")
        error = None if ok else f"status 0x{status:04X}" + (f": {comment}" if comment else "")
        return SendResult(status=status, ok=ok, error=error, **uids)

    def _accepted(self, sop_class: UID, transfer_syntaxes: tuple[UID, ...]) -> bool:
        """True if the peer accepted ``sop_class`` in one of ``transfer_syntaxes``."""
        return self._assoc is not None and any(
            cx.abstract_syntax == sop_class and cx.transfer_syntax[0] in transfer_syntaxes
            for cx in self._assoc.accepted_contexts)

    def _decompressed(self, item: Outgoing) -> Dataset | None:
        """A decompressed copy of a compressed item, if the peer accepted uncompressed data for its class.

        None when no uncompressed context was accepted or no decoder can read the pixel data.
        """
        if not self._accepted(item.sop_class, UNCOMPRESSED):
            return None
        dataset = dcmread(item.payload) if isinstance(item.payload, Path) else copy.deepcopy(item.payload)
        try:
            dataset.decompress(generate_instance_uid=False)  # the same instance, only re-encoded
        except Exception:  # noqa: BLE001 - no decoder plugin for this transfer syntax, or corrupt pixel data
            return None
        return dataset

    def send_all(self) -> list[SendResult]:
        """Send every item given at construction, in order; ``DeliveryError.results`` holds those done."""
        results: list[SendResult] = []
        for item in self._items:
            try:
                results.append(self.send(item))
            except DeliveryError as exc:
                exc.results = results
                raise
        return results
