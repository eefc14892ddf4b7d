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
    │   └── WebSocketStaleFeedException   a feed went silent or stopped answering its heartbeat
    ├── WebSocketAddressException         the host name could not be resolved
    ├── WebSocketProxyException           the proxy refused or failed the tunnel
    ├── WebSocketTLSException             TLS setup or verification failed
    ├── WebSocketConfigurationException   an option has an invalid value (also ValueError)
    ├── CallbackError                     a pool callback raised (the connection stays up)
    ├── DispatcherStoppedError            work handed to a stopped pool (also RuntimeError)
    └── wspool.sinks.SinkError            a sink's engine refused a record or is unreachable
        └── wspool.sinks.SinkClosedError  a record handed to a closed sink
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence

from wspool._reprs import bounded_repr

__all__ = [
    "CallbackError",
    "DispatcherStoppedError",
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
    "WebSocketStaleFeedException",
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


class WebSocketStaleFeedException(WebSocketTimeoutException):
    """A session of a feed went silent (``stale_after``) or stopped answering its
    application heartbeat (``heartbeat``); the pool replaces that session and the
    connection goes on: this reaches ``on_error`` as a report, not as the end."""


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


class CallbackError(WebSocketException):
    """A user callback raised; the connection stays up (docs/architecture.md, invariant 7).

    ``original`` is the callback's exception (also chained as ``__cause__``),
    ``callback`` the callback's name (``"on_message"``), ``event_repr`` a bounded repr
    of the event it was handling (``None`` when there was no event), ``label`` the
    connection's label.  :meth:`format` renders the full traceback of ``original``.
    """

    def __init__(
        self,
        *,
        url: str | None,
        label: object,
        callback: str,
        event: object,
        original: BaseException,
    ) -> None:
        self.original = original
        self.callback = callback
        self.label = label
        self.event_repr = None if event is None else bounded_repr(event)
        parts = [f"{callback} raised {bounded_repr(original)}"]
        if url:
            parts.append(f"for {url}")
        if label is not None:
            parts.append(f"[label {bounded_repr(label)}]")
        if self.event_repr is not None:
            parts.append(f"on {self.event_repr}")
        super().__init__(" ".join(parts), url=url)
        self.__cause__ = original

    def __str__(self) -> str:
        # the URL is already part of the message; the base class would append it again
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only __init__: rebuild through a helper so the error survives pickling
        return (
            _rebuild_callback_error,
            (self.url, self.label, self.callback, self.event_repr, self.original),
        )

    def format(self, *, locals: bool = False) -> str:
        """The message, then the full traceback of ``original`` (with its own chain).

        ``locals=True`` adds each frame's local variables (their reprs): helpful when
        debugging, but they may contain secrets, so it is off by default.
        """
        exc = self.original
        tb = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=locals)
        return f"{self}\n" + "".join(tb.format())


def _rebuild_callback_error(
    url: str | None,
    label: object,
    callback: str,
    event_repr: str | None,
    original: BaseException,
) -> CallbackError:
    error = CallbackError(url=url, label=label, callback=callback, event=None, original=original)
    if event_repr is not None:
        error.event_repr = event_repr
        error.args = (f"{error.message} on {event_repr}",)
    return error


class DispatcherThreadError(WebSocketException, RuntimeError):
    """A blocking wait was called on the pool's dispatcher thread, which it waits for.

    ``Pool.close()``, ``run_forever()``, ``Connection.wait_closed()`` and ``drain()``
    wait for work the dispatcher does; called from the dispatcher itself (an inline
    callback of ``Pool(deliver="dispatcher")``, or a done callback) they would never
    return.  Call ``conn.close()`` (it returns at once) and wait from another thread.
    """


class DispatcherStoppedError(WebSocketException, RuntimeError):
    """Work was handed to a dispatcher that has stopped (or is stopping); it cannot run.

    Create a new dispatcher (or pool) instead of reusing a stopped one.
    """
