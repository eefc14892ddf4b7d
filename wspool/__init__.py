"""wspool: a WebSocket client for programs that hold many connections at once.

``wspool.Pool`` holds many connections on one dispatcher thread and runs your
callbacks on a worker pool; ``wspool.connect(url)`` gives one blocking connection
used from your own threads.
Names follow websocket-client, so ``import wspool as websocket`` moves most scripts.
"""

from wspool.abnf import (
    ABNF,
    STATUS_ABNORMAL_CLOSED,
    STATUS_BAD_GATEWAY,
    STATUS_GOING_AWAY,
    STATUS_INVALID_EXTENSION,
    STATUS_INVALID_PAYLOAD,
    STATUS_MESSAGE_TOO_BIG,
    STATUS_NORMAL,
    STATUS_POLICY_VIOLATION,
    STATUS_PROTOCOL_ERROR,
    STATUS_SERVICE_RESTART,
    STATUS_STATUS_NOT_AVAILABLE,
    STATUS_TLS_HANDSHAKE_ERROR,
    STATUS_TRY_AGAIN_LATER,
    STATUS_UNEXPECTED_CONDITION,
    STATUS_UNSUPPORTED_DATA_TYPE,
    VALID_CLOSE_STATUS,
)
from wspool.app import WebSocketApp, set_reconnect, setReconnect
from wspool.client import WebSocket, connect, create_connection
from wspool.exceptions import (
    CallbackError,
    DispatcherStoppedError,
    DispatcherThreadError,
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
    WebSocketStaleFeedException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)
from wspool.options import UnknownOptionWarning, getdefaulttimeout, setdefaulttimeout
from wspool.pool import (
    Connection,
    ConnectionState,
    ConnectionStats,
    Heartbeat,
    Pool,
    RateLimit,
    ReconnectPolicy,
)
from wspool.processes import ProcessPool
from wspool.protocol import CloseCode, DeflateOptions, Opcode
from wspool.protocol.trace import enableTrace

__version__ = "0.1.0.dev0"

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
    "CallbackError",
    "CloseCode",
    "Connection",
    "ConnectionState",
    "ConnectionStats",
    "DeflateOptions",
    "DispatcherStoppedError",
    "DispatcherThreadError",
    "Heartbeat",
    "Opcode",
    "Pool",
    "ProcessPool",
    "RateLimit",
    "ReconnectPolicy",
    "UnknownOptionWarning",
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
    "WebSocketStaleFeedException",
    "WebSocketTLSException",
    "WebSocketTimeoutException",
    "__version__",
    "connect",
    "create_connection",
    "enableTrace",
    "getdefaulttimeout",
    "setReconnect",
    "set_reconnect",
    "setdefaulttimeout",
]
