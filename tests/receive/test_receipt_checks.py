"""Hostile objects refused at receipt, each with its status, over one real association (pynetdicom sends the
files' bytes as they are, so malformed datasets reach the node unaltered): bad UIDs of every kind in every UID
attribute, absurd image sizes, a deflate bomb, broken Pixel Data encapsulation, an instance that changes study.
Nothing refused is left in the spool, and the node accepts a valid image after all of them.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, generate_uid
from pynetdicom import AE, _config
from receive_helpers import NODE_AE, SENDER_AE, partial_files, stored_files
from receive_samples import SOP_CLASS_BY_MODALITY, compressed, image_dataset

from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.dispatch.responses import keep_responses

DX = SOP_CLASS_BY_MODALITY["DX"]
LIMITS = {"max_image_pixels": 4_000_000, "max_image_bytes": 6_000_000, "max_dataset_bytes": 8 * 1024 * 1024}

BAD_UIDS = {
    "missing": None, "empty": "", "spaces": "   ", "CR/LF": "1.2.3\r\n4", "LF at the end": "1.2.3\n",
    "letters": "1.2.abc", "empty component": "1..2", "leading dot": ".1.2", "trailing dot": "1.2.",
    "inner space": "1.2.3 4", "65 characters": "1." + "2" * 63, "path": "../../etc/passwd", "slash": "1.2/3",
    "backslash (two values)": "1.2\\3.4", "NUL inside": "1.2\x003", "escape sequence": "1.2\x1b[2J",
}
UID_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _part10(path: Path, body: bytes, sop_instance: str, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """A Part 10 file whose file meta is valid (what the C-STORE request carries) around ``body``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DX, sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    path.write_bytes(b"\x00" * 128 + b"DICM" + fp.getvalue() + body)
    return path


def _image(**attributes) -> Dataset:
    ds = image_dataset("DX", rows=16, columns=16)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def _bad_uid_case(keyword: str, value: str | None, path: Path) -> Path:
    """The request carries valid UIDs; the dataset's ``keyword`` is ``value`` byte for byte (pydicom would
    strip a trailing CR/LF or spaces, so a same-length placeholder is swapped in the encoded bytes)."""
    ds = _image()
    request_uid = ds.SOPInstanceUID
    if not value:
        if value is None:
            delattr(ds, keyword)
        else:
            ds[keyword].value = value
        return _part10(path, _encode(ds), request_uid)
    placeholder = ("9" * len(value)) if len(value) < 3 else "1." + "9" * (len(value) - 2)
    ds[keyword].value = placeholder
    body = _encode(ds)
    assert body.count(placeholder.encode()) == 1
    return _part10(path, body.replace(placeholder.encode(), value.encode("latin-1")), request_uid)


def _encapsulated(path: Path, cut: int = 0, tail: bytes = b"") -> Path:
    ds = compressed(_image(), RLELossless)
    body = _encode(ds)
    return _part10(path, body[:len(body) - cut] + tail, ds.SOPInstanceUID, RLELossless)


def _deflated(path: Path, ds: Dataset, raw: bytes | None = None) -> Path:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = raw if raw is not None else deflater.compress(_encode(ds)) + deflater.flush()
    return _part10(path, body, ds.SOPInstanceUID, DeflatedExplicitVRLittleEndian)


def _huge_native(rows: int, columns: int, frames: str | None = None, **extra) -> Dataset:
    ds = _image(Rows=rows, Columns=columns, **extra)
    if frames is not None:
        ds.NumberOfFrames = frames if frames.lstrip("-").isdigit() else "9999"
        ds.frames_as_written = frames  # patched into the encoded bytes: pydicom will not hold "abc" in an IS
    return ds


def _encode_size_case(ds: Dataset) -> bytes:
    body = _encode(ds)
    written = getattr(ds, "frames_as_written", None)
    if written is not None and not written.lstrip("-").isdigit():
        element = b"\x28\x00\x08\x00IS\x04\x00"
        body = body.replace(element + b"9999", element + written.encode().ljust(4))
    return body


SIZE_CASES = {
    "rows x columns over the pixel limit": _huge_native(4096, 4096),
    "frames over the pixel limit": _huge_native(512, 512, "100"),
    "decoded bytes over the byte limit": _huge_native(1500, 1500, SamplesPerPixel=3, BitsAllocated=16),
    "NumberOfFrames not a number": _huge_native(16, 16, "abc"),
    "NumberOfFrames negative": _huge_native(16, 16, "-1"),
    "NumberOfFrames zero": _huge_native(16, 16, "0"),
    "Rows zero": _huge_native(0, 16),
    "Rows missing": _image(Rows=None),
    "Columns missing": _image(Columns=None),
}


