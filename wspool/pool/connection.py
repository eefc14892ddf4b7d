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
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from wspool.exceptions import (
    CallbackError,
    DispatcherStoppedError,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketStaleFeedException,
    WebSocketTLSException,
)
from wspool.pool.backoff import ReconnectPolicy
from wspool.pool.delivery import DeliveryQueue
from wspool.pool.feed import FeedOptions, StreamFilter, encode_payload, payloads_of
from wspool.pool.session import Session, SessionState
from wspool.protocol.events import Event, Message, Ping, Pong, ProtocolError
from wspool.protocol.frames import CloseCode, Opcode, encode_close_payload

if TYPE_CHECKING:
    from wspool.options import Callbacks, PoolOptions
    from wspool.pool.dispatcher import Dispatcher, TimerHandle
    from wspool.protocol.client_protocol import ClientProtocol

__all__ = ["Connection", "ConnectionOwner", "ConnectionState", "ConnectionStats", "SessionRole"]

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
    def executor(self) -> Executor:
        """Runs blocking helpers (name resolution)."""
        ...

    @property
    def delivery_executor(self) -> Executor:
        """Runs the drain tasks of the connections' callbacks."""
        ...

    def check_not_dispatcher(self, what: str) -> None:
        """Raise DispatcherThreadError on the dispatcher thread (a wait would hang)."""

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
    # Feed-grade streams (docs/feeds.md).  Dispatcher: rotations (a replacement took
    # over at its first data message), stale_replacements (stale_after or a missed
    # heartbeat), failovers (a session was lost while another carried on),
    # heartbeat_rtt; under send_lock: send_waited (seconds messages waited for a
    # send_rate token, in all), sends_dropped (paced messages that never got a token:
    # the session closed first).  The worker: duplicates_dropped, gaps.
    rotations: int = 0
    stale_replacements: int = 0
    failovers: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0
    heartbeat_rtt: float | None = None
    send_waited: float = 0.0
    sends_dropped: int = 0
    # (seconds of the pauses that ended, time.monotonic() the current one began or
    # None): one tuple replaced whole, so a reader on another thread never adds a
    # pause twice or misses one that just ended.
    _pause_clock: tuple[float, float | None] = field(default=(0.0, None), init=False, repr=False)
    # The same for the time without any open session after the first open.
    _down_clock: tuple[float, float | None] = field(default=(0.0, None), init=False, repr=False)

    @property
    def down_total(self) -> float:
        """Seconds the stream had no open session since it first opened (reconnects)."""
        ended, since = self._down_clock
        return ended if since is None else ended + time.monotonic() - since

    def down_started(self) -> None:
        if self._down_clock[1] is None:
            self._down_clock = (self._down_clock[0], time.monotonic())

    def down_ended(self) -> None:
        if self._down_clock[1] is not None:
            self._down_clock = (self.down_total, None)

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
        data["down_total"] = self.down_total
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


# Feed markers (dispatcher -> the worker's StreamFilter), in order with the messages.
@dataclass(slots=True)
class _Source:
    """The session with this bit starts (``live``) or stopped delivering."""

    bit: int
    live: bool


@dataclass(slots=True)
class _From:
    """The messages after this marker come from the session with this bit."""

    bit: int


class SessionRole(Enum):
    """What one session does for its stream (feed options; docs/feeds.md)."""

    #: Carries ``send()``; when it is lost with no other open session, the stream is
    #: down (``on_close``, then a reconnect and ``on_open``).
    PRIMARY = "primary"
    #: ``redundancy``: receives and delivers too (``dedupe`` drops what both see).
    STANDBY = "standby"
    #: Opened to take over another session (``max_age``, ``stale_after``,
    #: ``heartbeat``, a server's 1001/1012): takes its role at its first data message.
    REPLACEMENT = "replacement"
    #: Replaced: closing; what it still receives is delivered only with ``dedupe``.
    RETIRING = "retiring"


