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
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final, Unpack

from wspool.abnf import ABNF
from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketTimeoutException,
)
from wspool.opening import Opening
from wspool.options import (
    ConnectKeywords,
    ConnectOptions,
    Unknown,
    connect_options,
    getdefaulttimeout,
)
from wspool.protocol.client_protocol import ClientProtocol, ProtocolState
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
from wspool.protocol.frames import CloseCode, Opcode, decode_close_payload
from wspool.protocol.handshake import (
    REJECTION_BODY_WAIT,
    Accepted,
    ClientHandshake,
    HandshakeEvent,
    HandshakeState,
    Rejected,
)
from wspool.transport.connect import Deadline, open_socket, use_socket
from wspool.transport.dial import DialPlan, tls_error
from wspool.transport.stream import SocketStream
from wspool.transport.url import WebSocketURL

__all__ = ["WebSocket", "connect", "create_connection"]

#: Bytes per read.  Under glibc's mmap threshold (128 KiB) on purpose: a larger
#: ``recv`` buffer is mapped, shrunk and unmapped by malloc on every read (syscalls and
#: TLB shootdowns in a threaded program), which cost more than the extra reads save.
_RECV_SIZE: Final = 64 * 1024


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data


#: The options ``WebSocket(...)`` takes as websocket-client's constructor does; any
#: other connect option given there is kept too, as a default for :meth:`WebSocket.connect`.
_CONSTRUCTOR_OPTIONS: Final = (
    "get_mask_key",
    "sockopt",
    "sslopt",
    "fire_cont_frame",
    "enable_multithread",
    "skip_utf8_validation",
)


