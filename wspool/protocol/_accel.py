"""Hot-path byte helpers: frame masking (RFC 6455 §5.3) and incremental UTF-8 decoding.

Every client frame is masked, and every text message is decoded, so both sit on the
per-message hot path.  The implementations here were chosen by measurement on CPython
3.11 (numbers and the command to reproduce them: ``docs/accelerators.md``,
``bench/micro_accel.py``):

* masking uses ``wsaccel`` when it is installed (about 1.8 GB/s, and no slower than
  the pure path even for 2-byte payloads); without it, one big-int XOR for payloads up
  to :data:`MASK_CHUNK` bytes and the same XOR applied chunk by chunk, with one mask
  integer reused for every chunk, above that.
* UTF-8 always uses the standard library codec: text messages must become ``str`` anyway,
  and decoding is faster than wsaccel's validator alone.  A small fix on top makes the
  incremental decoder reject truncated surrogates at the fragment where they appear.
"""

from __future__ import annotations

import importlib
from codecs import utf_8_decode
from collections.abc import Callable
from typing import Final, Protocol

from wspool.exceptions import WebSocketConfigurationException

__all__ = [
    "HAVE_WSACCEL",
    "MASK_CHUNK",
    "Utf8Decoder",
    "apply_mask",
    "apply_mask_stdlib",
    "make_utf8_decoder",
]

Buffer = bytes | bytearray | memoryview

#: Payloads longer than this are masked chunk by chunk (16 KiB won on 64 KiB..16 MiB).
MASK_CHUNK: Final = 16 * 1024

_from_bytes = int.from_bytes


def _bad_key(key: bytes) -> WebSocketConfigurationException:
    return WebSocketConfigurationException(
        f"masking key must be exactly 4 bytes (RFC 6455 §5.3), got {len(key)}; pass os.urandom(4)"
    )


def _mask_whole(data: Buffer, key: bytes) -> bytes:
    """XOR ``data`` with the repeated key as two integers: one pass in C per step."""
    n = len(data)
    mask = (key * ((n >> 2) + 1))[:n]
    return (_from_bytes(data, "little") ^ _from_bytes(mask, "little")).to_bytes(n, "little")


def _mask_chunked(data: Buffer, key: bytes, prefix: bytes) -> bytes:
    """XOR large ``data`` in MASK_CHUNK pieces with one precomputed mask integer.

    Chunking keeps the temporaries cache-sized and lets the key integer be built once
    per call instead of once per payload byte count.
    """
    n = len(data)
    view = memoryview(data)
    chunk = MASK_CHUNK
    mask = _from_bytes(key * (chunk >> 2), "little")
    full = n - n % chunk
    parts: list[bytes] = [prefix]
    append = parts.append
    # Chunk starts are multiples of MASK_CHUNK, itself a multiple of 4, so every chunk
    # (and the tail) begins at key phase 0.
    for start in range(0, full, chunk):
        value = _from_bytes(view[start : start + chunk], "little") ^ mask
        append(value.to_bytes(chunk, "little"))
    if full < n:
        append(_mask_whole(view[full:], key))
    return b"".join(parts)


