"""One physical WebSocket connection, driven by the dispatcher thread.

A :class:`Session` walks one socket through resolve -> TCP connect -> proxy tunnel ->
TLS -> HTTP upgrade -> open -> closing -> closed, every step non-blocking inside the
dispatcher.  It reports to its owner (a :class:`~wspool.pool.connection.Connection`)
through the small :class:`SessionOwner` interface; a reconnect makes a new Session,
the owner stays.

Threading (docs/architecture.md invariants 1 and 2): only the dispatcher thread touches the
socket.  Other threads only call :meth:`Session.send_frame_built` /
:meth:`Session.start_close`, which build frames under ``send_lock`` (the core is not
thread-safe, and compression context needs frames to leave in build order), append
them to ``_outbox`` and wake the dispatcher at most once until it flushed.  The
dispatcher takes the same lock around ``receive_data``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import operator
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

from wspool.exceptions import (
    WebSocketAddressException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketProxyException,
    WebSocketTimeoutException,
)
from wspool.protocol.client_protocol import ClientProtocol, ProtocolState
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Event,
    Message,
    Pong,
    ProtocolError,
)
from wspool.protocol.frames import CloseCode
from wspool.protocol.handshake import (
    HandshakeRequest,
    HandshakeResponse,
    ResponseParser,
    bad_status_error,
    build_request,
    is_redirect,
    validate_response,
)
from wspool.transport.proxy import ProxyHandshake, make_handshake
from wspool.transport.tls import tls_handshake_error

if TYPE_CHECKING:
    from wspool.pool.dispatcher import Dispatcher, TimerHandle
    from wspool.pool.options import ConnectOptions

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

    def session_closed(
        self,
        session: Session,
        code: int,
        reason: str,
        error: BaseException | None,
        redirect: str | None,
    ) -> None: ...


class Session:
    """One socket's life.  Created and started on the dispatcher thread."""

    # Slots: one instance per connection, so no per-instance dict (memory per idle
    # connection is a benchmark target).
    __slots__ = (
        "_addresses",
        "_closed_by_user",
        "_finished",
        "_flush_scheduled",
        "_last_connect_error",
        "_outbox",
        "_parser",
        "_paused",
        "_ping_sent_at",
        "_proxy_handshake",
        "_reading",
        "_request",
        "_sock",
        "_timers",
        "_unsent",
        "_writing",
        "dispatcher",
        "extensions",
        "last_rtt",
        "opened_at",
        "options",
        "owner",
        "protocol",
        "resolver",
        "response_headers",
        "send_lock",
        "state",
        "subprotocol",
        "url",
    )

    def __init__(
        self,
        owner: SessionOwner,
        options: ConnectOptions,
        dispatcher: Dispatcher,
        resolver: Executor,
        *,
        url_override: Any = None,
    ) -> None:
        self.owner = owner
        self.options = options
        self.url = url_override or options.url
        self.dispatcher = dispatcher
        self.resolver = resolver
        self.state = SessionState.RESOLVING
        self.protocol: ClientProtocol | None = None
        self.subprotocol: str | None = None
        self.extensions: list[str] = []
        self.response_headers: list[tuple[str, str]] = []
        self.opened_at: float | None = None
        self.send_lock = threading.Lock()

        self._sock: socket.socket | None = None
        self._addresses: list[tuple[Any, ...]] = []
        self._last_connect_error: OSError | None = None
        self._proxy_handshake: ProxyHandshake | None = None
        self._request: HandshakeRequest | None = None
        self._parser: ResponseParser | None = None
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
        self.last_rtt: float | None = None
        self._closed_by_user = False
        self._finished = False

    # ------------------------------------------------------------------ helpers

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

    # ---------------------------------------------------------------- connecting

    def start(self) -> None:
        """Begin connecting (dispatcher thread)."""
        options = self.options
        self._timer("open", options.open_timeout, self._open_timed_out)
        proxy = options.proxy
        host, port = (
            (proxy.host, proxy.port) if proxy is not None else (self.url.host, self.url.port)
        )
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # Name resolution blocks: it runs on the resolver executor and reports back
            # through the dispatcher's command queue (docs/architecture.md invariants 6).
            future = self.resolver.submit(
                socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP
            )
            future.add_done_callback(lambda f: self.dispatcher.call_soon(self._resolved, f))
            return
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._addresses = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        self._connect_next()

    def _resolved(self, future: Any) -> None:
        if self.state is not SessionState.RESOLVING:
            return  # timed out or closed meanwhile
        try:
            self._addresses = list(future.result())
        except OSError as exc:
            what = "proxy" if self.options.proxy is not None else "host"
            self._fail(
                WebSocketAddressException(
                    f"cannot resolve the {what} name: {exc}", url=self.url.redacted
                )
            )
            return
        self._connect_next()

    def _connect_next(self) -> None:
        self.state = SessionState.CONNECTING
        while self._addresses:
            family, type_, proto, _, sockaddr = self._addresses.pop(0)
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for level, option, value in self.options.sockopt:
                    sock.setsockopt(level, option, value)
                err = sock.connect_ex(sockaddr)
            except OSError as exc:
                sock.close()
                self._last_connect_error = exc
                continue
            if err not in _CONNECT_PENDING:
                sock.close()
                self._last_connect_error = OSError(err, f"{errno.errorcode.get(err, err)}")
                continue
            self._sock = sock
            self._set_interest(read=False, write=True)
            return
        error = self._last_connect_error
        what = "proxy" if self.options.proxy is not None else "server"
        failure: WebSocketException
        if self.options.proxy is not None:
            failure = WebSocketProxyException(
                f"cannot connect to the {what}: {error}", url=self.url.redacted
            )
        else:
            failure = WebSocketConnectionClosedException(
                f"cannot connect to the {what}: {error}", url=self.url.redacted
            )
        if error is not None:
            failure.__cause__ = error
        self._fail(failure)

    def _connected(self) -> None:
        sock = self._sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._set_interest(read=False, write=False)
            sock.close()
            self._sock = None
            self._last_connect_error = OSError(err, errno.errorcode.get(err, str(err)))
            self._connect_next()
            return
        proxy = self.options.proxy
        if proxy is not None:
            self.state = SessionState.PROXY
            target = self.url.host
            if not proxy.remote_dns:
                target = self._resolve_target_for_proxy()
                if target is None:
                    return
            self._proxy_handshake = make_handshake(
                proxy, target, self.url.port, url=self.url.redacted
            )
            self._queue_raw(self._proxy_handshake.initial_bytes())
            self._set_interest(read=True, write=True)
            return
        self._after_tunnel()

    def _resolve_target_for_proxy(self) -> str | None:
        """socks5/socks4 want an IP; resolving here blocks, so only literals pass."""
        try:
            ipaddress.ip_address(self.url.host)
        except ValueError:
            self._fail(
                WebSocketProxyException(
                    "proxy types without remote DNS need an IP address in the pool; "
                    "use socks5h/socks4a or an http proxy",
                    url=self.url.redacted,
                )
            )
            return None
        return self.url.host

    def _after_tunnel(self) -> None:
        if self.url.secure:
            self.state = SessionState.TLS
            sock = self._sock
            assert sock is not None
            self._set_interest(read=False, write=False)
            try:
                self._sock = self.options.ssl_context.wrap_socket(
                    sock,
                    server_hostname=self.options.server_hostname,
                    do_handshake_on_connect=False,
                )
            except (ssl.SSLError, OSError) as exc:
                self._fail(tls_handshake_error(exc, self.url, self.options.server_hostname))
                return
            self._do_tls()
            return
        self._start_upgrade()

    def _do_tls(self) -> None:
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_interest(read=True, write=False)
            return
        except ssl.SSLWantWriteError:
            self._set_interest(read=False, write=True)
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(tls_handshake_error(exc, self.url, self.options.server_hostname))
            return
        self._start_upgrade()

    def _start_upgrade(self) -> None:
        self.state = SessionState.UPGRADING
        options = self.options
        same_host = (self.url.host, self.url.port) == (options.url.host, options.url.port)
        try:
            self._request = build_request(
                host=self.url.host,
                port=self.url.port,
                resource=self.url.resource,
                secure=self.url.secure,
                subprotocols=options.subprotocols,
                origin=options.origin,
                suppress_origin=options.suppress_origin,
                header=options.header if same_host else options.header_without_credentials,
                cookie=options.cookie if same_host else None,
                host_header=options.host if same_host else None,
                auth=(self.url.username, self.url.password or "")
                if self.url.username is not None
                else None,
                deflate=options.deflate,
            )
        except WebSocketException as exc:
            self._fail(exc)
            return
        self._parser = ResponseParser()
        self._queue_raw(self._request.to_bytes())
        self._set_interest(read=True, write=True)

    def _handle_response(self, response: HandshakeResponse, leftover: bytes) -> None:
        assert self._request is not None
        if response.status != 101:
            if is_redirect(response):
                self._finish(
                    CloseCode.ABNORMAL_CLOSURE, "", None, redirect=response.get("Location")
                )
                return
            self._fail(bad_status_error(response, leftover[:4096]))
            return
        try:
            result = validate_response(self._request, response, max_size=self.options.max_size)
        except WebSocketException as exc:
            self._fail(exc)
            return
        self.protocol = ClientProtocol(
            max_size=self.options.max_size,
            skip_utf8_validation=self.options.skip_utf8_validation,
            deflate=result.deflate,
        )
        self.subprotocol = result.subprotocol
        self.extensions = list(result.extensions)
        self.response_headers = list(response.headers)
        self.state = SessionState.OPEN
        self.opened_at = time.monotonic()
        self._cancel_timer("open")
        self._request = None
        self._parser = None
        self.owner.session_opened(self)
        if self.options.ping_interval:
            self._timer("ping", self.options.ping_interval, self._send_keepalive_ping)
        if not self._paused:
            self._set_interest(read=True, write=self._writing)
        if leftover:
            self._receive(leftover)

    # -------------------------------------------------------------------- I/O

    def _on_writable(self) -> None:
        state = self.state
        if state is SessionState.CONNECTING:
            self._connected()
        elif state is SessionState.TLS:
            self._do_tls()
        else:
            self._flush()

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
                    self._fail(tls_handshake_error(exc, self.url, self.options.server_hostname))
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
        assert handshake is not None
        try:
            reply = handshake.receive(data)
        except WebSocketException as exc:
            self._fail(exc)
            return
        if reply:
            self._queue_raw(reply)
        if handshake.done:
            if handshake.leftover:
                self._fail(
                    WebSocketProxyException(
                        "the proxy sent data before the tunnel was used", url=self.url.redacted
                    )
                )
                return
            self._proxy_handshake = None
            self._after_tunnel()

    def _upgrade_data(self, data: bytes) -> None:
        parser = self._parser
        assert parser is not None
        if not data:
            self._fail(
                WebSocketHandshakeException(
                    "the server closed the connection before answering the upgrade request",
                    url=self.url.redacted,
                )
            )
            return
        try:
            response = parser.feed(data)
        except WebSocketException as exc:
            self._fail(exc)
            return
        if response is not None:
            self._handle_response(response, parser.leftover)

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
            self.state = SessionState.CLOSING
            self._cancel_timer("ping")
            self._cancel_timer("pong")
            self._timer("close", self.options.close_timeout, self._close_timed_out)
        elif isinstance(event, ProtocolError):
            self._flush()
            self._finish(event.exc.close_code, event.exc.message, event.exc)
        elif isinstance(event, EndOfStream):
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
        while unsent:
            head = unsent[0]
            try:
                sent = sock.send(head)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                unsent.clear()
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
        if self.state in (SessionState.PROXY, SessionState.UPGRADING):
            self._set_interest(read=True, write=blocked)
        elif self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=not self._paused, write=blocked)

    def schedule_flush(self) -> bool:
        """Called under ``send_lock`` after appending to the outbox: whether the caller
        must wake the dispatcher (at most once until the next flush)."""
        if self._flush_scheduled:
            return False
        self._flush_scheduled = True
        return True

    def send_built(self, build: Callable[[ClientProtocol], bytes]) -> int:
        """Build a frame with the core under ``send_lock`` and queue it (any thread)."""
        with self.send_lock:
            protocol = self.protocol
            if protocol is None or self.state is not SessionState.OPEN or self._finished:
                raise WebSocketConnectionClosedException(url=self.url.redacted)
            frame = build(protocol)
            self._outbox.append(frame)
            wake = self.schedule_flush()
        if wake:
            self.dispatcher.call_soon(self._flush)
        return len(frame)

    # --------------------------------------------------------------- keepalive

    def _send_keepalive_ping(self) -> None:
        if self.state is not SessionState.OPEN:
            return
        options = self.options
        try:
            self.send_built(lambda p: p.send_ping(options.ping_payload))
        except WebSocketException:
            return
        self._ping_sent_at = time.monotonic()
        if options.ping_timeout:
            self._timer("pong", options.ping_timeout, self._pong_timed_out)
        self._timer("ping", options.ping_interval, self._send_keepalive_ping)

    def _pong(self, event: Pong) -> None:
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

    # ---------------------------------------------------------------- closing

    def start_close(self, code: int, reason: str) -> None:
        """Begin the closing handshake (any thread)."""
        self._closed_by_user = True
        with self.send_lock:
            protocol = self.protocol
            if protocol is not None and protocol.state is ProtocolState.OPEN:
                frame = protocol.send_close(code, reason)
                self._outbox.append(frame)
                self.schedule_flush()
        self.dispatcher.call_soon(self._close_requested)

    def _close_requested(self) -> None:
        if self._finished:
            return
        if self.state is SessionState.OPEN:
            self.state = SessionState.CLOSING
            self._cancel_timer("ping")
            self._cancel_timer("pong")
            self._timer("close", self.options.close_timeout, self._close_timed_out)
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
                f"close_timeout={self.options.close_timeout}s",
                url=self.url.redacted,
            )
        self._finish(code, reason, error)

    def _open_timed_out(self) -> None:
        self._timers.pop("open", None)
        if self.state is SessionState.OPEN or self._finished:
            return
        self._fail(
            WebSocketTimeoutException(
                f"open_timeout={self.options.open_timeout}s expired while {self.state.value}",
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
        self._closed_by_user = True
        self._finish(CloseCode.ABNORMAL_CLOSURE, "aborted", None)

    def _fail(self, error: WebSocketException) -> None:
        if error.url is None:
            error.url = self.url.redacted
        self._finish(CloseCode.ABNORMAL_CLOSURE, "", error)

    def _finish(
        self, code: int, reason: str, error: BaseException | None, redirect: str | None = None
    ) -> None:
        """Release everything and tell the owner, exactly once."""
        if self._finished:
            return
        self._finished = True
        self.state = SessionState.CLOSED
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
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
        self.owner.session_closed(self, code, reason, error, redirect)

    # ------------------------------------------------------------- backpressure

    def pause_reading(self) -> None:
        """Stop reading the socket: the owner's queue is above its high-water mark."""
        self._paused = True
        if self._sock is not None and self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=False, write=self._writing)

    def resume_reading(self) -> None:
        """Read again: the queue drained below its low-water mark (dispatcher thread)."""
        self._paused = False
        if self._sock is not None and self.state in (SessionState.OPEN, SessionState.CLOSING):
            self._set_interest(read=True, write=self._writing)

    @property
    def closed_by_user(self) -> bool:
        return self._closed_by_user

    @property
    def finished(self) -> bool:
        return self._finished


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
