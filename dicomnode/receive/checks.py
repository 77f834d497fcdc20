"""What the receiver checks in a received dataset before storing it: refuse at receipt what can never be
processed, reading only the header and the structure of the Pixel Data (never decoding it).

* UIDs (``check_uid``): present, at most 64 characters, digits and dots only, no empty component (leading
  zeros, a common vendor slip, are tolerated).
* Deflated datasets (``inflate_bounded``): inflated at most to ``limits.max_dataset_bytes``.
* Image size (``check_image_size``): rows x columns x frames and decoded bytes, from the header.
* Pixel Data structure (``check_pixel_data``): encapsulated items run to a sequence delimiter; native Pixel
  Data is not truncated.

Each failure raises :class:`~dicomnode.receive.statuses.Refused` with its status; the comments name the
attribute and the limit, never the value.
"""

from __future__ import annotations

import re
import struct
import zlib
from io import BytesIO
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicomnode.config import LimitsSection
from dicomnode.receive.statuses import (
    CANNOT_UNDERSTAND_BAD_UID,
    CANNOT_UNDERSTAND_IMAGE_TOO_LARGE,
    CANNOT_UNDERSTAND_INFLATE,
    CANNOT_UNDERSTAND_PIXEL_DATA,
    Refused,
)

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # used with fullmatch: "$" would let a trailing LF through
_PIXEL_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}
_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_DEFER_BYTES = 4096  # values longer than this are not read while parsing the header
_INFLATE_CHUNK = 1024 * 1024


def check_uid(dataset: Dataset, keyword: str) -> str:
    """The dataset's ``keyword`` UID, or ``Refused`` 0xC001 if it is missing or not a UID.

    The value is checked as received (pydicom's conversion would strip a trailing CR/LF): only the padding of
    the standard (one trailing NUL or space) is removed.
    """
    element = dataset.get_item(keyword) if keyword in dataset else None
    raw = None if element is None else element.value
    if isinstance(raw, bytes):
        try:
            value = raw.decode("ascii").removesuffix("\x00").removesuffix(" ")
        except UnicodeDecodeError:
            raise Refused(CANNOT_UNDERSTAND_BAD_UID, f"{keyword} is not a valid UID") from None
    else:
        value = "" if raw is None else str(raw)
    if not value.strip():
        raise Refused(CANNOT_UNDERSTAND_BAD_UID, f"{keyword} missing or empty")
    if len(value) > 64 or not _UID.fullmatch(value):
        raise Refused(CANNOT_UNDERSTAND_BAD_UID, f"{keyword} is not a valid UID")
    return value


def inflate_bounded(data: bytes | memoryview, limit: int) -> bytes:
    """Inflate a raw deflate stream (Deflated Explicit VR Little Endian) to at most ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    view = memoryview(data)
    try:
        for start in range(0, len(view), _INFLATE_CHUNK):
            out += inflater.decompress(view[start:start + _INFLATE_CHUNK], limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise Refused(CANNOT_UNDERSTAND_INFLATE,
                              f"inflates past limits.max_dataset_bytes ({limit})")
        out += inflater.flush()
    except zlib.error:
        raise Refused(CANNOT_UNDERSTAND_INFLATE, "deflated dataset is not valid deflate data") from None
    if len(out) > limit:
        raise Refused(CANNOT_UNDERSTAND_INFLATE, f"inflates past limits.max_dataset_bytes ({limit})")
    return bytes(out)


def read_header(stream: BinaryIO, transfer_syntax: UID, limits: LimitsSection) -> tuple[Dataset, BinaryIO]:
    """Parse the dataset's elements up to its Pixel Data; returns the header and the stream positioned at the
    Pixel Data element (or at the end). A deflated stream is inflated (bounded) first."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        stream.seek(0)
        stream = BytesIO(inflate_bounded(stream.read(), limits.max_dataset_bytes))
    stream.seek(0)
    header = read_dataset(stream, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                          stop_when=lambda tag, vr, length: tag in _PIXEL_TAGS, defer_size=_DEFER_BYTES)
    return header, stream


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise Refused(CANNOT_UNDERSTAND_PIXEL_DATA, "Pixel Data truncated")
    return data


