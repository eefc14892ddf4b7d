"""Frame-level vocabulary of RFC 6455: opcodes, close codes, header encoding.

The incremental frame *parser* lives in :mod:`wspool.protocol.client_protocol`, where it is
fused with message assembly for speed; this module holds what both directions share.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from enum import IntEnum
from typing import Final

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)
from wspool.protocol._accel import apply_mask

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "MAX_CONTROL_PAYLOAD",
    "CloseCode",
    "Opcode",
    "decode_close_payload",
    "encode_close_payload",
    "encode_frame",
    "is_valid_close_code",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES: Final = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES: Final = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
#: Control frames carry at most 125 bytes of payload (RFC 6455 §5.5).
MAX_CONTROL_PAYLOAD: Final = 125


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL_CLOSURE = 1006  # never on the wire: "the TCP connection dropped"
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


# Codes of the 1000-2999 range that may appear in a close frame.  1004 is reserved,
# 1005/1006/1015 are reserved for local use only (RFC 6455 §7.4.1).
_WIRE_CODES_BELOW_3000: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may be carried by a close frame (RFC 6455 §7.4).

    3000-3999 are registered by libraries and frameworks, 4000-4999 are private use;
    everything else below 3000 must be a code the registry defines for the wire.
    """
    return code in _WIRE_CODES_BELOW_3000 or 3000 <= code <= 4999


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


# Masking keys (RFC 6455 §5.3: "derived from a strong source of entropy") come from
# os.urandom, fetched 1024 keys at a time: one getrandom() call per frame was a syscall
# that also released the GIL, so with many sender threads every small frame paid a GIL
# hand-off.  deque.pop() and .extend() are atomic, so two threads never get the same
# key; a refill race only fetches extra keys.  A forked child starts with none of the
# parent's keys.
_KEYS_PER_FETCH: Final = 1024
_key_pool: deque[bytes] = deque()
os.register_at_fork(after_in_child=_key_pool.clear)


def mask_key() -> bytes:
    """A fresh, never reused 4-byte masking key from the OS CSPRNG."""
    try:
        return _key_pool.pop()
    except IndexError:
        block = os.urandom(4 * _KEYS_PER_FETCH)
        _key_pool.extend([block[i : i + 4] for i in range(0, len(block), 4)])
        return _key_pool.pop()


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = True,
    key: bytes | None = None,
) -> bytes:
    """Serialize one frame (RFC 6455 §5.2) with the shortest length encoding.

    Client frames are masked with ``key`` or else a fresh random key from
    :func:`mask_key` (§5.3); the caller validates opcode/payload combinations (see
    ``ClientProtocol``) and the key (4 bytes).
    """
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((b0, mask_bit | length))
    elif length < 0x10000:
        header = _pack_short(b0, mask_bit | 126, length)
    else:
        header = _pack_long(b0, mask_bit | 127, length)
    if not mask:
        return header + payload
    if key is None:
        key = mask_key()
    return apply_mask(payload, key, header + key)


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame we send: 2-byte code then UTF-8 reason (§5.5.1).

    ``code=None`` sends an empty payload (allowed only with an empty reason).
    """
    if code is None:
        if reason:
            raise WebSocketConfigurationException(
                "a close reason needs a status code (RFC 6455 §5.5.1)"
            )
        return b""
    if not is_valid_close_code(code):
        raise WebSocketConfigurationException(
            f"close status {code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999"
        )
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        raise WebSocketConfigurationException(
            f"close reason is {len(encoded)} bytes in UTF-8; at most 123 fit in a close frame"
        )
    return code.to_bytes(2, "big") + encoded


def decode_close_payload(payload: bytes) -> tuple[int, str]:
    """Parse a received close frame's payload into ``(code, reason)`` (§5.5.1, §7.1.5).

    An empty payload means "no status code": ``(1005, "")``.  A 1-byte payload or an
    invalid code is a protocol error (1002); a reason that is not UTF-8 is 1007.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise WebSocketProtocolException("close frame payload of 1 byte: a code needs 2")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise WebSocketProtocolException(f"close frame carries invalid status code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketPayloadException(f"close reason is not valid UTF-8: {exc}") from exc
    return code, reason
