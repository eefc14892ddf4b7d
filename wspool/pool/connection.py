"""The Connection handle: one logical stream that survives reconnects.

A :class:`Connection` is what the user holds.  Its callbacks, options, label and
stats outlive every socket; each physical socket is a
:class:`~wspool.pool.session.Session`, replaced on reconnect.

Threads: ``session_*`` methods run on the dispatcher thread; ``_deliver`` runs on a
worker (one at a time per connection, via its DeliveryQueue); ``send*``/``close``
may be called from any thread.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from wspool.exceptions import (
    CallbackError,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketRedirectException,
    WebSocketTLSException,
)
from wspool.pool.backoff import ReconnectPolicy
from wspool.pool.delivery import DeliveryQueue
from wspool.pool.session import Session
from wspool.protocol.events import Event, Message, Ping, Pong
from wspool.protocol.frames import CloseCode, Opcode
from wspool.transport.url import WebSocketURL, resolve_redirect

if TYPE_CHECKING:
    from wspool.pool.options import ConnectOptions
    from wspool.pool.pool import Pool

__all__ = ["Callbacks", "Connection", "ConnectionState", "ConnectionStats"]

logger = logging.getLogger("wspool")


class ConnectionState(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    #: Lost; waiting for the backoff delay before the next attempt.
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(slots=True)
class Callbacks:
    on_open: Callable[[Connection], object] | None = None
    on_message: Callable[[Connection, Any], object] | None = None
    on_error: Callable[[Connection, BaseException], object] | None = None
    on_close: Callable[[Connection, int, str], object] | None = None
    on_ping: Callable[[Connection, bytes], object] | None = None
    on_pong: Callable[[Connection, bytes], object] | None = None
    on_data: Callable[[Connection, Any, int, bool], object] | None = None
    on_reconnect: Callable[[Connection], object] | None = None


@dataclass(slots=True)
class ConnectionStats:
    """Counters kept as the connection runs; plain attribute bumps, cheap to leave on."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    reconnects: int = 0
    last_rtt: float | None = None
    last_message_at: float | None = None  # time.time() of the last received message
    opened_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


# Items of the delivery queue besides protocol events (Message, Ping, Pong).
@dataclass(slots=True)
class _Opened:
    reconnected: bool


@dataclass(slots=True)
class _Closed:
    code: int
    reason: str


@dataclass(slots=True)
class _Failed:
    error: BaseException


