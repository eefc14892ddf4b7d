"""websocket-client's ``ABNF`` frame class and its ``STATUS_*`` close codes.

Code written for websocket-client builds, prints, masks and checks frames with
``ABNF`` (``ABNF.create_frame(...).format()``, ``frame.validate()``,
``ABNF.mask(key, data)``) and compares close codes with ``STATUS_*``; this module
gives that code the same names and behaviour.  It is a thin view over the sans-I/O
core: headers and masking come from :func:`wspool.protocol.frames.encode_frame`,
close payloads are checked by :func:`wspool.protocol.frames.decode_close_payload`, and
every constant is defined from :class:`~wspool.protocol.frames.Opcode` or
:class:`~wspool.protocol.frames.CloseCode`, so there is one source of truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar, Final, Self, TypeAlias, overload

from wspool._reprs import bounded_repr
from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)
from wspool.protocol._accel import apply_mask
from wspool.protocol.frames import (
    CONTROL_OPCODES,
    MAX_CONTROL_PAYLOAD,
    CloseCode,
    Opcode,
    decode_close_payload,
    encode_frame,
    is_valid_close_code,
    mask_key,
)

__all__ = [
    "ABNF",
    "STATUS_ABNORMAL_CLOSED",
    "STATUS_BAD_GATEWAY",
    "STATUS_GOING_AWAY",
    "STATUS_INVALID_EXTENSION",
    "STATUS_INVALID_PAYLOAD",
    "STATUS_MESSAGE_TOO_BIG",
    "STATUS_NORMAL",
    "STATUS_POLICY_VIOLATION",
    "STATUS_PROTOCOL_ERROR",
    "STATUS_SERVICE_RESTART",
    "STATUS_STATUS_NOT_AVAILABLE",
    "STATUS_TLS_HANDSHAKE_ERROR",
    "STATUS_TRY_AGAIN_LATER",
    "STATUS_UNEXPECTED_CONDITION",
    "STATUS_UNSUPPORTED_DATA_TYPE",
    "VALID_CLOSE_STATUS",
]

# websocket-client's names for the close codes (RFC 6455 §7.4.1).  They are the
# CloseCode members themselves: ints, equal to the numbers, with a readable repr.
STATUS_NORMAL: Final = CloseCode.NORMAL_CLOSURE
STATUS_GOING_AWAY: Final = CloseCode.GOING_AWAY
STATUS_PROTOCOL_ERROR: Final = CloseCode.PROTOCOL_ERROR
STATUS_UNSUPPORTED_DATA_TYPE: Final = CloseCode.UNSUPPORTED_DATA
STATUS_STATUS_NOT_AVAILABLE: Final = CloseCode.NO_STATUS_RCVD
STATUS_ABNORMAL_CLOSED: Final = CloseCode.ABNORMAL_CLOSURE
STATUS_INVALID_PAYLOAD: Final = CloseCode.INVALID_FRAME_PAYLOAD_DATA
STATUS_POLICY_VIOLATION: Final = CloseCode.POLICY_VIOLATION
STATUS_MESSAGE_TOO_BIG: Final = CloseCode.MESSAGE_TOO_BIG
STATUS_INVALID_EXTENSION: Final = CloseCode.MANDATORY_EXTENSION
STATUS_UNEXPECTED_CONDITION: Final = CloseCode.INTERNAL_ERROR
STATUS_SERVICE_RESTART: Final = CloseCode.SERVICE_RESTART
STATUS_TRY_AGAIN_LATER: Final = CloseCode.TRY_AGAIN_LATER
STATUS_BAD_GATEWAY: Final = CloseCode.BAD_GATEWAY
STATUS_TLS_HANDSHAKE_ERROR: Final = CloseCode.TLS_HANDSHAKE

#: The registered codes below 3000 a peer may put in a close frame, in numeric order
#: (1005, 1006 and 1015 are for local use only and never sent).
VALID_CLOSE_STATUS: Final[tuple[CloseCode, ...]] = tuple(
    code for code in CloseCode if is_valid_close_code(code)
)

Data: TypeAlias = str | bytes | bytearray | memoryview
MaskKeySource: TypeAlias = Callable[[int], bytes | str]
_MaskFunction: TypeAlias = Callable[[str | bytes | bytearray, Data | None], bytes]

_BITS: Final = (0, 1)


def _mask_data(mask_key: str | bytes | bytearray, data: Data | None) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask_key`` (RFC 6455 §5.3): masks and unmasks.

    As in websocket-client, a ``str`` key or ``str`` data is a byte string: it is
    encoded as latin-1 (one byte per character), and ``None`` data is empty.
    """
    key = mask_key.encode("latin-1") if isinstance(mask_key, str) else bytes(mask_key)
    if data is None:
        payload: bytes | bytearray | memoryview = b""
    elif isinstance(data, str):
        payload = data.encode("latin-1")
    else:
        payload = data
    return apply_mask(payload, key)


