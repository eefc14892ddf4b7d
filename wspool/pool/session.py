"""One physical WebSocket connection, driven by the dispatcher thread.

A :class:`Session` walks one socket through resolve -> TCP connect -> proxy tunnel ->
TLS -> HTTP upgrade (-> the next hop after a redirect) -> open -> closing -> closed,
every step non-blocking inside the dispatcher.  What each step does is decided by the
shared opening path (:class:`~wspool.opening.Opening`, the dial plan of
:mod:`wspool.transport.dial`, the sans-I/O
:class:`~wspool.protocol.handshake.ClientHandshake`), the same objects the blocking
client drives; this module only moves bytes without blocking.  It reports to its owner
(a :class:`~wspool.pool.connection.Connection`) through the small
:class:`SessionOwner` interface; a reconnect makes a new Session, the owner stays.

Threading (docs/architecture.md, invariants 1 and 2): only the dispatcher thread
touches the socket.  Other threads only call :meth:`Session.send_built` /
:meth:`Session.start_close`, which build frames under ``send_lock`` (the core is not
thread-safe, and compression context needs frames to leave in build order), append
them to ``_outbox`` and wake the dispatcher at most once until it flushed.  The
dispatcher takes the same lock around ``receive_data``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import operator
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from wspool.exceptions import (
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
)
from wspool.opening import Opening
from wspool.pool.feed import TokenBucket
from wspool.protocol.client_protocol import ClientProtocol, ProtocolState
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Event,
    Message,
    Ping,
    Pong,
    ProtocolError,
)
from wspool.protocol.frames import CloseCode
from wspool.protocol.handshake import (
    REJECTION_BODY_WAIT,
    Accepted,
    ClientHandshake,
    HandshakeEvent,
    HandshakeState,
    Rejected,
)
from wspool.transport.dial import (
    DialPlan,
    Route,
    connect_error,
    connect_timeout_error,
    new_socket,
    proxy_handshake,
    proxy_leftover_error,
    resolve,
    tls_error,
    wrap_tls,
)
from wspool.transport.proxy import ProxyHandshake
from wspool.transport.url import WebSocketURL

if TYPE_CHECKING:
    from wspool.options import PoolOptions
    from wspool.pool.connection import ConnectionStats
    from wspool.pool.dispatcher import Dispatcher, TimerHandle

__all__ = ["Session", "SessionOwner", "SessionState"]

logger = logging.getLogger("wspool")

_RECV_SIZE: Final = 256 * 1024
#: Reads per readiness event before yielding to other sockets (fairness).
_READS_PER_TURN: Final = 4
_ONLY_MESSAGES: Final = {Message}
_data_of: Final = operator.attrgetter("data")
_CONNECT_PENDING: Final = frozenset({0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})


class SessionState(Enum):
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    PROXY = "proxy"
    TLS = "tls"
    UPGRADING = "upgrading"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class SessionOwner(Protocol):
    """What a session reports to (implemented by Connection); dispatcher thread only."""

    def session_opened(self, session: Session) -> None: ...

    def session_events(
        self, session: Session, events: list[Event], size: int, messages: int
    ) -> None: ...

    def session_closing(self, session: Session, code: int) -> None:
        """The server sent its close frame with ``code`` (the socket is still open)."""

    def session_closed(
        self, session: Session, code: int, reason: str, error: BaseException | None
    ) -> None: ...


class Session:
    """One socket's life.  Created and started on the dispatcher thread."""

    # Slots: one instance per connection, so no per-instance dict (memory per idle
    # connection is a benchmark target).
    __slots__ = (
        "_addresses",
        "_bucket",
        "_failure",
        "_failure_queued",
        "_flush_scheduled",
        "_handshake",
        "_last_connect_error",
        "_lookup",
        "_outbox",
        "_pace_scheduled",
        "_paced",
        "_paused",
        "_ping_sent_at",
        "_plan",
        "_proxy_handshake",
        "_reading",
        "_route",
        "_sock",
        "_stale_pong",
        "_timers",
        "_unsent",
        "_writing",
        "dispatcher",
        "extensions",
        "last_rtt",
        "opened_at",
        "opening",
        "options",
        "owner",
        "protocol",
        "resolver",
        "response_headers",
        "send_lock",
        "state",
        "stats",
        "subprotocol",
    )

    def __init__(
        self,
        owner: SessionOwner,
        options: PoolOptions,
        dispatcher: Dispatcher,
        resolver: Executor,
        stats: ConnectionStats,
    ) -> None:
        self.owner = owner
        self.options = options
        #: The hops of this session's opening (the URL, then redirect targets).
        self.opening = Opening(options.connect)
        self.dispatcher = dispatcher
        self.resolver = resolver
        #: The owner's counters; send counters are bumped under ``send_lock``.
        self.stats = stats
        self.state = SessionState.RESOLVING  # written by the dispatcher only
        self.protocol: ClientProtocol | None = None
        self.subprotocol: str | None = None
        self.extensions: list[str] = []
        self.response_headers: list[tuple[str, str]] = []
        self.opened_at: float | None = None
        self.send_lock = threading.Lock()

        self._sock: socket.socket | None = None
        self._plan: DialPlan | None = None
        self._lookup: Future[Route] | None = None
        self._route: Route | None = None
        self._addresses: list[tuple[Any, ...]] = []
        self._last_connect_error: OSError | None = None
        self._proxy_handshake: ProxyHandshake | None = None
        self._handshake: ClientHandshake | None = None
        # Bytes waiting to be written.  _outbox is filled by any thread under send_lock;
        # _unsent holds what the dispatcher already took but the socket did not accept
        # yet (the dispatcher's own): small frames joined, large ones kept whole.
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._unsent: list[bytes | memoryview] = []  # a deque costs 0.6 KiB when idle
        self._writing = False  # write interest registered
        self._reading = False  # read interest registered
        self._paused = False  # backpressure: the owner's queue is full
        self._timers: dict[str, TimerHandle] = {}
        self._ping_sent_at: float | None = None
        # A pong is owed for a ping sent before a pause: its round trip includes the
        # pause, so it gives no RTT sample (see pause_reading).
        self._stale_pong = False
        self.last_rtt: float | None = None
        # A protocol violation waiting for the callbacks of the messages before it
        # (see _defer_failure); None on every healthy connection.
        self._failure: ProtocolError | None = None
        self._failure_queued = False  # its close frame is queued (_fail_connection)
        # send_rate (pool/feed.py): data frames wait in _paced, in build order, for a
        # token; (frame, time queued).  Both under send_lock.
        feed = options.feed
        limit = feed.send_rate if feed is not None else None
        self._bucket = TokenBucket(limit) if limit is not None else None
        self._paced: list[tuple[bytes, float]] = []
        self._pace_scheduled = False

    @property
    def url(self) -> WebSocketURL:
        """The hop being opened (after redirects: where the connection went)."""
        return self.opening.url

    # ------------------------------------------------------------------ helpers

    def _enter(self, state: SessionState) -> None:
        """Every state change goes through here, logged at DEBUG (URL redacted)."""
        if state is not self.state:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s: session %s -> %s", self.url.redacted, self.state.value, state.value
                )
            self.state = state

    def _timer(self, name: str, delay: float | None, fn: Callable[[], None]) -> None:
        self._cancel_timer(name)
        if delay is not None:
            self._timers[name] = self.dispatcher.call_later(delay, fn)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _set_interest(self, read: bool, write: bool) -> None:
        sock = self._sock
        assert sock is not None
        fresh = not (self._reading or self._writing)
        if read != self._reading:
            if read:
                self.dispatcher.add_reader(sock, self._on_readable)
            else:
                self.dispatcher.remove_reader(sock)
            self._reading = read
        if write != self._writing:
            if write:
                self.dispatcher.add_writer(sock, self._on_writable)
            else:
                self.dispatcher.remove_writer(sock)
            self._writing = write
        if fresh and (read or write) and self.state is not SessionState.OPEN:
            # Opening work (connect, proxy, TLS, upgrade) may wait a turn when the
            # turn is over budget; open sockets' reads go first (dispatcher.py).
            self.dispatcher.set_deferrable(sock, True)

    def _drop_socket(self) -> None:
        """Unregister and close the socket (the session itself goes on or ends)."""
        sock = self._sock
        self._sock = None
        if sock is not None:
            if self._reading:
                self.dispatcher.remove_reader(sock)
            if self._writing:
                self.dispatcher.remove_writer(sock)
            self._reading = self._writing = False
            with contextlib.suppress(OSError):
                sock.close()

    # ---------------------------------------------------------------- connecting

    def start(self) -> None:
        """Begin connecting (dispatcher thread).  ``open_timeout`` covers every hop."""
        self._timer("open", self.options.connect.open_timeout, self._open_timed_out)
        self._dial()

    def _dial(self) -> None:
        """Resolve and connect the current hop along its dial plan."""
        self._enter(SessionState.RESOLVING)
        given = self.opening.take_socket()
        if given is not None:
            self._use_socket(given)
            return
        try:
            plan = self._plan = self.opening.plan()
            if not plan.needs_lookup:
                self._connect_route(resolve(plan))  # IP literals: no DNS, no blocking
                return
        except (WebSocketException, OSError) as exc:
            self._fail(exc)
            return
        # Name resolution blocks: it runs on the resolver executor and reports back
        # through the dispatcher's command queue (docs/architecture.md, invariant 6).
        lookup = self._lookup = self.resolver.submit(resolve, plan)
        lookup.add_done_callback(lambda f: self.dispatcher.call_soon(self._resolved, f))

    def _use_socket(self, sock: socket.socket) -> None:
        """The ``socket`` option: the caller's connected socket instead of dialling (no
        proxy, no socket options); TLS unless it is already an SSLSocket."""
        self._enter(SessionState.CONNECTING)
        self._sock = sock
        try:
            self._plan = self.opening.plan()
            sock.setblocking(False)
        except (WebSocketException, OSError) as exc:
            self._fail(exc)
            return
        if isinstance(sock, ssl.SSLSocket):
            self._start_upgrade()
        else:
            self._after_tunnel()

    def _resolved(self, lookup: Future[Route]) -> None:
        if lookup is not self._lookup or self.state is SessionState.CLOSED:
            return  # timed out or closed meanwhile, or a lookup of an earlier hop
        self._lookup = None
        try:
            route = lookup.result()
        except (WebSocketException, OSError) as exc:
            self._fail(exc)
            return
        self._connect_route(route)

    def _connect_route(self, route: Route) -> None:
        self._route = route
        self._addresses = list(route.addresses)
        self._last_connect_error = None
        self._connect_next()

    def _connect_next(self) -> None:
        route = self._route
        assert route is not None
        self._enter(SessionState.CONNECTING)
        while self._addresses:
            info = self._addresses.pop(0)
            try:
                sock = new_socket(route, info)
            except WebSocketException as exc:
                self._fail(exc)
                return
            try:
                sock.setblocking(False)
                err = sock.connect_ex(info[4])
            except OSError as exc:
                sock.close()
                self._last_connect_error = exc
                continue
            if err not in _CONNECT_PENDING:
                sock.close()
                self._last_connect_error = OSError(err, os.strerror(err))
                continue
            self._sock = sock
            self._proxy_timer(partial(connect_timeout_error, route.plan, info[4]))
            self._set_interest(read=False, write=True)
            return
        last = self._last_connect_error
        if last is None:
            self._fail(connect_error(route.plan, last))
        else:
            self._fail_from(connect_error(route.plan, last), last)

    def _proxy_timer(self, error: Callable[[], BaseException]) -> None:
        """``http_proxy_timeout`` bounds each wait for the proxy, as in the blocking
        client (which sets it as the socket timeout of each step)."""
        proxy = self._plan.proxy if self._plan is not None else None
        if proxy is not None and proxy.timeout is not None:
            self._timer("proxy", proxy.timeout, lambda: self._fail(error()))

    def _connected(self) -> None:
        sock = self._sock
        route = self._route
        assert sock is not None and route is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._cancel_timer("proxy")
            self._drop_socket()
            self._last_connect_error = OSError(err, os.strerror(err))
            self._connect_next()
            return
        plan = route.plan
        if plan.proxy is not None:
            self._enter(SessionState.PROXY)
            try:
                handshake = self._proxy_handshake = proxy_handshake(route)
            except WebSocketException as exc:
                self._fail(exc)
                return
            self._proxy_timer(lambda: self._proxy_silent(plan))
            self._queue_raw(handshake.initial_bytes())
            self._set_interest(read=True, write=True)
            return
        self._after_tunnel()

    def _proxy_silent(self, plan: DialPlan) -> BaseException:
        assert plan.proxy is not None
        return WebSocketTimeoutException(
            f"timed out waiting for the {plan.proxy.type} proxy {plan.proxy.address} to open "
            "the tunnel",
            url=plan.url.redacted,
        )

    def _after_tunnel(self) -> None:
        self._cancel_timer("proxy")
        plan = self._plan
        assert plan is not None
        if plan.url.secure:
            self._enter(SessionState.TLS)
            sock = self._sock
            assert sock is not None
            self._set_interest(read=False, write=False)
            try:
                self._sock = wrap_tls(plan, sock)
            except WebSocketException as exc:
                self._fail(exc)
                return
            self._do_tls()
            return
        self._start_upgrade()

    def _do_tls(self) -> None:
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket) and self._plan is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_interest(read=True, write=False)
            return
        except ssl.SSLWantWriteError:
            self._set_interest(read=False, write=True)
            return
        except OSError as exc:  # ssl.SSLError included
            self._fail_from(tls_error(self._plan, exc), exc)
            return
        self._start_upgrade()

    def _start_upgrade(self) -> None:
        self._enter(SessionState.UPGRADING)
        try:
            handshake = self._handshake = self.opening.handshake()
        except WebSocketException as exc:
            self._fail(exc)
            return
        self._queue_raw(handshake.data_to_send())
        self._set_interest(read=True, write=True)

    def _upgrade_data(self, data: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None
        try:
            event = handshake.receive_data(data)
        except WebSocketException as exc:
            self._fail(exc)
            return
        if event is not None:
            self._handshake_done(event)
        elif handshake.state is HandshakeState.READING_BODY and "body" not in self._timers:
            # A refusal's body is only an excerpt for the exception: never wait long.
            self._timer("body", REJECTION_BODY_WAIT, self._body_timed_out)

    def _body_timed_out(self) -> None:
        self._timers.pop("body", None)
        handshake = self._handshake
        if handshake is not None and handshake.state is HandshakeState.READING_BODY:
            self._handshake_done(handshake.body_timed_out())

    def _handshake_done(self, event: HandshakeEvent) -> None:
        self._cancel_timer("body")
        if isinstance(event, Accepted):
            self._opened(event)
        elif isinstance(event, Rejected):
            self._fail(event.error)
        else:
            try:
                self.opening.follow(event)
            except WebSocketRedirectException as exc:
                self._fail(exc)
                return
            # The next hop: a new socket, a new plan (its own proxy choice), the same
            # open deadline.
            self._drop_socket()
            self._handshake = None
            self._unsent.clear()
            with self.send_lock:
                self._outbox.clear()
                self._flush_scheduled = False
            self._dial()

    def _opened(self, accepted: Accepted) -> None:
        # What only the opening needed goes (memory per open connection counts).
        self._handshake = self._route = self._proxy_handshake = self._plan = None
        self._addresses.clear()
        # defer_failure: on a violation the session, not the core, queues the close
        # frame, once the replies to the messages before it were sent (_defer_failure).
        self.protocol = self.opening.protocol(accepted, defer_failure=True)
        result = accepted.result
        self.subprotocol = result.subprotocol
        self.extensions = list(result.extensions)
        self.response_headers = list(result.headers)
        self._enter(SessionState.OPEN)
        if self._sock is not None and (self._reading or self._writing):
            self.dispatcher.set_deferrable(self._sock, False)  # its messages are urgent
        self.opened_at = time.monotonic()
        self._cancel_timer("open")
        self.owner.session_opened(self)
        if self.options.ping_interval and not self._paused:
            self._timer("ping", self.options.ping_interval, self._send_keepalive_ping)
        if not self._paused:
            self._set_interest(read=True, write=self._writing)
        if accepted.leftover:
            self._receive(accepted.leftover)

    # -------------------------------------------------------------------- I/O

    def _on_writable(self) -> None:
        state = self.state
        if state is SessionState.CONNECTING:
            self._connected()
        elif state is SessionState.TLS:
            self._do_tls()
        else:
            self._flush()
            failure = self._failure
            if failure is not None and self._failure_queued and not self._unsent:
                # The close frame of a failed connection is fully written: drop it now.
                self._finish(failure.exc.close_code, failure.exc.message, failure.exc)

    def _on_readable(self) -> None:
        state = self.state
        if state is SessionState.TLS:
            self._do_tls()
            return
        sock = self._sock
        if sock is None:
            return
        view = self.dispatcher.read_buffer(_RECV_SIZE)
        for _ in range(_READS_PER_TURN):
            try:
                # Into the dispatcher's reusable buffer, then a copy of what arrived:
                # sock.recv(256 KiB) would have malloc map a fresh 256 KiB, shrink it
                # and unmap it on every read (three syscalls, a page fault and TLB
                # shootdowns across our threads: ~12 us per small message).
                n = sock.recv_into(view, _RECV_SIZE)
                data = view[:n].tobytes()
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except ssl.SSLError as exc:
                if state in (SessionState.OPEN, SessionState.CLOSING):
                    data = b""  # a broken TLS stream ends the connection like a reset
                else:
                    assert self._plan is not None
                    self._fail_from(tls_error(self._plan, exc), exc)
                    return
            except OSError:
                data = b""
            if state is SessionState.PROXY:
                self._proxy_data(data)
            elif state is SessionState.UPGRADING:
                self._upgrade_data(data)
            else:
                self._receive(data)
            if not data or self._sock is None or self._paused or self.state is not state:
                return
            if len(data) < _RECV_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    def _proxy_data(self, data: bytes) -> None:
        handshake = self._proxy_handshake
        plan = self._plan
        assert handshake is not None and plan is not None
        try:
            reply = handshake.receive(data)
        except WebSocketException as exc:
            self._fail(exc)
            return
        if reply:
            self._queue_raw(reply)
        if handshake.done:
            if handshake.leftover:
                self._fail(proxy_leftover_error(plan, len(handshake.leftover)))
                return
            self._proxy_handshake = None
            self._after_tunnel()
        else:
            self._proxy_timer(lambda: self._proxy_silent(plan))

    def _receive(self, data: bytes) -> None:
        protocol = self.protocol
        assert protocol is not None
        with self.send_lock:
            events = protocol.receive_data(data)
            replies = protocol.data_to_send()
        if replies:
            self._queue_raw(replies)
        if not events:
            return
        closing: Event | None = None
        if set(map(type, events)) == _ONLY_MESSAGES:
            # The common read: messages only, counted and sized by C-level loops.
            messages = len(events)
            size = sum(map(len, map(_data_of, events)))
        else:
            messages = size = 0
            for event in events:
                kind = type(event)
                if kind is Message:
                    messages += 1
                    size += len(event.data)  # type: ignore[union-attr]
                elif kind is Pong:
                    self._pong(event)  # type: ignore[arg-type]
                elif kind is Ping and self._bucket is not None and self._counts_control():
                    with self.send_lock:  # our pong reply takes a token (count_control)
                        self._bucket.refill(time.monotonic())
                        self._bucket.take_control()
                elif kind is CloseReceived or kind is ProtocolError or kind is EndOfStream:
                    closing = event
        self.owner.session_events(self, events, size, messages)
        if closing is not None:
            self._terminal_event(closing)

    def _terminal_event(self, event: Event) -> None:
        protocol = self.protocol
        assert protocol is not None
        if isinstance(event, CloseReceived):
            # The closing handshake is done on our side; RFC 6455 §7.1.1: the server
            # closes TCP first, we wait for that at most close_timeout.
            self._enter(SessionState.CLOSING)
            self._cancel_timer("ping")
            self._cancel_timer("pong")
            self._timer("close", self.options.connect.close_timeout, self._close_timed_out)
            self.owner.session_closing(self, event.code)
        elif isinstance(event, ProtocolError):
            self._defer_failure(event)
        elif isinstance(event, EndOfStream):
            if self._failure is not None:
                # The peer hung up while we waited to fail: write what is queued, and
                # report the violation, not the missing close frame.
                self._fail_connection(self._failure)
                return
            code = protocol.close_code or CloseCode.ABNORMAL_CLOSURE
            reason = protocol.close_reason
            error = None
            if not event.clean:
                error = WebSocketConnectionClosedException(
                    "the server closed the connection without a closing handshake",
                    url=self.url.redacted,
                )
            self._finish(code, reason, error)

    def _queue_raw(self, data: bytes) -> None:
        """Queue bytes from the dispatcher thread itself."""
        with self.send_lock:
            self._outbox.append(data)
        self._flush()

    def _flush(self) -> None:
        """Write what is queued (dispatcher thread); keep write interest while blocked."""
        with self.send_lock:
            chunks = self._outbox
            self._outbox = []
            self._flush_scheduled = False
        sock = self._sock
        if sock is None:
            return
        unsent = self._unsent
        if chunks:
            _coalesce_into(unsent, chunks)
        progressed = False
        while unsent:
            head = unsent[0]
            try:
                sent = sock.send(head)
                progressed = True
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                unsent.clear()
                if self._failure is not None:
                    # The peer went away while we waited to fail: the violation is the
                    # cause to report, not the broken pipe it led to.
                    self._fail_connection(self._failure)
                    return
                self._finish(
                    CloseCode.ABNORMAL_CLOSURE,
                    "",
                    WebSocketConnectionClosedException(
                        f"write failed: {exc}", url=self.url.redacted
                    ),
                )
                return
            if sent == len(head):
                del unsent[0]
            else:
                # A view, not a slice: the unsent tail of a large frame is never copied.
                unsent[0] = memoryview(head)[sent:]
                break
        blocked = bool(unsent)
        stall_limit = self.options.connect.timeout
        if stall_limit is not None:
            # ``timeout``: how long a write may make no progress (the peer stopped
            # reading) before the connection is dropped, as in the blocking client.
            if not blocked:
                self._cancel_timer("write")
            elif progressed or "write" not in self._timers:
                self._timer("write", stall_limit, self._write_stalled)
        if self.state in (SessionState.PROXY, SessionState.UPGRADING):
            self._set_interest(read=True, write=blocked)
        elif self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=not self._paused and self._failure is None, write=blocked)

    def _write_stalled(self) -> None:
        self._timers.pop("write", None)
        self._finish(
            CloseCode.ABNORMAL_CLOSURE,
            "",
            WebSocketTimeoutException(
                f"timed out writing to the socket: no progress for timeout="
                f"{self.options.connect.timeout}s (the peer is not reading); the connection "
                "was dropped because a frame may be half sent",
                url=self.url.redacted,
            ),
        )

    def schedule_flush(self) -> bool:
        """Called under ``send_lock`` after appending to the outbox: whether the caller
        must wake the dispatcher (at most once until the next flush)."""
        if self._flush_scheduled:
            return False
        self._flush_scheduled = True
        return True

    def send_built(self, build: Callable[[ClientProtocol], bytes], *, message: bool = False) -> int:
        """Build a frame with the core under ``send_lock`` and queue it (any thread).

        ``message``: a data message: count it in the owner's ``messages_out``/
        ``bytes_out`` (under the lock, so concurrent senders do not lose counts) and,
        with ``send_rate``, let it leave only with a token (else it waits in order in
        ``_paced``; the caller never blocks).  Other frames (pings) go at once; with
        ``count_control`` they take a token too."""
        with self.send_lock:
            protocol = self.protocol
            if protocol is None or self.state is not SessionState.OPEN:
                raise WebSocketConnectionClosedException(url=self.url.redacted)
            frame = build(protocol)
            bucket = self._bucket
            wake = pace = False
            if bucket is not None and (message or self._counts_control()):
                now = time.monotonic()
                bucket.refill(now)
                if message and (self._paced or bucket.tokens < 1):
                    self._paced.append((frame, now))
                    if not self._pace_scheduled:
                        self._pace_scheduled = pace = True
                else:
                    if message:
                        bucket.tokens -= 1
                    else:
                        bucket.take_control()
                    self._outbox.append(frame)
                    wake = self.schedule_flush()
            else:
                self._outbox.append(frame)
                wake = self.schedule_flush()
            if message:
                stats = self.stats
                stats.messages_out += 1
                stats.bytes_out += len(frame)
        if wake:
            self.dispatcher.call_soon(self._flush)
        if pace:
            self.dispatcher.call_soon(self._pace)
        return len(frame)

    def _counts_control(self) -> bool:
        feed = self.options.feed
        return feed is not None and feed.send_rate is not None and feed.send_rate.count_control

    def _pace(self) -> None:
        """Release the paced frames that have tokens now (dispatcher thread); come back
        when the next token is due."""
        self._timers.pop("pace", None)
        bucket = self._bucket
        assert bucket is not None
        with self.send_lock:
            if self.state is not SessionState.OPEN and self.state is not SessionState.CLOSING:
                self._pace_scheduled = False
                return
            now = time.monotonic()
            bucket.refill(now)
            paced = self._paced
            released = 0
            waited = 0.0
            while released < len(paced) and bucket.tokens >= 1:
                frame, queued_at = paced[released]
                self._outbox.append(frame)
                waited += now - queued_at
                bucket.tokens -= 1
                released += 1
            del paced[:released]
            self.stats.send_waited += waited
            wait = bucket.wait_for_one() if paced else None
            self._pace_scheduled = wait is not None
        if released:
            self._flush()
        if wait is not None:
            self._timer("pace", max(wait, 0.001), self._pace)

    @property
    def paced_depth(self) -> int:
        """Messages waiting for a ``send_rate`` token."""
        return len(self._paced)

    def _drop_paced(self) -> None:
        """Messages that never got a token die with the session (caller holds send_lock)."""
        if self._paced:
            self.stats.sends_dropped += len(self._paced)
            self._paced.clear()

    # --------------------------------------------------------------- keepalive

    # A slow consumer is not a dead network (docs/architecture.md, "Keepalive under
    # backpressure").  While reading is paused, a pong the peer sent waits behind the
    # unread data, so a pong deadline would measure our consumer, not the network:
    # pause_reading holds the deadline and resume_reading restarts it with a full
    # ping_timeout.
    #
    # No keepalive ping is sent while paused (the "ping" timer is cancelled on pause and
    # re-armed on resume).  Its pong could not be read before the resume, so it would
    # prove nothing; and pongs piling up behind the backlog would later be taken for
    # answers to fresh pings (false RTT samples, a deadline met by a stale pong).  With
    # no ping while paused, at most one pong is owed across a pause and it is accounted
    # for exactly (_stale_pong).  The cost: no ping leaves us during a pause, which is
    # bounded by how long the consumer lags; the TCP connection itself stays acked.

    def _send_keepalive_ping(self) -> None:
        if self.state is not SessionState.OPEN or self._paused:
            return
        options = self.options
        try:
            self.send_built(lambda p: p.send_ping(options.ping_payload))
        except WebSocketException:
            return
        # While the pong of a ping sent before a pause is still owed, the next pong
        # received is that one: no RTT sample from this ping.
        self._ping_sent_at = None if self._stale_pong else time.monotonic()
        self.stats.last_ping_at = time.time()
        if options.ping_timeout:
            self._timer("pong", options.ping_timeout, self._pong_timed_out)
        self._timer("ping", options.ping_interval, self._send_keepalive_ping)

    def _pong(self, event: Pong) -> None:
        if self._stale_pong:
            # The answer to a ping sent before a pause: the peer is alive, but the round
            # trip includes the pause.  (A ping sent after the resume cannot be pending
            # with a deadline here: the restarted deadline, shorter than ping_interval,
            # fires before the next ping unless this pong came first.)
            self._stale_pong = False
            self._ping_sent_at = None
            self._cancel_timer("pong")
            return
        if self._ping_sent_at is not None:
            self.last_rtt = time.monotonic() - self._ping_sent_at
            self._ping_sent_at = None
            self._cancel_timer("pong")

    def _pong_timed_out(self) -> None:
        self._timers.pop("pong", None)
        if self.state is not SessionState.OPEN:
            return
        self._abort_with(
            CloseCode.INTERNAL_ERROR,
            "keepalive ping timed out",
            WebSocketTimeoutException(
                f"no pong within ping_timeout={self.options.ping_timeout}s", url=self.url.redacted
            ),
        )

    # ------------------------------------------------------ protocol violations

    def _defer_failure(self, event: ProtocolError) -> None:
        """A violation arrived: fail the connection only after the callbacks of the
        messages parsed before it ran, so their replies leave before the close frame
        (as the blocking client does: its caller sees those messages first).

        The owner already queued the messages and then ``event`` for delivery; when a
        worker reaches ``event`` it posts :meth:`failure_delivered`, which sends the close
        frame behind whatever those callbacks sent.  Reading stops (the core ignores
        input after a violation anyway); close_timeout bounds the wait, so a stuck
        callback cannot keep a broken connection open.
        """
        self._failure = event
        sock = self._sock
        if sock is not None:
            self._set_interest(read=False, write=self._writing)
        self._cancel_timer("ping")
        self._cancel_timer("pong")
        self._timer("fail", self.options.connect.close_timeout, self._failure_timed_out)

    def failure_delivered(self, event: ProtocolError) -> None:
        """The callbacks before ``event`` ran (dispatcher thread, posted by the owner's
        worker).  Ignored unless ``event`` is this session's pending violation: the
        session may have ended (timer, reset) and a new one started meanwhile."""
        if self._failure is event and self.state is not SessionState.CLOSED:
            self._fail_connection(event, wait_for_write=True)

    def _failure_timed_out(self) -> None:
        self._timers.pop("fail", None)
        failure = self._failure
        if failure is None or self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.OPEN:  # else the close frame is already queued
            logger.warning(
                "%s: the callbacks of the messages before a protocol violation did not finish "
                "within close_timeout=%ss; the connection was failed without waiting for "
                "their replies (a callback is blocked or too slow)",
                self.url.redacted,
                self.options.connect.close_timeout,
            )
        self._fail_connection(failure)

    def _fail_connection(self, failure: ProtocolError, *, wait_for_write: bool = False) -> None:
        """Queue the close frame with the violation's code (RFC 6455 §7.1.7) behind the
        frames already queued, write, and drop the socket.  ``wait_for_write``: if the
        socket does not take everything at once, keep it until it does (``_on_writable``),
        still bounded by the ``fail`` timer."""
        exc = failure.exc
        if exc.url is None:
            exc.url = self.url.redacted
        protocol = self.protocol
        assert protocol is not None
        with self.send_lock:
            protocol.fail(exc)
            close_frame = protocol.data_to_send()
            if close_frame:
                self._outbox.append(close_frame)
        # CLOSING: sends are refused from now on (nothing may follow our close frame).
        self._enter(SessionState.CLOSING)
        self._failure_queued = True
        self._flush()
        if wait_for_write and self._unsent and self.state is SessionState.CLOSING:
            return  # _on_writable finishes once the close frame is written
        self._finish(exc.close_code, exc.message, exc)

    # ---------------------------------------------------------------- closing

    def start_close(self, code: int, reason: str) -> None:
        """Begin the closing handshake (any thread)."""
        with self.send_lock:
            protocol = self.protocol
            if protocol is not None and protocol.state is ProtocolState.OPEN:
                # Paced messages would have to follow the close frame: they are dropped
                # (and counted: stats.sends_dropped).
                self._drop_paced()
                frame = protocol.send_close(code, reason)
                self._outbox.append(frame)
                self.schedule_flush()
        self.dispatcher.call_soon(self._close_requested)

    def _close_requested(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.OPEN:
            self._enter(SessionState.CLOSING)
            self._cancel_timer("ping")
            self._cancel_timer("pong")
            self._timer("close", self.options.connect.close_timeout, self._close_timed_out)
            self._flush()
        elif self.state is not SessionState.CLOSING:
            # Not open yet: nothing to say to the server, just stop.
            self._finish(CloseCode.NORMAL_CLOSURE, "closed before the connection opened", None)

    def _close_timed_out(self) -> None:
        self._timers.pop("close", None)
        protocol = self.protocol
        code = (
            protocol.close_code if protocol and protocol.close_code else CloseCode.ABNORMAL_CLOSURE
        )
        reason = protocol.close_reason if protocol else ""
        error = None
        if protocol is None or protocol.state is not ProtocolState.CLOSED:
            error = WebSocketTimeoutException(
                "no close frame from the server within "
                f"close_timeout={self.options.connect.close_timeout}s",
                url=self.url.redacted,
            )
        self._finish(code, reason, error)

    def _open_timed_out(self) -> None:
        self._timers.pop("open", None)
        if self.state in (SessionState.OPEN, SessionState.CLOSED):
            return
        self._fail(
            WebSocketTimeoutException(
                f"open_timeout={self.options.connect.open_timeout}s expired while "
                f"{self.state.value}",
                url=self.url.redacted,
            )
        )

    def _abort_with(self, code: int, reason: str, error: BaseException) -> None:
        """Send a close frame if we can, then drop the socket at once."""
        with self.send_lock:
            protocol = self.protocol
            if protocol is not None and protocol.state is ProtocolState.OPEN:
                self._outbox.append(protocol.send_close(code, reason))
        self._flush()
        self._finish(code, reason, error)

    def abort(self) -> None:
        """Drop the connection without a handshake (dispatcher thread)."""
        self._finish(CloseCode.ABNORMAL_CLOSURE, "aborted", None)

    def _fail(self, error: BaseException) -> None:
        if isinstance(error, WebSocketException) and error.url is None:
            error.url = self.url.redacted
        self._finish(CloseCode.ABNORMAL_CLOSURE, "", error)

    def _fail_from(self, error: BaseException, cause: BaseException) -> None:
        """``_fail`` with ``cause`` chained, as ``raise error from cause`` would."""
        error.__cause__ = cause
        self._fail(error)

    def _finish(self, code: int, reason: str, error: BaseException | None) -> None:
        """Release everything and tell the owner, exactly once."""
        if self.state is SessionState.CLOSED:
            return
        self._enter(SessionState.CLOSED)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._paced:
            with self.send_lock:
                self._drop_paced()
        self._lookup = None
        self._drop_socket()
        self.owner.session_closed(self, code, reason, error)

    # ------------------------------------------------------------- backpressure

    def pause_reading(self) -> None:
        """Stop reading the socket: the owner's queue is above its high-water mark
        (dispatcher thread).  Holds the keepalive: see the keepalive section."""
        if self._paused:
            return
        self._paused = True
        if self._ping_sent_at is not None or "pong" in self._timers:
            # A ping is outstanding: its pong may be behind the data we stop reading.
            self._stale_pong = True
            self._ping_sent_at = None
            self._cancel_timer("pong")
        self._cancel_timer("ping")
        if self._sock is not None and self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=False, write=self._writing)

    def resume_reading(self) -> None:
        """Read again: the queue drained below its low-water mark (dispatcher thread).
        The held pong deadline restarts with a full ``ping_timeout``, and the ping
        schedule restarts."""
        if not self._paused:
            return
        self._paused = False
        if self._failure is not None:
            # Failing (a violation arrived): nothing more is read, no keepalive runs;
            # only the replies already queued and the close frame go out.
            return
        if self.state is SessionState.OPEN:
            options = self.options
            if self._stale_pong and options.ping_timeout:
                self._timer("pong", options.ping_timeout, self._pong_timed_out)
            if options.ping_interval:
                self._timer("ping", options.ping_interval, self._send_keepalive_ping)
        if self._sock is not None and self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=True, write=self._writing)

    @property
    def finished(self) -> bool:
        return self.state is SessionState.CLOSED


#: Frames at least this large are written on their own instead of joined with others.
_JOIN_LIMIT = 64 * 1024


def _coalesce_into(unsent: list[bytes | memoryview], chunks: list[bytes]) -> None:
    """Append ``chunks`` to ``unsent``: runs of small frames as one write, each large
    frame as it is (joining would copy it; writing it alone costs one more syscall)."""
    if len(chunks) == 1:
        unsent.append(chunks[0])
        return
    run: list[bytes] = []
    for chunk in chunks:
        if len(chunk) >= _JOIN_LIMIT:
            if run:
                unsent.append(run[0] if len(run) == 1 else b"".join(run))
                run = []
            unsent.append(chunk)
        else:
            run.append(chunk)
    if run:
        unsent.append(run[0] if len(run) == 1 else b"".join(run))
