"""Events the sans-I/O core emits from received bytes.

Plain slotted classes: millions of them are made per second on a busy pool, so they
stay as cheap as a tuple to build while keeping names that read well.
"""

from __future__ import annotations

from dataclasses import dataclass

from wspool._reprs import bounded_repr
from wspool.exceptions import WebSocketProtocolException

__all__ = [
    "CloseReceived",
    "EndOfStream",
    "Event",
    "Fragment",
    "Message",
    "Ping",
    "Pong",
    "ProtocolError",
]


@dataclass(slots=True, eq=True, repr=False)
class Message:
    """A complete data message: ``str`` for text (opcode 1), ``bytes`` for binary (2)."""

    opcode: int
    data: str | bytes

    @property
    def is_text(self) -> bool:
        return self.opcode == 1

    def __repr__(self) -> str:
        return f"Message(opcode={self.opcode}, data={bounded_repr(self.data)})"


@dataclass(slots=True, eq=True, repr=False)
class Fragment:
    """One data frame, emitted instead of messages when frame events are on.

    ``opcode`` is the frame's own opcode (0 for a continuation); ``data`` is its
    payload after decompression, as bytes (text fragments are validated UTF-8).
    """

    opcode: int
    data: bytes
    fin: bool

    def __repr__(self) -> str:
        return f"Fragment(opcode={self.opcode}, data={bounded_repr(self.data)}, fin={self.fin})"


@dataclass(slots=True, eq=True)
class Ping:
    """A ping arrived; the core already queued the pong (unless it was told not to)."""

    data: bytes


@dataclass(slots=True, eq=True)
class Pong:
    """A pong arrived (an answer to our ping, or unsolicited)."""

    data: bytes


@dataclass(slots=True, eq=True)
class CloseReceived:
    """The peer's close frame.  ``code`` is 1005 when the frame carried none.

    ``payload`` is the raw close frame payload (websocket-client's ``recv_data`` hands
    it out).  If the peer started the closing handshake, the reply is already queued.
    """

    code: int
    reason: str
    payload: bytes = b""


@dataclass(slots=True, eq=True)
class ProtocolError:
    """The peer broke the protocol; the core queued a close frame with ``exc.close_code``
    and ignores all further input.  Always the last event of its batch."""

    exc: WebSocketProtocolException


@dataclass(slots=True, eq=True)
class EndOfStream:
    """The byte stream ended.  ``clean`` when the closing handshake had completed."""

    clean: bool


Event = Message | Fragment | Ping | Pong | CloseReceived | ProtocolError | EndOfStream
