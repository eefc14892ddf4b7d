"""A scriptable WebSocket *server* for wspool's tests (RFC 6455 + RFC 7692).

It is written independently of ``wspool`` (nothing is imported from it), so that a
client bug and a server bug cannot cancel each other out.  It listens on a loopback
address only and runs one thread per connection plus one accept thread; that is
enough for a few hundred concurrent connections.

Two hooks script the peer:

* ``handshake(request) -> Response | None`` decides the HTTP answer: accept (maybe with
  a subprotocol or broken headers), refuse, redirect, stay silent, delay, close, reset.
  ``None`` means the default: a correct 101 answer (or 400/426 for a bad request).
* ``handler(conn)`` runs after a 101 answer and drives a :class:`ServerConnection`:
  receive frames or whole messages, send valid or deliberately invalid frames.

Example::

    def handler(conn: ServerConnection) -> None:
        conn.send_message("hello", fragment_size=2)
        opcode, data = conn.recv_message()
        conn.send_close(1000)

    with WSServer(handler) as server:
        ...  # connect a client to server.url
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import ipaddress
import os
import selectors
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "GUID",
    "DeflateParams",
    "Frame",
    "HandshakeAction",
    "Message",
    "Opcode",
    "PeerClosed",
    "ProtocolViolation",
    "Request",
    "Response",
    "ServerConnection",
    "WSServer",
    "accept",
    "accept_key",
    "close_payload",
    "echo_handler",
    "encode_frame",
    "iter_frames",
    "negotiate_deflate",
    "parse_close_payload",
    "parse_extensions",
    "redirect",
    "refuse",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_REQUEST_BYTES = 65536
DEFAULT_TIMEOUT = 10.0
_SYNC_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1


class PeerClosed(EOFError):
    """The client closed (or reset) the TCP connection; nothing more can be read."""


class ProtocolViolation(Exception):
    """The client sent something RFC 6455 / RFC 7692 forbids (found by recv_message)."""


class Opcode(enum.IntEnum):
    """Frame opcodes, RFC 6455 §5.2.  Reserved values can still be sent as plain ints."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class HandshakeAction(enum.Enum):
    """What the server does with a handshake request once the hook has decided."""

    RESPOND = "respond"  # send the response (then run the handler if it upgrades)
    SILENT = "silent"  # never answer; hold the socket until the client or stop() closes it
    CLOSE = "close"  # close the TCP connection without answering (FIN)
    RESET = "reset"  # abort the TCP connection without answering (RST)


# --------------------------------------------------------------------------- helpers


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2 step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 §5.3); fast for 16 MB."""
    if not data:
        return b""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return value.to_bytes(n, "big")


def close_payload(code: int | None = 1000, reason: str | bytes = "") -> bytes:
    """The payload of a close frame: 2-byte code then the reason (RFC 6455 §5.5.1)."""
    if code is None:
        return b""
    raw = reason.encode("utf-8") if isinstance(reason, str) else reason
    return struct.pack("!H", code) + raw


def parse_close_payload(payload: bytes) -> tuple[int | None, bytes]:
    """(code, raw reason) of a close payload; code is None for an empty payload."""
    if len(payload) < 2:
        return None, payload
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def parse_extensions(value: str) -> list[tuple[str, dict[str, str | None]]]:
    """Parse a Sec-WebSocket-Extensions value into [(name, {param: value|None})].

    Lenient (test server): quoted values are unquoted, empty items are skipped.
    """
    result: list[tuple[str, dict[str, str | None]]] = []
    for item in value.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str | None] = {}
        for part in parts[1:]:
            if not part:
                continue
            name, sep, val = part.partition("=")
            params[name.strip().lower()] = val.strip().strip('"') if sep else None
        result.append((parts[0].lower(), params))
    return result


# --------------------------------------------------------------------------- handshake


@dataclass
class Request:
    """One opening handshake request as the server received it."""

    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]
    raw: bytes
    client_address: tuple[str, int] = ("", 0)
    tls: bool = False

    def get(self, name: str, default: str | None = None) -> str | None:
        """The header's values joined by ", " (RFC 9110 §5.3), or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (Connection, Upgrade) contains ``token``."""
        tokens = (t.strip().lower() for v in self.get_all(name) for t in v.split(","))
        return token.lower() in tokens

    @property
    def key(self) -> str | None:
        return self.get("Sec-WebSocket-Key")

    @property
    def subprotocols(self) -> list[str]:
        return [p.strip() for v in self.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]

    @property
    def extensions(self) -> list[tuple[str, dict[str, str | None]]]:
        return parse_extensions(", ".join(self.get_all("Sec-WebSocket-Extensions")))

    def problem(self) -> str | None:
        """Why this is not a valid upgrade request (RFC 6455 §4.2.1), or None."""
        if self.method != "GET":
            return f"method must be GET, got {self.method}"
        if self.version != "HTTP/1.1":
            return f"HTTP version must be HTTP/1.1, got {self.version}"
        if self.get("Host") is None:
            return "missing Host header"
        if not self.has_token("Upgrade", "websocket"):
            return "Upgrade header must contain 'websocket'"
        if not self.has_token("Connection", "upgrade"):
            return "Connection header must contain 'Upgrade'"
        key = self.key
        try:
            if key is None or len(base64.b64decode(key, validate=True)) != 16:
                return "Sec-WebSocket-Key must be 16 base64-encoded bytes"
        except ValueError:
            return "Sec-WebSocket-Key is not valid base64"
        if self.get("Sec-WebSocket-Version") != "13":
            return "Sec-WebSocket-Version must be 13"
        return None


