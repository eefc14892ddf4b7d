"""The Connection handle: one logical stream that survives reconnects.

A :class:`Connection` is what the user holds.  Its callbacks, options, label and
stats outlive every socket; each physical socket is a
:class:`~wspool.pool.session.Session`, replaced on reconnect.  It talks to its pool
through the small :class:`ConnectionOwner` interface, as a Session talks to its
:class:`~wspool.pool.session.SessionOwner`.

State: one :class:`ConnectionState`, changed only by :meth:`Connection._transition`
(the table :data:`_TRANSITIONS` lists every allowed change), each change logged at
DEBUG on the ``wspool`` logger with the URL redacted.

Threads (docs/architecture.md, "Connection fields and their threads"):

* ``session_*``, ``_start_session``, ``_end`` and the retry timer run on the
  dispatcher thread;
* ``_deliver`` runs on a worker (one at a time per connection, via its DeliveryQueue);
* ``send*``, ``close``, ``abort`` and ``wait_closed`` may be called from any thread.

``_state`` and ``_session`` are written under ``_lock`` (by the dispatcher, and by
``close()`` on the caller's thread); readers that only need a snapshot (``state``,
``send``) read them without it: each is one reference, replaced whole.  Lock order:
``Connection._lock`` -> ``Session.send_lock``; never the other way round.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

from wspool.exceptions import (
    CallbackError,
    DispatcherStoppedError,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketTLSException,
)
from wspool.pool.delivery import DeliveryQueue
from wspool.pool.session import Session
from wspool.protocol.events import Event, Message, Ping, Pong, ProtocolError
from wspool.protocol.frames import CloseCode, Opcode, encode_close_payload

if TYPE_CHECKING:
    from wspool.options import Callbacks, PoolOptions
    from wspool.pool.dispatcher import Dispatcher, TimerHandle

__all__ = ["Connection", "ConnectionOwner", "ConnectionState", "ConnectionStats"]

logger = logging.getLogger("wspool")


class ConnectionState(Enum):
    """Where a :class:`Connection` is in its life (``conn.state``)."""

    #: A session is opening (connect, proxy, TLS, handshake).
    CONNECTING = "connecting"
    #: The current session is open: ``send`` works.
    OPEN = "open"
    #: ``close()`` was called (or the pool is closing): the current session closes, no
    #: reconnect follows.
    CLOSING = "closing"
    #: Lost; waiting for the backoff delay before the next attempt.
    RECONNECTING = "reconnecting"
    #: Over for good; ``on_close`` was queued last.
    CLOSED = "closed"


_S = ConnectionState
#: Every allowed change: (state, event) -> next state.  Events: ``opened`` (a session
#: opened), ``close`` (the user or the pool asked), ``lost`` (a session ended and a
#: reconnect follows), ``ended`` (over for good), ``retry`` (the backoff delay passed).
_TRANSITIONS: Final[dict[tuple[ConnectionState, str], ConnectionState]] = {
    (_S.CONNECTING, "opened"): _S.OPEN,
    (_S.CONNECTING, "close"): _S.CLOSING,
    (_S.CONNECTING, "lost"): _S.RECONNECTING,
    (_S.CONNECTING, "ended"): _S.CLOSED,
    (_S.OPEN, "close"): _S.CLOSING,
    (_S.OPEN, "lost"): _S.RECONNECTING,
    (_S.OPEN, "ended"): _S.CLOSED,
    # Closing: a session that opens meanwhile is closed at once; its end is the end.
    (_S.CLOSING, "opened"): _S.CLOSING,
    (_S.CLOSING, "close"): _S.CLOSING,
    (_S.CLOSING, "ended"): _S.CLOSED,
    (_S.RECONNECTING, "retry"): _S.CONNECTING,
    (_S.RECONNECTING, "close"): _S.CLOSING,
    (_S.RECONNECTING, "ended"): _S.CLOSED,
    (_S.CLOSED, "close"): _S.CLOSED,
}


class ConnectionOwner(Protocol):
    """What a Connection needs from its pool, and nothing more."""

    @property
    def dispatcher(self) -> Dispatcher: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def closing(self) -> bool: ...

    def connection_ended(self, connection: Connection) -> None:
        """The connection is over for good (dispatcher thread)."""

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` holds (re-checked when a connection ends)."""


