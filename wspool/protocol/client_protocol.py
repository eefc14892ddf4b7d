"""The client side of an open WebSocket connection (RFC 6455 §5-§7), sans-I/O.

``ClientProtocol`` turns received bytes into events and send requests into bytes.  It
never touches a socket, a thread or a clock, so the blocking client and the pool's
dispatcher drive the very same code.

Not thread-safe: every call on one instance must be serialized by the caller (the
blocking client does it with its locks, the pool with the connection's send lock).

With the protocol trace on (:func:`wspool.protocol.trace.enableTrace`), every frame built here
is logged as it is built, and what ``receive_data`` parses is logged per returned
event: one line per message (reassembled, decompressed), or per data frame when
frame events are on, and one per control frame.  When the trace is off the cost is
one module-attribute read per call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from enum import Enum
from typing import Final, Protocol

from wspool._reprs import bounded_repr
from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketMessageTooBigException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)
from wspool.protocol import trace as _trace
from wspool.protocol._accel import make_utf8_decoder
from wspool.protocol.deflate import PerMessageDeflate
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Event,
    Fragment,
    Message,
    Ping,
    Pong,
    ProtocolError,
)
from wspool.protocol.frames import (
    MAX_CONTROL_PAYLOAD,
    CloseCode,
    Opcode,
    decode_close_payload,
    encode_close_payload,
    encode_frame,
)

__all__ = ["DEFAULT_MAX_SIZE", "ClientProtocol", "ProtocolState"]

logger = logging.getLogger("wspool")

#: Default bound on frames, messages and decompressed messages: 16 MiB.
DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024
#: The text_errors policies (see ClientProtocol.text_errors).
TEXT_ERRORS: Final = ("strict", "replace", "bytes")

_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)
_CONT: Final = int(Opcode.CONT)
_CLOSE: Final = int(Opcode.CLOSE)
_PING: Final = int(Opcode.PING)
_PONG: Final = int(Opcode.PONG)


class _Utf8Decoder(Protocol):
    def decode(self, data: bytes, final: bool = False) -> str: ...


class ProtocolState(Enum):
    """Where the closing handshake stands (RFC 6455 §7)."""

    OPEN = "open"
    #: We sent a close frame (or failed the connection) and wait for the peer.
    CLOSING = "closing"
    #: Close frames were exchanged, or the byte stream ended.
    CLOSED = "closed"


class ClientProtocol:
    """Frame parser, message assembler and frame builder for one client connection.

    ``max_size`` bounds a frame's payload, a whole message and a message after
    decompression (``None``: no bound).  ``deflate`` is the negotiated
    permessage-deflate codec, or ``None``.  With ``frame_events`` on, data frames come
    out one by one as :class:`Fragment` events instead of assembled messages.

    ``mask_key_source`` (websocket-client's ``get_mask_key``; also settable as an
    attribute) is called with 4 for every frame built and must return the 4-byte
    masking key (a ``str`` is encoded as latin-1); ``None`` uses fresh random keys.
    Anything else raises :class:`WebSocketConfigurationException` from the send
    method, except for close frames and the replies the core queues while parsing,
    which log the failure and use a random key (closing and parsing never fail on it).
    ``label`` (the connection's URL without credentials) names the connection in the
    trace and in the error for an unusable masking key.
    """

    # Slots: one instance per connection, so no per-instance dict (memory per idle
    # connection is a benchmark target).
    __slots__ = (
        "_buffer",
        "_failed",
        "_frame_events",
        "_frame_fin",
        "_frame_opcode",
        "_frame_remaining",
        "_outgoing",
        "_rx_chunks",
        "_rx_compressed",
        "_rx_decoder",
        "_rx_opcode",
        "_rx_size",
        "_rx_texts",
        "_trace_replies",
        "_tx_compressed",
        "_tx_opcode",
        "auto_pong",
        "close_code",
        "close_reason",
        "defer_failure",
        "deflate",
        "label",
        "mask_key_source",
        "max_size",
        "skip_utf8_validation",
        "state",
        "text_errors",
    )

    def __init__(
        self,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        skip_utf8_validation: bool = False,
        deflate: PerMessageDeflate | None = None,
        auto_pong: bool = True,
        frame_events: bool = False,
        defer_failure: bool = False,
        mask_key_source: Callable[[int], bytes] | None = None,
        label: str | None = None,
        text_errors: str = "strict",
    ) -> None:
        if max_size is not None and max_size < 0:
            raise WebSocketConfigurationException(f"max_size must be >= 0 or None, not {max_size}")
        self.max_size = max_size
        self.skip_utf8_validation = skip_utf8_validation
        if text_errors not in TEXT_ERRORS:
            raise WebSocketConfigurationException(
                f"text_errors={text_errors!r}: use one of {', '.join(TEXT_ERRORS)}"
            )
        #: What a text message that is not UTF-8 becomes: "strict" fails the connection
        #: (1007, RFC 6455 §8.1); "replace" decodes with U+FFFD; "bytes" delivers that
        #: message undecoded.  skip_utf8_validation=True overrides it (no check at all:
        #: invalid bytes come out as surrogate escapes).
        self.text_errors = text_errors
        self.deflate = deflate
        self.auto_pong = auto_pong
        self._frame_events = frame_events
        self.mask_key_source = mask_key_source
        self.label = label

        self.state = ProtocolState.OPEN
        #: The peer's close code and reason once its close frame arrived (1006 and ""
        #: when the stream ended without one).
        self.close_code: int | None = None
        self.close_reason: str = ""

        self._buffer = bytearray()  # received bytes not yet parsed into a whole frame
        self._outgoing: list[bytes] = []  # automatic replies: pongs, the close reply
        self._failed = False  # after a protocol error all input is ignored
        self.defer_failure = defer_failure

        # Message being received (fragmented, compressed or in frame-event mode).
        self._rx_opcode: int | None = None
        self._rx_compressed = False
        self._rx_size = 0
        self._rx_chunks: list[bytes] = []  # binary, or text when not validated
        self._rx_texts: list[str] = []  # text decoded fragment by fragment
        self._rx_decoder: _Utf8Decoder | None = None
        # Data frame whose payload is being streamed: bytes still to come, its header.
        self._frame_remaining = 0
        self._frame_opcode = _CONT
        self._frame_fin = False

        # Opcode of the fragmented message being sent with send_fragment, if any.
        self._tx_opcode: int | None = None
        self._tx_compressed = False
        # While receive_data runs with the trace on: the replies the core queued
        # (opcode, payload, note), traced after the events that caused them.
        self._trace_replies: list[tuple[int, bytes, str]] | None = None

    # ------------------------------------------------------------------ receiving

    @property
    def frame_events(self) -> bool:
        return self._frame_events

    @frame_events.setter
    def frame_events(self, value: bool) -> None:
        if value != self._frame_events and self._rx_opcode is not None:
            raise WebSocketConfigurationException(
                "cannot switch frame events on or off in the middle of a fragmented message"
            )
        self._frame_events = value

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes; return the events they complete, in order.

        ``data == b""`` means the peer closed the stream.  A protocol violation ends
        the list with a :class:`ProtocolError` after everything parsed before it.
        """
        if not data:
            return self._receive_eof()
        if self._failed or self.state is ProtocolState.CLOSED:
            return []  # RFC 6455 §5.5.1: nothing is processed after the close frame
        tracing = _trace.enabled
        if tracing:
            self._trace_replies = []
        events: list[Event] = []
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
        try:
            pos = self._parse(buf, events)
        except WebSocketProtocolException as exc:
            self._failed = True
            self._buffer = bytearray()
            if not self.defer_failure:
                self.fail(exc)
            events.append(ProtocolError(exc))
            if tracing:
                self._trace_received(events)
            return events
        if buf is self._buffer:
            del self._buffer[:pos]
        elif pos < len(buf):
            self._buffer = bytearray(memoryview(buf)[pos:])
        if tracing:
            self._trace_received(events)
        return events

    def _trace_received(self, events: list[Event]) -> None:
        """Trace what one receive_data call parsed, then the replies it queued."""
        replies, self._trace_replies = self._trace_replies, None
        _trace.received(self.label, events)
        for opcode, payload, note in replies or ():
            _trace.frame(self.label, _trace.SENT, opcode, True, len(payload), payload, note=note)

    def _parse(self, buf: bytes | bytearray, events: list[Event]) -> int:
        """Parse what ``buf`` holds; return how many bytes were consumed.

        Control frames and single-frame uncompressed messages are taken whole once
        they have fully arrived.  Every other data frame is *streamed*: its payload is
        decompressed and UTF-8-checked piece by piece as it arrives, so a large
        message is never buffered twice and invalid text fails in the read that
        brought it (Autobahn 6.4.3/6.4.4), not when the frame is complete.
        """
        end = len(buf)
        pos = 0
        max_size = self.max_size
        deflate_on = self.deflate is not None
        whole = buf if type(buf) is bytes else None  # slicing bytes needs no view
        validate = not self.skip_utf8_validation and self.text_errors == "strict"
        append = events.append
        if (
            whole is not None
            and not self._frame_remaining
            and self._rx_opcode is None
            and not self._frame_events
        ):
            # Hot loop: consecutive whole unfragmented text/binary frames without RSV
            # bits (b0 0x81/0x82), unmasked, 7- or minimal 16-bit length, within
            # max_size.  Anything else (including every violation) stops it and the
            # general loop below takes over at the same position.
            limit = max_size if max_size is not None else end
            while end - pos >= 2:
                b0 = whole[pos]
                if b0 != 0x81 and b0 != 0x82:
                    break
                length = whole[pos + 1]
                if length < 126:
                    start = pos + 2
                elif length == 126 and end - pos >= 4:
                    length = (whole[pos + 2] << 8) | whole[pos + 3]
                    if length < 126:
                        break
                    start = pos + 4
                else:
                    break  # 64-bit length, masked, or a header cut short
                stop = start + length
                if stop > end or length > limit:
                    break
                payload = whole[start:stop]
                pos = stop
                if b0 == 0x82:
                    append(Message(_BINARY, payload))
                elif validate:
                    try:
                        append(Message(_TEXT, payload.decode("utf-8")))
                    except UnicodeDecodeError as exc:
                        raise WebSocketPayloadException(
                            f"text message is not valid UTF-8: {exc}"
                        ) from exc
                else:
                    append(Message(_TEXT, self._decode_text(payload)))
        while True:
            if self._frame_remaining:
                if pos == end:
                    break
                stop = min(end, pos + self._frame_remaining)
                chunk = whole[pos:stop] if whole is not None else bytes(memoryview(buf)[pos:stop])
                self._frame_remaining -= stop - pos
                pos = stop
                self._data_chunk(chunk, self._frame_remaining == 0, events)
                continue
            if end - pos < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if length < 126:
                    raise WebSocketProtocolException(
                        f"frame length {length} sent in 16 bits: lengths must be minimal "
                        "(RFC 6455 §5.2)"
                    )
                start = pos + 4
            else:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise WebSocketProtocolException(
                        "frame length has its most significant bit set (RFC 6455 §5.2)"
                    )
                if length < 0x10000:
                    raise WebSocketProtocolException(
                        f"frame length {length} sent in 64 bits: lengths must be minimal "
                        "(RFC 6455 §5.2)"
                    )
                start = pos + 10
            opcode = b0 & 0x0F
            # Header checks happen before the payload arrives, so a bad frame fails fast.
            if b1 & 0x80:
                raise WebSocketProtocolException(
                    "the server sent a masked frame; servers must not mask (RFC 6455 §5.1)"
                )
            if b0 & 0x70:
                self._check_rsv(b0, opcode, deflate_on)
            stop = start + length
            if opcode > 2:
                if opcode < 8 or opcode > 10:
                    raise WebSocketProtocolException(f"reserved opcode {opcode:#x} (RFC 6455 §5.2)")
                if length > MAX_CONTROL_PAYLOAD:
                    raise WebSocketProtocolException(
                        f"control frame with {length} bytes of payload; the limit is 125 "
                        "(RFC 6455 §5.5)"
                    )
                if not b0 & 0x80:
                    raise WebSocketProtocolException("fragmented control frame (RFC 6455 §5.5)")
                if stop > end:
                    break
                payload = (
                    whole[start:stop] if whole is not None else bytes(memoryview(buf)[start:stop])
                )
                pos = stop
                if self._control_frame(opcode, payload, events):
                    return end  # close frame: ignore whatever follows it
                continue
            if max_size is not None and length > max_size:
                raise WebSocketMessageTooBigException(
                    f"frame of {length} bytes exceeds max_size={max_size}"
                )
            if (
                stop <= end
                and b0 & 0x80
                and opcode != _CONT
                and not self._frame_events
                and self._rx_opcode is None
            ):
                # Fast path: a whole message in one frame, all here (RSV1 was checked
                # above: set only with permessage-deflate on).
                payload = (
                    whole[start:stop] if whole is not None else bytes(memoryview(buf)[start:stop])
                )
                pos = stop
                if b0 & 0x40:
                    assert self.deflate is not None
                    payload = self.deflate.decompress(payload, True, max_size)
                if opcode == _TEXT:
                    append(Message(_TEXT, self._decode_text(payload)))
                else:
                    append(Message(_BINARY, payload))
                continue
            self._begin_frame(opcode, bool(b0 & 0x80), bool(b0 & 0x40))
            pos = start
            self._frame_remaining = length
            if length == 0:
                self._data_chunk(b"", True, events)
        return pos

    def _check_rsv(self, b0: int, opcode: int, deflate_on: bool) -> None:
        if b0 & 0x30:
            raise WebSocketProtocolException(
                "RSV2/RSV3 bit set, but no negotiated extension defines it (RFC 6455 §5.2)"
            )
        if not deflate_on:
            raise WebSocketProtocolException(
                "RSV1 bit set, but permessage-deflate was not negotiated (RFC 6455 §5.2)"
            )
        if opcode == _CONT or opcode > 2:
            raise WebSocketProtocolException(
                "RSV1 bit set on a continuation or control frame (RFC 7692 §6.1)"
            )

    def _decode_text(self, payload: bytes) -> str | bytes:
        if self.skip_utf8_validation:
            return payload.decode("utf-8", "surrogateescape")
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            policy = self.text_errors
            if policy == "replace":
                return payload.decode("utf-8", "replace")
            if policy == "bytes":
                return payload
            raise WebSocketPayloadException(f"text message is not valid UTF-8: {exc}") from exc

    def _begin_frame(self, opcode: int, fin: bool, rsv1: bool) -> None:
        """A streamed data frame starts: check it fits the message sequence (§5.4)."""
        if opcode == _CONT:
            if self._rx_opcode is None:
                raise WebSocketProtocolException(
                    "continuation frame without a message to continue (RFC 6455 §5.4)"
                )
        else:
            if self._rx_opcode is not None:
                raise WebSocketProtocolException(
                    f"new data frame (opcode {opcode}) inside a fragmented message; "
                    "expected a continuation frame (RFC 6455 §5.4)"
                )
            self._rx_opcode = opcode
            self._rx_compressed = rsv1
            self._rx_size = 0
            if opcode == _TEXT and not self.skip_utf8_validation and self.text_errors == "strict":
                self._rx_decoder = make_utf8_decoder()
        self._frame_opcode = opcode
        self._frame_fin = fin

    def _data_chunk(self, payload: bytes, frame_done: bool, events: list[Event]) -> None:
        """Part of a streamed data frame's payload; ``frame_done`` on its last part."""
        final = frame_done and self._frame_fin  # the message's last byte
        max_size = self.max_size
        if self._rx_compressed:
            assert self.deflate is not None  # checked with the RSV bits
            budget = None if max_size is None else max_size - self._rx_size
            payload = self.deflate.decompress(payload, final, budget)
        self._rx_size += len(payload)
        if max_size is not None and self._rx_size > max_size:
            raise WebSocketMessageTooBigException(
                f"message of more than {max_size} bytes exceeds max_size={max_size}"
            )

        decoder = self._rx_decoder
        if decoder is not None:
            try:
                text = decoder.decode(payload, final)
            except UnicodeDecodeError as exc:
                raise WebSocketPayloadException(f"text message is not valid UTF-8: {exc}") from exc
            if not self._frame_events:
                self._rx_texts.append(text)
        if self._frame_events or decoder is None:
            self._rx_chunks.append(payload)

        if frame_done and self._frame_events:
            data = b"".join(self._rx_chunks)
            self._rx_chunks = []
            events.append(Fragment(self._frame_opcode, data, self._frame_fin))
        if final:
            message_opcode = self._rx_opcode
            assert message_opcode is not None
            if not self._frame_events:
                events.append(Message(message_opcode, self._join_message(message_opcode)))
            self._rx_opcode = None
            self._rx_decoder = None

    def _join_message(self, opcode: int) -> str | bytes:
        """The assembled message; empties the part lists."""
        if self._rx_decoder is not None:
            text = "".join(self._rx_texts)
            self._rx_texts = []
            return text
        data = b"".join(self._rx_chunks)
        self._rx_chunks = []
        if opcode != _TEXT:
            return data
        return self._decode_text(data)

    def _control_frame(self, opcode: int, payload: bytes, events: list[Event]) -> bool:
        """Handle a ping, pong or close; True when it was the close frame."""
        if opcode == _PING:
            if self.auto_pong and self.state is ProtocolState.OPEN:
                self._outgoing.append(self._frame(_PONG, payload, "(auto)"))
            events.append(Ping(payload))
            return False
        if opcode == _PONG:
            events.append(Pong(payload))
            return False
        code, reason = decode_close_payload(payload)
        self.close_code = code
        self.close_reason = reason
        if self.state is ProtocolState.OPEN:
            # Echo the peer's code (RFC 6455 §5.5.1); "no code" is answered with none.
            reply_code = None if code == CloseCode.NO_STATUS_RCVD else code
            self._outgoing.append(self._frame(_CLOSE, encode_close_payload(reply_code), "(reply)"))
        self.state = ProtocolState.CLOSED
        events.append(CloseReceived(code, reason, payload))
        return True

    def _receive_eof(self) -> list[Event]:
        clean = self.state is ProtocolState.CLOSED and not self._failed
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        self.state = ProtocolState.CLOSED
        self._buffer = bytearray()
        events: list[Event] = [EndOfStream(clean)]
        if _trace.enabled:
            _trace.received(self.label, events)
        return events

    def fail(self, exc: WebSocketProtocolException) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): queue a close frame with
        ``exc.close_code`` and stop processing input.

        Called by the core itself when it finds a violation, unless ``defer_failure``
        is on: then the caller calls it when it reaches the :class:`ProtocolError`
        event, so replies to the events before it can still be sent first.
        """
        self._failed = True
        if self.state is ProtocolState.OPEN:
            reason = _truncate_utf8(exc.message, MAX_CONTROL_PAYLOAD - 2)
            self._outgoing.append(
                self._frame(_CLOSE, encode_close_payload(exc.close_code, reason), "(failing)")
            )
            self.state = ProtocolState.CLOSING

    def data_to_send(self) -> bytes:
        """Bytes the core produced on its own (pongs, close replies); empties the queue."""
        if not self._outgoing:
            return b""
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        return out

    # -------------------------------------------------------------------- sending

    def _check_can_send(self) -> None:
        if self.state is not ProtocolState.OPEN:
            raise WebSocketConnectionClosedException()

    def send_message(
        self,
        data: str | bytes | bytearray | memoryview,
        opcode: int | None = None,
        *,
        fragment_size: int | None = None,
    ) -> bytes:
        """Frame a whole message.  ``str`` goes as text, bytes-like as binary, unless
        ``opcode`` says otherwise (bytes sent as text must already be UTF-8).

        ``fragment_size`` splits the (compressed) payload into frames of that size.
        """
        self._check_can_send()
        if self._tx_opcode is not None:
            raise WebSocketConfigurationException(
                "a fragmented message is being sent: finish it with "
                "send_fragment(..., fin=True) before sending another message"
            )
        opcode, payload = _coerce_payload(data, opcode)
        compressed = False
        deflate = self.deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            payload = deflate.compress(payload, True)
            compressed = True
        if fragment_size is None or len(payload) <= fragment_size:
            frame = encode_frame(
                opcode,
                payload,
                rsv1=compressed,
                key=None if self.mask_key_source is None else self._source_key(),
            )
            if _trace.enabled:
                _trace.frame(
                    self.label,
                    _trace.SENT,
                    opcode,
                    True,
                    len(payload),
                    data,
                    note="deflated" if compressed else "",
                )
            return frame
        if fragment_size < 1:
            raise WebSocketConfigurationException(
                f"fragment_size must be >= 1, not {fragment_size}"
            )
        view = memoryview(payload)
        frames = []
        last = len(payload) - fragment_size
        source = self.mask_key_source
        for offset in range(0, len(payload), fragment_size):
            piece = view[offset : offset + fragment_size]
            frame_opcode = opcode if offset == 0 else _CONT
            frames.append(
                encode_frame(
                    frame_opcode,
                    piece,
                    fin=offset >= last,
                    rsv1=compressed and offset == 0,
                    key=None if source is None else self._source_key(),
                )
            )
            if _trace.enabled:
                shown = piece if not compressed else data if offset == 0 else None
                _trace.frame(
                    self.label,
                    _trace.SENT,
                    frame_opcode,
                    offset >= last,
                    len(piece),
                    shown,
                    note="deflated" if compressed else "",
                )
        return b"".join(frames)

    def send_fragment(
        self,
        data: str | bytes | bytearray | memoryview,
        opcode: int | None = None,
        fin: bool = False,
    ) -> bytes:
        """Frame one piece of a message streamed in parts (RFC 6455 §5.4).

        The first call fixes the message's opcode (text or binary); later calls send
        continuation frames whatever ``opcode`` says; ``fin=True`` ends the message.
        """
        self._check_can_send()
        if self._tx_opcode is None:
            opcode, payload = _coerce_payload(data, opcode)
            frame_opcode = opcode
            deflate = self.deflate
            self._tx_compressed = deflate is not None and len(payload) >= deflate.min_size
            rsv1 = self._tx_compressed
            self._tx_opcode = opcode
        else:
            _, payload = _coerce_payload(data, self._tx_opcode)
            frame_opcode = _CONT
            rsv1 = False
        if self._tx_compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(payload, fin)
        compressed = self._tx_compressed
        if fin:
            self._tx_opcode = None
            self._tx_compressed = False
        frame = encode_frame(
            frame_opcode,
            payload,
            fin=fin,
            rsv1=rsv1,
            key=None if self.mask_key_source is None else self._source_key(),
        )
        if _trace.enabled:
            _trace.frame(
                self.label,
                _trace.SENT,
                frame_opcode,
                fin,
                len(payload),
                data if compressed else payload,
                note="deflated" if compressed else "",
            )
        return frame

    def send_ping(self, data: str | bytes | bytearray | memoryview = b"") -> bytes:
        """A ping frame; ``data`` is at most 125 bytes (RFC 6455 §5.5.2)."""
        return self._control(_PING, data)

    def send_pong(self, data: str | bytes | bytearray | memoryview = b"") -> bytes:
        """An unsolicited or manual pong frame (RFC 6455 §5.5.3)."""
        return self._control(_PONG, data)

    def _control(self, opcode: int, data: str | bytes | bytearray | memoryview) -> bytes:
        self._check_can_send()
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise WebSocketConfigurationException(
                f"{Opcode(opcode).name.lower()} payload is {len(payload)} bytes; control frames "
                "carry at most 125 (RFC 6455 §5.5)"
            )
        return self._frame(opcode, payload)

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Start the closing handshake (RFC 6455 §7.1.2); ``b""`` if already started.

        Raises :class:`WebSocketConfigurationException` for a code that may not be
        sent or a reason longer than 123 bytes in UTF-8.
        """
        payload = encode_close_payload(code, reason)
        if self.state is not ProtocolState.OPEN:
            return b""
        self.state = ProtocolState.CLOSING
        return self._frame(_CLOSE, payload)

    def _frame(self, opcode: int, payload: bytes, note: str = "") -> bytes:
        """A whole unfragmented frame (control frames), traced; not for the hot path.

        A ``note`` marks a reply the core queues on its own while parsing.  A failing
        ``mask_key_source`` raises for a ping or pong the caller asked for, but not for
        a close frame or such a reply: raising out of ``receive_data`` would lose the
        events parsed so far, and a broken key source must not keep a connection from
        closing.  That frame is masked with a random key and the failure logged.
        """
        key = None
        if self.mask_key_source is not None:
            if not note and opcode != _CLOSE:
                key = self._source_key()
            else:
                try:
                    key = self._source_key()
                except Exception:
                    logger.error(
                        "%s: get_mask_key failed for a %s frame; it was masked with a "
                        "random key instead",
                        self.label or "connection",
                        Opcode(opcode).name.lower(),
                        exc_info=True,
                    )
        frame = encode_frame(opcode, payload, key=key)
        if _trace.enabled:
            if note and self._trace_replies is not None:
                self._trace_replies.append((opcode, payload, note))  # after the events
            else:
                _trace.frame(
                    self.label, _trace.SENT, opcode, True, len(payload), payload, note=note
                )
        return frame

    def _source_key(self) -> bytes:
        """The next masking key from ``mask_key_source``, checked (RFC 6455 §5.3)."""
        source = self.mask_key_source
        assert source is not None
        returned: object = source(4)
        key: bytes | None = None
        if isinstance(returned, str):
            with contextlib.suppress(UnicodeEncodeError):
                key = returned.encode("latin-1")
        elif isinstance(returned, bytes | bytearray | memoryview):
            key = bytes(returned)
        if key is not None and len(key) == 4:
            return key
        raise WebSocketConfigurationException(
            f"get_mask_key returned {bounded_repr(returned)}; it must return exactly 4 bytes "
            "(it is called with 4 for every frame)",
            url=self.label,
        )


def _coerce_payload(
    data: str | bytes | bytearray | memoryview, opcode: int | None
) -> tuple[int, bytes | bytearray | memoryview]:
    if opcode is not None and opcode not in (_TEXT, _BINARY):
        raise WebSocketConfigurationException(
            f"opcode {opcode} is not a data opcode: use 1 (text) or 2 (binary)"
        )
    if isinstance(data, str):
        return (_TEXT if opcode is None else opcode), data.encode("utf-8")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WebSocketConfigurationException(
            f"cannot send {type(data).__name__}: pass str (text) or bytes-like (binary)"
        )
    return (_BINARY if opcode is None else opcode), data


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")
