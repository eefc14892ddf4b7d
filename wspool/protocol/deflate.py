"""permessage-deflate (RFC 7692): the client's offer, the negotiation and the codec.

Sans-I/O: this module turns options into a ``Sec-WebSocket-Extensions`` offer, checks the
server's answer (RFC 7692 §7.1) and compresses / decompresses message payloads
(RFC 7692 §7.2).  Framing (the RSV1 bit, fragmentation) is the connection's job.

Directions, seen from the client: the client *compresses* with the ``client_*``
parameters and *decompresses* with the ``server_*`` ones.

Memory: zlib state is created on first use, so a connection that never sends a
compressed message holds no compressor (about 256 KiB at the default settings).
That is also why :attr:`DeflateOptions.min_size` defaults to 1024 bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketHandshakeException,
    WebSocketMessageTooBigException,
    WebSocketProtocolException,
)

__all__ = [
    "EXTENSION_NAME",
    "DeflateOptions",
    "PerMessageDeflate",
    "coerce_compression",
]

EXTENSION_NAME: Final = "permessage-deflate"

# The empty stored block a sync flush ends with (RFC 7692 §7.2.1 removes it, §7.2.2 re-adds it).
_TAIL: Final = b"\x00\x00\xff\xff"
# What an empty message compresses to: one empty stored block minus the tail (RFC 7692 §7.2.3.6).
_EMPTY_MESSAGE: Final = b"\x00"

_MIN_WINDOW_BITS: Final = 8
_MAX_WINDOW_BITS: Final = 15
# RFC 7692 §7.1.2.1: 1*DIGIT, decimal 8..15, no leading zeros.  An exact table also
# rejects signs, spaces and non-ASCII digits that int() would accept.
_WINDOW_BITS_VALUES: Final = {str(n): n for n in range(_MIN_WINDOW_BITS, _MAX_WINDOW_BITS + 1)}

_SERVER_NO_CONTEXT_TAKEOVER: Final = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER: Final = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS: Final = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS: Final = "client_max_window_bits"
_RESPONSE_PARAMS: Final = frozenset(
    {
        _SERVER_NO_CONTEXT_TAKEOVER,
        _CLIENT_NO_CONTEXT_TAKEOVER,
        _SERVER_MAX_WINDOW_BITS,
        _CLIENT_MAX_WINDOW_BITS,
    }
)

_DEFAULT_MIN_SIZE: Final = 1024


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    """Raise WebSocketConfigurationException unless ``value`` is an int in [low, high]."""
    # bool is an int subclass; True as a level or a size is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebSocketConfigurationException(
            f"compression option {name} must be an int, got {value!r}"
        )
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise WebSocketConfigurationException(
            f"compression option {name} must be an int {bounds}, got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What the client offers for permessage-deflate, and how it compresses.

    ``client_max_window_bits``: ``True`` offers the parameter without a value (the
    server may then cap the client's window), an int 8..15 also promises that cap,
    ``False`` leaves it out.  ``server_max_window_bits`` (8..15) asks the server to
    compress with a smaller window, which saves memory on this side.  The
    ``*_no_context_takeover`` flags ask for every message to be compressed on its own.
    ``compress_level`` (-1..9) and ``mem_level`` (1..9) go to :func:`zlib.compressobj`.

    ``min_size``: messages shorter than this many bytes are sent uncompressed (RSV1
    off).  The default, 1024, skips messages where compression saves a few bytes at
    best, and keeps a connection that only sends small commands from ever allocating
    a compressor; set 0 to compress everything.
    """

    client_max_window_bits: int | bool = True
    server_max_window_bits: int | None = None
    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    compress_level: int = 6
    mem_level: int = 8
    min_size: int = _DEFAULT_MIN_SIZE

    def __post_init__(self) -> None:
        if not isinstance(self.client_max_window_bits, bool):
            _check_int(
                "client_max_window_bits",
                self.client_max_window_bits,
                _MIN_WINDOW_BITS,
                _MAX_WINDOW_BITS,
            )
        if self.server_max_window_bits is not None:
            _check_int(
                "server_max_window_bits",
                self.server_max_window_bits,
                _MIN_WINDOW_BITS,
                _MAX_WINDOW_BITS,
            )
        for name in (_CLIENT_NO_CONTEXT_TAKEOVER, _SERVER_NO_CONTEXT_TAKEOVER):
            if not isinstance(getattr(self, name), bool):
                raise WebSocketConfigurationException(
                    f"compression option {name} must be True or False, got {getattr(self, name)!r}"
                )
        _check_int("compress_level", self.compress_level, -1, 9)
        _check_int("mem_level", self.mem_level, 1, 9)
        _check_int("min_size", self.min_size, 0, None)

    def offer(self) -> str:
        """Return the ``Sec-WebSocket-Extensions`` request value (RFC 7692 §5, §7.1)."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append(_SERVER_NO_CONTEXT_TAKEOVER)
        if self.client_no_context_takeover:
            parts.append(_CLIENT_NO_CONTEXT_TAKEOVER)
        if self.server_max_window_bits is not None:
            parts.append(f"{_SERVER_MAX_WINDOW_BITS}={self.server_max_window_bits}")
        if self.client_max_window_bits is True:
            parts.append(_CLIENT_MAX_WINDOW_BITS)
        elif self.client_max_window_bits is not False:
            parts.append(f"{_CLIENT_MAX_WINDOW_BITS}={self.client_max_window_bits}")
        return "; ".join(parts)

    def accept(
        self, params: list[tuple[str, str | None]], *, max_size: int | None
    ) -> PerMessageDeflate:
        """Check the server's permessage-deflate response parameters against our offer.

        ``params`` are the response's parameters for this extension, in order, values
        already unquoted.  Returns the codec for the connection; raises
        :class:`WebSocketHandshakeException` when RFC 7692 §7.1 says the client must
        fail the connection.  ``max_size`` is only quoted in size-limit errors.
        """
        seen: dict[str, str | None] = {}
        for name, value in params:
            key = name.lower()
            if key not in _RESPONSE_PARAMS:
                raise _reject(f"unknown parameter {name!r}")
            if key in seen:
                raise _reject(f"parameter {name!r} appears more than once")
            seen[key] = value

        for key in (_SERVER_NO_CONTEXT_TAKEOVER, _CLIENT_NO_CONTEXT_TAKEOVER):
            if seen.get(key) is not None:
                raise _reject(f"{key} takes no value, got {seen[key]!r}")

        # §7.1.1.1: the server accepts our server_no_context_takeover by echoing it; it
        # may also send it unasked.
        server_nct = _SERVER_NO_CONTEXT_TAKEOVER in seen
        if self.server_no_context_takeover and not server_nct:
            raise _reject("we offered server_no_context_takeover but the server did not accept it")
        # §7.1.1.2: the server may forbid context takeover to us; offering it is a promise.
        client_nct = self.client_no_context_takeover or _CLIENT_NO_CONTEXT_TAKEOVER in seen

        # §7.1.2.1: the server accepts our server_max_window_bits with the same or a
        # smaller value; unasked, it may announce any value.
        server_bits = _MAX_WINDOW_BITS
        if _SERVER_MAX_WINDOW_BITS in seen:
            server_bits = _window_bits(_SERVER_MAX_WINDOW_BITS, seen[_SERVER_MAX_WINDOW_BITS])
            requested = self.server_max_window_bits
            if requested is not None and server_bits > requested:
                raise _reject(
                    f"server_max_window_bits={server_bits} is larger than the "
                    f"{requested} we asked for"
                )
        elif self.server_max_window_bits is not None:
            raise _reject(
                f"we offered server_max_window_bits={self.server_max_window_bits} "
                "but the server did not accept it"
            )

        # §7.1.2.2: the server may cap our window only if we offered the parameter, and
        # then must give a value.  A value above the one we offered is harmless: we keep
        # the smaller window we promised.
        client_bits = _MAX_WINDOW_BITS
        if self.client_max_window_bits is not True and self.client_max_window_bits is not False:
            client_bits = self.client_max_window_bits
        if _CLIENT_MAX_WINDOW_BITS in seen:
            if self.client_max_window_bits is False:
                raise _reject(
                    "the server sent client_max_window_bits, which we did not offer; "
                    "enable client_max_window_bits in the compression options or fix the server"
                )
            value = seen[_CLIENT_MAX_WINDOW_BITS]
            if value is None:
                raise _reject("client_max_window_bits needs a value in a response")
            client_bits = min(client_bits, _window_bits(_CLIENT_MAX_WINDOW_BITS, value))

        return PerMessageDeflate(
            server_no_context_takeover=server_nct,
            client_no_context_takeover=client_nct,
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            min_size=self.min_size,
            max_size=max_size,
        )


def _reject(problem: str) -> WebSocketHandshakeException:
    return WebSocketHandshakeException(
        f"invalid permessage-deflate response from the server: {problem} (RFC 7692 §7.1); "
        "disable compression (compression=None) to connect to this server"
    )


def _window_bits(name: str, value: str | None) -> int:
    """Parse a response's window-bits value (RFC 7692 §7.1.2)."""
    if value is None:
        raise _reject(f"{name} needs a value from 8 to 15")
    bits = _WINDOW_BITS_VALUES.get(value)
    if bits is None:
        if len(value) > 1 and value.isascii() and value.isdigit() and value.startswith("0"):
            raise _reject(f"{name}={value!r} has a leading zero")
        raise _reject(f"{name}={value!r} is not an integer from 8 to 15")
    return bits


