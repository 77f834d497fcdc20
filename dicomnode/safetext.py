"""Text that is safe to put on one log line or in one audit field: control characters escaped, length capped.

A value that came from the network (an AE title, a UID, an error message quoting one) may carry CR/LF or other
control characters; written raw, it could forge log lines or audit entries. ``escape`` makes every such
character visible (``\\n``, ``\\r``, ``\\x1b``, ``\\u2028``) so one record stays one line.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object, limit: int | None = None) -> str:
    """``str(value)`` with control characters escaped; at most ``limit`` characters (a cut one ends in "...")."""
    text = _UNSAFE.sub(_visible, str(value))
    if limit is not None and len(text) > limit:
        return text[:max(limit - 3, 0)] + "..."[:limit]
    return text
