"""The sans-I/O WebSocket core (RFC 6455, RFC 7692): bytes in, events out.

Nothing here touches sockets, threads or clocks; the blocking client and the pool
both drive these classes.
"""

from wspool.protocol.client_protocol import DEFAULT_MAX_SIZE, ClientProtocol, ProtocolState
from wspool.protocol.deflate import DeflateOptions, PerMessageDeflate
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
from wspool.protocol.frames import CloseCode, Opcode

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ClientProtocol",
    "CloseCode",
    "CloseReceived",
    "DeflateOptions",
    "EndOfStream",
    "Event",
    "Fragment",
    "Message",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "ProtocolError",
    "ProtocolState",
]