class _MaskBitOrFunction:
    """``ABNF.mask``: the static XOR helper on the class, the mask bit on an instance.

    Old websocket-client frames had a ``mask`` attribute holding the mask bit, which
    shadowed the ``mask(key, data)`` static method on instances; this keeps both uses
    working.  Assigning ``frame.mask`` sets ``frame.mask_value``.
    """

    @overload
    def __get__(self, instance: None, owner: type[object]) -> _MaskFunction: ...
    @overload
    def __get__(self, instance: ABNF, owner: type[object] | None = None) -> int: ...
    def __get__(
        self, instance: ABNF | None, owner: type[object] | None = None
    ) -> _MaskFunction | int:
        if instance is None:
            return _mask_data
        return instance.mask_value

    def __set__(self, instance: ABNF, value: int) -> None:
        instance.mask_value = value


def _payload_bytes(data: Data) -> bytes | bytearray | memoryview:
    """The frame payload as a flat byte buffer; ``str`` is UTF-8 encoded."""
    if isinstance(data, bytes | bytearray):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, memoryview):
        # len() of a view of wider items (or of several dimensions) is not its size
        # in bytes, which is what the length field must carry
        if data.ndim == 1 and data.itemsize == 1 and data.c_contiguous:
            return data
        return data.tobytes()
    raise TypeError(f"ABNF data must be str or a bytes-like object, not {type(data).__name__}")


def _checked_mask_key(key: object) -> bytes:
    """The key a ``get_mask_key`` returned, as 4 bytes, or a clear configuration error."""
    if isinstance(key, str):
        try:
            key = key.encode("latin-1")
        except UnicodeEncodeError:
            raise WebSocketConfigurationException(
                f"get_mask_key returned {bounded_repr(key)}: a str key may only hold "
                "characters U+0000-U+00FF (one byte each); return os.urandom(4) instead"
            ) from None
    elif isinstance(key, bytearray | memoryview):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise WebSocketConfigurationException(
            f"get_mask_key returned a {type(key).__name__}, not 4 bytes; "
            "it must return bytes such as os.urandom(4)"
        )
    if len(key) != 4:
        raise WebSocketConfigurationException(
            f"get_mask_key returned {len(key)} bytes; a masking key is exactly 4 bytes "
            "(RFC 6455 §5.3): return os.urandom(4)"
        )
    return key


