"""Bounded reprs for messages and logs: never dump a 16 MiB payload into a traceback."""

from __future__ import annotations

__all__ = ["bounded_repr"]

_REPR_LIMIT = 80


def bounded_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long the value was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes | bytearray) else None
    suffix = f"...<{size} total>" if size is not None else "..."
    return text[: limit - len(suffix)] + suffix
