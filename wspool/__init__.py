"""wspool: a WebSocket client for programs that hold many connections at once.

``wspool.Pool`` holds many connections on one dispatcher thread and runs your
callbacks on a worker pool; ``wspool.connect(url)`` gives one blocking connection
used from your own threads.
Names follow websocket-client, so ``import wspool as websocket`` moves most scripts.
"""

from wspool.app import WebSocketApp
from wspool.client import ABNF, Frame, WebSocket, connect, create_connection
from wspool.exceptions import (
    CallbackError,
    DispatcherStoppedError,
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
from wspool.pool import (
    Connection,
    ConnectionState,
    ConnectionStats,
    Pool,
    ReconnectPolicy,
)
from wspool.protocol import CloseCode, DeflateOptions, Opcode

__version__ = "0.1.0.dev0"

__all__ = [
    "ABNF",
    "CallbackError",
    "CloseCode",
    "Connection",
    "ConnectionState",
    "ConnectionStats",
    "DeflateOptions",
    "DispatcherStoppedError",
    "Frame",
    "Opcode",
    "Pool",
    "ReconnectPolicy",
    "WebSocket",
    "WebSocketAddressException",
    "WebSocketApp",
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
