"""Tests of the test server itself, driven by a tiny raw-socket client written here.

The client below shares no code with wsserver.py beyond the module under test's
public API, so that it checks the server's bytes on the wire independently.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from wsserver import (
    HandshakeAction,
    Opcode,
    Request,
    Response,
    ServerConnection,
    WSServer,
    accept,
    accept_key,
    echo_handler,
    negotiate_deflate,
    redirect,
    refuse,
)

WSServerFactory = Callable[..., WSServer]
TIMEOUT = 5.0


class RawClient:
    """A minimal WebSocket client over a plain (or TLS) socket, for these tests only."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""
        self.key = base64.b64encode(os.urandom(16)).decode()

    @classmethod
    def connect(cls, server: WSServer, ctx: ssl.SSLContext | None = None) -> RawClient:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        return cls(sock)

    def request(
        self, path: str = "/", headers: Iterable[tuple[str, str]] = (), *, version: str = "13"
    ) -> None:
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            f"Sec-WebSocket-Version: {version}",
            *(f"{n}: {v}" for n, v in headers),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body by Content-Length) of the HTTP answer."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"server closed mid-response: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.read_exact(int(headers.get("content-length", "0")))
        return status, headers, body

    def handshake(self, path: str = "/", headers: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        self.request(path, headers)
        status, hdrs, _ = self.response()
        assert status == 101
        return hdrs

    def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        rsv1: bool = False,
        mask: bool = True,
    ) -> None:
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        bit = 0x80 if mask else 0
        if n < 126:
            header = struct.pack("!BB", b0, bit | n)
        elif n < 65536:
            header = struct.pack("!BBH", b0, bit | 126, n)
        else:
            header = struct.pack("!BBQ", b0, bit | 127, n)
        if mask:
            key = os.urandom(4)
            # independent masking (RFC 6455 §5.3): bytes XOR key[i % 4], done per 4 lanes
            masked = bytearray(payload)
            for lane in range(4):
                masked[lane::4] = bytes(b ^ key[lane] for b in payload[lane::4])
            header += key
            payload = bytes(masked)
        self.sock.sendall(header + payload)

    def recv_frame(self) -> tuple[int, bytes, bool, bool, bool, int]:
        """(opcode, payload, fin, rsv1, masked, length-field bytes) of a server frame."""
        b0, b1 = self.read_exact(2)
        n = b1 & 0x7F
        size = 0
        if n == 126:
            (n,), size = struct.unpack("!H", self.read_exact(2)), 2
        elif n == 127:
            (n,), size = struct.unpack("!Q", self.read_exact(8)), 8
        masked = bool(b1 & 0x80)
        key = self.read_exact(4) if masked else b""
        payload = self.read_exact(n)
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload, bool(b0 & 0x80), bool(b0 & 0x40), masked, size

    def recv_eof(self) -> bool:
        """True when the server closes TCP next (after any buffered bytes)."""
        return self.buf == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ opening handshake


