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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Unpack

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketTimeoutException,
)
from wspool.opening import Opening
from wspool.options import ConnectKeywords, connect_options
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
from wspool.protocol.frames import CloseCode, Opcode
from wspool.protocol.handshake import (
    REJECTION_BODY_WAIT,
    Accepted,
    ClientHandshake,
    HandshakeEvent,
    HandshakeState,
    Rejected,
)
from wspool.transport.connect import Deadline, open_socket
from wspool.transport.dial import DialPlan, tls_error
from wspool.transport.url import WebSocketURL

__all__ = ["ABNF", "Frame", "WebSocket", "connect", "create_connection"]

#: Bytes per read.  Under glibc's mmap threshold (128 KiB) on purpose: a larger
#: ``recv`` buffer is mapped, shrunk and unmapped by malloc on every read (syscalls and
#: TLB shootdowns in a threaded program), which cost more than the extra reads save.
_RECV_SIZE: Final = 64 * 1024


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
        close_timeout: float,
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


def connect(url: str, **options: Unpack[ConnectKeywords]) -> WebSocket:
    """Open a WebSocket connection and return it once the handshake succeeded.

    Option names follow websocket-client; every option, its default and what it
    accepts is in :data:`wspool.options.OPTIONS` (the same table the pool uses), and a
    bad or unknown one raises :class:`WebSocketConfigurationException` before any
    connection is made.  ``timeout`` applies to every later read and write (``None``:
    block); ``open_timeout`` bounds connecting, proxy, TLS, redirects and the handshake
    together.  ``compression="deflate"`` offers permessage-deflate (``None`` turns it
    off; a :class:`~wspool.DeflateOptions` sets its parameters).  ``max_size`` bounds
    frames, messages and decompressed messages (``None``: no bound).  Redirects
    (301/302/303/307/308) are followed up to ``redirect_limit`` times; credentials are
    only sent to the origin they were given for.  ``enable_multithread`` is accepted
    for compatibility: a WebSocket is always safe to use from several threads.
    """
    checked = connect_options(url, options)
    opening = Opening(checked)
    opening.check_request()
    deadline = Deadline(checked.open_timeout)
    while True:
        plan = opening.plan()
        try:
            sock = open_socket(plan, deadline)
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
                return WebSocket(
                    sock,
                    opening.protocol(event, defer_failure=True),
                    opening.url,
                    status=event.result.status,
                    headers=event.result.headers,
                    subprotocol=event.result.subprotocol,
                    extensions=event.result.extensions,
                    leftover=event.leftover,
                    fire_cont_frame=checked.fire_cont_frame,
                    close_timeout=checked.close_timeout,
                )
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


create_connection = connect


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