class WebSocket:
    """One WebSocket connection, driven by the calling thread(s).

    :func:`wspool.connect` returns one, open.  websocket-client's way works too:
    ``ws = WebSocket(sslopt=..., sockopt=...)`` then ``ws.connect(url, **options)``;
    options given to the constructor are defaults for every later ``connect``, and a
    closed WebSocket may be connected again.  ``send*`` may be called from any thread
    while another thread blocks in ``recv*``; reads are serialized, and so are writes.
    """

    def __init__(
        self,
        get_mask_key: Callable[[int], bytes] | None = None,
        sockopt: Any = None,
        sslopt: Any = None,
        fire_cont_frame: bool = False,
        enable_multithread: bool = True,
        skip_utf8_validation: bool = False,
        **options: Any,
    ) -> None:
        # Checked by connect() (with the options given there), as websocket-client
        # takes them here and uses them there.
        given = {
            "get_mask_key": get_mask_key,
            "sockopt": sockopt,
            "sslopt": sslopt,
            "fire_cont_frame": fire_cont_frame,
            "enable_multithread": enable_multithread,
            "skip_utf8_validation": skip_utf8_validation,
        }
        self._defaults: dict[str, Any] = {
            name: value for name, value in given.items() if value is not None
        }
        # Not socket=: a given socket serves one connection (connect(socket=...) it is).
        self._defaults.update({k: v for k, v in options.items() if k != "socket"})
        self.sock: socket.socket | None = None
        self.url: str | None = None
        self.status: int | None = None
        self.response_headers: list[tuple[str, str]] = []
        self.subprotocol: str | None = None
        self.extensions: list[str] = []
        self.fire_cont_frame = fire_cont_frame
        self.close_timeout = 3.0
        self._proto: ClientProtocol | None = None
        # The socket's reads and writes (TLS calls serialized): set with sock.
        self._stream: SocketStream | None = None
        self._events: deque[Event] = deque()
        # Frames that arrived in the same read as the handshake response.  They are fed
        # to the core by the first read, once it has chosen messages or frame events.
        self._leftover = b""
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._proto_lock = threading.Lock()

    # ---------------------------------------------------------------- connecting

    def connect(self, url: str, **options: Any) -> None:
        """Open ``url`` (websocket-client's ``WebSocket.connect``).

        Takes the options of :func:`wspool.connect`, on top of those given to the
        constructor.  As in websocket-client, an unknown option name is ignored, with
        an :class:`~wspool.options.UnknownOptionWarning` naming the closest known one.
        A connection that is still open is dropped first.
        """
        self._open(url, {**self._defaults, **options}, unknown="warn", stacklevel=3)

    def _open(
        self, url: str, options: dict[str, Any], *, unknown: Unknown, stacklevel: int
    ) -> None:
        if self.sock is not None:
            self.abort()
        checked = connect_options(url, options, unknown=unknown, stacklevel=stacklevel + 1)
        if "timeout" in options:
            # Kept, as websocket-client keeps it: gettimeout() and the next connect().
            self._defaults["timeout"] = options["timeout"]
        sock, protocol, accepted, url_ = _open(checked)
        result = accepted.result
        with self._read_lock, self._write_lock, self._proto_lock:
            self.url = url_.redacted
            self.status = result.status
            self.response_headers = list(result.headers)
            self.subprotocol = result.subprotocol
            self.extensions = list(result.extensions)
            self.fire_cont_frame = checked.fire_cont_frame
            self.close_timeout = checked.close_timeout
            self._events.clear()
            self._leftover = accepted.leftover
            self._proto = protocol
            self._stream = SocketStream(sock, checked.timeout)
            self.sock = sock

    # ---------------------------------------------------------------- properties

    @property
    def headers(self) -> dict[str, str]:
        """The handshake response headers, names lower-cased (later lines win)."""
        return {name.lower(): value for name, value in self.response_headers}

    @property
    def connected(self) -> bool:
        """Whether the connection is open: connected, and no close frame sent or seen."""
        proto = self._proto
        return self.sock is not None and proto is not None and proto.state is ProtocolState.OPEN

    @property
    def close_status(self) -> int | None:
        """The peer's close code (1005 if it sent none, 1006 if the stream dropped)."""
        return None if self._proto is None else self._proto.close_code

    @property
    def close_reason(self) -> str:
        return "" if self._proto is None else self._proto.close_reason

    def getsubprotocol(self) -> str | None:
        return self.subprotocol

    def getstatus(self) -> int | None:
        return self.status

    def getheaders(self) -> dict[str, str]:
        return self.headers

    def is_ssl(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def fileno(self) -> int:
        return self._socket().fileno()

    def gettimeout(self) -> float | None:
        """The timeout of each blocking read and write, in seconds (``None``: none)."""
        stream = self._stream
        if self.sock is not None and stream is not None:
            return stream.timeout
        timeout = self._defaults.get("timeout")
        return None if timeout is None else float(timeout)

    def settimeout(self, timeout: float | None) -> None:
        """Timeout in seconds for each blocking read and write (``None``: wait forever);
        before :meth:`connect`, also the default of its ``timeout`` option."""
        self._defaults["timeout"] = timeout
        stream = self._stream
        if self.sock is not None and stream is not None:
            stream.settimeout(timeout)

    timeout = property(gettimeout, settimeout)

    def set_mask_key(self, func: Callable[[int], bytes] | None) -> None:
        """Use ``func(4)`` for each frame's masking key instead of :func:`os.urandom`
        (websocket-client's hook, for tests that need fixed masks).  Keys must be
        unpredictable to the network (RFC 6455 §10.3): keep the default otherwise."""
        self._defaults["get_mask_key"] = func
        with self._proto_lock:
            if self._proto is not None:
                self._proto.mask_key_source = func

    def __repr__(self) -> str:
        state = "unconnected" if self._proto is None else self._proto.state.value
        return f"<WebSocket {self.url} {state}>"

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
        return self._send_built(lambda proto: proto.send_message(payload, opcode))

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
        return self._send_built(lambda proto: proto.send_fragment(data, opcode, fin))

    def ping(self, payload: str | bytes | bytearray | memoryview = b"") -> int:
        return self._send_built(lambda proto: proto.send_ping(payload))

    def pong(self, payload: str | bytes | bytearray | memoryview = b"") -> int:
        return self._send_built(lambda proto: proto.send_pong(payload))

    def send_frame(self, frame: ABNF) -> int:
        """Send one frame built with :meth:`ABNF.create_frame` (websocket-client's API).

        The frame goes through the protocol core like every other send, so fragments
        must follow each other as RFC 6455 §5.4 says (a TEXT/BINARY frame with
        ``fin=0``, then CONT frames, the last with ``fin=1``) and the connection's
        compression applies.  RSV bits are the extensions' (and the core's) to set:
        a frame with one set is refused.
        """
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            raise WebSocketConfigurationException(
                "send_frame() got a frame with an RSV bit set: wspool sets RSV1 itself when "
                "permessage-deflate compresses a message; send the frame with RSV bits 0",
                url=self.url,
            )
        opcode, data, fin = frame.opcode, frame.data, bool(frame.fin)
        if opcode == Opcode.PING:
            return self.ping(data)
        if opcode == Opcode.PONG:
            return self.pong(data)
        if opcode == Opcode.CLOSE:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            code, reason = _close_payload(payload, self.url)
            return self.send_close(code, reason)
        if opcode == Opcode.CONT:
            return self._send_built(lambda proto: proto.send_fragment(data, None, fin))
        return self._send_built(lambda proto: proto.send_fragment(data, opcode, fin))

    def _send_built(self, build: Callable[[ClientProtocol], bytes]) -> int:
        with self._write_lock:
            with self._proto_lock:
                self._socket()
                try:
                    data: bytes = build(self._protocol())
                except WebSocketException as exc:
                    exc.url = exc.url or self.url
                    raise
            self._sendall(data)
            return len(data)

    def _sendall(self, data: bytes) -> None:
        """Write under ``_write_lock``; socket errors become wspool exceptions."""
        self._socket()
        stream = self._stream
        assert stream is not None
        try:
            stream.sendall(data)
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
            out = self._protocol().data_to_send()
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

    def _protocol(self) -> ClientProtocol:
        """The core; set by the first connect (``sock`` is never set without it)."""
        proto = self._proto
        if proto is None:
            raise WebSocketConnectionClosedException(url=self.url)
        return proto

    def _feed(self, data: bytes) -> None:
        with self._proto_lock:
            self._events.extend(self._protocol().receive_data(data))

    def _next_event(self, timeout: float | bool | None = False) -> Event:
        """The next event, reading from the socket as needed; caller holds ``_read_lock``.
        ``timeout`` overrides the read timeout (``False``: the connection's)."""
        while not self._events:
            if self._leftover:
                data, self._leftover = self._leftover, b""
                self._feed(data)
                continue
            self._socket()
            stream = self._stream
            assert stream is not None
            try:
                data = stream.recv(_RECV_SIZE, timeout)
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: timeout 0
                raise WebSocketTimeoutException("timed out waiting for data", url=self.url) from exc
            except (OSError, ValueError):  # ValueError: closed by abort() meanwhile
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
                self._protocol().fail(event.exc)
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
        data = frame.data
        assert isinstance(data, bytes)  # received frames always hold bytes
        return opcode, data

    def recv_data_frame(self, control_frame: bool = False) -> tuple[int, ABNF]:
        """``(opcode, ABNF)`` of the next message (or of each frame when the
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

    def recv_frame(self) -> ABNF:
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
            proto = self._proto
            if proto is not None and proto.frame_events != on:
                with contextlib.suppress(WebSocketConfigurationException):
                    proto.frame_events = on

    def __iter__(self) -> Iterator[str | bytes]:
        """The WebSocket is its own iterator: ``for message in ws`` gives messages
        until the peer closes the connection (or it drops)."""
        return self

    def __next__(self) -> str | bytes:
        """The next message, as :meth:`recv` gives it; :class:`StopIteration` once the
        peer's close frame arrived or the connection is gone."""
        try:
            message = self._recv_message()
        except WebSocketConnectionClosedException:
            raise StopIteration from None
        if message is None:
            raise StopIteration
        return message

    next = __next__

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
        frame = self._close_frame(status, reason)
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

    def send_close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str | bytes = b"") -> int:
        """Send a close frame and return at once (websocket-client's ``send_close``):
        the server's close frame is then read by ``recv`` (which returns ``""``) and
        :meth:`close` or :meth:`abort` releases the socket.  Returns the bytes sent."""
        self._socket()
        frame = self._close_frame(status, reason)
        if frame:
            with self._write_lock:
                self._sendall(frame)
        return len(frame)

    def _close_frame(self, status: int, reason: str | bytes) -> bytes:
        """The close frame to send (``b""`` if one was already sent); a bad code or
        reason raises and nothing changes: the connection stays open."""
        try:
            text = reason.decode("utf-8") if isinstance(reason, bytes) else reason
            with self._write_lock, self._proto_lock:
                return self._protocol().send_close(status, text)
        except UnicodeDecodeError as decode_error:
            raise WebSocketConfigurationException(
                f"close reason {reason!r} is not UTF-8: pass a str or UTF-8 bytes", url=self.url
            ) from decode_error
        except WebSocketException as refused:
            refused.url = refused.url or self.url
            raise

    def _drain_until_closed(self, deadline: float) -> None:
        """Read (discarding messages) until the server's close frame and EOF arrived."""
        while self.sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = self._next_event(remaining)
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