@dataclass(slots=True, eq=False)
class _Member:
    """One session of a feed stream and what the stream keeps for it (dispatcher only)."""

    session: Session
    role: SessionRole
    bit: int  # its source bit for the StreamFilter
    slot: int  # which URL: 0 the connection's, i the i-th of redundancy=[...]
    replaces: _Member | None = None
    replacement: _Member | None = None
    last_data: float | None = None  # time.monotonic() of its last data message
    heartbeat_sent: float | None = None  # time.monotonic() of the unanswered heartbeat
    timers: dict[str, TimerHandle] = field(default_factory=dict)


#: The server is going away or restarting: a replacement starts at once.
_SHUTDOWN_CODES: Final = frozenset({CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART})


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
        # What the last opened session negotiated, kept once it has ended: callbacks
        # that run after a fast close (on_open of a connection the server closed at
        # once) still read the subprotocol, extensions and headers it opened with.
        self._negotiated: tuple[str | None, list[str], list[tuple[str, str]]] = (None, [], [])
        self._retry_timer: TimerHandle | None = None  # dispatcher only
        self._attempt = 0  # consecutive failed attempts, for the backoff (dispatcher only)
        self._opens = 0  # sessions that opened (dispatcher only)
        self._current: str | None = None  # see _deliver (the worker only)
        # Feed-grade streams (pool/feed.py); all None/empty without feed options.
        feed = self._feed = options.feed
        self._members: list[_Member] = []  # every session of the stream (see _member)
        self._final: tuple[int, str] | None = None  # the end waiting for _members
        self._aux_attempt = 0  # failed standby/replacement attempts (dispatcher)
        self._last_source = 0  # the bit of the last _From queued (dispatcher)
        self._source = 0  # the bit of the session being delivered (the worker)
        self._stream = StreamFilter(feed) if feed is not None and feed.filters else None
        heartbeat = feed.heartbeat if feed is not None else None
        self._heartbeat_reply = heartbeat.matcher() if heartbeat is not None else None
        self._heartbeat_data = encode_payload(heartbeat.payload)[0] if heartbeat is not None else ""
        # add_done_callback(): run once by _end, outside _lock (guarded by it).
        self._done_callbacks: list[Callable[[Connection], object]] = []
        self._queue = DeliveryQueue(
            owner.delivery_executor,
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
        return session.subprotocol if session is not None else self._negotiated[0]

    @property
    def extensions(self) -> list[str]:
        session = self._session
        return list(session.extensions if session is not None else self._negotiated[1])

    @property
    def headers(self) -> dict[str, str]:
        session = self._session
        pairs = session.response_headers if session is not None else self._negotiated[2]
        return {name.lower(): value for name, value in pairs}

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize

    def stats_dict(self) -> dict[str, Any]:
        data = self.stats.as_dict()
        data["state"] = self._state.value
        data["queue_depth"] = self._queue.qsize
        session = self._session
        data["send_queue"] = session.paced_depth if session is not None else 0
        members = self._members
        data["sessions"] = (
            sum(1 for m in members if m.session.state is SessionState.OPEN)
            if self._feed is not None
            else int(session is not None and session.state is SessionState.OPEN)
        )
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
            others = [m.session for m in self._members if m.session is not session]
        for other in others:
            other.start_close(status, reason)
        if others and old is not ConnectionState.CLOSED:
            self._owner.dispatcher.call_soon(self._cancel_replacements)
        if session is None and old is not ConnectionState.CLOSED:
            self._owner.dispatcher.call_soon(self._end_if_idle, CloseCode.NORMAL_CLOSURE)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake; no reconnect."""
        with self._lock:
            old = self._transition("close")
            session = self._session
            others = [m.session for m in self._members if m.session is not session]
        if old is ConnectionState.CLOSED:
            return
        for other in others:
            self._owner.dispatcher.call_soon(other.abort)
        if session is not None:
            self._owner.dispatcher.call_soon(session.abort)
        else:
            self._owner.dispatcher.call_soon(self._end_if_idle, CloseCode.ABNORMAL_CLOSURE)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed for good and ``on_close`` has run.

        Raises :class:`~wspool.DispatcherThreadError` on the dispatcher thread.
        """
        self._owner.check_not_dispatcher(f"wait_closed() of {self.url}")
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
        self._owner.check_not_dispatcher(f"drain() of {self.url}")
        return self._queue.join(timeout)

    # -------------------------------------------------- session life (dispatcher)

    def start(self) -> None:
        """Open the first session (dispatcher thread; called once by the pool)."""
        self._start_session()
        feed = self._feed
        if feed is not None:
            self._restore_redundancy()

    def _new_session(self, slot: int) -> Session:
        options = self.options
        if slot:
            options = replace(options, connect=options.alternates[slot - 1])
        return Session(self, options, self._owner.dispatcher, self._owner.executor, self.stats)

    def _start_session(self) -> None:
        with self._lock:
            if self._state is ConnectionState.CLOSING:
                session = None
            else:
                if self._state is ConnectionState.RECONNECTING:
                    self._transition("retry")
                session = self._session = self._new_session(0)
                if self._feed is not None:
                    member = _Member(
                        session, SessionRole.PRIMARY, self._free_bit(), self._free_slot()
                    )
                    self._members.append(member)
                    self._source_started(member)
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
        if self._feed is None:
            self._primary_opened(session)
            return
        member = self._member(session)
        if member is None:
            return
        if self._state is not ConnectionState.CLOSING and not self._owner.closing:
            self._member_opened(member)  # subscriptions, timers
        if session is self._session:
            self._primary_opened(session)
        elif self._state is ConnectionState.CLOSING or self._owner.closing:
            session.start_close(CloseCode.NORMAL_CLOSURE, "")
        elif self._state is not ConnectionState.OPEN:
            # The stream has no open session (it is reconnecting): this one takes over.
            self._adopt(member)
            self._primary_opened(session)
        if session is self._session:
            self._restore_redundancy()

    def _primary_opened(self, session: Session) -> None:
        self._negotiated = (
            session.subprotocol,
            list(session.extensions),
            list(session.response_headers),
        )
        with self._lock:
            old = self._transition("opened")
        reconnected = self._opens > 0
        self._opens += 1
        stats = self.stats
        stats.opened_at = time.time()
        if reconnected:
            stats.reconnects += 1
            stats.down_ended()
        self._queue.put(_Opened(reconnected))
        if old is ConnectionState.CLOSING:
            session.start_close(CloseCode.NORMAL_CLOSURE, "")

    def session_events(
        self, session: Session, events: list[Event], size: int, messages: int
    ) -> None:
        stats = self.stats
        stats.bytes_in += size
        if self._feed is not None:
            self._feed_events(session, events, size, messages)
            return
        if messages:
            stats.messages_in += messages
            stats.last_message_at = time.time()
        rtt = session.last_rtt
        if rtt is not None:  # a new session has none until its first pong: keep the last
            stats.last_rtt = rtt
        self._queue.put_many(events, size)

    def session_closing(self, session: Session, code: int) -> None:
        """A close frame from the server.  1001/1012 announce a shutdown or restart:
        with feed options (and reconnects or rotation on), the replacement starts now,
        not after the old socket ended and a backoff passed."""
        feed = self._feed
        if feed is None or code not in _SHUTDOWN_CODES:
            return
        if self.options.reconnect is None and feed.max_age is None and feed.redundancy == 1:
            return
        member = self._member(session)
        if member is not None and member.role in (SessionRole.PRIMARY, SessionRole.STANDBY):
            self._start_replacement(member)

    def session_closed(
        self, session: Session, code: int, reason: str, error: BaseException | None
    ) -> None:
        if self._feed is not None:
            member = self._member(session)
            if member is None:
                return
            self._member_closed(member)
            if session is not self._session:
                self._aux_closed(member, error)
                return
            successor = self._successor(member)
            if successor is not None:
                self._fail_over(member, successor, error)
                return
        elif session is not self._session:
            return
        if error is not None:
            self._queue.put(_Failed(error))
        if session.opened_at is not None:
            self._queue.put(_Closed(code, reason))  # on_close pairs with that on_open
            self.stats.down_started()
        with self._lock:
            self._session = None
            delay = self._next_delay(session, code, error)
            # A session of the stream is already opening (a replacement, a standby):
            # it is the next attempt, now, even without a reconnect policy.
            adopt = self._feed is not None and self._can_adopt()
            if delay is not None or adopt:
                self._transition("lost")
        if adopt:
            self._adopt_connecting()
            return
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
        if self._members:
            # Other sessions of the stream are still up (retiring, standbys): close
            # them; the last one to end ends the stream with this code.
            with self._lock:
                self._transition("close")
                self._final = (code, reason)
                sessions = [m.session for m in self._members]
            for session in sessions:
                session.start_close(CloseCode.NORMAL_CLOSURE, "")
            return
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

    # ------------------------------------------- feed-grade streams (dispatcher)
    #
    # With any feed option (pool/feed.py) every session of the stream has a _Member
    # in _members (the primary included): its role, its timers, its source bit.
    # _members is changed by the dispatcher under _lock (close() reads it from other
    # threads); everything else here is the dispatcher's own.

    def _member(self, session: Session) -> _Member | None:
        for member in self._members:
            if member.session is session:
                return member
        return None

    def _free_bit(self) -> int:
        used = 0
        for member in self._members:
            used |= member.bit
        bit = 1
        while used & bit:
            bit <<= 1
        return bit

    def _free_slot(self) -> int:
        """The URL slot for a new session: the first not held by a live member."""
        feed = self._feed
        if feed is None or not self.options.alternates:
            return 0
        used = {m.slot for m in self._members if m.role is not SessionRole.RETIRING}
        for slot in range(1 + len(self.options.alternates)):
            if slot not in used:
                return slot
        return 0

    def _start_member(
        self, role: SessionRole, slot: int, replaces: _Member | None = None
    ) -> _Member | None:
        with self._lock:
            if self._state is ConnectionState.CLOSING or self._state is ConnectionState.CLOSED:
                return None
            session = self._new_session(slot)
            member = _Member(session, role, self._free_bit(), slot, replaces=replaces)
            self._members.append(member)
            self._source_started(member)
            if self._queue.paused:
                session.pause_reading()
        if replaces is not None:
            replaces.replacement = member
        session.start()
        return member

    def _source_started(self, member: _Member) -> None:
        """Queued when the session starts connecting, not when it opens: from then on
        the StreamFilter remembers what the others deliver, so the new session's first
        messages are recognised (see StreamFilter)."""
        feed = self._feed
        if feed is not None and feed.filters:
            self._queue.put(_Source(member.bit, True))

    def _member_timer(
        self, member: _Member, name: str, delay: float, fn: Callable[[], None]
    ) -> None:
        old = member.timers.pop(name, None)
        if old is not None:
            old.cancel()
        member.timers[name] = self._owner.dispatcher.call_later(delay, fn)

    def _member_opened(self, member: _Member) -> None:
        feed = self._feed
        assert feed is not None
        session = member.session
        if feed.subscribe is not None:
            self._subscribe(session, feed)
        if feed.max_age is not None:
            self._member_timer(
                member,
                "rotate",
                feed.max_age - feed.rotation_lead,
                partial(self._start_replacement, member),
            )
        if feed.stale_after is not None:
            self._member_timer(
                member, "stale", feed.stale_after, partial(self._check_stale, member)
            )
        if feed.heartbeat is not None:
            self._member_timer(
                member,
                "heartbeat",
                feed.heartbeat.interval,
                partial(self._send_heartbeat, member),
            )

    def _subscribe(self, session: Session, feed: FeedOptions) -> None:
        """The subscriptions, first on the new session (before any send of the user:
        the stream is not OPEN yet).  A callable runs here, on the dispatcher."""
        assert feed.subscribe is not None
        try:
            payloads = payloads_of(feed.subscribe, self)
        except Exception as exc:
            self._queue.put(
                _Failed(
                    CallbackError(
                        url=self.url,
                        label=self.label,
                        callback="subscribe",
                        event=None,
                        original=exc,
                    )
                )
            )
            return
        for data, _text in payloads:
            try:
                session.send_built(partial(_build_message, data), message=True)
            except WebSocketConnectionClosedException:
                return

    def _member_closed(self, member: _Member) -> None:
        with self._lock:
            self._members.remove(member)
        for handle in member.timers.values():
            handle.cancel()
        member.timers.clear()
        feed = self._feed
        assert feed is not None
        if feed.filters:
            self._queue.put(_Source(member.bit, False))
            self._last_source = 0
        if member.replaces is not None and member.replaces.replacement is member:
            member.replaces.replacement = None
        replacement = member.replacement
        if replacement is not None:
            # What it was to replace is gone.  A standby's replacement is a standby
            # now; the primary's stays a replacement until _successor or
            # _adopt_connecting makes it the primary.
            replacement.replaces = None
            member.replacement = None
            if member.role is SessionRole.STANDBY:
                replacement.role = SessionRole.STANDBY

    def _successor(self, lost: _Member) -> _Member | None:
        """An open session to carry the stream on after the primary ``lost``."""
        if self._state is ConnectionState.CLOSING or self._owner.closing:
            return None
        candidates = [
            m
            for m in self._members
            if m.session.state is SessionState.OPEN and m.role is not SessionRole.RETIRING
        ]
        # Its own replacement first (it was opened for this), then standbys.
        candidates.sort(key=lambda m: m.role is not SessionRole.REPLACEMENT)
        return candidates[0] if candidates else None

    def _fail_over(self, lost: _Member, successor: _Member, error: BaseException | None) -> None:
        with self._lock:
            successor.role = SessionRole.PRIMARY
            successor.replaces = None
            self._session = successor.session
        stats = self.stats
        if error is not None:
            stats.failovers += 1
            self._queue.put(_Failed(error))
        self._restore_redundancy()

    def _aux_closed(self, member: _Member, error: BaseException | None) -> None:
        """A session other than the primary ended."""
        if self._state is ConnectionState.CLOSING:
            if not self._members and self._session is None:
                code, reason = self._final or (CloseCode.NORMAL_CLOSURE, "closed by the user")
                self._end(code, reason)
            return
        if member.role is SessionRole.RETIRING:
            return
        if error is not None:
            self._queue.put(_Failed(error))
        replaced = member.replaces
        if replaced is not None:
            # A replacement that failed to open: try again later while the session it
            # was for still works.
            self._member_retry(lambda: self._start_replacement(replaced))
        elif member.role is SessionRole.STANDBY:
            self._member_retry(self._restore_redundancy)

    def _member_retry(self, fn: Callable[[], None]) -> None:
        policy = self.options.reconnect or _STANDBY_POLICY
        delay = policy.delay(min(self._aux_attempt, 16))
        self._aux_attempt += 1
        self._owner.dispatcher.call_later(delay, fn)

    def _restore_redundancy(self) -> None:
        feed = self._feed
        if feed is None or self._owner.closing:
            return
        if self._state is ConnectionState.CLOSING or self._state is ConnectionState.CLOSED:
            return
        live = sum(
            1
            for m in self._members
            if m.role is not SessionRole.RETIRING and m.role is not SessionRole.REPLACEMENT
        )
        for _ in range(feed.redundancy - live):
            self._start_member(SessionRole.STANDBY, self._free_slot())

    def _adopt(self, member: _Member) -> None:
        """An open session becomes the primary of a stream that has none open."""
        with self._lock:
            timer, self._retry_timer = self._retry_timer, None
            if timer is not None:
                timer.cancel()
            previous = self._session
            old = None
            if previous is not None:
                old = self._member(previous)
            if self._state is ConnectionState.RECONNECTING:
                self._transition("retry")
            member.role = SessionRole.PRIMARY
            member.replaces = None
            self._session = member.session
        if old is not None and old is not member:
            # The attempt that was to reopen the stream: a standby now, or not needed.
            if self._feed is not None and self._feed.redundancy > 1:
                old.role = SessionRole.STANDBY
            else:
                old.role = SessionRole.RETIRING
                old.session.start_close(CloseCode.NORMAL_CLOSURE, "")

    def _cancel_replacements(self) -> None:
        """close() came before a replacement took over: its messages are not the
        stream's any more (it may have subscribed after the primary stopped, so they
        need not follow on).  The StreamFilter forgets what it holds now, in order
        with what was queued before; _feed_events drops what it still receives."""
        feed = self._feed
        if feed is None or not feed.filters:
            return
        for member in self._members:
            if member.role is SessionRole.REPLACEMENT:
                self._queue.put(_Source(member.bit, False))

    def _can_adopt(self) -> bool:
        if self._state is ConnectionState.CLOSING or self._owner.closing:
            return False
        return any(m.role is not SessionRole.RETIRING for m in self._members)

    def _adopt_connecting(self) -> None:
        """The primary was lost: a session already opening (a replacement, a standby)
        becomes the next attempt instead of a backoff (see _can_adopt)."""
        member = next(m for m in self._members if m.role is not SessionRole.RETIRING)
        with self._lock:
            self._transition("retry")
            member.role = SessionRole.PRIMARY
            member.replaces = None
            self._session = member.session

    def _start_replacement(self, member: _Member) -> None:
        member.timers.pop("rotate", None)
        if member.role is SessionRole.REPLACEMENT and member in self._members:
            # Its own rotation came due before it took over (no data yet): ask again
            # shortly, or the stream would never rotate again.
            feed = self._feed
            if feed is None or feed.max_age is None:
                return
            self._member_timer(
                member,
                "rotate",
                min(feed.rotation_lead, 1.0),
                partial(self._start_replacement, member),
            )
            return
        if (
            member.replacement is not None
            or member not in self._members
            or member.role in (SessionRole.RETIRING, SessionRole.REPLACEMENT)
            or self._state is not ConnectionState.OPEN
            or self._owner.closing
        ):
            return
        self._start_member(SessionRole.REPLACEMENT, member.slot, replaces=member)

    def _promote(self, member: _Member) -> None:
        """A replacement takes over the role of the session it replaces, which closes."""
        old = member.replaces
        member.replaces = None
        if old is None or old not in self._members:
            if member.role is SessionRole.REPLACEMENT:
                member.role = SessionRole.STANDBY
            return
        old.replacement = None
        with self._lock:
            member.role = old.role
            old.role = SessionRole.RETIRING
            if old.session is self._session:
                self._session = member.session
        self.stats.rotations += 1
        for handle in old.timers.values():
            handle.cancel()
        old.timers.clear()
        old.session.start_close(CloseCode.NORMAL_CLOSURE, "rotated")

    def _check_stale(self, member: _Member) -> None:
        feed = self._feed
        assert feed is not None and feed.stale_after is not None
        member.timers.pop("stale", None)
        if member not in self._members or member.role is SessionRole.RETIRING:
            return
        now = time.monotonic()
        if self.stats.paused:
            # Backpressure: we stopped reading, so the silence is ours, not the feed's
            # (as for the keepalive: docs/architecture.md, "Keepalive under
            # backpressure").  The watchdog starts over once reading resumes.
            member.last_data = now
        since = member.last_data or member.session.opened_at or now
        idle = now - since
        if idle < feed.stale_after:
            self._member_timer(
                member,
                "stale",
                feed.stale_after - idle,
                partial(self._check_stale, member),
            )
            return
        self._replace_silent(
            member,
            WebSocketStaleFeedException(
                f"no data message for {idle:.1f}s (stale_after={feed.stale_after}s) although "
                "the connection is up; the session is replaced",
                url=member.session.url.redacted,
            ),
        )
        self._member_timer(member, "stale", feed.stale_after, partial(self._check_stale, member))

    def _replace_silent(self, member: _Member, error: WebSocketStaleFeedException) -> None:
        """A session went silent (stale_after) or missed its heartbeat: make before
        break.  A second time, with its replacement open, the replacement takes over;
        a silent replacement itself takes over from the silent session it replaces."""
        if member.role is SessionRole.REPLACEMENT:
            self._promote(member)
            return
        replacement = member.replacement
        if replacement is None:
            self.stats.stale_replacements += 1
            self._queue.put(_Failed(error))
            self._start_replacement(member)
        elif replacement.session.state is SessionState.OPEN:
            self._promote(replacement)

    def _send_heartbeat(self, member: _Member) -> None:
        feed = self._feed
        assert feed is not None and feed.heartbeat is not None
        heartbeat = feed.heartbeat
        member.timers.pop("heartbeat", None)
        if member not in self._members or member.role is SessionRole.RETIRING:
            return
        try:
            member.session.send_built(partial(_build_message, self._heartbeat_data), message=True)
        except WebSocketConnectionClosedException:
            return
        if member.heartbeat_sent is None:
            member.heartbeat_sent = time.monotonic()
            self._member_timer(
                member,
                "heartbeat-reply",
                heartbeat.deadline,
                partial(self._heartbeat_missed, member),
            )
        self._member_timer(
            member, "heartbeat", heartbeat.interval, partial(self._send_heartbeat, member)
        )

    def _heartbeat_missed(self, member: _Member) -> None:
        feed = self._feed
        assert feed is not None and feed.heartbeat is not None
        member.timers.pop("heartbeat-reply", None)
        if member not in self._members or member.role is SessionRole.RETIRING:
            return
        if self.stats.paused:
            # The reply may be behind the data we stopped reading: wait again.
            self._member_timer(
                member,
                "heartbeat-reply",
                feed.heartbeat.deadline,
                partial(self._heartbeat_missed, member),
            )
            return
        member.heartbeat_sent = None
        self._replace_silent(
            member,
            WebSocketStaleFeedException(
                f"no reply to the heartbeat within {feed.heartbeat.deadline}s "
                f"(heartbeat interval {feed.heartbeat.interval}s); the session is replaced",
                url=member.session.url.redacted,
            ),
        )

    def _feed_events(self, session: Session, events: list[Event], size: int, messages: int) -> None:
        member = self._member(session)
        feed = self._feed
        if member is None or feed is None:
            return
        stats = self.stats
        if messages:
            now = time.monotonic()
            matches = self._heartbeat_reply
            if matches is not None:
                events, messages, size = self._take_replies(member, events, matches, now)
        if member.role is SessionRole.REPLACEMENT and self._state is ConnectionState.CLOSING:
            # close() was called before it took over: what it receives is not the
            # stream's (see _cancel_replacements), except a violation to report.
            events = [e for e in events if type(e) is ProtocolError]
            if not events:
                return
            messages = 0
        if messages:
            member.last_data = now
            stats.messages_in += messages
            stats.last_message_at = time.time()
            if member.role is SessionRole.REPLACEMENT:
                self._promote(member)
        role = member.role
        if role is SessionRole.PRIMARY:
            rtt = session.last_rtt
            if rtt is not None:
                stats.last_rtt = rtt
            delivered = events
        else:
            # Other sessions deliver data (deduped), and violations (so that the
            # session's deferred failure is released, Session._defer_failure).
            keep_messages = role is SessionRole.STANDBY or (
                role is SessionRole.RETIRING and feed.dedupe is not None
            )
            delivered = [
                e
                for e in events
                if (type(e) is Message and keep_messages) or type(e) is ProtocolError
            ]
            if not delivered:
                return
        if feed.filters and self._last_source != member.bit:
            self._last_source = member.bit
            self._queue.put(_From(member.bit))
        self._queue.put_many(delivered, size)

    def _take_replies(
        self,
        member: _Member,
        events: list[Event],
        matches: Callable[[Any], bool],
        now: float,
    ) -> tuple[list[Event], int, int]:
        """Consume heartbeat replies (never delivered); the first answers the pending
        heartbeat (its round trip goes to stats.heartbeat_rtt)."""
        kept: list[Event] = []
        messages = size = 0
        for event in events:
            if type(event) is Message:
                try:
                    reply = matches(event.data)
                except Exception:
                    logger.exception("the heartbeat reply predicate of %s raised", self.url)
                    reply = False
                if reply:
                    sent = member.heartbeat_sent
                    if sent is not None:
                        member.heartbeat_sent = None
                        self.stats.heartbeat_rtt = now - sent
                        handle = member.timers.pop("heartbeat-reply", None)
                        if handle is not None:
                            handle.cancel()
                    continue
                messages += 1
                size += len(event.data)
            kept.append(event)
        return kept, messages, size

    # ------------------------------------------------------------ backpressure

    def _pause_reading(self) -> None:
        # On the dispatcher thread, inside DeliveryQueue.put.
        self.stats.pause_started()
        session = self._session
        if session is not None:
            session.pause_reading()
        for member in self._members:  # every session of a feed stream feeds this queue
            if member.session is not session:
                member.session.pause_reading()

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
        for member in self._members:
            if member.session is not session:
                member.session.resume_reading()

    # ----------------------------------------------------- delivery (a worker)

    def _deliver(self, item: Any) -> None:
        # Hot path first: one message, one on_message call.  ``_current`` names the
        # running callback only where the item's type does not (on_data beside
        # on_message, on_reconnect beside on_open); _callback_failed clears it.
        callbacks = self.callbacks
        kind = type(item)
        if kind is Message:
            if self._stream is not None:
                self._deliver_checked(self._admit(item))
                return
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
        elif kind is _From:
            self._source = item.bit
        elif kind is _Source:
            stream = self._stream
            assert stream is not None
            if item.live:
                stream.source_started(item.bit)
            else:
                self._deliver_checked(stream.source_ended(item.bit))
                self.stats.duplicates_dropped = stream.duplicates
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
        for member in self._members:
            if member.session is not session:
                member.session.failure_delivered(event)

    def _admit(self, item: Message) -> list[Message]:
        """``dedupe`` (the worker): what to deliver for ``item``: itself, nothing (a
        duplicate, or held while its session joins), or held messages released.  A key
        function that raises is reported (CallbackError) and the message delivered."""
        feed = self._feed
        stream = self._stream
        assert feed is not None and stream is not None
        key_of = feed.dedupe
        if key_of is None:
            return [item]
        try:
            key = key_of(item.data)
        except Exception as exc:
            self._current = "dedupe"
            self._callback_failed(exc, item)
            return [item]
        if key is None:
            return [item]  # no key (an ack, a status message): not deduplicated
        delivered = stream.admit(key, self._source or 1, item)
        self.stats.duplicates_dropped = stream.duplicates
        return delivered

    def _deliver_checked(self, messages: list[Message]) -> None:
        """Deliver messages that passed dedupe, checking ``sequence`` first (on_gap
        before the message that shows the gap).  Each callback's exception is reported
        on its own, so one cannot lose the messages after it."""
        feed = self._feed
        assert feed is not None
        stream = self._stream
        assert stream is not None
        callbacks = self.callbacks
        number_of = feed.sequence
        for message in messages:
            if number_of is not None:
                self._check_sequence(stream, number_of, message)
            try:
                if callbacks.on_data is not None:
                    self._current = "on_data"
                    callbacks.on_data(self, message.data, message.opcode, True)
                    self._current = None
                if callbacks.on_message is not None:
                    callbacks.on_message(self, message.data)
            except Exception as exc:
                self._callback_failed(exc, message)

    def _check_sequence(
        self, stream: StreamFilter, number_of: Callable[[Any], int | None], message: Message
    ) -> None:
        try:
            number = number_of(message.data)
        except Exception as exc:
            self._current = "sequence"
            self._callback_failed(exc, message)
            return
        if number is None:
            return
        expected = stream.gap(number)
        if expected is None:
            return
        self.stats.gaps += 1
        on_gap = self.callbacks.on_gap
        if on_gap is not None:
            try:
                on_gap(self, expected, number)
            except Exception as exc:
                self._current = "on_gap"
                self._callback_failed(exc, message)

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


def _build_message(data: str | bytes, protocol: ClientProtocol) -> bytes:
    return protocol.send_message(data)


#: Standbys and replacements that fail to open retry on this schedule when the
#: connection has no ``reconnect`` policy of its own.
_STANDBY_POLICY: Final = ReconnectPolicy()

#: The callback an event goes to, for error reports (see Connection._deliver).
_CALLBACK_OF_EVENT: dict[type, str] = {
    Message: "on_message",
    Ping: "on_ping",
    Pong: "on_pong",
    _Opened: "on_open",
    _Closed: "on_close",
}