@dataclass
class Response:
    """The server's answer to a handshake; edit it freely to break the handshake.

    ``raw`` replaces the whole serialized answer.  ``after`` is written in the same
    send() right after the answer (e.g. a first frame).  ``delay`` waits before
    answering; ``chunk_size`` writes the answer a few bytes at a time (with ``pause``
    seconds between writes).  The handler runs when ``upgrade`` (default: status 101).
    """

    status: int = 101
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    action: HandshakeAction = HandshakeAction.RESPOND
    raw: bytes | None = None
    after: bytes = b""
    delay: float = 0.0
    chunk_size: int | None = None
    pause: float = 0.0
    upgrade: bool | None = None

    def set_header(self, name: str, value: str | None) -> Response:
        """Replace (or, with None, remove) every header called ``name``."""
        lname = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lname]
        if value is not None:
            self.headers.append((name, value))
        return self

    def get(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def upgrades(self) -> bool:
        return self.status == 101 if self.upgrade is None else self.upgrade

    def serialize(self) -> bytes:
        if self.raw is not None:
            return self.raw
        reason = self.reason or _REASONS.get(self.status, "Unknown")
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class DeflateParams:
    """Negotiated permessage-deflate parameters (RFC 7692 §7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    @classmethod
    def from_response(cls, value: str | None) -> DeflateParams | None:
        """The parameters a Sec-WebSocket-Extensions answer agreed to, or None."""
        for name, params in parse_extensions(value or ""):
            if name == "permessage-deflate":
                return cls(
                    server_no_context_takeover="server_no_context_takeover" in params,
                    client_no_context_takeover="client_no_context_takeover" in params,
                    server_max_window_bits=_bits(params.get("server_max_window_bits")),
                    client_max_window_bits=_bits(params.get("client_max_window_bits")),
                )
        return None


def _bits(value: str | None) -> int:
    try:
        return min(15, max(8, int(value))) if value else 15
    except ValueError:
        return 15


def negotiate_deflate(request: Request, compression: bool | dict[str, object]) -> str | None:
    """The Sec-WebSocket-Extensions answer for the request's deflate offers, or None.

    ``True`` accepts the first permessage-deflate offer with the parameters it
    requires (server_no_context_takeover, server_max_window_bits as offered).
    A dict gives response parameters on top of that: ``True`` for a flag, an int
    for window bits, ``False``/``None`` to drop a parameter (even a required one,
    to build invalid answers).  ``False`` declines every offer.
    """
    if compression is False:
        return None
    for name, offer in request.extensions:
        if name != "permessage-deflate":
            continue
        params: dict[str, object] = {}
        if "server_no_context_takeover" in offer:
            params["server_no_context_takeover"] = True
        if offer.get("server_max_window_bits"):
            params["server_max_window_bits"] = offer["server_max_window_bits"]
        if isinstance(compression, dict):
            params.update(compression)
        items = ["permessage-deflate"]
        for key, value in params.items():
            if value is True:
                items.append(key)
            elif value is not None and value is not False:
                items.append(f"{key}={value}")
        return "; ".join(items)
    return None


def accept(
    request: Request,
    *,
    subprotocol: str | None = None,
    compression: bool | dict[str, object] = True,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """A correct 101 answer to ``request`` (RFC 6455 §4.2.2); edit it to break it."""
    response = Response(
        101,
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(request.key or "")),
        ],
    )
    if subprotocol is not None:
        response.headers.append(("Sec-WebSocket-Protocol", subprotocol))
    extensions = negotiate_deflate(request, compression)
    if extensions is not None:
        response.headers.append(("Sec-WebSocket-Extensions", extensions))
    response.headers.extend(headers)
    return response


def refuse(
    status: int = 403, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A non-101 answer with a body (Content-Length set, connection closed after)."""
    hdrs = [("Content-Length", str(len(body))), ("Connection", "close"), *headers]
    return Response(status, headers=hdrs, body=body)


def redirect(location: str, status: int = 302) -> Response:
    """A redirect answer (301/302/303/307/308) to ``location``."""
    return refuse(status, headers=[("Location", location)])


def _default_response(request: Request, compression: bool | dict[str, object]) -> Response:
    problem = request.problem()
    if problem is None:
        return accept(request, compression=compression)
    if request.get("Sec-WebSocket-Version") not in (None, "13"):
        return refuse(426, problem.encode(), headers=[("Sec-WebSocket-Version", "13")])
    return refuse(400, problem.encode())


def _parse_request(raw: bytes, address: tuple[str, int], tls: bool) -> Request:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path, _, version = rest.rpartition(" ")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Request(method, path, version, headers, raw, address, tls)


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One frame as received (payload already unmasked)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masked: bool = False
    mask_key: bytes = b""
    minimal_length: bool = True  # False when the length used a longer encoding than needed


class Message(NamedTuple):
    """A whole message: unpacks as ``(opcode, data)``; ``data`` is always bytes."""

    opcode: int
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool | bytes = False,
    length_bytes: int | None = None,
) -> bytes:
    """Serialize a frame (RFC 6455 §5.2) -- on purpose without any validity checks.

    ``length_bytes`` forces the length encoding: 0 (7-bit), 2 (16-bit) or 8 (64-bit),
    which allows non-minimal lengths.  ``mask`` is True (random key) or a 4-byte key.
    """
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    b0 |= (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    mask_bit = 0x80 if mask is not False else 0
    if length_bytes == 0:
        header = struct.pack("!BB", b0, mask_bit | n)
    elif length_bytes == 2:
        header = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if mask is False:
        return header + payload
    key = mask if isinstance(mask, bytes) else os.urandom(4)
    return header + key + _mask(payload, key)


class _Deflater:
    """One direction's permessage-deflate codec (RFC 7692 §7.2)."""

    def __init__(self, wbits: int, no_context_takeover: bool) -> None:
        # zlib cannot compress with a 256-byte window; level 0 (stored blocks) makes no
        # back-references at all, so it honours a window of 8 bits.
        self._level = 0 if wbits == 8 else 6
        self._wbits = max(9, wbits)
        self._reset = no_context_takeover
        self._comp = self._new_comp()
        self._decomp = zlib.decompressobj(-15)

    def _new_comp(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, -self._wbits)

    def compress(self, data: bytes) -> bytes:
        if self._reset:
            self._comp = self._new_comp()
        out = self._comp.compress(data) + self._comp.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_SYNC_TAIL) else out

    def decompress(self, data: bytes) -> bytes:
        if self._reset:
            self._decomp = zlib.decompressobj(-15)
        return self._decomp.decompress(data + _SYNC_TAIL)


