"""The sans-I/O WebSocket core (RFC 6455, RFC 7692): bytes in, events out.

Nothing here touches sockets, threads or clocks; the blocking client and the pool
both drive these classes.
"""

from wspool.protocol.connection import DEFAULT_MAX_SIZE, ClientProtocol, ConnectionState
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
    "ConnectionState",
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
]
