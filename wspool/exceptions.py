"""The wspool exception hierarchy.

Every exception wspool raises derives from :class:`WebSocketException`.  The names
follow websocket-client so that code catching its exceptions keeps working after an
import change.  Each exception can carry the URL of the connection it concerns (with
any credentials removed); ``str(exc)`` then names it::

    WebSocketException
    ├── WebSocketProtocolException        peer broke RFC 6455 / RFC 7692 (close 1002)
    │   ├── WebSocketPayloadException     invalid UTF-8 or bad payload (close 1007)
    │   └── WebSocketMessageTooBigException  frame/message over max_size (close 1009)
    ├── WebSocketHandshakeException       the opening handshake failed
    │   ├── WebSocketBadStatusException   the server answered with a non-101 status
    │   └── WebSocketRedirectException    too many redirects, or a redirect loop
    ├── WebSocketConnectionClosedException  the connection is closed
    ├── WebSocketTimeoutException         an operation timed out (also a TimeoutError)
    ├── WebSocketAddressException         the host name could not be resolved
    ├── WebSocketProxyException           the proxy refused or failed the tunnel
    ├── WebSocketTLSException             TLS setup or verification failed
    └── WebSocketConfigurationException   an option has an invalid value (also ValueError)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
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
]


class WebSocketException(Exception):
    """Base class of every wspool error.

    ``url`` is the connection's URL without credentials, or ``None`` when the error
    was raised by the sans-I/O core, which does not know it; the I/O layers fill it in.
    """

    url: str | None

    def __init__(self, message: str = "", *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        if self.url:
            return f"{self.message} [{self.url}]"
        return self.message


class WebSocketProtocolException(WebSocketException):
    """The peer violated the WebSocket protocol.

    ``close_code`` is the code wspool sends in its close frame (RFC 6455 §7.4.1).
    """

    default_close_code = 1002

    def __init__(
        self, message: str = "", *, close_code: int | None = None, url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.close_code = self.default_close_code if close_code is None else close_code


class WebSocketPayloadException(WebSocketProtocolException):
    """A message's payload is invalid: bad UTF-8 in text or a close reason (1007)."""

    default_close_code = 1007


class WebSocketMessageTooBigException(WebSocketProtocolException):
    """A frame, a message or its decompressed form exceeds ``max_size`` (1009)."""

    default_close_code = 1009


class WebSocketHandshakeException(WebSocketException):
    """The opening handshake failed: the response was malformed or not acceptable."""


class WebSocketBadStatusException(WebSocketHandshakeException):
    """The server answered the upgrade with a status other than 101.

    ``status_code``, ``headers`` (a list of ``(name, value)`` pairs, in order),
    ``resp_headers`` (a lower-cased dict, as websocket-client has it) and ``body``
    (at most a bounded excerpt of the response body) describe the answer.
    """

    def __init__(
        self,
        message: str,
        status_code: int,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        url: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code
        self.headers = list(headers)
        self.body = body

    @property
    def resp_headers(self) -> Mapping[str, str]:
        return {name.lower(): value for name, value in self.headers}

    @property
    def resp_body(self) -> bytes:
        return self.body


class WebSocketRedirectException(WebSocketHandshakeException):
    """Redirects were not followed: too many of them, a loop, or a bad Location."""


class WebSocketConnectionClosedException(WebSocketException):
    """The connection is closed: nothing can be sent or received any more."""

    def __init__(
        self, message: str = "Connection is already closed.", *, url: str | None = None
    ) -> None:
        super().__init__(message, url=url)


class WebSocketTimeoutException(WebSocketException, TimeoutError):
    """A connect, handshake, read, write or close did not finish in time."""


class WebSocketAddressException(WebSocketException):
    """The host name could not be resolved to an address."""


class WebSocketProxyException(WebSocketException):
    """The proxy could not be reached, refused authentication or the tunnel."""


class WebSocketTLSException(WebSocketException):
    """TLS failed: certificate verification, host name check or the handshake itself.

    The underlying :class:`ssl.SSLError` is chained as ``__cause__``.
    """


class WebSocketConfigurationException(WebSocketException, ValueError):
    """An option has a value wspool cannot use; the message says which and why."""