class ABNF:
    """One WebSocket frame (RFC 6455 §5.2), websocket-client's ``ABNF`` class.

    ``ABNF(fin=0, rsv1=0, rsv2=0, rsv3=0, opcode=OPCODE_TEXT, mask_value=1, data="")``
    keeps the header bits and the payload as given; nothing is checked until
    :meth:`format` (which refuses what cannot be encoded) or :meth:`validate` (which
    refuses what RFC 6455 forbids).  ``mask=`` is accepted as an alias of
    ``mask_value`` (older websocket-client's name); ``mask_value`` defaults to 1.
    ``data`` may be ``str`` (sent as UTF-8) or any bytes-like object; ``None`` is "".

    ``mask`` has two meanings, as it had in older websocket-client: on the class,
    ``ABNF.mask(mask_key, data)`` is the static XOR helper that masks or unmasks
    bytes; on an instance, ``frame.mask`` reads (and assigning it sets) the mask bit,
    ``frame.mask_value``.  Call the helper through the class.

    ``get_mask_key(n)`` supplies the masking key when :meth:`format` masks the frame
    (it is called with 4).  It defaults to :func:`os.urandom`, and the default draws
    its keys from the same OS CSPRNG in blocks (``wspool.protocol.frames.mask_key``)
    rather than one system call per frame; replace it on a frame to choose the key
    (a test vector, say).  A ``str`` key is latin-1 encoded; anything but 4 bytes
    raises :class:`~wspool.exceptions.WebSocketConfigurationException`.
    """

    OPCODE_CONT: Final = Opcode.CONT
    OPCODE_TEXT: Final = Opcode.TEXT
    OPCODE_BINARY: Final = Opcode.BINARY
    OPCODE_CLOSE: Final = Opcode.CLOSE
    OPCODE_PING: Final = Opcode.PING
    OPCODE_PONG: Final = Opcode.PONG

    #: Every opcode RFC 6455 defines; others are reserved.
    OPCODES: ClassVar[tuple[int, ...]] = tuple(Opcode)
    #: Opcode -> its name: "cont", "text", "binary", "close", "ping", "pong".
    OPCODE_MAP: ClassVar[dict[int, str]] = {op: op.name.lower() for op in Opcode}

    # Payload length thresholds of the three length encodings (RFC 6455 §5.2): below
    # LENGTH_7 the 7-bit field, below LENGTH_16 a 16-bit field, below LENGTH_63 64 bits.
    LENGTH_7: Final = 0x7E
    LENGTH_16: Final = 1 << 16
    LENGTH_63: Final = 1 << 63

    mask = _MaskBitOrFunction()

    fin: int
    rsv1: int
    rsv2: int
    rsv3: int
    opcode: int
    mask_value: int
    data: Data
    get_mask_key: MaskKeySource

    def __init__(
        self,
        fin: int = 0,
        rsv1: int = 0,
        rsv2: int = 0,
        rsv3: int = 0,
        opcode: int = OPCODE_TEXT,
        mask_value: int | None = None,
        data: Data | None = "",
        *,
        mask: int | None = None,
    ) -> None:
        if mask is not None:
            if mask_value is not None:
                raise TypeError("ABNF() got both mask_value and mask; mask is an alias, pass one")
            mask_value = mask
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.mask_value = 1 if mask_value is None else mask_value
        self.data = "" if data is None else data
        self.get_mask_key = os.urandom

    @classmethod
    def create_frame(cls, data: Data, opcode: int, fin: int = 1) -> Self:
        """A masked frame to send (clients mask every frame, RFC 6455 §5.3).

        ``str`` data of a text frame is UTF-8 encoded here; ``fin=0`` starts or
        continues a fragmented message.
        """
        if opcode == Opcode.TEXT and isinstance(data, str):
            data = data.encode("utf-8")
        return cls(fin, 0, 0, 0, opcode, 1, data)

    @classmethod
    def received_frame(cls, opcode: int, data: bytes, fin: bool | int = True) -> Self:
        """The view of a frame (or whole message) a client received, for ``recv_frame``.

        Servers do not mask (RFC 6455 §5.1) and the core has already undone any
        extension, so ``mask_value`` and the RSV bits are 0; ``data`` is the payload
        bytes (UTF-8 for text), ``fin`` becomes 1 or 0 as websocket-client has it.
        """
        return cls(1 if fin else 0, 0, 0, 0, int(opcode), 0, data)

    def validate(self, skip_utf8_validation: bool = False) -> None:
        """Raise :class:`~wspool.exceptions.WebSocketProtocolException` for a frame
        RFC 6455 forbids: RSV bits without an extension that defines them (§5.2), an
        unknown opcode (§5.2), a fragmented or over 125-byte control frame (§5.5), or
        a close payload of 1 byte, an invalid status code or (unless
        ``skip_utf8_validation``) a reason that is not UTF-8 (§5.5.1, §7.4).
        """
        if self.rsv1 or self.rsv2 or self.rsv3:
            raise WebSocketProtocolException(
                f"frame has RSV bits set (rsv1={self.rsv1} rsv2={self.rsv2} rsv3={self.rsv3}) "
                "but no extension defines them (RFC 6455 §5.2)"
            )
        opcode = self.opcode
        if opcode not in self.OPCODES:
            raise WebSocketProtocolException(
                f"frame has reserved opcode {opcode!r} (RFC 6455 §5.2)"
            )
        if opcode not in CONTROL_OPCODES:
            return
        name = self.OPCODE_MAP[opcode]
        if not self.fin:
            raise WebSocketProtocolException(
                f"{name} frame is fragmented (fin=0); control frames must not be (RFC 6455 §5.5)"
            )
        payload = _payload_bytes(self.data)
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise WebSocketProtocolException(
                f"{name} frame carries {len(payload)} bytes; control frames carry at most "
                f"{MAX_CONTROL_PAYLOAD} (RFC 6455 §5.5)"
            )
        if opcode == Opcode.CLOSE:
            try:
                decode_close_payload(bytes(payload))
            except WebSocketPayloadException as exc:
                # only the reason's UTF-8 is left unchecked: the code was checked first
                if not skip_utf8_validation:
                    raise WebSocketProtocolException(
                        f"invalid close frame: {exc.message}", close_code=exc.close_code
                    ) from exc
            except WebSocketProtocolException as exc:
                raise WebSocketProtocolException(
                    f"invalid close frame: {exc.message}", close_code=exc.close_code
                ) from exc

    def format(self) -> bytes:
        """The frame's bytes on the wire, masked with a ``get_mask_key(4)`` key when
        ``mask_value`` is 1.

        Raises ValueError when fin, an RSV bit or the mask bit is not 0 or 1, the
        opcode is not one of :attr:`OPCODES`, or the payload is 2**63 bytes or more.
        """
        fin, rsv1, rsv2, rsv3, masked = self.fin, self.rsv1, self.rsv2, self.rsv3, self.mask_value
        if fin not in _BITS or rsv1 not in _BITS or rsv2 not in _BITS or rsv3 not in _BITS:
            raise ValueError(
                f"fin and rsv1-3 must each be 0 or 1, got fin={fin!r} rsv1={rsv1!r} "
                f"rsv2={rsv2!r} rsv3={rsv3!r}"
            )
        if masked not in _BITS:
            raise ValueError(f"mask_value must be 0 or 1, got {masked!r}")
        if self.opcode not in self.OPCODES:
            raise ValueError(
                f"opcode {self.opcode!r} is reserved; use one of ABNF.OPCODES (RFC 6455 §5.2)"
            )
        payload = _payload_bytes(self.data)
        if len(payload) >= self.LENGTH_63:
            raise ValueError(f"payload of {len(payload)} bytes does not fit a frame (< 2**63)")
        key = None
        if masked:
            get_key = self.get_mask_key
            # The default is os.urandom: take the key from the pooled block of
            # os.urandom bytes instead (same source, no system call per frame).
            key = mask_key() if get_key is os.urandom else _checked_mask_key(get_key(4))
        frame = encode_frame(
            int(self.opcode), payload, fin=bool(fin), rsv1=bool(rsv1), mask=bool(masked), key=key
        )
        if rsv2 or rsv3:
            # byte 0 is never masked (RFC 6455 §5.3), so the bits are set after encoding
            frame = bytes((frame[0] | rsv2 << 5 | rsv3 << 4,)) + frame[1:]
        return frame

    def __str__(self) -> str:
        data = self.data
        if not isinstance(data, str):
            text = bounded_repr(data)
        elif len(data) > 80:
            text = f"{data[:60]}...<{len(data)} total>"
        else:
            text = data
        return f"fin={self.fin} opcode={self.opcode} data={text}"

    def __repr__(self) -> str:
        return (
            f"ABNF(fin={self.fin}, rsv1={self.rsv1}, rsv2={self.rsv2}, rsv3={self.rsv3}, "
            f"opcode={self.opcode}, mask_value={self.mask_value}, data={bounded_repr(self.data)})"
        )