# --------------------------------------------------------------------------- connection


class ServerConnection:
    """The server side of one upgraded connection, driven by a handler thread.

    Receive methods must be called from one thread at a time; send methods may be
    called from any thread (they hold a lock so frames never interleave).
    """

    def __init__(
        self,
        server: WSServer,
        sock: socket.socket,
        request: Request,
        response: Response,
        buffered: bytes,
    ) -> None:
        self.server = server
        self.sock = sock
        self.request = request
        self.response = response
        self.subprotocol = response.get("Sec-WebSocket-Protocol")
        self.deflate = DeflateParams.from_response(response.get("Sec-WebSocket-Extensions"))
        self.auto_pong = True
        self.unmasked_frames = 0  # client frames MUST be masked (RFC 6455 §5.1)
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.close_received: tuple[int | None, bytes] | None = None
        self.close_sent = False
        self.peer_closed = False
        self._buf = bytearray(buffered)
        # Re-entrant: send_message holds it across compression and all its fragments,
        # so compressor state and frame order agree and messages never interleave.
        self._send_lock = threading.RLock()
        self._closed = threading.Event()
        params = self.deflate or DeflateParams()
        # Server compresses with the server_* params, decompresses with the client_* ones.
        self._out = _Deflater(params.server_max_window_bits, params.server_no_context_takeover)
        self._in = _Deflater(params.client_max_window_bits, params.client_no_context_takeover)

    # -- receiving

    def _fill(self, need: int, deadline: float) -> None:
        """Read until the buffer holds ``need`` bytes; keeps partial data on timeout."""
        while len(self._buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"client sent no complete frame in time (buffer needs {need})")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(max(262144, min(need - len(self._buf), 1 << 22)))
            except (ConnectionResetError, ssl.SSLEOFError) as exc:
                self.peer_closed = True
                raise PeerClosed("the client reset the connection") from exc
            except TimeoutError:
                continue
            if not chunk:
                self.peer_closed = True
                raise PeerClosed("the client closed the TCP connection")
            self._buf += chunk

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame, unmasked; records whether the client masked it.

        Raises TimeoutError (nothing lost: partial data stays buffered) or PeerClosed.
        """
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self._buf[0], self._buf[1]
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        pos = 2
        minimal = True
        if length == 126:
            self._fill(4, deadline)
            length = struct.unpack_from("!H", self._buf, 2)[0]
            pos, minimal = 4, length >= 126
        elif length == 127:
            self._fill(10, deadline)
            length = struct.unpack_from("!Q", self._buf, 2)[0]
            pos, minimal = 10, length >= 65536
        if length > self.server.max_frame_size:
            raise ProtocolViolation(f"client frame of {length} bytes exceeds max_frame_size")
        key = b""
        if masked:
            self._fill(pos + 4, deadline)
            key = bytes(self._buf[pos : pos + 4])
            pos += 4
        self._fill(pos + length, deadline)
        payload = bytes(self._buf[pos : pos + length])
        del self._buf[: pos + length]
        if masked:
            payload = _mask(payload, key)
        else:
            self.unmasked_frames += 1
        return Frame(
            opcode=b0 & 0x0F,
            payload=payload,
            fin=bool(b0 & 0x80),
            rsv1=bool(b0 & 0x40),
            rsv2=bool(b0 & 0x20),
            rsv3=bool(b0 & 0x10),
            masked=masked,
            mask_key=key,
            minimal_length=minimal,
        )

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next data message, reassembled and decompressed; or ``(CLOSE, payload)``.

        Pings are answered with a pong (unless ``auto_pong`` is False) and recorded in
        ``pings``; pongs are recorded in ``pongs``.  Raises ProtocolViolation for an
        unmasked frame, a bad continuation, an invalid control frame or RSV bits.
        """
        deadline = time.monotonic() + timeout
        opcode: int | None = None
        compressed = False
        parts: list[bytes] = []
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            self._check(frame, in_message=opcode is not None)
            if frame.opcode >= 0x8:
                if frame.opcode == Opcode.CLOSE:
                    self.close_received = parse_close_payload(frame.payload)
                    return Message(Opcode.CLOSE, frame.payload)
                if frame.opcode == Opcode.PING:
                    self.pings.append(frame.payload)
                    if self.auto_pong:
                        self.send_frame(Opcode.PONG, frame.payload)
                else:
                    self.pongs.append(frame.payload)
                continue
            if opcode is None:
                opcode, compressed = frame.opcode, frame.rsv1
            parts.append(frame.payload)
            if frame.fin:
                data = b"".join(parts)
                if compressed:
                    data = self._in.decompress(data)
                return Message(opcode, data)

    def _check(self, frame: Frame, *, in_message: bool) -> None:
        if not frame.masked:
            raise ProtocolViolation("client frame is not masked (RFC 6455 §5.1)")
        if frame.rsv2 or frame.rsv3:
            raise ProtocolViolation("client frame has RSV2/RSV3 set (RFC 6455 §5.2)")
        if frame.opcode >= 0x8:
            if frame.opcode not in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
                raise ProtocolViolation(f"reserved control opcode {frame.opcode:#x}")
            if not frame.fin or len(frame.payload) > 125 or frame.rsv1:
                raise ProtocolViolation("control frame fragmented, >125 bytes or RSV1 (§5.5)")
            return
        if frame.opcode not in (Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY):
            raise ProtocolViolation(f"reserved data opcode {frame.opcode:#x}")
        if in_message != (frame.opcode == Opcode.CONTINUATION):
            raise ProtocolViolation("bad fragmentation sequence (RFC 6455 §5.4)")
        if frame.rsv1 and (in_message or self.deflate is None):
            raise ProtocolViolation("RSV1 on a continuation or without deflate (RFC 7692 §6)")

    # -- sending

    def send_raw(self, data: bytes, *, chunk_size: int | None = None, pause: float = 0.0) -> None:
        """Write bytes as they are; optionally a few at a time to simulate a slow peer."""
        with self._send_lock:
            if chunk_size is None:
                self.sock.sendall(data)
                return
            for i in range(0, len(data), chunk_size):
                self.sock.sendall(data[i : i + chunk_size])
                if pause and self.server.stopping.wait(pause):
                    return

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
        mask: bool | bytes = False,
        length_bytes: int | None = None,
    ) -> None:
        """Send one frame exactly as asked -- invalid frames included (see encode_frame)."""
        header_and_payload = encode_frame(
            opcode,
            payload,
            fin=fin,
            rsv1=rsv1,
            rsv2=rsv2,
            rsv3=rsv3,
            mask=mask,
            length_bytes=length_bytes,
        )
        if opcode == Opcode.CLOSE:
            self.close_sent = True
        self.send_raw(header_and_payload)

    def send_message(
        self,
        data: str | bytes,
        *,
        opcode: int | None = None,
        compress: bool | None = None,
        fragment_size: int | None = None,
    ) -> None:
        """Send a text (str) or binary (bytes) message.

        ``compress`` None compresses when deflate was negotiated; True compresses even
        if it was not (an invalid frame on purpose).  ``fragment_size`` splits the
        (compressed) payload into frames of that many bytes.
        """
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if opcode is None:
            opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        if compress is None:
            compress = self.deflate is not None
        with self._send_lock:
            if compress:
                payload = self._out.compress(payload)
            if not fragment_size or len(payload) <= fragment_size:
                self.send_frame(opcode, payload, rsv1=compress)
                return
            step = fragment_size
            chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
            for i, chunk in enumerate(chunks):
                first, last = i == 0, i == len(chunks) - 1
                code = opcode if first else Opcode.CONTINUATION
                self.send_frame(code, chunk, fin=last, rsv1=compress and first)

    def send_ping(self, payload: bytes = b"") -> None:
        self.send_frame(Opcode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        self.send_frame(Opcode.PONG, payload)

    def send_close(self, code: int | None = 1000, reason: str | bytes = "") -> None:
        """Send a close frame; ``code=None`` sends an empty payload."""
        self.send_frame(Opcode.CLOSE, close_payload(code, reason))

    def send_close_raw(self, payload: bytes) -> None:
        """Send a close frame with an arbitrary payload (1-byte, bad code, bad UTF-8...)."""
        self.send_frame(Opcode.CLOSE, payload)

    # -- closing and waiting

    def close_tcp(self) -> None:
        """Close the TCP connection now (no closing handshake unless already done)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def abort(self) -> None:
        """Reset the TCP connection (RST instead of FIN)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._closed.set()
        self.sock.close()

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Read and discard until the client closes TCP; True if it did in time."""
        deadline = time.monotonic() + timeout
        self._buf.clear()
        try:
            while True:
                self._fill(1, deadline)
                self._buf.clear()
        except PeerClosed:
            return True
        except (TimeoutError, OSError):
            return False

    def idle(self, seconds: float | None = None) -> bool:
        """Go silent: read nothing, answer nothing, for ``seconds`` or until stop().

        Returns True if the server is stopping.
        """
        return self.server.stopping.wait(seconds)

    def close(self, code: int = 1000, reason: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Server-initiated closing handshake: send close, await the reply, close TCP."""
        self.send_close(code, reason)
        deadline = time.monotonic() + timeout
        try:
            while self.close_received is None:
                self.recv_message(max(0.0, deadline - time.monotonic()))
        finally:
            self.close_tcp()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


def echo_handler(conn: ServerConnection) -> None:
    """Echo every message with its opcode; answer a close with the same code, then close."""
    while True:
        try:
            opcode, data = conn.recv_message(timeout=3600)
        except PeerClosed:
            return
        except ProtocolViolation:
            with contextlib.suppress(OSError):
                conn.send_close(1002)  # RFC 6455 §7.4.1; the error still reaches errors
            raise
        if opcode == Opcode.CLOSE:
            code, _ = parse_close_payload(data)
            with contextlib.suppress(OSError):
                conn.send_close(code)  # echo the code only: reason may be invalid to echo
            conn.close_tcp()  # the server closes TCP first (RFC 6455 §7.1.1)
            return
        conn.send_message(data, opcode=opcode)


# --------------------------------------------------------------------------- server

Handler = Callable[[ServerConnection], None]
HandshakeHook = Callable[[Request], Response | None]


class WSServer:
    """A loopback WebSocket server: one accept thread, one thread per connection.

    ``requests`` lists every handshake request seen; ``connections`` every upgraded
    connection; ``errors`` the exceptions handlers raised (a client closing the
    connection is not an error but lands in ``disconnects``); ``handshake_errors``
    failures before the upgrade (TLS, incomplete request).
    """

    def __init__(
        self,
        handler: Handler = echo_handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake: HandshakeHook | None = None,
        compression: bool | dict[str, object] = True,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frame_size: int = 64 * 1024 * 1024,
        handshake_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"WSServer listens on loopback only, not {host!r}")
        self.handler = handler
        self.ssl_context = ssl_context
        self.handshake = handshake
        self.compression = compression
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.requests: list[Request] = []
        self.connections: list[ServerConnection] = []
        self.errors: list[BaseException] = []
        self.handshake_errors: list[BaseException] = []
        self.disconnects: list[BaseException] = []
        self.accepted = 0
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(1024)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """ws://127.0.0.1:PORT, or wss://localhost:PORT with TLS (certificates name it)."""
        if self.ssl_context is not None:
            return f"wss://localhost:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            extra = [self._accept_thread] if self._accept_thread else []
            return extra + list(self._threads)

    def start(self) -> WSServer:
        if self._accept_thread is None:
            self._accept_thread = threading.Thread(
                target=self._accept_loop, name=f"wsserver-accept-{self.port}", daemon=True
            )
            self._accept_thread.start()
        return self

    def __enter__(self) -> WSServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_for(self, predicate: Callable[[], object], timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait until ``predicate()`` holds; it is re-checked whenever a connection,
        request or error is recorded (under the server lock)."""
        with self._lock:
            return bool(self._lock.wait_for(predicate, timeout))

    def wait_for_connections(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait until ``n`` connections have been upgraded."""
        return self.wait_for(lambda: len(self.connections) >= n, timeout)

    def stop(self, timeout: float = 5.0) -> list[threading.Thread]:
        """Close every socket and join every thread; returns threads still alive."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # shutdown wakes threads blocked in recv on this socket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for sock in sockets:
            sock.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        return [t for t in self.threads if t.is_alive()]

    # -- internals

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self.stopping.is_set():
                        return
                    try:
                        sock, address = self._listener.accept()
                    except OSError:
                        continue
                    self._spawn(sock, address)

    def _spawn(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._serve, args=(sock, address), name=f"wsserver-conn-{address[1]}"
        )
        thread.daemon = True
        with self._lock:
            self.accepted += 1
            self._sockets.add(sock)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            self._lock.notify_all()
        thread.start()

    def _track(self, old: socket.socket, new: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(old)
            self._sockets.add(new)
        # stop() may have run between accept and wrap: never leave the new socket open
        if self.stopping.is_set():
            with contextlib.suppress(OSError):
                new.shutdown(socket.SHUT_RDWR)

    def _record(self, target: list[BaseException], exc: BaseException) -> None:
        # Errors caused by stop() closing sockets under a running thread are not errors,
        # and a client going away (FIN or RST) is its right, not a server-side failure.
        if self.stopping.is_set() and isinstance(exc, (OSError, EOFError)):
            return
        if isinstance(exc, (PeerClosed, ConnectionError)):
            target = self.disconnects
        with self._lock:
            target.append(exc)
            self._lock.notify_all()

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            if self.ssl_context is not None:
                tls = self.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                self._track(sock, tls)
                sock = tls
            self._serve_socket(sock, address)
        except BaseException as exc:
            self._record(self.errors, exc)
        finally:
            with self._lock:
                self._sockets.discard(sock)
            self._close(sock)

    def _serve_socket(self, sock: socket.socket, address: tuple[str, int]) -> None:
        deadline = time.monotonic() + self.handshake_timeout
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(self.handshake_timeout)
                sock.do_handshake()
            raw = self._read_request(sock, deadline)
        except (OSError, ValueError, EOFError) as exc:
            self._record(self.handshake_errors, exc)
            return
        head, _, rest = raw.partition(b"\r\n\r\n")
        request = _parse_request(head + b"\r\n\r\n", address, self.ssl_context is not None)
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
        response = self._respond(sock, request)
        if response is None or not response.upgrades:
            return
        conn = ServerConnection(self, sock, request, response, rest)
        with self._lock:
            self.connections.append(conn)
            self._lock.notify_all()
        try:
            self.handler(conn)
        except PeerClosed:
            pass
        finally:
            conn.close_tcp()

    def _read_request(self, sock: socket.socket, deadline: float) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError("handshake request is too large")
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("client closed before finishing the handshake request")
            data += chunk
        return data

    def _respond(self, sock: socket.socket, request: Request) -> Response | None:
        """Send the answer; returns the Response if the connection may continue."""
        response = self.handshake(request) if self.handshake is not None else None
        if response is None:
            response = _default_response(request, self.compression)
        if response.delay and self.stopping.wait(response.delay):
            return None
        if response.action is HandshakeAction.SILENT:
            sock.settimeout(None)
            with contextlib.suppress(OSError):
                while sock.recv(65536):  # until the client or stop() closes it
                    pass
            return None
        if response.action is HandshakeAction.CLOSE:
            return None
        if response.action is HandshakeAction.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # no shutdown() first: that would send a FIN before the RST
            return None
        data = response.serialize() + response.after
        if response.chunk_size is None:
            sock.sendall(data)
        else:
            for i in range(0, len(data), response.chunk_size):
                sock.sendall(data[i : i + response.chunk_size])
                if response.pause and self.stopping.wait(response.pause):
                    return None
        return response

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def iter_frames(conn: ServerConnection, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Frame]:
    """Yield frames until the client closes TCP (handy in assertion handlers)."""
    while True:
        try:
            yield conn.recv_frame(timeout)
        except PeerClosed:
            return