def _received(opcode: int, data: bytes, fin: bool = True) -> ABNF:
    # Received frames are shown after decompression: RSV bits 0, and never masked.
    return ABNF.received_frame(opcode, data, fin)


def _event_frame(event: Event) -> ABNF | None:
    """The websocket-client view of an event; ``None`` for the end of the stream."""
    if isinstance(event, Message):
        return _received(event.opcode, _as_bytes(event.data))
    if isinstance(event, Fragment):
        return _received(event.opcode, event.data, event.fin)
    if isinstance(event, Ping):
        return _received(Opcode.PING, event.data)
    if isinstance(event, Pong):
        return _received(Opcode.PONG, event.data)
    if isinstance(event, CloseReceived):
        return _received(Opcode.CLOSE, event.payload)
    return None


def _close_payload(payload: bytes, url: str | None) -> tuple[int, str]:
    """``(code, reason)`` of a close frame the caller built; an empty payload is 1000."""
    if not payload:
        return CloseCode.NORMAL_CLOSURE, ""
    try:
        return decode_close_payload(payload)
    except WebSocketException as exc:
        raise WebSocketConfigurationException(
            f"send_frame() got a close frame that may not be sent: {exc.args[0]}", url=url
        ) from exc


# --------------------------------------------------------------------- connecting


