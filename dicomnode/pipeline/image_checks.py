"""Reading a received instance for processing, within bounds, and refusing absurd attributes before decoding.

A spooled file was acknowledged as received, but nothing in it has been trusted yet. Before any pixel is decoded:

- the file's size, and for a deflated dataset its inflated size, must fit ``processing.max_decoded_mb`` plus a
  margin for the header, and the inflated size half of ``processing.job_memory_mb`` (a deflate bomb is
  inflated in bounded steps and given up on, never inflated whole);
- the dataset's structure: sequences nested at most ``MAX_NESTING`` deep, at most ``MAX_ELEMENTS`` elements,
  every value representation known;
- the attributes the pipeline reads must be parseable and sane: the UIDs the results copy or reference, image
  geometry, the decoded size
  (rows x columns x frames x samples x bytes, from the header) against ``processing.max_decoded_mb`` and, times
  ``DECODE_MEMORY_FACTOR``, against ``processing.job_memory_mb``, pixel
  spacing, rescale, window and VOI LUT, character set, single-valued patient and study attributes.

Every refusal is an :class:`~dicomnode.pipeline.failures.InvalidImage` whose message names the attribute and
never quotes its value. It is permanent: the job fails once, with that reason, and is never retried.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.values import converters

from dicomnode.config_checks import (
    DECODE_MEMORY_FACTOR,  # an image needing more memory than a job has fails
)
from dicomnode.durable import is_safe_uid
from dicomnode.outputs.common import OutputError, character_set
from dicomnode.pipeline.failures import InvalidImage

MiB = 1024 * 1024
HEADER_MARGIN_BYTES = 16 * MiB  # what a file may hold besides its pixel data
MAX_NESTING = 16  # sequence depth (real radiographs: 3 or 4)
MAX_ELEMENTS = 200_000
MAX_WINDOWS = 64  # Window Center/Width pairs (a few are common: soft tissue, bone...)
MAX_SPACING_MM = 10.0  # a projection radiograph's pixels are 0.05-1 mm
MAX_RESCALE = 1e6
DEFER_BYTES = 64 * 1024  # values larger than this are read only when used (pixel data, private blobs)
VOI_FUNCTIONS = {"", "LINEAR", "LINEAR_EXACT", "SIGMOID"}
BITS_ALLOCATED = {1, 8, 16, 32, 64}
SINGLE_VALUED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                 "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesNumber", "InstanceNumber",
                 "PhotometricInterpretation", "Modality")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")  # copied or referenced
_KNOWN_VRS = {str(vr) for vr in converters}
_INFLATE_CHUNK = 1 * MiB


@dataclass(frozen=True)
class ImageBounds:
    """The bounds a job's image must fit (from ``processing``): the decoded size, and the memory a job may use
    (None: no limit, as in ``dicomnode process``)."""

    max_decoded_bytes: int
    memory_bytes: int | None = None

    @property
    def max_file_bytes(self) -> int:
        return self.max_decoded_bytes + HEADER_MARGIN_BYTES

    @property
    def max_inflated_bytes(self) -> int:
        """A deflated dataset is held whole once inflated, and parsed: it may take half the job's memory."""
        return min(self.max_file_bytes, self.memory_bytes // 2) if self.memory_bytes else self.max_file_bytes


def _mib(n: float) -> str:
    return f"{n / MiB:.0f} MiB"


def read_instance(path: str | Path, bounds: ImageBounds) -> Dataset:
    """Read a spooled instance for processing: size and inflation bounded, large values deferred.

    Raises InvalidImage for a file over the bounds; whatever pydicom raises for one it cannot parse.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > bounds.max_file_bytes:
        raise InvalidImage(f"the file is {_mib(size)}, more than processing.max_decoded_mb plus "
                           f"{_mib(HEADER_MARGIN_BYTES)} for its header")
    meta = read_file_meta_info(path)  # the meta group only: dcmread would inflate a deflated dataset whole
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        _check_inflated_size(path, bounds.max_inflated_bytes)
        return pydicom.dcmread(path)  # bounded now; pydicom cannot defer values of an inflated stream
    return pydicom.dcmread(path, defer_size=DEFER_BYTES)


def _check_inflated_size(path: Path, limit: int) -> None:
    """Inflate the deflated dataset in steps, without keeping it, and refuse it once it passes ``limit``."""
    data = path.read_bytes()
    start = _dataset_offset(data)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, data[start:]
    while pending and not inflater.eof:
        total += len(inflater.decompress(pending, _INFLATE_CHUNK))
        pending = inflater.unconsumed_tail
        if total > limit:
            raise InvalidImage(f"the deflated dataset inflates to more than {_mib(limit)}")


def _dataset_offset(data: bytes) -> int:
    """Where the dataset starts after the preamble and the file meta group (its length is in (0002,0000))."""
    if data[128:132] != b"DICM" or data[132:138] != b"\x02\x00\x00\x00UL":
        raise InvalidImage("the file meta information does not start with its group length")
    group_length = int.from_bytes(data[140:144], "little")
    return 144 + group_length


def check_image(ds: Dataset, bounds: ImageBounds) -> None:
    """Refuse (InvalidImage) a dataset the pipeline must not decode or build results from."""
    check_structure(ds)
    for keyword in UID_KEYWORDS:
        value = ds.get(keyword)
        if not isinstance(value, str) or not is_safe_uid(value.rstrip("\0 ")):
            raise InvalidImage(f"{keyword} missing or not a usable UID")
    rows, columns, frames = _geometry(ds)
    samples = _int(ds, "SamplesPerPixel", 1)
    if not 1 <= samples <= 4:
        raise InvalidImage("SamplesPerPixel is not 1 to 4")
    bits = _int(ds, "BitsAllocated", None)
    if bits not in BITS_ALLOCATED:
        raise InvalidImage("BitsAllocated is not 1, 8, 16, 32 or 64")
    stored = _int(ds, "BitsStored", bits)
    if not 1 <= stored <= bits:
        raise InvalidImage("BitsStored is not between 1 and BitsAllocated")
    if _int(ds, "PixelRepresentation", 0) not in (0, 1):
        raise InvalidImage("PixelRepresentation is not 0 or 1")
    decoded = rows * columns * frames * samples * max(1, bits // 8)
    if decoded > bounds.max_decoded_bytes:
        raise InvalidImage(f"the decoded image would take {_mib(decoded)}, more than processing.max_decoded_mb "
                           f"({_mib(bounds.max_decoded_bytes)})")
    if bounds.memory_bytes and decoded * DECODE_MEMORY_FACTOR > bounds.memory_bytes:
        raise InvalidImage(f"processing it would take about {_mib(decoded * DECODE_MEMORY_FACTOR)}, more than "
                           f"processing.job_memory_mb ({_mib(bounds.memory_bytes)})")
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        _check_spacing(ds, keyword)
    _check_rescale(ds)
    _check_voi(ds)
    for keyword in SINGLE_VALUED:
        if isinstance(ds.get(keyword), MultiValue):
            raise InvalidImage(f"{keyword} has more than one value")
    try:
        character_set(ds)
    except OutputError as exc:
        raise InvalidImage(str(exc)) from None


def drop_empty_optional(ds: Dataset) -> None:
    """Remove optional attributes that are present but empty and that pydicom would misread (an empty VOI LUT
    Function is an unsupported function to pydicom, where the standard means "none given": LINEAR)."""
    for keyword in ("VOILUTFunction",):
        if keyword in ds and not _values(ds, keyword):
            del ds[keyword]


def check_structure(ds: Dataset) -> None:
    """Every element's VR known, sequences at most MAX_NESTING deep, at most MAX_ELEMENTS elements in all.

    Walks the tree with an explicit stack (pydicom parses a sequence when it is first read, one level at a time).
    """
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    seen = 0
    while stack:
        dataset, depth = stack.pop()
        for tag in list(dataset.keys()):
            seen += 1
            if seen > MAX_ELEMENTS:
                raise InvalidImage(f"the dataset has more than {MAX_ELEMENTS} elements")
            raw = dataset.get_item(tag)
            vr = str(raw.VR) if raw is not None and raw.VR is not None else ""
            if vr and vr not in _KNOWN_VRS:
                raise InvalidImage("an element has an unknown value representation")
            if vr == "SQ" or (vr == "UN" and getattr(raw, "length", 0) == 0xFFFFFFFF):
                items = _sequence_items(dataset, tag)
                if items and depth + 1 > MAX_NESTING:
                    raise InvalidImage(f"sequences are nested more than {MAX_NESTING} deep")
                stack.extend((item, depth + 1) for item in items)


def _sequence_items(dataset: Dataset, tag) -> list[Dataset]:
    try:
        value = dataset[tag].value
    except NotImplementedError:  # pydicom: an unknown VR inside the sequence
        raise InvalidImage("an element has an unknown value representation") from None
    return list(value) if isinstance(value, Sequence) else []


def _number(value, keyword: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidImage(f"{keyword} is not a number") from None
    if not math.isfinite(number):
        raise InvalidImage(f"{keyword} is not a finite number")
    return number


def _values(ds: Dataset, keyword: str) -> list:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]


def _int(ds: Dataset, keyword: str, default: int | None) -> int | None:
    values = _values(ds, keyword)
    if not values:
        return default
    if len(values) != 1:
        raise InvalidImage(f"{keyword} has more than one value")
    number = _number(values[0], keyword)
    if number != int(number):
        raise InvalidImage(f"{keyword} is not an integer")
    return int(number)


def _geometry(ds: Dataset) -> tuple[int, int, int]:
    rows, columns = _int(ds, "Rows", None), _int(ds, "Columns", None)
    if rows is None or columns is None or rows < 1 or columns < 1:
        raise InvalidImage("Rows or Columns missing or not positive")
    frames = _int(ds, "NumberOfFrames", 1)
    if frames is None or frames < 1:
        raise InvalidImage("NumberOfFrames is not a positive integer")
    return rows, columns, frames


def _check_spacing(ds: Dataset, keyword: str) -> None:
    """Absent, empty or all zero (a common "unknown") is fine; otherwise two numbers in (0, MAX_SPACING_MM]."""
    values = [_number(v, keyword) for v in _values(ds, keyword)]
    if not values or all(v == 0 for v in values):
        return
    if len(values) != 2 or not all(0 < v <= MAX_SPACING_MM for v in values):
        raise InvalidImage(f"{keyword} is not two numbers between 0 and {MAX_SPACING_MM:g} mm")


def _check_rescale(ds: Dataset) -> None:
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        values = _values(ds, keyword)
        if keyword in ds and not values:
            raise InvalidImage(f"{keyword} is present but empty")
        if len(values) > 1:
            raise InvalidImage(f"{keyword} has more than one value")
        if values and abs(_number(values[0], keyword)) > MAX_RESCALE:
            raise InvalidImage(f"{keyword} is larger than {MAX_RESCALE:g}")
    if _values(ds, "RescaleSlope") and _number(_values(ds, "RescaleSlope")[0], "RescaleSlope") == 0:
        raise InvalidImage("RescaleSlope is zero")
    _check_lut_sequence(ds, "ModalityLUTSequence")


def _check_voi(ds: Dataset) -> None:
    function = str(ds.get("VOILUTFunction", "") or "").strip().upper()
    if function not in VOI_FUNCTIONS:
        raise InvalidImage("VOILUTFunction is not LINEAR, LINEAR_EXACT or SIGMOID")
    centres, widths = _values(ds, "WindowCenter"), _values(ds, "WindowWidth")
    for keyword, values in (("WindowCenter", centres), ("WindowWidth", widths)):
        if len(values) > MAX_WINDOWS:
            raise InvalidImage(f"{keyword} has more than {MAX_WINDOWS} values")
        for value in values:
            _number(value, keyword)
    if widths:
        width = _number(widths[0], "WindowWidth")
        usable = width >= 1 if function in ("", "LINEAR") else width > 0  # what pydicom's apply_voi_lut takes
        if not usable:
            raise InvalidImage("WindowWidth is below the minimum of its VOI LUT function")
    _check_lut_sequence(ds, "VOILUTSequence")


def _check_lut_sequence(ds: Dataset, keyword: str) -> None:
    items = ds.get(keyword)
    if items is None:
        return
    if len(items) > MAX_WINDOWS:
        raise InvalidImage(f"{keyword} has more than {MAX_WINDOWS} items")
    for item in items:
        descriptor = _values(item, "LUTDescriptor")
        if len(descriptor) != 3:
            raise InvalidImage(f"{keyword} LUTDescriptor does not have three values")
        entries, bits = int(_number(descriptor[0], "LUTDescriptor")), int(_number(descriptor[2], "LUTDescriptor"))
        if not 0 <= entries <= 65536 or bits not in range(8, 17):
            raise InvalidImage(f"{keyword} LUTDescriptor is out of range")
        if "LUTData" not in item:
            raise InvalidImage(f"{keyword} has no LUTData")