def _cases(tmp_path: Path) -> list[tuple[str, Path, int]]:
    cases = []
    for keyword in UID_KEYWORDS:
        for name, value in BAD_UIDS.items():
            path = _bad_uid_case(keyword, value, tmp_path / f"uid-{keyword}-{len(cases)}.dcm")
            cases.append((f"{keyword} {name}", path, 0xC001))
    for name, ds in SIZE_CASES.items():
        cases.append((name, _part10(tmp_path / f"size-{len(cases)}.dcm", _encode_size_case(ds), ds.SOPInstanceUID),
                      0xC003))
    bomb = _image(Rows=4096, Columns=4096, BitsAllocated=8, BitsStored=8, HighBit=7)
    bomb.PixelData = bytes(4096 * 4096)  # 16 MiB of zeros: deflates to ~16 KiB, inflates past the 8 MiB limit
    cases.append(("deflate bomb", _deflated(tmp_path / "bomb.dcm", bomb), 0xC004))
    cases.append(("deflate garbage", _deflated(tmp_path / "garbage.dcm", _image(), raw=b"\xff" * 4096), 0xC004))
    cases += [
        ("encapsulated without sequence delimiter", _encapsulated(tmp_path / "nodelim.dcm", cut=8), 0xC005),
        ("encapsulated item past the end", _encapsulated(tmp_path / "past.dcm", cut=40), 0xC005),
        ("encapsulated item with a wrong tag", _encapsulated(tmp_path / "tag.dcm", cut=8,
                                                              tail=b"\x08\x00\x10\x00\x00\x00\x00\x00"), 0xC005),
    ]
    truncated = _image()
    body = _encode(truncated)
    cases.append(("native Pixel Data truncated", _part10(tmp_path / "trunc.dcm", body[:-100],
                                                         truncated.SOPInstanceUID), 0xC005))
    no_pixels = _image(PixelData=None)
    cases.append(("no Pixel Data", _part10(tmp_path / "nopix.dcm", _encode(no_pixels), no_pixels.SOPInstanceUID),
                  0xC002))
    mismatch = _image()
    cases.append(("SOP Instance UID differs from the request",
                  _part10(tmp_path / "mismatch.dcm", _encode(mismatch), generate_uid()), 0xA900))
    cases.append(("unknown VR XX", _part10(tmp_path / "vrxx.dcm", b"\x08\x00\x05\x00XX\x04\x00abcd",
                                            generate_uid()), 0xC000))
    return cases


@pytest.fixture(autouse=True)
def raw_files(monkeypatch):
    """pynetdicom sends each file's dataset bytes as they are (it would otherwise decode and re-encode)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def _send(port: int, files: list[Path]) -> list[int | None]:
    ae = AE(ae_title=SENDER_AE)
    for syntax in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless):
        ae.add_requested_context(DX, syntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=NODE_AE))
    assert assoc.is_established
    statuses = []
    try:
        for path in files:
            response = assoc.send_c_store(path)
            statuses.append(int(response.Status) if "Status" in response else None)
    finally:
        assoc.release()
    return statuses


def test_hostile_objects_are_refused_at_receipt_with_their_status(start_receiver, tmp_path):
    receiver, recorder = start_receiver(limits=LIMITS)
    cases = _cases(tmp_path)
    valid = image_dataset("DX")
    valid_path = _part10(tmp_path / "valid.dcm", _encode(valid), valid.SOPInstanceUID)
    statuses = _send(receiver.port, [path for _, path, _ in cases] + [valid_path])
    got = {name: status for (name, _, _), status in zip(cases, statuses, strict=False)}
    expected = {name: status for name, _, status in cases}
    assert got == expected
    assert statuses[-1] == 0x0000, "a valid image after all of them is stored"
    assert [call.sop_instance_uid for call in recorder.calls] == [valid.SOPInstanceUID]
    assert len(stored_files(receiver)) == 1 and partial_files(receiver) == []
    print(f"{len(cases)} hostile objects refused with their status")


def test_the_same_instance_in_another_study_is_refused_and_leaves_nothing(tmp_path, start_receiver):
    db = Database(f"sqlite:///{tmp_path / 'node.sqlite'}")
    receiver, _ = start_receiver()
    receiver._store._on_stored = lambda stored: record_instance(db, stored, "instance", 3)
    first = image_dataset("DX")
    moved = image_dataset("DX")
    moved.SOPInstanceUID = first.SOPInstanceUID  # same instance UID, another study
    paths = [_part10(tmp_path / f"{n}.dcm", _encode(ds), ds.SOPInstanceUID) for n, ds in (("a", first),
                                                                                           ("b", moved))]
    assert _send(receiver.port, paths) == [0x0000, 0xC006]
    files = stored_files(receiver)
    assert [f.parent.name for f in files] == [first.StudyInstanceUID], "no orphan file in the second study"
    assert not (receiver._spool.instances_dir / moved.StudyInstanceUID).exists()
    from sqlalchemy import select

    from dicomnode.db.models import Instance, Study

    with db.session() as session:
        (row,) = session.scalars(select(Instance)).all()
        assert (row.study_instance_uid, row.path) == (first.StudyInstanceUID, str(files[0]))
        assert [s.study_instance_uid for s in session.scalars(select(Study))] == [first.StudyInstanceUID]
    db.dispose()


@pytest.mark.parametrize("keyword", UID_KEYWORDS)
def test_valid_uids_with_leading_zeros_are_tolerated(start_receiver, tmp_path, keyword):
    receiver, recorder = start_receiver()
    ds = _image()
    if keyword != "SOPClassUID":
        ds[keyword].value = "1.2.840.0113654.2.70.1." + keyword.__len__().__str__()
    path = _part10(tmp_path / "zeros.dcm", _encode(ds), ds.SOPInstanceUID)
    assert _send(receiver.port, [path]) == [0x0000]
