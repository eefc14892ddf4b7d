"""The blocking client: one WebSocket connection used from the caller's threads.

``connect(url, **options)`` opens a connection and returns a :class:`WebSocket`.  All
framing, the handshake and the closing rules come from the sans-I/O core in
:mod:`wspool.protocol`; this module only moves bytes between it and a socket.

Locks, always taken in this order and never the other way round:
``_read_lock`` (one reader at a time) -> ``_write_lock`` (one writer at a time, so
frames leave in the order the core built them, which compression context needs)
-> ``_proto_lock`` (short: guards the core's state while it parses or builds).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
)
from wspool.protocol.client_protocol import DEFAULT_MAX_SIZE, ClientProtocol, ProtocolState
from wspool.protocol.deflate import coerce_compression
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Event,
    Fragment,
    Message,
    Ping,
    Pong,
    ProtocolError,
)
from wspool.protocol.frames import CloseCode, Opcode
from wspool.protocol.handshake import (
    HandshakeResponse,
    ResponseParser,
    bad_status_error,
    build_request,
    headers_without_credentials,
    is_redirect,
    validate_response,
)
from wspool.transport.connect import open_socket
from wspool.transport.proxy import select_proxy
from wspool.transport.tls import build_ssl_context, server_hostname_for, tls_handshake_error
from wspool.transport.url import WebSocketURL, parse_url, resolve_redirect

__all__ = ["ABNF", "Frame", "WebSocket", "connect", "create_connection"]

#: Bytes per read.  Under glibc's mmap threshold (128 KiB) on purpose: a larger
#: ``recv`` buffer is mapped, shrunk and unmapped by malloc on every read (syscalls and
#: TLB shootdowns in a threaded program), which cost more than the extra reads save.
_RECV_SIZE: Final = 64 * 1024
#: How much of a refused handshake's body is kept for the exception.
_BODY_EXCERPT: Final = 4096
_DEFAULT_OPEN_TIMEOUT: Final = 10.0
_DEFAULT_CLOSE_TIMEOUT: Final = 3.0
_DEFAULT_REDIRECT_LIMIT: Final = 3


@dataclass(slots=True)
class Frame:
    """A frame or a whole message as websocket-client's ``ABNF`` shows it.

    ``data`` is bytes (text is UTF-8); the ``OPCODE_*`` constants are the opcodes.
    """

    opcode: int
    data: bytes
    fin: bool = True

    OPCODE_CONT: ClassVar[int] = Opcode.CONT
    OPCODE_TEXT: ClassVar[int] = Opcode.TEXT
    OPCODE_BINARY: ClassVar[int] = Opcode.BINARY
    OPCODE_CLOSE: ClassVar[int] = Opcode.CLOSE
    OPCODE_PING: ClassVar[int] = Opcode.PING
    OPCODE_PONG: ClassVar[int] = Opcode.PONG


#: websocket-client's name for the frame class and its opcode constants.
ABNF = Frame


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data


class WebSocket:
    """One WebSocket connection, driven by the calling thread(s).

    Create it with :func:`connect`.  ``send*`` may be called from any thread while
    another thread blocks in ``recv*``; reads are serialized, and so are writes.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: ClientProtocol,
        url: WebSocketURL,
        *,
        status: int,
        headers: Sequence[tuple[str, str]],
        subprotocol: str | None,
        extensions: Sequence[str],
        leftover: bytes = b"",
        fire_cont_frame: bool = False,
        close_timeout: float = _DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self.sock: socket.socket | None = sock
        self.url = url.redacted
        self.status = status
        self.response_headers = list(headers)
        self.subprotocol = subprotocol
        self.extensions = list(extensions)
        self.fire_cont_frame = fire_cont_frame
        self.close_timeout = close_timeout
        self._proto = protocol
        self._events: deque[Event] = deque()
        # Frames that arrived in the same read as the handshake response.  They are fed
        # to the core by the first read, once it has chosen messages or frame events.
        self._leftover = leftover
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._proto_lock = threading.Lock()

    # ---------------------------------------------------------------- properties

    @property
    def headers(self) -> dict[str, str]:
        """The handshake response headers, names lower-cased (later lines win)."""
        return {name.lower(): value for name, value in self.response_headers}

    @property
    def connected(self) -> bool:
        return self.sock is not None and self._proto.state is ProtocolState.OPEN

    @property
    def close_status(self) -> int | None:
        """The peer's close code (1005 if it sent none, 1006 if the stream dropped)."""
        return self._proto.close_code

    @property
    def close_reason(self) -> str:
        return self._proto.close_reason

    def getsubprotocol(self) -> str | None:
        return self.subprotocol

    def getstatus(self) -> int:
        return self.status

    def getheaders(self) -> dict[str, str]:
        return self.headers

    def fileno(self) -> int:
        return self._socket().fileno()

    def gettimeout(self) -> float | None:
        return self._socket().gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        """Timeout in seconds for each blocking read and write (``None``: wait forever)."""
        self._socket().settimeout(timeout)

    timeout = property(gettimeout, settimeout)

    def __repr__(self) -> str:
        return f"<WebSocket {self.url} {self._proto.state.value}>"

    # ------------------------------------------------------------------- sending

    def send(self, payload: str | bytes | bytearray | memoryview, opcode: int | None = None) -> int:
        """Send a message: ``str`` as text, bytes-like as binary, unless ``opcode`` says.

        ``opcode`` may also be ``Opcode.PING``/``PONG`` (websocket-client style).
        Returns the number of bytes written to the socket.
        """
        if opcode == Opcode.PING:
            return self.ping(payload)
        if opcode == Opcode.PONG:
            return self.pong(payload)
        return self._send_built(lambda: self._proto.send_message(payload, opcode))

    def send_text(self, text: str) -> int:
        return self.send(text, Opcode.TEXT)

    def send_binary(self, data: bytes | bytearray | memoryview) -> int:
        return self.send(data, Opcode.BINARY)

    send_bytes = send_binary

    def send_fragment(
        self,
        data: str | bytes | bytearray | memoryview,
        opcode: int | None = None,
        fin: bool = False,
    ) -> int:
        """Stream a message in pieces: the first call fixes its type, ``fin=True`` ends it."""
        return self._send_built(lambda: self._proto.send_fragment(data, opcode, fin))

    def ping(self, payload: str | bytes | bytearray | memoryview = b"") -> int:
        return self._send_built(lambda: self._proto.send_ping(payload))

    def pong(self, payload: str | bytes | bytearray | memoryview = b"") -> int:
        return self._send_built(lambda: self._proto.send_pong(payload))

    def _send_built(self, build: Any) -> int:
        with self._write_lock:
            with self._proto_lock:
                self._socket()
                try:
                    data: bytes = build()
                except WebSocketException as exc:
                    exc.url = exc.url or self.url
                    raise
            self._sendall(data)
            return len(data)

    def _sendall(self, data: bytes) -> None:
        """Write under ``_write_lock``; socket errors become wspool exceptions."""
        sock = self._socket()
        try:
            sock.sendall(data)
        except (TimeoutError, BlockingIOError) as exc:
            # Part of the frame may be out, and the core's state (compression context,
            # fragmentation) has moved on: the stream cannot be resumed.
            self._drop()
            raise WebSocketTimeoutException(
                "timed out writing to the socket (the peer is not reading); the "
                "connection was dropped because a frame may be half sent",
                url=self.url,
            ) from exc
        except OSError as exc:
            self._drop()
            raise WebSocketConnectionClosedException(url=self.url) from exc

    def _flush_replies(self) -> None:
        """Send the core's own frames (pong, close reply); caller holds ``_read_lock``."""
        with self._proto_lock:
            out = self._proto.data_to_send()
        if out:
            with self._write_lock:
                if self.sock is not None:
                    self._sendall(out)

    # ----------------------------------------------------------------- receiving

    def _socket(self) -> socket.socket:
        sock = self.sock
        if sock is None:
            raise WebSocketConnectionClosedException(url=self.url)
        return sock

    def _feed(self, data: bytes) -> None:
        with self._proto_lock:
            self._events.extend(self._proto.receive_data(data))

    def _next_event(self) -> Event:
        """The next event, reading from the socket as needed; caller holds ``_read_lock``."""
        while not self._events:
            if self._leftover:
                data, self._leftover = self._leftover, b""
                self._feed(data)
                continue
            sock = self._socket()
            try:
                data = sock.recv(_RECV_SIZE)
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: timeout 0
                raise WebSocketTimeoutException("timed out waiting for data", url=self.url) from exc
            except OSError:
                data = b""  # reset or aborted: the same as the stream ending
            self._feed(data)
        event = self._events.popleft()
        if isinstance(event, Ping | CloseReceived):
            self._flush_replies()
        elif isinstance(event, ProtocolError):
            # Fail the connection (RFC 6455 §7.1.7) only now that the caller has seen
            # every event before the violation (and could answer them): the close frame
            # goes out, then the socket is dropped at once.
            with self._proto_lock:
                self._proto.fail(event.exc)
            with contextlib.suppress(WebSocketException):
                self._flush_replies()
            self._drop()
            error = event.exc
            error.url = self.url
            raise error
        elif isinstance(event, EndOfStream):
            self._drop()
        return event

    def _next_message_event(self) -> Event:
        """Like ``_next_event``, but without ``fire_cont_frame`` fragments that were
        parsed in frame mode (after a ``recv_frame``) come out joined as one Message."""
        event = self._next_event()
        if not isinstance(event, Fragment) or self.fire_cont_frame:
            return event
        parts = [event.data]
        opcode, fin = event.opcode, event.fin
        while not fin:
            part = self._next_event()
            if isinstance(part, Fragment):
                parts.append(part.data)
                fin = part.fin
            elif isinstance(part, CloseReceived | EndOfStream):
                return part  # the message never ended
        data = b"".join(parts)
        if opcode == Opcode.TEXT:
            # Already validated fragment by fragment unless skip_utf8_validation.
            return Message(opcode, data.decode("utf-8", "surrogateescape"))
        return Message(opcode, data)

    def recv(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        As in websocket-client, the peer's close frame makes it return ``""`` (the
        reply is sent for you); after that it raises
        :class:`WebSocketConnectionClosedException`.
        """
        message = self._recv_message()
        return "" if message is None else message

    def _recv_message(self) -> str | bytes | None:
        """The next message (or fragment, with ``fire_cont_frame``); ``None`` for the
        peer's close frame, which an empty text message must not be mistaken for."""
        with self._read_lock:
            self._set_frame_events(self.fire_cont_frame)
            while True:
                event = self._next_message_event()
                if type(event) is Message:
                    return event.data
                if isinstance(event, Fragment):
                    return event.data
                if isinstance(event, CloseReceived):
                    return None
                if isinstance(event, EndOfStream):
                    raise WebSocketConnectionClosedException(url=self.url)

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        """``(opcode, data)`` of the next message, data as bytes (text is UTF-8).

        With ``control_frame=True`` pings and pongs come out too; the close frame
        always does, as ``(8, payload)``.
        """
        opcode, frame = self.recv_data_frame(control_frame)
        return opcode, frame.data

    def recv_data_frame(self, control_frame: bool = False) -> tuple[int, Frame]:
        """``(opcode, Frame)`` of the next message (or of each frame when the
        connection was opened with ``fire_cont_frame=True``)."""
        with self._read_lock:
            self._set_frame_events(self.fire_cont_frame)
            while True:
                event = self._next_message_event()
                frame = _event_frame(event)
                if frame is None:
                    raise WebSocketConnectionClosedException(url=self.url)
                if isinstance(event, Ping | Pong) and not control_frame:
                    continue
                return frame.opcode, frame

    def recv_frame(self) -> Frame:
        """The next single frame, data or control, as it came (after decompression)."""
        with self._read_lock:
            self._set_frame_events(True)
            event = self._next_event()
            frame = _event_frame(event)
            if frame is None:
                raise WebSocketConnectionClosedException(url=self.url)
            return frame

    def _set_frame_events(self, on: bool) -> None:
        """Choose messages or single frames for what is parsed from now on.

        In the middle of a fragmented message the mode stays as it is: the rest of
        that message keeps coming out the way it started.
        """
        with self._proto_lock:
            if self._proto.frame_events != on:
                with contextlib.suppress(WebSocketConfigurationException):
                    self._proto.frame_events = on

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until the peer closes the connection."""
        while True:
            try:
                message = self._recv_message()
            except WebSocketConnectionClosedException:
                return
            if message is None:
                return
            yield message

    # ------------------------------------------------------------------- closing

    def close(
        self,
        status: int = CloseCode.NORMAL_CLOSURE,
        reason: str | bytes = "",
        timeout: float | None = None,
    ) -> None:
        """Close with a closing handshake (RFC 6455 §7.1.2) and release the socket.

        Waits up to ``timeout`` (default ``close_timeout``, 3 s) for the server's close
        frame and for it to end the TCP connection, then closes the socket anyway.
        Calling it again, or on a dropped connection, does nothing.
        """
        if self.sock is None:
            return
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        try:
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8")
            with self._write_lock, self._proto_lock:
                frame = self._proto.send_close(status, reason)
        except UnicodeDecodeError as decode_error:
            raise WebSocketConfigurationException(
                f"close reason {reason!r} is not UTF-8: pass a str or UTF-8 bytes", url=self.url
            ) from decode_error
        except WebSocketException as refused:
            # A bad code or reason: nothing was sent and the connection stays open.
            refused.url = refused.url or self.url
            raise
        try:
            if frame:
                with self._write_lock:
                    self._sendall(frame)
            if self._read_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    self._drain_until_closed(deadline)
                finally:
                    self._read_lock.release()
        except (WebSocketException, OSError):
            pass  # the socket is closed below whatever happened
        finally:
            self._drop()

    def _drain_until_closed(self, deadline: float) -> None:
        """Read (discarding messages) until the server's close frame and EOF arrived."""
        while self.sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(remaining)
            event = self._next_event()
            if isinstance(event, EndOfStream):
                return

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake.

        A thread blocked in ``recv`` wakes up with
        :class:`WebSocketConnectionClosedException`.
        """
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._drop()

    shutdown = abort

    def _drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            # shutdown() first: closing alone does not wake a thread blocked in recv.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _event_frame(event: Event) -> Frame | None:
    """The websocket-client view of an event; ``None`` for the end of the stream."""
    if isinstance(event, Message):
        return Frame(event.opcode, _as_bytes(event.data))
    if isinstance(event, Fragment):
        return Frame(event.opcode, event.data, event.fin)
    if isinstance(event, Ping):
        return Frame(Opcode.PING, event.data)
    if isinstance(event, Pong):
        return Frame(Opcode.PONG, event.data)
    if isinstance(event, CloseReceived):
        return Frame(Opcode.CLOSE, event.payload)
    return None


# --------------------------------------------------------------------- connecting


def connect(
    url: str,
    *,
    timeout: float | None = None,
    open_timeout: float | None = _DEFAULT_OPEN_TIMEOUT,
    close_timeout: float = _DEFAULT_CLOSE_TIMEOUT,
    header: Mapping[str, str] | Sequence[str] | Sequence[tuple[str, str]] | None = None,
    cookie: str | None = None,
    origin: str | None = None,
    suppress_origin: bool = False,
    host: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: Any = "deflate",
    max_size: int | None = DEFAULT_MAX_SIZE,
    skip_utf8_validation: bool = False,
    sslopt: Mapping[str, Any] | None = None,
    ssl: ssl.SSLContext | None = None,
    sockopt: Sequence[tuple[int, int, int]] = (),
    source_address: tuple[str, int] | None = None,
    http_proxy_host: str | None = None,
    http_proxy_port: int | str | None = None,
    http_proxy_auth: tuple[str, str] | None = None,
    http_no_proxy: Sequence[str] | None = None,
    http_proxy_timeout: float | None = None,
    proxy_type: str = "http",
    redirect_limit: int = _DEFAULT_REDIRECT_LIMIT,
    fire_cont_frame: bool = False,
    enable_multithread: bool = True,
) -> WebSocket:
    """Open a WebSocket connection and return it once the handshake succeeded.

    Option names follow websocket-client.  ``timeout`` applies to every later read
    and write (``None``: block); ``open_timeout`` bounds connecting, proxy, TLS and the
    handshake together.  ``compression="deflate"`` offers permessage-deflate (``None``
    turns it off; a :class:`~wspool.DeflateOptions` sets its parameters).
    ``max_size`` bounds frames, messages and decompressed messages (``None``: no
    bound).  Redirects (301/302/303/307/308) are followed up to ``redirect_limit``
    times; credentials are only sent to the host they were given for.
    ``enable_multithread`` is accepted for compatibility: a WebSocket is always safe
    to use from several threads.
    """
    del enable_multithread
    target = parse_url(url)
    # Every option is checked before any connection is made.
    try:
        deflate_options = coerce_compression(compression)
        _check_seconds("timeout", timeout)
        _check_seconds("open_timeout", open_timeout)
        _check_seconds("close_timeout", close_timeout, allow_none=False)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise WebSocketConfigurationException(
                f"max_size must be an int >= 0 (bytes) or None, not {max_size!r}"
            )
        if redirect_limit < 0:
            raise WebSocketConfigurationException(
                f"redirect_limit must be >= 0, not {redirect_limit}"
            )
    except WebSocketException as exc:
        exc.url = exc.url or target.redacted
        raise
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    origin_host = (target.host, target.port)
    seen: set[str] = set()
    for _ in range(redirect_limit + 1):
        seen.add(target.redacted)
        same_host = (target.host, target.port) == origin_host
        try:
            proxy = select_proxy(
                target,
                http_proxy_host=http_proxy_host,
                http_proxy_port=http_proxy_port,
                http_proxy_auth=http_proxy_auth,
                http_no_proxy=http_no_proxy,
                proxy_type=proxy_type,
                http_proxy_timeout=http_proxy_timeout,
            )
            ssl_context = server_hostname = None
            if target.secure:
                ssl_context = build_ssl_context(sslopt, ssl, url=target.redacted)
                server_hostname = server_hostname_for(target.host, sslopt)
            sock = open_socket(
                target,
                timeout=_remaining(deadline, target),
                proxy=proxy,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
                sockopt=sockopt,
                source_address=source_address,
            )
        except WebSocketException as exc:
            exc.url = exc.url or target.redacted
            raise
        try:
            request = build_request(
                host=target.host,
                port=target.port,
                resource=target.resource,
                secure=target.secure,
                subprotocols=subprotocols,
                origin=origin,
                suppress_origin=suppress_origin,
                header=header if same_host else headers_without_credentials(header),
                cookie=cookie if same_host else None,
                host_header=host if same_host else None,
                auth=(target.username, target.password or "")
                if target.username is not None
                else None,
                deflate=deflate_options,
            )
            response, leftover = _exchange(sock, request.to_bytes(), deadline, target)
            if response.status == 101:
                result = validate_response(request, response, max_size=max_size)
                protocol = ClientProtocol(
                    max_size=max_size,
                    skip_utf8_validation=skip_utf8_validation,
                    deflate=result.deflate,
                    defer_failure=True,
                )
                sock.settimeout(timeout)
                return WebSocket(
                    sock,
                    protocol,
                    target,
                    status=response.status,
                    headers=response.headers,
                    subprotocol=result.subprotocol,
                    extensions=result.extensions,
                    leftover=leftover,
                    fire_cont_frame=fire_cont_frame,
                    close_timeout=close_timeout,
                )
            if not is_redirect(response):
                body = _read_body_excerpt(sock, response, leftover, deadline)
                raise bad_status_error(response, body)
            target = _redirect_target(target, response)
            if target.redacted in seen:
                raise WebSocketRedirectException(
                    f"redirect loop: {target.redacted} was already visited"
                )
        except WebSocketException as exc:
            sock.close()
            exc.url = exc.url or target.redacted
            raise
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise WebSocketRedirectException(
        f"more than redirect_limit={redirect_limit} redirects; raise the limit or fix the URL",
        url=target.redacted,
    )


create_connection = connect


def _check_seconds(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        allowed = "a number of seconds >= 0" + (" or None" if allow_none else "")
        raise WebSocketConfigurationException(f"{name} must be {allowed}, not {value!r}")


def _remaining(deadline: float | None, target: WebSocketURL) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WebSocketTimeoutException(
            "open_timeout expired before the handshake completed", url=target.redacted
        )
    return remaining


def _exchange(
    sock: socket.socket, request: bytes, deadline: float | None, target: WebSocketURL
) -> tuple[HandshakeResponse, bytes]:
    """Send the upgrade request and read the response head."""
    parser = ResponseParser()
    try:
        sock.settimeout(_remaining(deadline, target))
        sock.sendall(request)
        while True:
            sock.settimeout(_remaining(deadline, target))
            data = sock.recv(65536)
            if not data:
                raise WebSocketHandshakeException(
                    "the server closed the connection before answering the upgrade request"
                )
            response = parser.feed(data)
            if response is not None:
                return response, parser.leftover
    except TimeoutError as exc:
        raise WebSocketTimeoutException(
            "timed out waiting for the handshake response (open_timeout)"
        ) from exc
    except ssl.SSLError as exc:
        # With TLS 1.3 the server checks a client certificate after the client's side of
        # the TLS handshake finished: its refusal arrives here, as an alert.
        raise tls_handshake_error(exc, target, target.host) from exc
    except OSError as exc:
        if isinstance(exc, WebSocketException):
            raise
        if isinstance(sock, ssl.SSLSocket) and isinstance(exc, ConnectionError):
            # The server may have refused us before our request got through (a TLS 1.3
            # client-certificate alert races with our write): report its alert if any.
            alert = _pending_tls_alert(sock)
            if alert is not None:
                raise tls_handshake_error(alert, target, target.host) from alert
        raise WebSocketHandshakeException(f"connection failed during the handshake: {exc}") from exc


def _pending_tls_alert(sock: ssl.SSLSocket) -> ssl.SSLError | None:
    """The TLS alert waiting in ``sock``'s receive buffer, if any (best effort)."""
    try:
        sock.settimeout(0.5)
        sock.recv(1)
    except ssl.SSLError as alert:
        return alert
    except OSError:
        pass
    return None


def _read_body_excerpt(
    sock: socket.socket, response: HandshakeResponse, leftover: bytes, deadline: float | None
) -> bytes:
    """At most ``_BODY_EXCERPT`` bytes of a refused handshake's body, best effort."""
    length_header = response.get("Content-Length")
    wanted = _BODY_EXCERPT
    if length_header is not None and length_header.isdigit():
        wanted = min(wanted, int(length_header))
    body = bytearray(leftover[:wanted])
    try:
        while len(body) < wanted:
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            chunk = sock.recv(wanted - len(body))
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    return bytes(body)


def _redirect_target(current: WebSocketURL, response: HandshakeResponse) -> WebSocketURL:
    location = response.get("Location")
    if not location:
        raise WebSocketRedirectException(
            f"redirect status {response.status} without a Location header"
        )
    return resolve_redirect(current, location)
