"""Every C-STORE response status the receiver sends, what it means for the peer, and ``Refused``.

* ``0x0000`` Success: the file is fsynced, renamed into ``instances/<study>/<sop>.dcm``, its directory fsynced,
  and the instance is queued. Also for a re-sent SOP Instance UID of the same study (the file is replaced
  atomically; the pipeline de-duplicates).
* ``0xA700`` Refused, out of resources: free space under ``storage.dir`` would drop below
  ``storage.min_free_mb``, or the write failed with ENOSPC/EDQUOT. Nothing stored; transient, the peer retries.
* ``0xA900`` Error, data set does not match SOP class: the dataset's SOP Class/Instance UID differ from the
  request's Affected SOP Class/Instance UID. Nothing stored.
* ``0xC000`` Cannot understand: the dataset cannot be parsed. Nothing stored.
* ``0xC001`` Cannot understand: SOP Instance, SOP Class, Study or Series Instance UID missing, empty, longer
  than 64 characters, or not a UID (digits and dots; a CR/LF or a letter is refused). Nothing stored.
* ``0xC002`` Cannot understand: not an image (no Pixel Data), e.g. an SR sent to us. Nothing stored.
* ``0xC003`` Cannot understand: the image is larger than ``limits.max_image_pixels`` (rows x columns x frames)
  or ``limits.max_image_bytes`` (decoded), or its dimensions are unreadable. Permanent: nothing stored.
* ``0xC004`` Cannot understand: a deflated dataset inflates to more than ``limits.max_dataset_bytes``, or is
  not valid deflate data. Nothing stored (inflation stops at the limit).
* ``0xC005`` Cannot understand: Pixel Data malformed: encapsulated (compressed) Pixel Data without its
  sequence delimiter or with an item running past the end, or uncompressed Pixel Data truncated.
* ``0xC006`` Cannot understand: this SOP Instance UID was already received in another study. A SOP Instance
  UID identifies one instance everywhere; the earlier copy is kept and nothing new is stored.
* ``0xC211`` Cannot understand (internal): an unexpected error while storing; the partial file was removed.
* ``0x0110`` Processing failure: the instance was written but could not be queued (database error); the new
  file was removed again (an earlier acknowledged copy is kept) so the peer's retry starts clean.

Failure responses carry an Error Comment (0000,0902, at most 64 characters) saying why. Refusals by
association-level limits (connections, PDU sizes, deadlines, dataset bytes) never reach this level: see
``dicomnode.receive.transport``.
"""

from __future__ import annotations

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
CANNOT_UNDERSTAND_BAD_UID = 0xC001
CANNOT_UNDERSTAND_NOT_AN_IMAGE = 0xC002
CANNOT_UNDERSTAND_IMAGE_TOO_LARGE = 0xC003
CANNOT_UNDERSTAND_INFLATE = 0xC004
CANNOT_UNDERSTAND_PIXEL_DATA = 0xC005
CANNOT_UNDERSTAND_OTHER_STUDY = 0xC006
CANNOT_UNDERSTAND_INTERNAL = 0xC211
PROCESSING_FAILURE = 0x0110


class Refused(Exception):
    """A C-STORE refused with ``status``; the message becomes the response's Error Comment (curated text
    that never quotes an attribute value)."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
