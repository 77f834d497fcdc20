"""Byte-level builders of malformed DICOM files: what pydicom would refuse to write, written by hand.

Everything here works on Part 10 files in explicit VR little endian (the base images' encoding): splice raw
elements in tag order, nest sequences of undefined length, hand-made RLE and JPEG 2000 pixel data, a deflate
bomb streamed through zlib so that the inflated size never sits in memory here.
"""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF


def encode(ds: pydicom.Dataset) -> bytes:
    """Part 10 bytes of ``ds`` (pydicom's warnings about raw hostile values are expected and silenced)."""
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element (value padded to an even length)."""
    if len(value) % 2:
        value += b"\0" if vr in LONG_VRS - {b"UC", b"UR", b"UT"} else b" "
    head = struct.pack("<HH", group, elem) + vr
    if vr in LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def undefined_length(group: int, elem: int, vr: bytes, items: list[bytes]) -> bytes:
    """A sequence (or UN) of undefined length holding ``items`` (each an item's encoded content)."""
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + item + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                    for item in items)
    return (struct.pack("<HH", group, elem) + vr + struct.pack("<HI", 0, UNDEFINED) + body
            + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))


def _dataset_start(data: bytes) -> int:
    group_length = struct.unpack_from("<I", data, 140)[0]
    return 144 + group_length


def top_level_offsets(data: bytes) -> list[tuple[int, int]]:
    """(tag, offset) of each top-level element of an explicit VR little endian Part 10 file (up to Pixel Data)."""
    offsets, pos = [], _dataset_start(data)
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | elem
        offsets.append((tag, pos))
        if tag >= 0x7FE00010:
            break
        vr = data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            if length == UNDEFINED:
                raise ValueError("undefined-length element in a base image: not supported here")
            pos += 12 + length
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return offsets


def splice(data: bytes, raw: bytes, before_tag: int) -> bytes:
    """Insert encoded elements ``raw`` before the first top-level element whose tag is >= ``before_tag``."""
    for tag, pos in top_level_offsets(data):
        if tag >= before_tag:
            return data[:pos] + raw + data[pos:]
    return data + raw


def put(data: bytes, group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """``data`` with the top-level element (group, elem) replaced by (or added as) ``vr`` + ``value``, encoded by
    hand: any VR, even one that does not exist."""
    tag = group << 16 | elem
    offsets = top_level_offsets(data)
    for n, (found, pos) in enumerate(offsets):
        if found == tag:
            end = offsets[n + 1][1] if n + 1 < len(offsets) else len(data)
            data = data[:pos] + data[end:]
            break
    return splice(data, element(group, elem, vr, value), tag)


def nested(depth: int, payload: int, vr: bytes = b"SQ", group: int = 0x0009) -> bytes:
    """A private block with sequences nested ``depth`` deep, each level with ``payload`` bytes of its own."""
    body = element(group, 0x1001, b"LO", b"X" * 16)
    for _ in range(depth):
        body = (element(group, 0x1001, b"UN", b"Y" * payload)
                + undefined_length(group, 0x1002, vr, [element(group, 0x0010, b"LO", b"HOSTILE") + body]))
    return element(group, 0x0010, b"LO", b"HOSTILE") + body


def many_elements(count: int) -> bytes:
    """``count`` small private elements in blocks of 256 under odd groups 0009, 000B, 000D, 000F (at most
    4 x 240 x 256), in ascending tag order: splice them before group 0010."""
    out, left = [], count
    for group in (0x0009, 0x000B, 0x000D, 0x000F):
        blocks = min(240, -(-left // 256))
        if blocks <= 0:
            break
        out += [element(group, 0x10 + b, b"LO", f"HOSTILE{b}".encode()) for b in range(blocks)]
        for b in range(blocks):
            for low in range(min(256, left)):
                out.append(element(group, ((0x10 + b) << 8) | low, b"SH", b"v"))
            left -= min(256, left)
    if left > 0:
        raise ValueError("too many elements for four private groups")
    return b"".join(out)


def encapsulated(ds: pydicom.Dataset, fragments: list[bytes], transfer_syntax: str) -> bytes:
    """``ds`` with ``fragments`` as its encapsulated Pixel Data (one frame) in ``transfer_syntax``."""
    from pydicom.encaps import encapsulate

    ds = ds.copy()
    ds.file_meta = ds.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate([b"".join(fragments)])
    ds["PixelData"].VR = "OB"
    return encode(ds)


def rle_header(offsets: list[int]) -> bytes:
    """The 64-byte RLE header: number of segments, then up to 15 offsets."""
    return struct.pack("<16I", len(offsets), *(offsets + [0] * (15 - len(offsets))))


def rle_flat_frame(rows: int, columns: int, bits: int) -> bytes:
    """A valid RLE frame of a flat (all-zero) image: one segment per byte of a sample, runs of 128."""
    segments = bits // 8
    row = bytes([0x81, 0]) * (columns // 128) + (bytes([257 - columns % 128, 0]) if columns % 128 else b"")
    segment = row * rows
    offsets = [64 + n * len(segment) for n in range(segments)]
    return rle_header(offsets) + segment * segments


def rle_image(ds: pydicom.Dataset, rows: int, columns: int, frame: bytes) -> bytes:
    """``ds`` declared as ``rows`` x ``columns`` with ``frame`` as its RLE Lossless pixel data."""
    ds = ds.copy()
    ds.Rows, ds.Columns = rows, columns
    return encapsulated(ds, [frame], RLELossless)


def deflate_bomb(ds: pydicom.Dataset, inflated_bytes: int) -> bytes:
    """``ds`` in Deflated Explicit VR Little Endian whose dataset inflates to ``inflated_bytes`` or more: a
    private OB element of zeros after the pixel data, streamed through zlib (about 1000:1)."""
    plain = ds.copy()
    plain.file_meta = ds.file_meta.copy()
    data = encode(plain)
    start = _dataset_start(data)
    meta_ds = ds.copy()
    meta_ds.file_meta = ds.file_meta.copy()
    meta_ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = encode(meta_ds)[:_dataset_start(encode(meta_ds))]
    zeros = max(0, inflated_bytes - (len(data) - start))
    zeros += zeros % 2
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(data[start:]), compressor.compress(element(0x7FE1, 0x0010, b"LO", b"HOSTILE"))]
    chunk, per_element = bytes(1 << 20), 2048 << 20  # elements of at most 2 GiB (a length field holds 4 GiB)
    for n, offset in enumerate(range(0, zeros, per_element)):
        size = min(per_element, zeros - offset)
        parts.append(compressor.compress(struct.pack("<HH", 0x7FE1, 0x1001 + n) + b"OB" + struct.pack("<HI", 0, size)))
        for _ in range(size // len(chunk)):
            parts.append(compressor.compress(chunk))
        parts.append(compressor.compress(bytes(size % len(chunk))))
    parts.append(compressor.flush())
    return head + b"".join(parts)
