"""Bounded reprs for messages and logs: never dump a 16 MiB payload into a traceback."""

from __future__ import annotations

import re

__all__ = ["bounded_repr", "without_userinfo"]

_REPR_LIMIT = 80
# the user info of a URL ("user:password@" after "scheme://"), wherever it sits in a text
_USERINFO_RE = re.compile(r"(?<=//)[^/?#@\s]*@")


def bounded_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long the value was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes | bytearray) else None
    suffix = f"...<{size} total>" if size is not None else "..."
    return text[: limit - len(suffix)] + suffix


def without_userinfo(text: str) -> str:
    """``text`` with the user info of any URL in it replaced by ``<redacted>``, for
    messages and reprs of URLs wspool has not parsed (a ``Location``, the user's URL)."""
    return _USERINFO_RE.sub("<redacted>@", text)