def connect(url: str, **options: Unpack[ConnectKeywords]) -> WebSocket:
    """Open a WebSocket connection and return it once the handshake succeeded.

    Option names follow websocket-client; every option, its default and what it
    accepts is in :data:`wspool.options.OPTIONS` (the same table the pool uses), and a
    bad or unknown one raises :class:`WebSocketConfigurationException` before any
    connection is made.  ``timeout`` applies to every later read and write (``None``:
    block; default :func:`getdefaulttimeout`); ``open_timeout`` bounds connecting,
    proxy, TLS, redirects and the handshake together (default: ``timeout`` if that is
    > 0, else 10 s).  ``compression="deflate"`` offers permessage-deflate (``None``
    turns it off; a :class:`~wspool.DeflateOptions` sets its parameters).  ``max_size``
    bounds frames, messages and decompressed messages (``None``: no bound).  Redirects
    (301/302/303/307/308) are followed up to ``redirect_limit`` times; credentials are
    only sent to the origin they were given for.  ``socket`` is a connected socket to
    use instead of dialling (a Unix socket, a tunnel of your own).
    ``enable_multithread`` is accepted for compatibility: a WebSocket is always safe to
    use from several threads.
    """
    ws = WebSocket()
    ws._open(url, dict(options), unknown="raise", stacklevel=3)
    # A later ws.connect(url) opens with the same options (but for the socket, which
    # served this connection only).
    ws._defaults.update({k: v for k, v in options.items() if k != "socket"})
    return ws


