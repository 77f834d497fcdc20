"""The hostile-input corpus: malformed and hostile DICOM files, generated from a table, each with the outcome the
node must give it. Shared by the CI test (``tests/hostile/test_hostile_inputs.py``, the cases marked ``ci``)
and the larger run (``tests/stress/hostile_run.py``, every case).

Outcomes (see :class:`Expect`):

- ``refused``: the C-STORE is answered with one of ``statuses`` and nothing is stored;
- ``processed``: acknowledged, then an SR and an SC are built (the image is ordinary, however odd it looks);
- ``skipped``: acknowledged, not a knee AP/PA DX/CR, stored as skipped with ``reason``;
- ``failed``: acknowledged, then the job dies after ONE attempt with a stored reason containing ``reason``
  (category ``permanent``), never retried;
- ``never``: refused at receipt, or failed once as above (for checks that may move to the receiver: bad UIDs,
  size bounds, deflate bombs).

Every case's files get fresh UIDs, so outcomes are found by SOP Instance UID.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from tests.hostile import builders as b
from tests.node.nodehelpers import CT_IMAGE_STORAGE, radiograph_dataset, set_raw, synthetic_knee

REFUSED, PROCESSED, SKIPPED, FAILED, NEVER = "refused", "processed", "skipped", "failed", "never"
# C-STORE statuses of dicomnode/receive/store.py
C_MISSING_UID, C_NOT_IMAGE, C_CANNOT_UNDERSTAND, A_MISMATCH = 0xC001, 0xC002, 0xC000, 0xA900
C_DIMENSIONS = 0xC003  # image size unreadable or over the limits (dicomnode/receive/checks.py), at receipt
# Hostile attributes whose image size cannot be read from the header (a dimension missing, not a positive
# integer, or bytes per pixel absurd): refused at receipt with 0xC003 rather than failed in the worker.
SIZE_UNREADABLE = frozenset({
    "NumberOfFrames-0", "NumberOfFrames-1", "NumberOfFrames-2", "NumberOfFrames-4", "NumberOfFrames-5",
    "Rows-0", "Columns-0", "BitsAllocated-0", "SamplesPerPixel-0", "SamplesPerPixel-2", "empty-Rows",
    "empty-Columns"})
MiB = 1024 * 1024


@dataclass(frozen=True)
class Expect:
    outcome: str
    reason: str = ""  # substring of the stored reason (failed, skipped, never)
    statuses: tuple[int, ...] = ()  # refused: the C-STORE statuses allowed


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    make: Callable[[], bytes]
    expect: Expect
    ci: bool = True
    tags: frozenset[str] = field(default_factory=frozenset)


# -- base images ---------------------------------------------------------------------------------------------
@functools.cache
def _knee_template() -> pydicom.Dataset:
    return synthetic_knee(24)  # every shaft level exposed: the shipped model measures it


@functools.cache
def _small_template() -> pydicom.Dataset:
    ds = radiograph_dataset()  # 256 x 200 noise with knee tags: the model gives it a low-confidence result
    ds["PixelData"].VR = "OW"  # explicit, so that writing never consults a (hostile) BitsAllocated
    return ds


def fresh(template: pydicom.Dataset) -> pydicom.Dataset:
    """A deep copy with new Study/Series/SOP Instance UIDs (and the file meta to match)."""
    ds = copy.deepcopy(template)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def knee() -> pydicom.Dataset:
    return fresh(_knee_template())


def small() -> pydicom.Dataset:
    return fresh(_small_template())


def as_cr(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.Modality, ds.SOPClassUID = "CR", ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    for keyword in ("PresentationIntentType", "DetectorType"):
        ds.pop(keyword, None)
    return ds


def raw(keyword: str | int, vr: str, value: bytes | str, base: Callable[[], pydicom.Dataset] = small):
    return lambda: b.encode(set_raw(base(), keyword, vr, value))


def edit(change: Callable[[pydicom.Dataset], object], base: Callable[[], pydicom.Dataset] = knee):
    def make() -> bytes:
        ds = base()
        change(ds)
        return b.encode(ds)
    return make


def spliced(raw_bytes: Callable[[], bytes], before: int = 0x00100000, base=small):
    return lambda: b.splice(b.encode(base()), raw_bytes(), before)


def _delete(*keywords: str):
    def change(ds):
        for keyword in keywords:
            ds.pop(keyword, None)
    return change


def _set(**values):
    def change(ds):
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    return change


def _compressed(syntax: str, base=knee):
    def make() -> bytes:
        ds = base()
        if syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
            ds.file_meta.TransferSyntaxUID = syntax
            if syntax == ExplicitVRBigEndian:
                ds.is_little_endian, ds.is_implicit_VR = False, False
            return b.encode(ds)
        ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax != JPEGLSLossless else "pyjpegls")
        return b.encode(ds)
    return make


# -- the table ----------------------------------------------------------------------------------------------
def _failed(reason: str) -> Expect:
    return Expect(FAILED, reason)


def cases() -> list[Case]:
    out: list[Case] = []

    def add(name: str, family: str, make, expect: Expect, ci: bool = True) -> None:
        out.append(Case(f"{family}/{name}", family, make, expect, ci))

    # Ordinary images of every shape the standard allows: each gets its SR and SC.
    def no_spacing(ds):
        ds.pop("ImagerPixelSpacing", None)
        ds.pop("PixelSpacing", None)

    def pixel_spacing_only(ds):
        ds.PixelSpacing = ds.ImagerPixelSpacing
        del ds.ImagerPixelSpacing

    def monochrome1(ds):
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.PixelData = (ds.pixel_array.max() - ds.pixel_array).astype(ds.pixel_array.dtype).tobytes()

    ordinary = [
        ("dx-imager-spacing", knee, False),
        ("cr-pixel-spacing-only", lambda: edit(pixel_spacing_only, lambda: as_cr(knee()))(), True),
        ("cr-no-spacing", lambda: edit(no_spacing, lambda: as_cr(knee()))(), True),
        ("cr-imager-spacing-only", lambda: b.encode(as_cr(knee())), False),
        ("dx-both-spacings", edit(lambda ds: setattr(ds, "PixelSpacing", ds.ImagerPixelSpacing)), False),
        ("dx-no-spacing", edit(no_spacing), False),
        ("dx-zero-spacing", edit(lambda ds: setattr(ds, "ImagerPixelSpacing", [0, 0])), False),
        ("cr-monochrome1", lambda: edit(monochrome1, lambda: as_cr(knee()))(), False),
        ("no-patient-orientation", edit(_delete("PatientOrientation")), True),
        ("empty-patient-orientation", edit(_set(PatientOrientation="")), False),
        ("no-type2-attributes", edit(_delete("AccessionNumber", "StudyID", "PatientBirthDate", "PatientSex",
                                             "ReferringPhysicianName", "StudyDate", "StudyTime")), False),
        ("no-view-position", edit(_delete("ViewPosition")), False),
        ("body-part-from-description", edit(lambda ds: (ds.pop("BodyPartExamined", None),
                                                         setattr(ds, "StudyDescription", "Knie links a.p."))), False),
        ("charset-empty", raw("SpecificCharacterSet", "CS", "", knee), False),
        ("charset-empty-first-value", raw("SpecificCharacterSet", "CS", "\\ISO 2022 IR 100", knee), False),
        ("charset-latin1", edit(_set(SpecificCharacterSet="ISO_IR 100")), False),
        ("charset-utf8", edit(_set(SpecificCharacterSet="ISO_IR 192", PatientName="Müller^Zoë")), False),
        ("charset-iso-ir-6", raw("SpecificCharacterSet", "CS", "ISO_IR 6", knee), False),
        ("malformed-birth-date", raw("PatientBirthDate", "DA", "1961-02-03", knee), False),
        ("malformed-study-time", raw("StudyTime", "TM", "25:99", knee), False),
        ("implicit-vr", _compressed(ImplicitVRLittleEndian), False),
        ("explicit-big-endian", _compressed(ExplicitVRBigEndian), False),
        ("deflated", _compressed(DeflatedExplicitVRLittleEndian), False),
        ("rle", _compressed(RLELossless), False),
        ("jpeg2000-lossless", _compressed(JPEG2000Lossless), False),
        ("jpeg-ls-lossless", _compressed(JPEGLSLossless), False),
        ("tiny-spacing", raw("ImagerPixelSpacing", "DS", "1e-6\\1e-6", knee), False),
        ("series-description-crlf", raw("SeriesDescription", "LO", "KNEE\r\nFORGED LINE", knee), False),
        ("long-private-text", raw(0x00091010, "UT", "x" * 60000, knee), False),
        ("private-creator-only", raw(0x00090010, "LO", "HOSTILE", knee), False),
    ]
    for name, make, ci in ordinary:
        add(name, "ordinary", make, Expect(PROCESSED), ci)
    # The shipped model finds a knee (with low confidence) even in noise: a result, flagged, not a failure.
    add("noise", "ordinary", small, Expect(PROCESSED), ci=False)

    # Images that are not for the node: stored and skipped with the reason, never failed.
    skipped = [
        ("ct", edit(_set(Modality="CT", SOPClassUID=CT_IMAGE_STORAGE), small), "Modality is not DX or CR"),
        ("chest", edit(_set(BodyPartExamined="CHEST"), small), "BodyPartExamined is not KNEE"),
        ("lateral", edit(_set(ViewPosition="LL"), small), "ViewPosition is not AP or PA"),
        ("view-crlf", raw("ViewPosition", "CS", "AP\r\nFORGED", small), "ViewPosition is not AP or PA"),
        ("body-part-crlf", raw("BodyPartExamined", "CS", "CHEST\r\nFORGED", small), "BodyPartExamined is not"),
        ("no-body-part", edit(lambda ds: (ds.pop("BodyPartExamined"), setattr(ds, "StudyDescription", "Thorax"),
                                          setattr(ds, "SeriesDescription", "Thorax")), small), "no BodyPartExamined"),
        ("modality-crlf", raw("Modality", "CS", "CT\r\nFORGED", lambda: _as_ct(small())), "Modality is not"),
        ("blank", edit(lambda ds: setattr(ds, "PixelData", bytes(len(ds.PixelData))), small), "image is blank"),
        ("rgb", edit(lambda ds: _rgb(ds), small), "not greyscale"),
        ("multi-frame", edit(lambda ds: _two_frames(ds), small), "multi-frame"),
        ("palette", raw("PhotometricInterpretation", "CS", "PALETTE COLOR", small), "not greyscale"),
    ]
    for name, make, reason in skipped:
        add(name, "skipped", make, Expect(SKIPPED, reason))

    # Absurd or unparseable attributes: failed once, with the attribute named, never retried.
    hostile_numbers = {
        "NumberOfFrames": ("IS", ["abc", "-1", "0", "2.5", "1\\2", "nan"]),
        "Rows": ("US", [b"\0\0"]),
        "Columns": ("US", [b"\0\0"]),
        "BitsAllocated": ("US", [b"\0\0", b"\x07\0", b"\x0c\0", b"\x18\0", b"\x80\0"]),
        "BitsStored": ("US", [b"\0\0", b"\x11\0", b"\xff\xff"]),
        "PixelRepresentation": ("US", [b"\x02\0", b"\xff\xff"]),
        "SamplesPerPixel": ("US", [b"\0\0", b"\x05\0", b"\xff\xff"]),
        "RescaleSlope": ("DS", ["abc", "0", "1e300", "nan", "inf", "1\\2", "-1e9"]),
        "RescaleIntercept": ("DS", ["abc", "1e300", "-inf", "1\\2"]),
        "WindowCenter": ("DS", ["abc", "nan", "inf", "\\".join(["100"] * 100_000), "\\".join(["1"] * 65)]),
        "WindowWidth": ("DS", ["abc", "0", "-5", "inf", "0.5", "\\".join(["100"] * 100_000)]),
        "VOILUTFunction": ("CS", ["CUBIC", "LINEAR\\SIGMOID", "LOG", "\x00\x01"]),
    }
    for keyword, (vr, values) in hostile_numbers.items():
        for n, value in enumerate(values):
            name = f"{keyword}-{n}"
            add(name, "attribute", raw(keyword, vr, value),
                Expect(REFUSED, statuses=(C_DIMENSIONS,)) if name in SIZE_UNREADABLE else _failed(keyword))
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        for n, value in enumerate(["1e300\\1e300", "-1\\-1", "nan\\nan", "inf\\inf", "abc\\def", "0.1",
                                   "0.1\\0.1\\0.1", "100\\100", "0.1\\1e300", "-0\\5e9"]):
            add(f"{keyword}-{n}", "spacing", raw(keyword, "DS", value), _failed(keyword))
    for n, value in enumerate(["ISO_IR 999", "UTF-8", "ISO 2022 IR 999", "ISO_IR 100\\GB18030\\BOGUS",
                               "ISO_IR 192\\ISO 2022 IR 100", "latin1", "\x1b$B", "ISO_IR 100\\ISO 2022 IR 126"]):
        add(f"charset-{n}", "charset", raw("SpecificCharacterSet", "CS", value), _failed("SpecificCharacterSet"))
    for keyword, vr, value in (("PatientName", "PN", "A^B\\C^D\\E"), ("PatientID", "LO", "X\\Y"),
                               ("PatientBirthDate", "DA", "19600101\\19610101"), ("PatientSex", "CS", "M\\F"),
                               ("ReferringPhysicianName", "PN", "A\\B"), ("AccessionNumber", "SH", "A\\B"),
                               ("StudyID", "SH", "1\\2"), ("StudyDate", "DA", "20200101\\20200102"),
                               ("StudyTime", "TM", "1200\\1300"), ("Modality", "CS", "DX\\CR"),
                               ("PhotometricInterpretation", "CS", "MONOCHROME2\\MONOCHROME1"),
                               ("SeriesNumber", "IS", "1\\2"), ("InstanceNumber", "IS", "1\\2")):
        add(f"multivalued-{keyword}", "multivalued", raw(keyword, vr, value), _failed(keyword))
    for n, (tag, vr) in enumerate(((0x00091010, "XX"), (0x00081010, "XX"), (0x00091011, "ZZ"),
                                   (0x00081030, "\0\0"), (0x00091012, "ab"), (0x00180015, "K?"))):
        # Refused at receipt when the receiver cannot parse past it; else failed once in the worker.
        add(f"unknown-vr-{n}", "vr", functools.partial(_hand_encoded, tag, vr.encode("latin-1"), b"abcd"),
            Expect(NEVER, "unknown value representation"))

    # Structure: nesting and size.
    # Nesting past pydicom's recursion limit is refused at receipt (the header cannot be parsed), or failed once.
    for depth in (17, 40, 400):
        add(f"nested-sq-{depth}", "structure", spliced(functools.partial(b.nested, depth, 64)),
            Expect(NEVER, "nested"), ci=depth != 40)
        add(f"nested-un-{depth}", "structure", spliced(functools.partial(b.nested, depth, 64, b"UN")),
            Expect(NEVER, "nested"), ci=depth != 40)
    add("nested-400-2mb", "structure", spliced(functools.partial(b.nested, 400, 5000)), Expect(NEVER, "nested"))
    add("many-elements", "structure", spliced(functools.partial(b.many_elements, 210_000)),
        _failed("more than 200000 elements"), ci=False)
    add("nested-16-ok", "structure", spliced(functools.partial(b.nested, 15, 16), base=knee), Expect(PROCESSED),
        ci=False)

    # Pixel data: undecodable, over the size bound, bombs.
    add("truncated-native", "pixels", edit(lambda ds: setattr(ds, "PixelData", ds.PixelData[:1000]), small),
        _failed("cannot decode pixel data"))
    add("empty-pixel-data", "pixels", raw("PixelData", "OW", b"", small), Expect(NEVER, "decode"))
    add("rle-panic", "pixels", lambda: b.rle_image(small(), 4, 4, b.rle_header([64, 68]) + b"\x81\x00\x81\x00" * 2),
        _failed("PanicException"))
    add("rle-bad-offsets", "pixels", lambda: b.rle_image(small(), 64, 64, b.rle_header([64, 10**9]) + bytes(100)),
        _failed("cannot decode pixel data"))
    add("rle-zero-segments", "pixels", lambda: b.rle_image(small(), 64, 64, b.rle_header([]) + bytes(16)),
        _failed("cannot decode pixel data"))
    add("rle-30000", "pixels", lambda: b.rle_image(small(), 30000, 30000, b.rle_header([64, 68]) + bytes(8)),
        Expect(NEVER, "decoded image would take"))
    add("rle-16384-flat", "pixels", lambda: b.rle_image(small(), 16384, 16384, b.rle_flat_frame(16384, 16384, 16)),
        Expect(NEVER, "decoded image would take"))
    add("native-16384-header", "pixels", edit(_set(Rows=16384, Columns=16384), small),
        Expect(NEVER, "decoded image would take"))
    for n, frames in enumerate(("1000000", "1e9", "99999999999")):
        add(f"frames-{n}", "pixels", raw("NumberOfFrames", "IS", frames), Expect(NEVER, "decoded image would take"))
    add("jpeg2000-garbage", "pixels", lambda: b.encapsulated(small(), [b"\xff\x4f\xff\x51" + bytes(200)],
                                                             JPEG2000Lossless), _failed("cannot decode pixel data"))
    add("jpeg-garbage", "pixels", lambda: b.encapsulated(small(), [b"\xff\xd8\xff\xdb" + bytes(200)],
                                                         JPEGBaseline8Bit), _failed("cannot decode pixel data"))
    add("jpeg-ls-garbage", "pixels", lambda: b.encapsulated(small(), [b"\xff\xd8\xff\xf7" + bytes(200)],
                                                            JPEGLSLossless), _failed("cannot decode pixel data"))
    add("deflate-bomb-200mb", "pixels", lambda: b.deflate_bomb(small(), 200 * MiB), Expect(NEVER, "inflate"))
    add("deflate-bomb-4gb", "pixels", lambda: b.deflate_bomb(small(), 4400 * MiB), Expect(NEVER, "inflate"),
        ci=False)

    # Refused at receipt: nothing stored.
    add("no-sop-instance-uid", "receipt", edit(_delete("SOPInstanceUID"), small), Expect(REFUSED, statuses=(
        C_MISSING_UID, A_MISMATCH, C_CANNOT_UNDERSTAND)))
    add("no-study-uid", "receipt", edit(_delete("StudyInstanceUID"), small), Expect(REFUSED, statuses=(C_MISSING_UID,)))
    for n, uid in enumerate(["../../etc/passwd", "1.2.3/4", "1.2.3\r\n4", "." * 10, "1" * 65, "1.2\x00.3"]):
        add(f"bad-study-uid-{n}", "receipt", raw("StudyInstanceUID", "UI", uid), Expect(REFUSED, statuses=(
            C_MISSING_UID,)))
    add("no-pixel-data", "receipt", edit(_delete("PixelData"), small), Expect(REFUSED, statuses=(C_NOT_IMAGE,)))
    add("sop-class-mismatch", "receipt", lambda: b.put(b.encode(small()), 0x0008, 0x0016, b"UI",
                                                       CT_IMAGE_STORAGE.encode() + b"\0"),
        Expect(REFUSED, statuses=(A_MISMATCH,)))
    add("sop-instance-mismatch", "receipt", lambda: b.put(b.encode(small()), 0x0008, 0x0018, b"UI",
                                                          generate_uid().encode()),
        Expect(REFUSED, statuses=(A_MISMATCH,)))
    add("garbage-dataset", "receipt", lambda: b.encode(small())[:300] + bytes(range(256)) * 4,
        Expect(REFUSED, statuses=(C_CANNOT_UNDERSTAND, C_MISSING_UID)))
    for n, uid in enumerate(["", "1.2.3\r\nFORGED", "1.2.3 4", "1" * 70, "1.2.3/../4"]):
        add(f"bad-series-uid-{n}", "uid", raw("SeriesInstanceUID", "UI", uid), Expect(NEVER, "SeriesInstanceUID"))
    add("no-series-uid", "uid", edit(_delete("SeriesInstanceUID"), small), Expect(NEVER, "SeriesInstanceUID"))

    # Truncated files: cut inside the dataset or the pixel data (refused at receipt or failed once).
    for n in range(1, 13):
        add(f"truncated-{n}", "truncated", functools.partial(_truncated, n / 13), Expect(NEVER, ""))
    # Lying lengths: an element whose length runs past the end, odd, or eats the next elements.
    for n, (tag, vr, length) in enumerate(((0x00080060, b"CS", 0xFFFF), (0x00280010, b"US", 4),
                                           (0x00280030, b"DS", 1), (0x00091010, b"OB", 0x7FFFFFF0),
                                           (0x00091010, b"UT", 0xFFFFFFF0), (0x00280100, b"US", 0),
                                           (0x00081030, b"LO", 3), (0x00091010, b"SQ", 0x10))):
        add(f"length-{n}", "length", functools.partial(_lying_length, tag, vr, length), Expect(NEVER, ""))
    # Standard attributes the pipeline reads, encoded with a VR of the wrong kind: what pydicom reads as the
    # right kind of value is used; the rest never succeeds.
    undecodable = Expect(NEVER, "")
    for n, (keyword, vr, value, expect) in enumerate((
            ("Rows", "DS", "600", undecodable), ("Columns", "LO", "abc", undecodable),
            ("BitsAllocated", "OB", b"\x10", undecodable), ("BitsStored", "SS", b"\xff\xff", undecodable),
            ("PixelSpacing", "US", b"\x01\x00\x01\x00", Expect(PROCESSED)),
            ("WindowCenter", "FD", b"\x00" * 8, Expect(PROCESSED)), ("RescaleSlope", "OB", b"\x00\x00", undecodable),
            ("NumberOfFrames", "US", b"\x02\x00", Expect(SKIPPED, "multi-frame")),
            ("SamplesPerPixel", "DS", "1e9", undecodable), ("PixelRepresentation", "CS", "SIGNED", undecodable),
            ("ImagerPixelSpacing", "FL", b"\x00\x00\x80\x7f" * 2, undecodable),
            ("PatientName", "UN", b"\xff\xfe" * 8, Expect(PROCESSED)))):
        add(f"wrong-vr-{n}", "wrong-vr", raw(keyword, vr, value), expect, ci=expect.outcome != PROCESSED)
    # Empty values of the attributes the pipeline reads: Type 1 ones never succeed, optional ones are ignored.
    for keyword, vr, expect in (
            ("Rows", "US", _failed("Rows")), ("Columns", "US", _failed("Columns")),
            ("BitsAllocated", "US", _failed("BitsAllocated")),
            ("BitsStored", "US", _failed("cannot decode pixel data")),
            ("SamplesPerPixel", "US", _failed("cannot decode pixel data")),
            ("PixelRepresentation", "US", _failed("cannot decode pixel data")),
            ("PhotometricInterpretation", "CS", Expect(SKIPPED, "not greyscale")),
            ("RescaleSlope", "DS", _failed("RescaleSlope is present but empty")),
            ("PixelSpacing", "DS", Expect(PROCESSED)), ("WindowCenter", "DS", Expect(PROCESSED)),
            ("VOILUTFunction", "CS", Expect(PROCESSED)), ("SpecificCharacterSet", "CS", Expect(PROCESSED))):
        if f"empty-{keyword}" in SIZE_UNREADABLE:
            expect = Expect(REFUSED, statuses=(C_DIMENSIONS,))
        add(f"empty-{keyword}", "empty", raw(keyword, vr, b""), expect,
            ci=expect.outcome != PROCESSED)

    # Log injection: control characters where the node might log or store a value. Skipped images name the
    # attribute, never its value; UIDs with them are refused at receipt.
    for n, payload in enumerate(("\r\nFORGED 2099-01-01 ERROR", "\x1b[31mRED\x1b[0m", "A\x00B", "\u2028X")):
        add(f"view-{n}", "injection", raw("ViewPosition", "CS", payload.encode("utf-8")),
            Expect(SKIPPED, "ViewPosition is not AP or PA"))
        add(f"body-part-{n}", "injection", raw("BodyPartExamined", "CS", payload.encode("utf-8")),
            Expect(SKIPPED, "BodyPartExamined is not KNEE"))
        add(f"sop-uid-{n}", "injection", functools.partial(_sop_uid, "1.2.3" + payload),
            Expect(REFUSED, statuses=(C_MISSING_UID, A_MISMATCH)))
    # Broken sequences: items that lie about their length, wrong delimiters, a sequence that never ends.
    item, end = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    tolerated = Expect(PROCESSED)  # pydicom reads past it, and the private sequence is never used
    for n, (body, expect) in enumerate((
            (item + b"\xff\xff\xff\x7f" + b"abcd", Expect(NEVER, "")),  # an item longer than the file
            (item + b"\x04\x00\x00\x00" + b"ab", Expect(NEVER, "")),  # an item longer than its sequence
            (b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + end, tolerated),  # an item delimiter with no item
            (item + b"\xff\xff\xff\xff" + b"\x08\x00\x60\x00CS\x02\x00DX", Expect(NEVER, "")),  # never ends
            (b"\x08\x00\x60\x00CS\x02\x00DX" + end, Expect(NEVER, "")),  # an element where an item must be
            (item + b"\x00\x00\x00\x00" * 3 + end, tolerated))):  # an empty item, then zeros
        add(f"sequence-{n}", "sequence", functools.partial(_broken_sequence, body), expect,
            ci=expect.outcome != PROCESSED)
    # Lookup tables with absurd descriptors.
    for n, (keyword, descriptor) in enumerate((("VOILUTSequence", [0, 0, 99]), ("VOILUTSequence", [4096, 0, 7]),
                                               ("ModalityLUTSequence", [4, 0, 4]), ("VOILUTSequence", [4, 0])),):
        add(f"lut-{n}", "lut", edit(functools.partial(_lut, keyword, descriptor), small), _failed(keyword))
    for n, value in enumerate(("ISO_IR 13\\ISO 2022 IR 87", "ISO 2022 IR 100\\BOGUS", "GB18030\\GB18030",
                               "ISO 2022 IR 6\\ISO 2022 IR 6\\ISO_IR 192")):
        add(f"charset-more-{n}", "charset", raw("SpecificCharacterSet", "CS", value), _failed("SpecificCharacterSet"))
    add("charset-default-twice", "charset", raw("SpecificCharacterSet", "CS", "ISO_IR 6\\ISO_IR 6"),
        Expect(PROCESSED), ci=False)
    return out


def _sop_uid(uid: str) -> bytes:
    data = b.encode(small())
    return b.put(data, 0x0008, 0x0018, b"UI", uid.encode("utf-8"))


def _broken_sequence(body: bytes) -> bytes:
    """A private sequence of undefined length holding ``body`` (hand-made items), before group 0010."""
    import struct

    raw_element = (b.element(0x0009, 0x0010, b"LO", b"HOSTILE")
                   + struct.pack("<HH", 0x0009, 0x1001) + b"SQ" + struct.pack("<HI", 0, b.UNDEFINED) + body)
    return b.splice(b.encode(small()), raw_element, 0x00100000)


def _lut(keyword: str, descriptor: list[int], ds: pydicom.Dataset) -> None:
    item = pydicom.Dataset()
    item.LUTDescriptor = descriptor
    item.add_new("LUTData", "OW", bytes(32))
    if keyword == "ModalityLUTSequence":
        item.ModalityLUTType = "OD"
        ds.pop("RescaleSlope", None)
        ds.pop("RescaleIntercept", None)
    setattr(ds, keyword, [item])


def _truncated(fraction: float) -> bytes:
    data = b.encode(small())
    start = b.top_level_offsets(data)[0][1]
    return data[:start + int((len(data) - start) * fraction)]


def _lying_length(tag: int, vr: bytes, length: int) -> bytes:
    """An element declaring ``length`` bytes but holding 4 (odd, past the end of the file, or over what follows)."""
    group, elem = tag >> 16, tag & 0xFFFF
    import struct

    if vr in b.LONG_VRS:
        raw_element = struct.pack("<HH", group, elem) + vr + struct.pack("<HI", 0, length) + b"abcd"
    else:
        raw_element = struct.pack("<HH", group, elem) + vr + struct.pack("<H", length) + b"abcd"
    data = b.encode(small())
    offsets = b.top_level_offsets(data)
    for n, (found, pos) in enumerate(offsets):
        if found == tag:
            data = data[:pos] + data[offsets[n + 1][1]:]
            break
    return b.splice(data, raw_element, tag)


def _as_ct(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.Modality, ds.SOPClassUID = "CT", CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    return ds


def _hand_encoded(tag: int, vr: bytes, value: bytes) -> bytes:
    return b.put(b.encode(small()), tag >> 16, tag & 0xFFFF, vr, value)


def _rgb(ds: pydicom.Dataset) -> None:
    grey = np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(ds.Rows, ds.Columns)
    rgb = np.repeat((grey >> 4).astype(np.uint8)[..., None], 3, axis=2)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()


def _two_frames(ds: pydicom.Dataset) -> None:
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2


def ci_cases() -> list[Case]:
    return [case for case in cases() if case.ci]