@dataclass(slots=True)
class ConnectionStats:
    """Counters kept as the connection runs.

    ``messages_in``, ``bytes_in``, ``reconnects``, ``last_rtt``, ``last_message_at``,
    ``last_ping_at`` and ``opened_at`` are written by the dispatcher only; ``messages_out`` and
    ``bytes_out`` by sending threads, under the session's ``send_lock``.

    Backpressure (dispatcher only, through :meth:`pause_started`/:meth:`pause_ended`):
    ``paused`` is whether reading is paused now because callbacks fell behind,
    ``pauses`` how many times it was, :attr:`paused_total` the seconds paused in all,
    the current pause included.
    """

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    reconnects: int = 0
    last_rtt: float | None = None
    last_message_at: float | None = None  # time.time() of the last received message
    last_ping_at: float | None = None  # time.time() of the last keepalive ping sent
    opened_at: float | None = None
    paused: bool = False
    pauses: int = 0
    # (seconds of the pauses that ended, time.monotonic() the current one began or
    # None): one tuple replaced whole, so a reader on another thread never adds a
    # pause twice or misses one that just ended.
    _pause_clock: tuple[float, float | None] = field(default=(0.0, None), init=False, repr=False)

    @property
    def paused_total(self) -> float:
        """Seconds reading was paused by backpressure, the current pause included."""
        ended, since = self._pause_clock
        return ended if since is None else ended + time.monotonic() - since

    def pause_started(self) -> None:
        """Reading paused (dispatcher thread); a pause already counted is not counted again."""
        if not self.paused:
            self._pause_clock = (self._pause_clock[0], time.monotonic())
            self.pauses += 1
            self.paused = True

    def pause_ended(self) -> None:
        """Reading resumed (dispatcher thread)."""
        if self.paused:
            self._pause_clock = (self.paused_total, None)
            self.paused = False

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__ if name[0] != "_"}
        data["paused_total"] = self.paused_total
        return data


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
        self, owner: ConnectionOwner, options: PoolOptions, *, label: object = None
    ) -> None:
        self._owner = owner
        self.options = options
        self.callbacks: Callbacks = options.callbacks
        # Any, not object: the user's own value, used without casts in callbacks.
        self.label: Any = label
        self.stats = ConnectionStats()
        self._lock = threading.Lock()
        self._state = ConnectionState.CONNECTING
        self._session: Session | None = None
        self._retry_timer: TimerHandle | None = None  # dispatcher only
        self._attempt = 0  # consecutive failed attempts, for the backoff (dispatcher only)
        self._opens = 0  # sessions that opened (dispatcher only)
        self._current: str | None = None  # see _deliver (the worker only)
        # add_done_callback(): run once by _end, outside _lock (guarded by it).
        self._done_callbacks: list[Callable[[Connection], object]] = []
        self._queue = DeliveryQueue(
            owner.executor,
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
        return self.options.connect.url.redacted

    @property
    def state(self) -> ConnectionState:
        return self._state

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
        data["state"] = self._state.value
        data["queue_depth"] = self._queue.qsize
        data["url"] = self.url
        data["label"] = self.label
        return data

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label is not None else ""
        return f"<wspool.Connection {self.url}{label} {self._state.value}>"

    # ------------------------------------------------------------------- state

    def _transition(self, event: str) -> ConnectionState:
        """Apply ``event`` to the state (caller holds ``_lock``); returns the old state."""
        old = self._state
        new = _TRANSITIONS.get((old, event))
        if new is None:
            raise AssertionError(f"{self.url}: no transition from {old.value} on {event!r}")
        if new is not old:
            logger.debug("%s: %s -> %s (%s)", self.url, old.value, new.value, event)
            self._state = new
        return old

    # ----------------------------------------------------------------- sending

    def _session_for_send(self) -> Session:
        session = self._session
        if session is None or self._state is not ConnectionState.OPEN:
            raise WebSocketConnectionClosedException(url=self.url)
        return session

    def send(self, data: str | bytes | bytearray | memoryview, opcode: int | None = None) -> int:
        """Queue a message: ``str`` as text, bytes-like as binary (or as ``opcode`` says).

        Thread-safe; never blocks on the network.  Returns the frame's size.
        Raises :class:`WebSocketConnectionClosedException` when not open.
        """
        if opcode == Opcode.PING:
            return self.ping(data)
        return self._session_for_send().send_built(
            lambda p: p.send_message(data, opcode), message=True
        )

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

    # ----------------------------------------------------------------- closing

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close with a closing handshake; no reconnect follows.  Thread-safe, returns
        at once: ``on_close`` tells when it is done (or :meth:`wait_closed`).

        A connection waiting to reconnect ends at once (its backoff timer is
        cancelled), even when close() races the session that just ended."""
        encode_close_payload(status, reason)  # invalid arguments raise here, in the caller
        with self._lock:
            old = self._transition("close")
            session = self._session
            if session is not None and old is not ConnectionState.CLOSED:
                # Under the lock: the session cannot be replaced meanwhile.  Its close
                # frame is built now, behind anything already sent.
                session.start_close(status, reason)
        if session is None and old is not ConnectionState.CLOSED:
            self._owner.dispatcher.call_soon(self._end_if_idle, CloseCode.NORMAL_CLOSURE)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake; no reconnect."""
        with self._lock:
            old = self._transition("close")
            session = self._session
        if old is ConnectionState.CLOSED:
            return
        if session is not None:
            self._owner.dispatcher.call_soon(session.abort)
        else:
            self._owner.dispatcher.call_soon(self._end_if_idle, CloseCode.ABNORMAL_CLOSURE)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed for good and ``on_close`` has run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._owner.wait_for(lambda: self._state is ConnectionState.CLOSED, timeout):
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._queue.join(remaining)

    def add_done_callback(self, fn: Callable[[Connection], object]) -> None:
        """Call ``fn(connection)`` once the connection has ended for good (its state is
        CLOSED, no reconnect follows), or at once if it already has.

        It runs on the thread that ended the connection (usually the pool's
        dispatcher), so it must be quick and must not block; the connection's last
        callbacks (``on_close``) may still be running on a worker (call
        :meth:`wait_closed` from elsewhere to wait for them), and ``wait_closed`` may
        return just before it runs.  An exception it raises is logged on the
        ``wspool`` logger.
        """
        with self._lock:
            if self._state is not ConnectionState.CLOSED:
                self._done_callbacks.append(fn)
                return
        self._run_done_callback(fn)

    def _run_done_callback(self, fn: Callable[[Connection], object]) -> None:
        try:
            fn(self)
        except Exception:
            logger.exception("a done callback of %s raised", self.url)

    def drain(self, timeout: float | None = None) -> bool:
        """Block until every queued callback has run (the pool's close uses it)."""
        return self._queue.join(timeout)

    # -------------------------------------------------- session life (dispatcher)

    def start(self) -> None:
        """Open the first session (dispatcher thread; called once by the pool)."""
        self._start_session()

    def _start_session(self) -> None:
        with self._lock:
            if self._state is ConnectionState.CLOSING:
                session = None
            else:
                if self._state is ConnectionState.RECONNECTING:
                    self._transition("retry")
                session = self._session = Session(
                    self,
                    self.options,
                    self._owner.dispatcher,
                    self._owner.executor,
                    self.stats,
                )
                if self._queue.paused:
                    # Callbacks are still behind: the new socket starts paused.  If the
                    # worker resumes meanwhile, its posted resume reaches this session.
                    session.pause_reading()
        if session is None:
            self._end(CloseCode.NORMAL_CLOSURE, "closed by the user")
            return
        session.start()

    def _retry(self) -> None:
        self._retry_timer = None
        self._start_session()

    def session_opened(self, session: Session) -> None:
        with self._lock:
            old = self._transition("opened")
        reconnected = self._opens > 0
        self._opens += 1
        stats = self.stats
        stats.opened_at = time.time()
        if reconnected:
            stats.reconnects += 1
        self._queue.put(_Opened(reconnected))
        if old is ConnectionState.CLOSING:
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
        self, session: Session, code: int, reason: str, error: BaseException | None
    ) -> None:
        if session is not self._session:
            return
        if error is not None:
            self._queue.put(_Failed(error))
        if session.opened_at is not None:
            self._queue.put(_Closed(code, reason))  # on_close pairs with that on_open
        with self._lock:
            self._session = None
            delay = self._next_delay(session, code, error)
            if delay is not None:
                self._transition("lost")
        if delay is None:
            self._end(code, reason)
            return
        self._retry_timer = self._owner.dispatcher.call_later(delay, self._retry)

    def _next_delay(self, session: Session, code: int, error: BaseException | None) -> float | None:
        """Seconds until the next attempt, or None when the connection is over."""
        policy = self.options.reconnect
        if policy is None or self._state is ConnectionState.CLOSING or self._owner.closing:
            return None
        if isinstance(error, WebSocketBadStatusException):
            if error.status_code not in policy.retry_statuses:
                return None
        elif isinstance(error, WebSocketConfigurationException):
            return None  # retrying cannot fix these
        elif isinstance(error, WebSocketTLSException) and not policy.retry_tls_errors:
            return None
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

    def _end_if_idle(self, code: int) -> None:
        """After close()/abort() found no session: end now unless a session started."""
        if self._session is None and self._state is not ConnectionState.CLOSED:
            timer, self._retry_timer = self._retry_timer, None
            if timer is not None:
                timer.cancel()
            self._end(code, "closed by the user")

    def _end(self, code: int, reason: str) -> None:
        with self._lock:
            if self._state is ConnectionState.CLOSED:
                return
            self._transition("ended")
            self._session = None
            done, self._done_callbacks = self._done_callbacks, []
        if self._opens == 0:
            # Never opened: on_close still ends the story, once.
            self._queue.put(_Closed(code, reason))
        self._queue.close()
        self._owner.connection_ended(self)
        for fn in done:
            self._run_done_callback(fn)

    # ------------------------------------------------------------ backpressure

    def _pause_reading(self) -> None:
        # On the dispatcher thread, inside DeliveryQueue.put.
        self.stats.pause_started()
        session = self._session
        if session is not None:
            session.pause_reading()

    def _resume_reading(self) -> None:
        # Called on a worker thread: the socket belongs to the dispatcher.
        self._owner.dispatcher.call_soon(self._resume_on_dispatcher)

    def _resume_on_dispatcher(self) -> None:
        if self._queue.paused:
            # The queue paused again after posting this resume (a put on the dispatcher
            # came first): stay paused; that pause's own resume is posted after it.
            return
        self.stats.pause_ended()
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
        elif kind is ProtocolError:
            # Every callback before the violation ran (their sends are queued on the
            # session): the dispatcher may now send the close frame (Session._defer_failure).
            with contextlib.suppress(DispatcherStoppedError):
                self._owner.dispatcher.call_soon(self._failure_delivered, item)

    def _failure_delivered(self, event: ProtocolError) -> None:
        # Dispatcher thread.  The session checks that ``event`` is its own violation.
        session = self._session
        if session is not None:
            session.failure_delivered(event)

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