def test_accept_key_matches_rfc6455_section_1_3_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_101_with_correct_accept_rfc6455_4_2_2(ws_server: WSServerFactory) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    headers = client.handshake("/feed?x=1", [("X-Extra", "yes")])
    expected = base64.b64encode(
        hashlib.sha1((client.key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    assert headers["sec-websocket-accept"] == expected
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert "sec-websocket-extensions" not in headers  # no offer, no extension
    client.close()
    req = server.requests[0]
    assert (req.method, req.path, req.version) == ("GET", "/feed?x=1", "HTTP/1.1")
    assert req.get("x-extra") == "yes" and req.key == client.key


def test_bad_requests_get_400_or_426_rfc6455_4_2_2(ws_server: WSServerFactory) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.request(version="8")
    status, headers, _ = client.response()
    assert status == 426 and headers["sec-websocket-version"] == "13"
    client.close()
    client = RawClient.connect(server)
    client.key = "too-short"
    client.request()
    status, _, body = client.response()
    assert status == 400 and b"Sec-WebSocket-Key" in body
    client.close()
    assert len(server.requests) == 2 and not server.connections


def test_subprotocol_chosen_by_hook_rfc6455_1_9(ws_server: WSServerFactory) -> None:
    def hook(req: Request) -> Response:
        return accept(req, subprotocol=req.subprotocols[-1])

    seen: list[str | None] = []
    server = ws_server(lambda conn: seen.append(conn.subprotocol), handshake=hook)
    client = RawClient.connect(server)
    headers = client.handshake(headers=[("Sec-WebSocket-Protocol", "v1, v2")])
    assert headers["sec-websocket-protocol"] == "v2"
    assert client.recv_eof()
    assert seen == ["v2"]


def test_refuse_with_status_and_body(ws_server: WSServerFactory) -> None:
    server = ws_server(handshake=lambda req: refuse(403, b"go away", [("X-Why", "test")]))
    client = RawClient.connect(server)
    client.request()
    assert client.response() == (
        403,
        {"content-length": "7", "connection": "close", "x-why": "test"},
        b"go away",
    )
    assert client.recv_eof()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_sends_location(ws_server: WSServerFactory, status: int) -> None:
    server = ws_server(handshake=lambda req: redirect("ws://127.0.0.1:1/next", status))
    client = RawClient.connect(server)
    client.request()
    got, headers, _ = client.response()
    assert (got, headers["location"]) == (status, "ws://127.0.0.1:1/next")


def test_broken_accept_header_can_be_scripted(ws_server: WSServerFactory) -> None:
    def hook(req: Request) -> Response:
        return accept(req).set_header("Sec-WebSocket-Accept", "wrong").set_header("Upgrade", None)

    server = ws_server(lambda conn: None, handshake=hook)
    client = RawClient.connect(server)
    headers = client.handshake()
    assert headers["sec-websocket-accept"] == "wrong" and "upgrade" not in headers


def test_silent_close_and_reset_actions(ws_server: WSServerFactory) -> None:
    actions = iter([HandshakeAction.SILENT, HandshakeAction.CLOSE, HandshakeAction.RESET])
    server = ws_server(handshake=lambda req: Response(action=next(actions)))
    silent = RawClient.connect(server)
    silent.request()
    silent.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        silent.sock.recv(1)  # never answered
    closed = RawClient.connect(server)
    closed.request()
    assert closed.recv_eof()
    reset = RawClient.connect(server)
    reset.request()
    with pytest.raises(ConnectionResetError):
        reset.sock.recv(1)
    assert len(server.requests) == 3  # stop() must also free the silent one


def test_response_after_bytes_arrive_with_the_101(ws_server: WSServerFactory) -> None:
    def hook(req: Request) -> Response:
        response = accept(req)
        response.after = b"\x81\x02hi"  # a text frame in the same write as the 101
        return response

    server = ws_server(handshake=hook)
    client = RawClient.connect(server)
    client.handshake()
    assert client.recv_frame()[:2] == (Opcode.TEXT, b"hi")


# ------------------------------------------------------------------ data transfer


def test_echo_text_and_binary_server_frames_unmasked_rfc6455_5_1(
    ws_server: WSServerFactory,
) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.handshake()
    client.send_frame(Opcode.TEXT, "héllo".encode())
    assert client.recv_frame() == (Opcode.TEXT, "héllo".encode(), True, False, False, 0)
    client.send_frame(Opcode.BINARY, bytes(range(256)) * 300)  # 16-bit then 64-bit length
    assert client.recv_frame() == (Opcode.BINARY, bytes(range(256)) * 300, True, False, False, 8)
    client.send_frame(Opcode.BINARY, b"")
    assert client.recv_frame()[:2] == (Opcode.BINARY, b"")


def test_fragments_reassembled_with_ping_in_between_rfc6455_5_4(
    ws_server: WSServerFactory,
) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.handshake()
    client.send_frame(Opcode.TEXT, b"ab", fin=False)
    client.send_frame(Opcode.PING, b"p1")  # control frames may be interleaved (§5.4)
    client.send_frame(Opcode.CONTINUATION, b"cd", fin=False)
    client.send_frame(Opcode.CONTINUATION, b"ef")
    assert client.recv_frame()[:3] == (Opcode.PONG, b"p1", True)  # §5.5.3 same payload
    assert client.recv_frame()[:3] == (Opcode.TEXT, b"abcdef", True)
    assert server.connections[0].pings == [b"p1"]


def test_echo_close_replies_with_code_then_server_closes_tcp_rfc6455_7_1_1(
    ws_server: WSServerFactory,
) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.handshake()
    client.send_frame(Opcode.CLOSE, struct.pack("!H", 1001) + b"bye")
    assert client.recv_frame()[:2] == (Opcode.CLOSE, struct.pack("!H", 1001))
    assert client.recv_eof()
    assert server.connections[0].close_received == (1001, b"bye")


def test_scripted_frames_can_be_invalid(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        conn.send_frame(Opcode.TEXT, b"x", length_bytes=8)  # non-minimal length
        conn.send_frame(0x3, b"", rsv2=True, rsv3=True)  # reserved opcode and bits
        conn.send_frame(Opcode.BINARY, b"m", mask=b"\x01\x02\x03\x04")  # masked server frame
        conn.send_frame(Opcode.PING, b"p" * 200)  # oversized control frame
        conn.send_close_raw(b"\x03")  # one-byte close payload
        conn.send_message("abcde", fragment_size=2)
        conn.wait_closed()

    server = ws_server(handler)
    client = RawClient.connect(server)
    client.handshake()
    assert client.recv_frame() == (Opcode.TEXT, b"x", True, False, False, 8)
    b0, b1 = client.read_exact(2)
    assert (b0, b1) == (0x80 | 0x20 | 0x10 | 0x3, 0)
    assert client.recv_frame() == (Opcode.BINARY, b"m", True, False, True, 0)
    assert client.recv_frame()[:2] == (Opcode.PING, b"p" * 200)
    assert client.recv_frame()[:2] == (Opcode.CLOSE, b"\x03")
    frames = [client.recv_frame()[:3] for _ in range(3)]
    assert frames == [
        (Opcode.TEXT, b"ab", False),
        (Opcode.CONTINUATION, b"cd", False),
        (Opcode.CONTINUATION, b"e", True),
    ]
    client.close()


def test_unmasked_client_frame_recorded_and_refused_rfc6455_5_1(
    ws_server: WSServerFactory,
) -> None:
    server = ws_server(check_errors=False)
    client = RawClient.connect(server)
    client.handshake()
    client.send_frame(Opcode.TEXT, b"plain", mask=False)
    assert client.recv_frame()[:2] == (Opcode.CLOSE, struct.pack("!H", 1002))
    assert server.wait_for(lambda: bool(server.errors))
    assert server.connections[0].unmasked_frames == 1
    assert "not masked" in str(server.errors[0])


def test_recv_frame_exposes_masking_and_rsv(ws_server: WSServerFactory) -> None:
    frames: list[Any] = []
    server = ws_server(lambda conn: frames.extend(conn.recv_frame() for _ in range(2)))
    client = RawClient.connect(server)
    client.handshake()
    client.send_frame(Opcode.BINARY, b"a", rsv1=True)
    client.send_frame(Opcode.TEXT, b"b", mask=False, fin=False)
    assert client.recv_eof()
    assert [(f.opcode, f.payload, f.rsv1, f.masked, f.fin) for f in frames] == [
        (Opcode.BINARY, b"a", True, True, True),
        (Opcode.TEXT, b"b", False, False, False),
    ]


def test_handler_errors_are_reported(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        raise AssertionError("scripted failure")

    server = ws_server(handler, check_errors=False)
    client = RawClient.connect(server)
    client.handshake()
    assert client.recv_eof()
    assert server.wait_for(lambda: bool(server.errors))
    assert isinstance(server.errors[0], AssertionError)


def test_echo_16_mb_message(ws_server: WSServerFactory) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.handshake()
    payload = os.urandom(16 * 1024 * 1024)
    key = os.urandom(4)
    masked = (
        int.from_bytes(payload, "big") ^ int.from_bytes(key * (len(payload) // 4), "big")
    ).to_bytes(len(payload), "big")
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, len(payload)) + key
    sender = threading.Thread(target=client.sock.sendall, args=(header + masked,))
    sender.start()  # the echo starts before we finish sending: read concurrently
    opcode, data, fin, *_ = client.recv_frame()
    sender.join()
    assert (opcode, fin, len(data)) == (Opcode.BINARY, True, len(payload))
    assert data == payload


def test_many_connections_echo(ws_server: WSServerFactory) -> None:
    server = ws_server()
    clients = [RawClient.connect(server) for _ in range(200)]
    for c in clients:
        c.request()
    for i, c in enumerate(clients):
        assert c.response()[0] == 101
        c.send_frame(Opcode.TEXT, str(i).encode())
    assert [c.recv_frame()[1] for c in clients] == [str(i).encode() for i in range(200)]
    assert server.wait_for_connections(200)
    for c in clients:
        c.close()


# ------------------------------------------------------------------ permessage-deflate


def _client_compress(data: bytes) -> bytes:
    comp = zlib.compressobj(wbits=-15)
    return (comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 §7.2.1


def test_negotiation_rules_rfc7692_7_1() -> None:
    def req(offer: str) -> Request:
        return Request("GET", "/", "HTTP/1.1", [("Sec-WebSocket-Extensions", offer)], b"")

    offer = "x-other, permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    assert negotiate_deflate(req(offer), True) == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    )
    assert negotiate_deflate(req("permessage-deflate"), False) is None
    assert negotiate_deflate(req("x-other"), True) is None
    assert (
        negotiate_deflate(
            req("permessage-deflate; client_max_window_bits"),
            {"client_max_window_bits": 9, "client_no_context_takeover": True},
        )
        == "permessage-deflate; client_max_window_bits=9; client_no_context_takeover"
    )
    # a dict can drop a required parameter to build an invalid answer on purpose
    bad = negotiate_deflate(req(offer), {"server_no_context_takeover": None})
    assert bad == "permessage-deflate; server_max_window_bits=10"


@pytest.mark.parametrize(
    "compression",
    [
        True,
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 9},
        {"server_max_window_bits": 8},
    ],
)
def test_deflate_round_trip_rfc7692_7_2(ws_server: WSServerFactory, compression: Any) -> None:
    server = ws_server(compression=compression)
    client = RawClient.connect(server)
    headers = client.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    wbits = 15
    if isinstance(compression, dict) and "server_max_window_bits" in compression:
        wbits = compression["server_max_window_bits"]
    # zlib refuses raw window 8 for inflate too on some versions; 9 decodes 8-bit streams
    inflater = zlib.decompressobj(-max(wbits, 9))
    message = b"compress me, compress me, compress me " * 50
    for _ in range(3):  # several messages exercise context takeover (or its absence)
        client.send_frame(Opcode.TEXT, _client_compress(message), rsv1=True)
        opcode, payload, fin, rsv1, _, _ = client.recv_frame()
        assert (opcode, fin, rsv1) == (Opcode.TEXT, True, True)
        assert len(payload) < len(message) or wbits == 8
        if isinstance(compression, dict) and compression.get("server_no_context_takeover"):
            inflater = zlib.decompressobj(-15)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message
    assert server.connections[0].deflate is not None


def test_compressed_fragments_only_rsv1_on_first_rfc7692_6_1(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        assert conn.recv_message() == (Opcode.BINARY, b"zz" * 1000)
        conn.send_message(b"yy" * 1000, fragment_size=4)
        conn.wait_closed()

    server = ws_server(handler)
    client = RawClient.connect(server)
    client.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    data = _client_compress(b"zz" * 1000)
    client.send_frame(Opcode.BINARY, data[:3], fin=False, rsv1=True)
    client.send_frame(Opcode.CONTINUATION, data[3:])
    frames: list[tuple[int, bytes, bool, bool, bool, int]] = []
    while not frames or not frames[-1][2]:
        frames.append(client.recv_frame())
    assert [f[3] for f in frames] == [True] + [False] * (len(frames) - 1)
    assert frames[0][0] == Opcode.BINARY and len(frames) > 1
    joined = b"".join(f[1] for f in frames) + b"\x00\x00\xff\xff"
    assert zlib.decompressobj(-15).decompress(joined) == b"yy" * 1000
    client.close()


# ------------------------------------------------------------------ TLS and lifecycle


def test_tls_echo_with_trustme_ca(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, tls_client_ctx: ssl.SSLContext
) -> None:
    server = ws_server(ssl_context=tls_server_ctx)
    assert server.url == f"wss://localhost:{server.port}"
    client = RawClient.connect(server, tls_client_ctx)
    client.handshake()
    client.send_frame(Opcode.TEXT, b"secure")
    assert client.recv_frame()[:2] == (Opcode.TEXT, b"secure")
    assert server.requests[0].tls


def test_tls_failure_is_a_handshake_error(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext
) -> None:
    server = ws_server(ssl_context=tls_server_ctx)
    untrusting = ssl.create_default_context()  # does not know the trustme CA
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient.connect(server, untrusting)
    assert server.wait_for(lambda: bool(server.handshake_errors))
    assert not server.requests


def test_ca_file_fixture_verifies_server(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    server = ws_server(ssl_context=tls_server_ctx)
    client = RawClient.connect(server, ssl.create_default_context(cafile=ca_file))
    client.handshake()
    client.close()


@pytest.mark.parametrize("tls", [False, True])
def test_stop_closes_everything_and_joins_threads(
    tls: bool, tls_server_ctx: ssl.SSLContext, tls_client_ctx: ssl.SSLContext
) -> None:
    def idle_handler(conn: ServerConnection) -> None:
        conn.recv_message(timeout=60)  # blocked until stop() shuts the socket down

    server_ctx, client_ctx = (tls_server_ctx, tls_client_ctx) if tls else (None, None)
    server = WSServer(idle_handler, ssl_context=server_ctx).start()
    silent_server = WSServer(
        handshake=lambda req: Response(action=HandshakeAction.SILENT), ssl_context=server_ctx
    )
    silent_server.start()
    clients = [RawClient.connect(server, client_ctx) for _ in range(3)]
    for c in clients:
        c.handshake()
    pending = RawClient.connect(silent_server, client_ctx)
    pending.request()
    assert server.wait_for_connections(3) and silent_server.wait_for(lambda: silent_server.requests)
    threads = server.threads + silent_server.threads
    assert len(threads) == 6
    assert server.stop() == [] and silent_server.stop() == []
    assert not any(t.is_alive() for t in threads)
    assert all(c.recv_eof() for c in [*clients, pending])
    assert server.errors == [] and silent_server.errors == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    for c in [*clients, pending]:
        c.close()


def test_context_manager_and_loopback_only() -> None:
    with WSServer(echo_handler) as server:
        client = RawClient.connect(server)
        client.handshake()
        client.close()
    assert server.stopping.is_set() and not any(t.is_alive() for t in server.threads)
    with pytest.raises(ValueError):
        WSServer(host="0.0.0.0")


def test_no_thread_leaks_fixture_sees_stopped_servers(
    no_thread_leaks: None, ws_server: WSServerFactory
) -> None:
    server = ws_server()
    client = RawClient.connect(server)
    client.handshake()
    client.close()