def coerce_compression(value: object) -> DeflateOptions | None:
    """Turn the user's ``compression=`` option into :class:`DeflateOptions` or ``None``.

    ``"deflate"`` / ``"permessage-deflate"`` / ``True``: the default options;
    ``None`` / ``False``: no compression; a :class:`DeflateOptions`: itself; a mapping:
    its items as :class:`DeflateOptions` keyword arguments.
    """
    if value is None or value is False:
        return None
    if value is True:
        return DeflateOptions()
    if isinstance(value, DeflateOptions):
        return value
    if isinstance(value, str):
        if value.lower() in ("deflate", EXTENSION_NAME):
            return DeflateOptions()
        raise WebSocketConfigurationException(
            f"compression={value!r} is not supported; use 'deflate', True, None, "
            "a DeflateOptions or a dict of its fields"
        )
    if isinstance(value, Mapping):
        fields = DeflateOptions.__dataclass_fields__
        unknown = [key for key in value if key not in fields]
        if unknown:
            raise WebSocketConfigurationException(
                f"compression= has unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid ones are {', '.join(fields)}"
            )
        return DeflateOptions(**value)
    raise WebSocketConfigurationException(
        f"compression= must be 'deflate', True, None, False, a DeflateOptions or a dict, "
        f"got {type(value).__name__} {value!r}"
    )


