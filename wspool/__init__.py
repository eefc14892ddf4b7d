"""wspool: a WebSocket client for programs that hold many connections at once.

``wspool.connect(url)`` gives a blocking connection used from your own threads.
Names follow websocket-client, so ``import wspool as websocket`` moves most scripts.
"""

from wspool.client import ABNF, Frame, WebSocket, connect, create_connection
from wspool.exceptions import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketMessageTooBigException,
    WebSocketPayloadException,
    WebSocketProtocolException,
    WebSocketProxyException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)
from wspool.protocol import CloseCode, DeflateOptions, Opcode

__version__ = "0.1.0.dev0"

__all__ = [
    "ABNF",
    "CloseCode",
    "DeflateOptions",
    "Frame",
    "Opcode",
    "WebSocket",
    "WebSocketAddressException",
    "WebSocketBadStatusException",
    "WebSocketConfigurationException",
    "WebSocketConnectionClosedException",
    "WebSocketException",
    "WebSocketHandshakeException",
    "WebSocketMessageTooBigException",
    "WebSocketPayloadException",
    "WebSocketProtocolException",
    "WebSocketProxyException",
    "WebSocketRedirectException",
    "WebSocketTLSException",
    "WebSocketTimeoutException",
    "__version__",
    "connect",
    "create_connection",
]