def create_connection(
    url: str, timeout: float | None = None, class_: type[WebSocket] = WebSocket, **options: Any
) -> WebSocket:
    """websocket-client's ``create_connection``: :func:`connect` with its conventions.

    ``class_`` is the class to instantiate (a :class:`WebSocket` subclass; it gets
    every option, as in websocket-client); ``timeout`` defaults to
    :func:`getdefaulttimeout`.  An unknown option is ignored with an
    :class:`~wspool.options.UnknownOptionWarning` naming the closest known one,
    where :func:`connect` raises.
    """
    ws = class_(**options)
    ws.settimeout(timeout if timeout is not None else getdefaulttimeout())
    ws._open(url, {**ws._defaults, **options}, unknown="warn", stacklevel=3)
    return ws


def _open(checked: ConnectOptions) -> tuple[socket.socket, ClientProtocol, Accepted, WebSocketURL]:
    """Dial (or take the ``socket`` option's), follow redirects, and return the open
    socket, its core, the accepted handshake and the URL that accepted it."""
    opening = Opening(checked)
    opening.check_request()
    deadline = Deadline(checked.open_timeout)
    while True:
        plan = opening.plan()
        given = opening.take_socket()
        try:
            sock = (
                open_socket(plan, deadline) if given is None else use_socket(plan, given, deadline)
            )
        except TimeoutError as exc:
            if isinstance(exc, WebSocketException):
                exc.url = exc.url or opening.url.redacted
                raise
            raise _open_timed_out(opening, "before the handshake completed") from exc
        except WebSocketException as exc:
            exc.url = exc.url or opening.url.redacted
            raise
        try:
            event = _exchange(sock, opening.handshake(), deadline, opening, plan)
            if isinstance(event, Accepted):
                sock.settimeout(checked.timeout)
                return sock, opening.protocol(event, defer_failure=True), event, opening.url
            if isinstance(event, Rejected):
                raise event.error
            opening.follow(event)
        except WebSocketException as exc:
            sock.close()
            exc.url = exc.url or opening.url.redacted
            raise
        except BaseException:
            sock.close()
            raise
        sock.close()


def _open_timed_out(opening: Opening, when: str) -> WebSocketTimeoutException:
    return WebSocketTimeoutException(
        f"open_timeout={opening.options.open_timeout}s expired {when}",
        url=opening.url.redacted,
    )


def _exchange(
    sock: socket.socket,
    handshake: ClientHandshake,
    deadline: Deadline,
    opening: Opening,
    plan: DialPlan,
) -> HandshakeEvent:
    """Send the upgrade request and read until the handshake has its outcome."""
    try:
        sock.settimeout(deadline.remaining())
        sock.sendall(handshake.data_to_send())
        while True:
            if handshake.state is HandshakeState.READING_BODY:
                # A refusal's body is only an excerpt for the exception: never wait
                # long for it.
                try:
                    sock.settimeout(deadline.remaining(REJECTION_BODY_WAIT))
                    data = sock.recv(_RECV_SIZE)
                except (TimeoutError, ssl.SSLError, ConnectionError):
                    return handshake.body_timed_out()
            else:
                sock.settimeout(deadline.remaining())
                data = sock.recv(_RECV_SIZE)
            event = handshake.receive_data(data)
            if event is not None:
                return event
    except TimeoutError as exc:
        if isinstance(exc, WebSocketException):
            raise
        raise _open_timed_out(opening, "waiting for the handshake response") from exc
    except ssl.SSLError as exc:
        # With TLS 1.3 the server checks a client certificate after the client's side of
        # the TLS handshake finished: its refusal arrives here, as an alert.
        raise tls_error(plan, exc) from exc
    except OSError as exc:
        if isinstance(exc, WebSocketException):
            raise
        if isinstance(sock, ssl.SSLSocket) and isinstance(exc, ConnectionError):
            # The server may have refused us before our request got through (a TLS 1.3
            # client-certificate alert races with our write): report its alert if any.
            alert = _pending_tls_alert(sock)
            if alert is not None:
                raise tls_error(plan, alert) from alert
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