class Connection:
    """A WebSocket connection managed by a :class:`~wspool.Pool`.

    ``label`` is free for the user (a name, a dict of context...): it shows up in
    error messages.  ``stats`` holds the counters.
    """

    def __init__(
        self,
        pool: Pool,
        options: ConnectOptions,
        callbacks: Callbacks,
        *,
        label: object = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        self.pool = pool
        self.options = options
        self.callbacks = callbacks
        # Any, not object: the user's own value, used without casts in callbacks.
        self.label: Any = label
        self.reconnect_policy = reconnect
        self.stats = ConnectionStats()
        self._status = ConnectionState.CONNECTING
        self._session: Session | None = None
        self._attempt = 0  # consecutive failed attempts, for the backoff
        self._redirects = 0
        self._opened_once = False
        self._user_closed = False
        self._session_opened = False  # the current session reached OPEN
        # on_close pairs with on_open: each opened session's loss is reported once; a
        # connection that ends without a report since its last open gets one on_close.
        self._loss_reported = False
        self._redirect_error: BaseException | None = None
        self._current: str | None = None  # see _deliver
        self._queue = DeliveryQueue(
            pool.executor,
            self._deliver,
            high_water=options.max_queue,
            low_water=max(1, options.max_queue // 2),
            high_water_bytes=options.max_queue_bytes,
            low_water_bytes=None
            if options.max_queue_bytes is None
            else options.max_queue_bytes // 2,
            on_pause=self._pause_reading,
            on_resume=self._resume_reading,
            on_error=self._callback_failed,
        )

    # ----------------------------------------------------------------- reading

    @property
    def url(self) -> str:
        return self.options.url.redacted

    @property
    def state(self) -> ConnectionState:
        return self._status

    @property
    def subprotocol(self) -> str | None:
        session = self._session
        return session.subprotocol if session is not None else None

    @property
    def extensions(self) -> list[str]:
        session = self._session
        return list(session.extensions) if session is not None else []

    @property
    def headers(self) -> dict[str, str]:
        session = self._session
        if session is None:
            return {}
        return {name.lower(): value for name, value in session.response_headers}

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize

    def stats_dict(self) -> dict[str, Any]:
        data = self.stats.as_dict()
        data["state"] = self._status.value
        data["queue_depth"] = self._queue.qsize
        data["url"] = self.url
        data["label"] = self.label
        return data

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label is not None else ""
        return f"<wspool.Connection {self.url}{label} {self._status.value}>"

    # ----------------------------------------------------------------- sending

    def _session_for_send(self) -> Session:
        session = self._session
        if session is None or self._status is not ConnectionState.OPEN:
            raise WebSocketConnectionClosedException(url=self.url)
        return session

    def send(self, data: str | bytes | bytearray | memoryview, opcode: int | None = None) -> int:
        """Queue a message: ``str`` as text, bytes-like as binary (or as ``opcode`` says).

        Thread-safe; never blocks on the network.  Returns the frame's size.
        Raises :class:`WebSocketConnectionClosedException` when not open.
        """
        if opcode == Opcode.PING:
            return self.ping(data)
        size = self._session_for_send().send_built(lambda p: p.send_message(data, opcode))
        stats = self.stats
        stats.messages_out += 1
        stats.bytes_out += size
        return size

    def send_text(self, text: str) -> int:
        return self.send(text, Opcode.TEXT)

    def send_binary(self, data: bytes | bytearray | memoryview) -> int:
        return self.send(data, Opcode.BINARY)

    send_bytes = send_binary

    def send_json(self, obj: Any, **dumps_options: Any) -> int:
        """Send ``json.dumps(obj, **dumps_options)`` as a text message."""
        options = {"separators": (",", ":"), **dumps_options}
        return self.send(json.dumps(obj, **options), Opcode.TEXT)

    def ping(self, payload: str | bytes | bytearray | memoryview = b"") -> int:
        return self._session_for_send().send_built(lambda p: p.send_ping(payload))

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close with a closing handshake; no reconnect follows.  Thread-safe, returns
        at once: ``on_close`` tells when it is done (or :meth:`wait_closed`)."""
        from wspool.protocol.frames import encode_close_payload

        encode_close_payload(status, reason)  # invalid arguments raise here, in the caller
        self._user_closed = True
        session = self._session
        if session is None:
            self.pool.dispatcher.call_soon(self._closed_while_waiting)
            return
        if self._status in (ConnectionState.OPEN, ConnectionState.CONNECTING):
            self._status = ConnectionState.CLOSING
        session.start_close(status, reason)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake; no reconnect."""
        self._user_closed = True
        session = self._session
        if session is not None:
            self.pool.dispatcher.call_soon(session.abort)
        else:
            self.pool.dispatcher.call_soon(self._closed_while_waiting)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed for good and ``on_close`` has run."""
        return self.pool._wait_for(lambda: self._status is ConnectionState.CLOSED, timeout) and (
            self._queue.join(timeout)
        )

    # -------------------------------------------------- session life (dispatcher)

    def _start_session(self, url: WebSocketURL | None = None) -> None:
        if self._user_closed:
            self._end(CloseCode.NORMAL_CLOSURE, "closed by the user")
            return
        self._status = ConnectionState.CONNECTING
        self._session_opened = False
        session = Session(
            self, self.options, self.pool.dispatcher, self.pool.executor, url_override=url
        )
        self._session = session
        session.start()

    def session_opened(self, session: Session) -> None:
        self._status = ConnectionState.CLOSING if self._user_closed else ConnectionState.OPEN
        self._session_opened = True
        self._loss_reported = False
        self._redirects = 0
        reconnected = self._opened_once
        self._opened_once = True
        stats = self.stats
        stats.opened_at = time.time()
        if reconnected:
            stats.reconnects += 1
        self._queue.put(_Opened(reconnected))
        if self._user_closed:
            session.start_close(CloseCode.NORMAL_CLOSURE, "")

    def session_events(
        self, session: Session, events: list[Event], size: int, messages: int
    ) -> None:
        stats = self.stats
        stats.bytes_in += size
        if messages:
            stats.messages_in += messages
            stats.last_message_at = time.time()
        rtt = session.last_rtt
        if rtt is not None:  # a new session has none until its first pong: keep the last
            stats.last_rtt = rtt
        self._queue.put_many(events, size)

    def session_closed(
        self,
        session: Session,
        code: int,
        reason: str,
        error: BaseException | None,
        redirect: str | None,
    ) -> None:
        if session is not self._session:
            return
        opened = self._session_opened
        self._session_opened = False
        if redirect is not None and not self._user_closed:
            target = self._redirect(redirect)
            if target is not None:
                self._start_session(target)
                return
            error = self._redirect_error
        if error is not None:
            self._queue.put(_Failed(error))
        if opened:
            self._queue.put(_Closed(code, reason))
            self._loss_reported = True
        delay = self._next_delay(session, code, error)
        if delay is None:
            self._end(code, reason)
            return
        self._status = ConnectionState.RECONNECTING
        self._session = None
        self.pool.dispatcher.call_later(delay, self._start_session)

    def _redirect(self, location: str) -> WebSocketURL | None:
        session = self._session
        assert session is not None
        self._redirects += 1
        if self._redirects > self.options.redirect_limit:
            self._redirect_error = WebSocketRedirectException(
                f"more than redirect_limit={self.options.redirect_limit} redirects", url=self.url
            )
            return None
        try:
            return resolve_redirect(session.url, location)
        except WebSocketException as exc:
            exc.url = self.url
            self._redirect_error = exc
            return None

    def _next_delay(self, session: Session, code: int, error: BaseException | None) -> float | None:
        """Seconds until the next attempt, or None when the connection is over."""
        policy = self.reconnect_policy
        if policy is None or self._user_closed or session.closed_by_user or self.pool.closing:
            return None
        if isinstance(error, WebSocketBadStatusException):
            if error.status_code not in policy.retry_statuses:
                return None
        elif isinstance(error, WebSocketConfigurationException | WebSocketTLSException):
            return None  # retrying cannot fix these
        if error is None and code in (1000, 1001) and not policy.on_normal_close:
            return None
        opened_at = session.opened_at
        if opened_at is not None and time.monotonic() - opened_at >= policy.reset_after:
            self._attempt = 0
        if policy.max_attempts is not None and self._attempt >= policy.max_attempts:
            return None
        delay = policy.delay(self._attempt)
        self._attempt += 1
        return delay

    def _closed_while_waiting(self) -> None:
        if self._status is ConnectionState.RECONNECTING or (
            self._session is None and self._status is not ConnectionState.CLOSED
        ):
            self._end(CloseCode.NORMAL_CLOSURE, "closed by the user")

    def _end(self, code: int, reason: str) -> None:
        if self._status is ConnectionState.CLOSED:
            return
        self._status = ConnectionState.CLOSED
        self._session = None
        if not self._loss_reported:
            # Never opened: on_close still ends the story, once.
            self._loss_reported = True
            self._queue.put(_Closed(code, reason))
        self._queue.close()
        self.pool._connection_ended(self)

    # ------------------------------------------------------------ backpressure

    def _pause_reading(self) -> None:
        session = self._session
        if session is not None:
            session.pause_reading()

    def _resume_reading(self) -> None:
        # Called on a worker thread: the socket belongs to the dispatcher.
        self.pool.dispatcher.call_soon(self._resume_on_dispatcher)

    def _resume_on_dispatcher(self) -> None:
        session = self._session
        if session is not None:
            session.resume_reading()

    # ----------------------------------------------------- delivery (a worker)

    def _deliver(self, item: Any) -> None:
        # Hot path first: one message, one on_message call.  ``_current`` names the
        # running callback only where the item's type does not (on_data beside
        # on_message, on_reconnect beside on_open); _callback_failed clears it.
        callbacks = self.callbacks
        kind = type(item)
        if kind is Message:
            if callbacks.on_data is not None:
                self._current = "on_data"
                callbacks.on_data(self, item.data, item.opcode, True)
                self._current = None
            on_message = callbacks.on_message
            if on_message is not None:
                on_message(self, item.data)
        elif kind is Ping:
            if callbacks.on_ping is not None:
                callbacks.on_ping(self, item.data)
        elif kind is Pong:
            if callbacks.on_pong is not None:
                callbacks.on_pong(self, item.data)
        elif kind is _Opened:
            if item.reconnected and callbacks.on_reconnect is not None:
                self._current = "on_reconnect"
                callbacks.on_reconnect(self)
                self._current = None
            if callbacks.on_open is not None:
                callbacks.on_open(self)
        elif kind is _Closed:
            if callbacks.on_close is not None:
                callbacks.on_close(self, item.code, item.reason)
        elif kind is _Failed:
            self._report_error(item.error)

    def _report_error(self, error: BaseException) -> None:
        on_error = self.callbacks.on_error
        if on_error is None:
            if isinstance(error, CallbackError):
                logger.error("%s", error, exc_info=error.original)
            else:
                logger.warning("%s", error)
            return
        try:
            on_error(self, error)
        except Exception:
            logger.exception("on_error raised while handling %r for %s", error, self.url)

    def _callback_failed(self, exc: BaseException, item: Any) -> None:
        """A callback raised: wrap it with where it happened (docs/architecture.md invariants 7)."""
        kind = type(item)
        event = None if kind in (_Opened, _Closed) else item
        callback = self._current or _CALLBACK_OF_EVENT.get(kind, "callback")
        self._current = None
        error = CallbackError(
            url=self.url, label=self.label, callback=callback, event=event, original=exc
        )
        self._report_error(error)


#: The callback an event goes to, for error reports (see Connection._deliver).
_CALLBACK_OF_EVENT: dict[type, str] = {
    Message: "on_message",
    Ping: "on_ping",
    Pong: "on_pong",
    _Opened: "on_open",
    _Closed: "on_close",
}