def check_pixel_data(stream: BinaryIO, transfer_syntax: UID) -> bool:
    """True if Pixel Data starts at the stream's position, after checking its structure (``Refused`` 0xC005
    if it is malformed); False if the dataset has no Pixel Data."""
    start = stream.tell()
    head = stream.read(4)
    if len(head) < 4:
        return False
    endian = "<" if transfer_syntax.is_little_endian else ">"
    group, element = struct.unpack(f"{endian}HH", head)
    if (group << 16 | element) not in _PIXEL_TAGS:
        stream.seek(start)
        return False
    if transfer_syntax.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}L", _read(stream, 4))
    else:
        vr = _read(stream, 2)
        if vr in _LONG_VRS:
            (length,) = struct.unpack(f"{endian}2xL", _read(stream, 6))
        else:
            (length,) = struct.unpack(f"{endian}H", _read(stream, 2))
    if length != _UNDEFINED:
        remaining = len(stream.getbuffer()) - stream.tell() if isinstance(stream, BytesIO) else None
        if remaining is not None and length > remaining:
            raise Refused(CANNOT_UNDERSTAND_PIXEL_DATA, "Pixel Data truncated")
        return True
    while True:  # encapsulated: items (offset table, fragments) up to the sequence delimiter
        item = stream.read(8)
        if len(item) < 8:
            raise Refused(CANNOT_UNDERSTAND_PIXEL_DATA, "encapsulated Pixel Data without sequence delimiter")
        group, element, item_length = struct.unpack("<HHL", item)  # encapsulation is always little endian
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return True
        if tag != _ITEM or item_length == _UNDEFINED:
            raise Refused(CANNOT_UNDERSTAND_PIXEL_DATA, "encapsulated Pixel Data item malformed")
        position = stream.tell() + item_length
        if isinstance(stream, BytesIO) and position > len(stream.getbuffer()):
            raise Refused(CANNOT_UNDERSTAND_PIXEL_DATA, "encapsulated Pixel Data item runs past the end")
        stream.seek(position)


def _positive_int(dataset: Dataset, keyword: str, default: int | None = None) -> int:
    raw = dataset.get(keyword)
    if raw is None or raw == "":
        if default is None:
            raise Refused(CANNOT_UNDERSTAND_IMAGE_TOO_LARGE, f"{keyword} missing")
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise Refused(CANNOT_UNDERSTAND_IMAGE_TOO_LARGE, f"{keyword} is not a number") from None
    if value < 1:
        raise Refused(CANNOT_UNDERSTAND_IMAGE_TOO_LARGE, f"{keyword} is not positive")
    return value


def check_image_size(dataset: Dataset, limits: LimitsSection) -> None:
    """``Refused`` 0xC003 if the image's size, from its header, exceeds the limits or cannot be read."""
    rows, columns = _positive_int(dataset, "Rows"), _positive_int(dataset, "Columns")
    frames = _positive_int(dataset, "NumberOfFrames", default=1)
    samples = _positive_int(dataset, "SamplesPerPixel", default=1)
    bits = _positive_int(dataset, "BitsAllocated", default=16)
    pixels = rows * columns * frames
    if pixels > limits.max_image_pixels:
        raise Refused(CANNOT_UNDERSTAND_IMAGE_TOO_LARGE,
                      f"image exceeds limits.max_image_pixels ({limits.max_image_pixels})")
    if pixels * samples * ((bits + 7) // 8) > limits.max_image_bytes:
        raise Refused(CANNOT_UNDERSTAND_IMAGE_TOO_LARGE,
                      f"image exceeds limits.max_image_bytes ({limits.max_image_bytes})")