def apply_mask_stdlib(data: Buffer, key: bytes, prefix: bytes = b"", /) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``key`` (RFC 6455 §5.3), standard library only.

    Byte ``i`` of the masked part is ``data[i] ^ key[i % 4]``.  ``data`` is any byte
    buffer (a memoryview must be a view of bytes).  Returns new ``bytes``: ``prefix``
    (a frame header, say) followed by the masked data, built in one allocation so a
    large frame is not copied again to put its header in front.
    """
    if len(key) != 4:
        raise _bad_key(key)
    if len(data) <= MASK_CHUNK:
        masked = _mask_whole(data, key)
        return prefix + masked if prefix else masked
    return _mask_chunked(data, key, prefix)


class _Masker(Protocol):
    """The part of ``wsaccel.xormask.XorMaskerSimple`` that wspool uses."""

    def process(self, data: Buffer, /) -> bytes: ...


class MaskFunction(Protocol):
    """The signature of :data:`apply_mask` and its implementations."""

    def __call__(self, data: Buffer, key: bytes, prefix: bytes = b"", /) -> bytes: ...


def _load_wsaccel() -> MaskFunction | None:
    """``apply_mask`` built on wsaccel's C loop, or ``None`` when wsaccel is missing."""
    try:
        module = importlib.import_module("wsaccel.xormask")
    except ImportError:
        return None
    masker: Callable[[bytes], _Masker] = module.XorMaskerSimple

    def apply_mask_wsaccel(data: Buffer, key: bytes, prefix: bytes = b"", /) -> bytes:
        try:
            masked = masker(key).process(data)  # it checks the key length itself
        except ValueError:
            if len(key) != 4:
                raise _bad_key(key) from None
            raise
        return prefix + masked if prefix else masked

    return apply_mask_wsaccel


_apply_mask_wsaccel: Final = _load_wsaccel()

#: True when the optional ``wsaccel`` package is importable and used for masking.
HAVE_WSACCEL: Final = _apply_mask_wsaccel is not None

#: ``apply_mask(data, key, prefix=b"") -> bytes``: ``prefix`` then ``data`` masked with
#: the 4-byte ``key`` (RFC 6455 §5.3), as new ``bytes``.  wsaccel when installed, else
#: :func:`apply_mask_stdlib`.  Bound once at import so each call is a single dispatch.
apply_mask: Final[MaskFunction] = _apply_mask_wsaccel or apply_mask_stdlib


class Utf8Decoder:
    """Strict incremental UTF-8 decoder that fails at the first impossible byte.

    Feed a text message's fragments in order with ``final=True`` on the last one; the
    decoder is then ready for the next message.  ``UnicodeDecodeError`` is raised as
    soon as the bytes seen so far cannot be the start of valid UTF-8 (RFC 3629 §4),
    including a sequence cut at a fragment boundary that no later byte could complete
    (Autobahn 6.4.x requires failing on the fragment that makes the text invalid).
    After an error the decoder is reset.

    CPython's codec already fails fast on every impossible prefix except one: a
    truncated surrogate ``ED A0..BF`` is kept as "incomplete" when ``final`` is false
    (that leniency exists for the ``surrogatepass`` handler).  The undecoded tail is
    at most 3 bytes, so checking it after each fragment costs almost nothing.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # Undecoded bytes at the end of the previous fragment: a strict prefix of one
        # multi-byte character, so never more than 3 bytes.
        self._pending = b""

    def decode(self, data: Buffer, final: bool = False) -> str:
        """Decode the next fragment; with ``final`` the message must end on a character."""
        if self._pending:
            data = self._pending + data
            self._pending = b""  # also leaves the decoder reset if the codec raises
        text, consumed = utf_8_decode(data, "strict", final)
        if consumed != len(data):
            self._keep_tail(bytes(data[consumed:]))
        return text

    def _keep_tail(self, tail: bytes) -> None:
        """Hold back a partial character, unless it is a truncated surrogate."""
        if tail[0] == 0xED and len(tail) == 2 and tail[1] >= 0xA0:
            # Positions are relative to ``tail``; the lead byte is the bad one, as the
            # codec itself reports for a complete "ED A0 80".
            raise UnicodeDecodeError(
                "utf-8",
                tail,
                0,
                1,
                "invalid continuation byte (UTF-16 surrogate U+D800..U+DFFF is not allowed)",
            )
        self._pending = tail

    def reset(self) -> None:
        """Forget any partial character, e.g. after a message was abandoned."""
        self._pending = b""

    @property
    def pending(self) -> bytes:
        """The undecoded tail (0..3 bytes) of the fragments fed so far."""
        return self._pending


def make_utf8_decoder() -> Utf8Decoder:
    """A new incremental strict UTF-8 decoder (see :class:`Utf8Decoder`)."""
    return Utf8Decoder()