class PerMessageDeflate:
    """The permessage-deflate codec negotiated for one client connection.

    :meth:`compress` works on outgoing message payloads (callers serialize sends, e.g.
    under a send lock); :meth:`decompress` on incoming ones.  The two directions share
    no state, so one thread may send while another receives.  Whether a message is
    compressed at all is the caller's choice (see :attr:`min_size`); this object only
    sees the compressed ones.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_deflate_wbits",
        "_inflate_wbits",
        "_inflating",
        "_sync_mode",
        "client_max_window_bits",
        "client_no_context_takeover",
        "compress_level",
        "max_size",
        "mem_level",
        "min_size",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = _MAX_WINDOW_BITS,
        client_max_window_bits: int = _MAX_WINDOW_BITS,
        compress_level: int = 6,
        mem_level: int = 8,
        min_size: int = _DEFAULT_MIN_SIZE,
        max_size: int | None = None,
    ) -> None:
        _check_int("server_max_window_bits", server_max_window_bits, 8, 15)
        _check_int("client_max_window_bits", client_max_window_bits, 8, 15)
        _check_int("compress_level", compress_level, -1, 9)
        _check_int("mem_level", mem_level, 1, 9)
        _check_int("min_size", min_size, 0, None)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.min_size = min_size
        self.max_size = max_size
        # zlib refuses a raw deflate window of 8 bits.  9 is still within an agreed 8:
        # zlib's deflate never emits a distance above 2**wbits - 262 (250 for 9 bits).
        self._deflate_wbits = -max(client_max_window_bits, 9)
        # Inflate with at least 9 bits: a server that agreed to 8 but really uses a 9-bit
        # window still decodes, and a window larger than the sender's is always safe.
        self._inflate_wbits = -max(server_max_window_bits, 9)
        # A full flush ends the message like a sync flush and also forgets the history,
        # which is cheaper than a new compressor per message.
        self._sync_mode = zlib.Z_FULL_FLUSH if client_no_context_takeover else zlib.Z_SYNC_FLUSH
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # True while a fragmented incoming message has fed data to the decompressor.
        self._inflating = False

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits})"
        )

    def compress(self, data: bytes | bytearray | memoryview, fin: bool = True) -> bytes:
        """Compress one frame's worth of an outgoing message; ``fin`` marks its last frame.

        A fragmented message is compressed piece by piece (``fin=False`` then ``True``);
        every piece is flushed so the receiver can decode it at once.  The last piece
        loses the 0x00 0x00 0xff 0xff tail (RFC 7692 §7.2.1).
        """
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, self._deflate_wbits, self.mem_level
            )
        if not fin:
            return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        out = compressor.compress(data) + compressor.flush(self._sync_mode)
        if out.endswith(_TAIL):
            return out[:-4]
        # Defensive: zlib writes no flush block when nothing happened since the last
        # flush (CPython's compress() always runs deflate, so this does not happen
        # today); send the empty stored block ourselves rather than cut real data.
        return out + _EMPTY_MESSAGE

    def decompress(
        self, data: bytes | bytearray | memoryview, fin: bool, max_length: int | None
    ) -> bytes:
        """Decompress one frame's payload of a compressed message; ``fin`` marks its last.

        ``max_length`` is how many bytes this call may produce (the caller passes what is
        left of the message's budget), ``None`` for no limit.  zlib never produces more
        than one byte past it, so a decompression bomb costs no memory.  Raises
        :class:`WebSocketMessageTooBigException` (1009) past the limit and
        :class:`WebSocketProtocolException` (1007) on corrupt data.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(self._inflate_wbits)
        # One byte past the budget proves it is exceeded; zlib reads 0 as "no limit".
        limit = 0 if max_length is None else max(max_length, 0) + 1
        try:
            if fin:
                if not data and not self._inflating:
                    # A compressed message with an empty payload: nothing to inflate, and
                    # the bare tail would leave the inflater inside a stored block.
                    return b""
                out = decompressor.decompress(b"".join((data, _TAIL)), limit)
            else:
                if data:
                    self._inflating = True
                out = decompressor.decompress(data, limit)
            if limit and len(out) >= limit:
                raise self._too_big(max_length)
            if decompressor.eof:
                out = self._restart_after_final_block(decompressor, out, fin, limit, max_length)
        except zlib.error as exc:
            raise WebSocketProtocolException(
                f"invalid compressed data: {exc}; the server's permessage-deflate stream is "
                "corrupt",
                close_code=1007,
            ) from exc
        if fin:
            self._inflating = False
            if self.server_no_context_takeover:
                # Each message stands alone; drop the inflater (cheap to recreate) so an
                # idle connection holds no window.
                self._decompressor = None
        return out

    def _restart_after_final_block(
        self,
        decompressor: zlib._Decompress,
        out: bytes,
        fin: bool,
        limit: int,
        max_length: int | None,
    ) -> bytes:
        """Go on after a block with BFINAL=1 (RFC 7692 §7.2.3.4): what follows is a new
        deflate stream.  A conforming sender ends such a message with the empty stored
        block it then needs (§7.2.1), so our tail usually decodes as one more empty block.
        Back-references across the final block are not supported (no preset dictionary).
        """
        parts = [out]
        size = len(out)
        while decompressor.eof:
            rest = decompressor.unused_data
            decompressor = self._decompressor = zlib.decompressobj(self._inflate_wbits)
            if not rest or (fin and rest == _TAIL):
                # Nothing after the final block (the sender omitted the empty block).
                break
            chunk = decompressor.decompress(rest, limit - size if limit else 0)
            size += len(chunk)
            if limit and size >= limit:
                raise self._too_big(max_length)
            parts.append(chunk)
        return b"".join(parts)

    def _too_big(self, max_length: int | None) -> WebSocketMessageTooBigException:
        if self.max_size is not None:
            detail = f"max_size={self.max_size} bytes"
        else:
            detail = f"the remaining budget of {max_length} bytes"
        return WebSocketMessageTooBigException(
            f"compressed message inflates beyond the size limit ({detail}); "
            "raise max_size if such messages are expected"
        )
