"""End-to-end tests of the blocking client (``wspool.connect``) over real sockets.

Every test talks to the scriptable test server of ``tests/wsserver.py`` on 127.0.0.1,
which is written independently of wspool, so each side checks the other.  Handlers
report what the server saw through a :class:`queue.Queue`; the tests never sleep to
wait for something, they block on a queue or an event with a generous bound.
"""

from __future__ import annotations

import base64
import os
import queue
import socket
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from helpers import run_in_thread, wait_locked
from wsserver import (
    Frame,
    HandshakeAction,
    Opcode,
    PeerClosed,
    Request,
    Response,
    ServerConnection,
    WSServer,
    accept,
    encode_frame,
    parse_close_payload,
    redirect,
    refuse,
)

import wspool
from wspool import (
    ABNF,
    DeflateOptions,
    WebSocket,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketHandshakeException,
    WebSocketMessageTooBigException,
    WebSocketPayloadException,
    WebSocketProtocolException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
)

WSServerFactory = Callable[..., WSServer]
Handler = Callable[[ServerConnection], None]

#: Upper bound for waiting on the other side; tests normally finish far sooner.
WAIT = 5.0
MIB = 1024 * 1024


def recv_close_code(conn: ServerConnection) -> int | None:
    """Read frames until the client's close frame; its code (None: the client sent
    none, or dropped TCP without one)."""
    try:
        while True:
            frame = conn.recv_frame(WAIT)
            if frame.opcode == Opcode.CLOSE:
                return parse_close_payload(frame.payload)[0]
    except (PeerClosed, OSError):
        return None


def reporting(
    handler: Callable[[ServerConnection, queue.Queue[Any]], None],
) -> tuple[Handler, queue.Queue[Any]]:
    """Wrap a handler that reports through a queue; returns (handler, queue)."""
    out: queue.Queue[Any] = queue.Queue()

    def run(conn: ServerConnection) -> None:
        handler(conn, out)

    return run, out


def serve_then_record_close(
    send: Callable[[ServerConnection], None],
) -> tuple[Handler, queue.Queue[Any]]:
    """A handler that runs ``send`` and then reports the code of the client's close frame."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        send(conn)
        out.put(recv_close_code(conn))

    return reporting(handler)


# ------------------------------------------------------------------ send / receive


def test_text_and_binary_round_trip(ws_server: WSServerFactory) -> None:
    """str goes out as text and comes back as str; bytes-like as binary (RFC 6455 §5.6)."""
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.send("héllo") > 0
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xffbin")
        assert ws.recv() == b"\x00\xffbin"
        ws.send(bytearray(b"ba"))
        assert ws.recv() == b"ba"
        ws.send(memoryview(b"mv"))
        assert ws.recv() == b"mv"
        ws.send("")
        assert ws.recv() == ""
        ws.send(b"")
        assert ws.recv() == b""


def test_send_with_opcode_and_typed_helpers(ws_server: WSServerFactory) -> None:
    """send(data, opcode), send_text, send_binary and send_bytes pick the frame opcode."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        for _ in range(5):
            out.put(conn.recv_message(WAIT))

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.send("as binary", ABNF.OPCODE_BINARY)
        ws.send(b"as text", ABNF.OPCODE_TEXT)
        ws.send_text("text")
        ws.send_binary(b"binary")
        ws.send_bytes(b"bytes")
        got = [out.get(timeout=WAIT) for _ in range(5)]
    assert got == [
        (Opcode.BINARY, b"as binary"),
        (Opcode.TEXT, b"as text"),
        (Opcode.TEXT, b"text"),
        (Opcode.BINARY, b"binary"),
        (Opcode.BINARY, b"bytes"),
    ]


def test_send_refuses_other_types(ws_server: WSServerFactory) -> None:
    """Only str and bytes-like can be sent; a wrong type names the URL and leaves the
    connection usable."""
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT) as ws:
        with pytest.raises(WebSocketConfigurationException) as info:
            ws.send(123)  # type: ignore[arg-type]
        assert server.url in str(info.value)
        with pytest.raises(WebSocketConfigurationException):
            ws.send("x", opcode=ABNF.OPCODE_CLOSE)
        ws.send("fine")
        assert ws.recv() == "fine"


def test_send_returns_bytes_written(ws_server: WSServerFactory) -> None:
    """The return value is the frame's size: 2 header + 4 mask key + payload (§5.2)."""
    server = ws_server()
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        assert ws.send(b"12345") == 2 + 4 + 5
        assert ws.send(b"x" * 200) == 4 + 4 + 200
        assert ws.recv() == b"12345"


def test_client_frames_are_masked(ws_server: WSServerFactory) -> None:
    """Every client frame is masked with a fresh key (RFC 6455 §5.3)."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        out.put([conn.recv_frame(WAIT) for _ in range(3)])

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.send("a")
        ws.ping(b"p")
        ws.send(b"b")
        frames: list[Frame] = out.get(timeout=WAIT)
    assert all(f.masked for f in frames)
    assert len({f.mask_key for f in frames}) == 3


def test_send_fragment_streams_one_message(ws_server: WSServerFactory) -> None:
    """send_fragment: first frame carries the opcode, then continuations, fin ends it
    (RFC 6455 §5.4)."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        out.put([conn.recv_frame(WAIT) for _ in range(3)])
        out.put(conn.recv_message(WAIT))

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        ws.send_fragment("hé")
        ws.send_fragment("ll", opcode=Opcode.BINARY)  # later opcodes are ignored
        ws.send_fragment("o", fin=True)
        ws.send_fragment(b"\x01", Opcode.BINARY)
        ws.send_fragment(b"\x02", fin=True)
        frames: list[Frame] = out.get(timeout=WAIT)
        second = out.get(timeout=WAIT)
    assert [(f.opcode, f.payload, f.fin) for f in frames] == [
        (Opcode.TEXT, "hé".encode(), False),
        (Opcode.CONTINUATION, b"ll", False),
        (Opcode.CONTINUATION, b"o", True),
    ]
    assert second == (Opcode.BINARY, b"\x01\x02")


def test_send_fragment_blocks_other_messages_until_fin(ws_server: WSServerFactory) -> None:
    """A whole message cannot be interleaved with a fragmented one (RFC 6455 §5.4)."""
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.send_fragment("part")
        with pytest.raises(WebSocketConfigurationException) as info:
            ws.send("other")
        assert server.url in str(info.value)
        ws.send_fragment("end", fin=True)
        assert ws.recv() == "partend"


def test_ping_and_pong_reach_the_server(ws_server: WSServerFactory) -> None:
    """ping() is answered by the server with the same payload (RFC 6455 §5.5.2-3);
    pong() arrives as an unsolicited pong; send(x, OPCODE_PING/PONG) does the same."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        conn.recv_message(WAIT)  # records pings (answering them) and pongs
        out.put((list(conn.pings), list(conn.pongs)))

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.ping(b"one")
        ws.ping("two")
        ws.send(b"three", ABNF.OPCODE_PING)
        ws.pong(b"unsolicited")
        ws.send("p2", ABNF.OPCODE_PONG)
        ws.send("done")
        pings, pongs = out.get(timeout=WAIT)
        answers = [ws.recv_data(control_frame=True) for _ in range(3)]
    assert pings == [b"one", b"two", b"three"]
    assert pongs == [b"unsolicited", b"p2"]
    assert answers == [(Opcode.PONG, b"one"), (Opcode.PONG, b"two"), (Opcode.PONG, b"three")]


def test_oversized_ping_is_refused_locally(ws_server: WSServerFactory) -> None:
    """Control frames carry at most 125 bytes (RFC 6455 §5.5): nothing is sent."""
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT) as ws:
        with pytest.raises(WebSocketConfigurationException):
            ws.ping(b"x" * 126)
        ws.ping(b"x" * 125)
        assert ws.recv_data(control_frame=True) == (Opcode.PONG, b"x" * 125)


def test_server_ping_is_answered_automatically(ws_server: WSServerFactory) -> None:
    """A ping gets a pong with the same payload without the caller doing anything
    (RFC 6455 §5.5.3); recv() skips it and returns the next message."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        conn.send_ping(b"are you there")
        conn.send_message("after the ping")
        out.put(conn.recv_frame(WAIT))

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.recv() == "after the ping"
        pong: Frame = out.get(timeout=WAIT)
    assert (pong.opcode, pong.payload) == (Opcode.PONG, b"are you there")


def test_recv_data_with_and_without_control_frames(ws_server: WSServerFactory) -> None:
    """recv_data() hides pings/pongs; recv_data(control_frame=True) returns them;
    the close frame always comes out as (8, payload)."""

    def handler(conn: ServerConnection) -> None:
        conn.send_ping(b"p1")
        conn.send_pong(b"p2")
        conn.send_message("text")
        conn.send_ping(b"p3")
        conn.send_message(b"bin")
        conn.close(1001, "gone")  # waits for the client's reply, then ends TCP

    server = ws_server(handler)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert ws.recv_data(control_frame=True) == (Opcode.PING, b"p1")
    assert ws.recv_data(control_frame=True) == (Opcode.PONG, b"p2")
    assert ws.recv_data() == (Opcode.TEXT, b"text")
    assert ws.recv_data() == (Opcode.BINARY, b"bin")
    assert ws.recv_data() == (Opcode.CLOSE, b"\x03\xe9gone")
    with pytest.raises(WebSocketConnectionClosedException):
        ws.recv_data()
    assert ws.sock is None
    ws.close()


def test_recv_data_frame_returns_frames(ws_server: WSServerFactory) -> None:
    """recv_data_frame gives (opcode, ABNF) with the whole message and fin=True."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("héllo wörld", fragment_size=3)
        conn.send_ping(b"x")
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        opcode, frame = ws.recv_data_frame()
        assert opcode == ABNF.OPCODE_TEXT
        assert (frame.opcode, frame.data, frame.fin) == (Opcode.TEXT, "héllo wörld".encode(), 1)
        assert (frame.rsv1, frame.rsv2, frame.rsv3, frame.mask_value) == (0, 0, 0, 0)
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert (opcode, frame.data) == (Opcode.PING, b"x")


def test_recv_frame_returns_fragments_and_control_frames_as_they_come(
    ws_server: WSServerFactory,
) -> None:
    """recv_frame yields each frame: a ping between two fragments comes out between
    them (control frames may be interleaved, RFC 6455 §5.4)."""

    def handler(conn: ServerConnection) -> None:
        conn.send_frame(Opcode.TEXT, b"ab", fin=False)
        conn.send_ping(b"mid")
        conn.send_frame(Opcode.CONTINUATION, b"cd", fin=False)
        conn.send_frame(Opcode.CONTINUATION, b"ef", fin=True)
        conn.send_message(b"whole")
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        frames = [ws.recv_frame() for _ in range(5)]
    assert [(f.opcode, f.data, f.fin) for f in frames] == [
        (Opcode.TEXT, b"ab", False),
        (Opcode.PING, b"mid", True),
        (ABNF.OPCODE_CONT, b"cd", False),
        (ABNF.OPCODE_CONT, b"ef", True),
        (Opcode.BINARY, b"whole", True),
    ]


def test_recv_frame_decompresses_each_fragment(ws_server: WSServerFactory) -> None:
    """With permessage-deflate, recv_frame returns each fragment's share of the
    inflated message (RFC 7692 §6.2: the compressed payload spans the fragments)."""
    message = b"fragmented and compressed " * 400

    def handler(conn: ServerConnection) -> None:
        conn.send_message(message, fragment_size=40)
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.extensions == ["permessage-deflate"]
        frames = [ws.recv_frame()]
        while not frames[-1].fin:
            frames.append(ws.recv_frame())
    assert len(frames) > 1
    assert frames[0].opcode == Opcode.BINARY
    assert {f.opcode for f in frames[1:]} == {ABNF.OPCODE_CONT}
    assert b"".join(f.data for f in frames) == message


def test_recv_after_recv_frame_assembles_messages_again(ws_server: WSServerFactory) -> None:
    """recv() after recv_frame() returns whole messages, not single fragments."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message(b"one")
        conn.send_message("two parts", fragment_size=4)
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        assert ws.recv_frame().data == b"one"
        assert ws.recv() == "two parts"


def test_fire_cont_frame_returns_each_fragment(ws_server: WSServerFactory) -> None:
    """fire_cont_frame=True: recv_data/recv_data_frame return every data frame."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message(b"abcdef", fragment_size=2)
        conn.send_message(b"single")
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, compression=None, fire_cont_frame=True, timeout=WAIT) as ws:
        got = [ws.recv_data_frame() for _ in range(4)]
    assert [(op, f.data, f.fin) for op, f in got] == [
        (Opcode.BINARY, b"ab", False),
        (ABNF.OPCODE_CONT, b"cd", False),
        (ABNF.OPCODE_CONT, b"ef", True),
        (Opcode.BINARY, b"single", True),
    ]


def test_iteration_stops_at_close(ws_server: WSServerFactory) -> None:
    """`for msg in ws` yields messages until the server's close frame (§7.1.4)."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("a")
        conn.send_message(b"b")
        conn.send_message("")
        conn.close(1000, "done")

    server = ws_server(handler)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert list(ws) == ["a", b"b", ""]
        assert ws.close_status == 1000
        assert ws.close_reason == "done"


def test_context_manager_closes_with_handshake(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """Leaving the block sends close 1000 and releases the socket (RFC 6455 §7.1.2)."""
    handler, out = serve_then_record_close(lambda conn: None)
    server = ws_server(handler)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.connected
    assert out.get(timeout=WAIT) == 1000
    assert ws.sock is None
    assert not ws.connected


def test_close_sends_status_and_reason(ws_server: WSServerFactory) -> None:
    """close(status, reason): the server receives both (RFC 6455 §5.5.1)."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        message = conn.recv_message(WAIT)
        out.put(parse_close_payload(message.data))
        conn.send_close(4001)
        conn.close_tcp()

    seen, out = reporting(handler)
    server = ws_server(seen)
    ws = wspool.connect(server.url, timeout=WAIT)
    ws.close(4001, "bye bye")
    assert out.get(timeout=WAIT) == (4001, b"bye bye")
    assert ws.close_status == 4001
    assert ws.sock is None
    ws.close()  # a second close does nothing
    with pytest.raises(WebSocketConnectionClosedException) as info:
        ws.send("late")
    assert server.url in str(info.value)


def test_close_with_bytes_reason_and_invalid_code(ws_server: WSServerFactory) -> None:
    """A bytes reason is sent as is; a code that may not be sent (1005, RFC 6455 §7.4.1)
    is refused before anything goes out."""
    handler, out = serve_then_record_close(lambda conn: None)
    server = ws_server(handler)
    ws = wspool.connect(server.url, timeout=WAIT)
    with pytest.raises(WebSocketConfigurationException):
        ws.close(1005)
    ws.close(1001, b"ok")
    assert out.get(timeout=WAIT) == 1001


def test_close_returns_when_server_never_answers(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """A server that ignores the close frame cannot make close() hang: it gives up
    after its timeout and closes the socket."""
    # the server reads (and ignores) the close frame until the client ends TCP
    server = ws_server(lambda conn: conn.wait_closed(WAIT))
    ws = wspool.connect(server.url, timeout=WAIT, close_timeout=0.2)
    closing = run_in_thread(ws.close)
    assert closing.outcome(WAIT, "close() did not return") is None
    assert ws.sock is None
    ws2 = wspool.connect(server.url, timeout=WAIT)
    run_in_thread(lambda: ws2.close(timeout=0.1)).outcome(WAIT)
    assert ws2.sock is None


def test_abort_from_another_thread_unblocks_recv(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """abort() drops the connection at once; a recv blocked in another thread raises
    WebSocketConnectionClosedException."""
    server = ws_server(lambda conn: conn.wait_closed(WAIT))
    ws = wspool.connect(server.url)  # no timeout: recv would block forever
    started = threading.Event()

    def blocked_recv() -> object:
        started.set()
        return ws.recv()

    reader = run_in_thread(blocked_recv)
    started.wait(WAIT)
    # recv must be inside the socket read before abort; the read lock proves it
    assert wait_locked(ws._read_lock, WAIT)
    ws.abort()
    result = reader.outcome(WAIT, "abort() did not wake the blocked recv")
    assert isinstance(result, WebSocketConnectionClosedException)
    assert ws.sock is None
    with pytest.raises(WebSocketConnectionClosedException):
        ws.send("x")
    ws.abort()  # again: nothing happens
    assert WebSocket.shutdown is WebSocket.abort  # websocket-client's name


def test_close_from_another_thread_unblocks_recv(ws_server: WSServerFactory) -> None:
    """close() while another thread blocks in recv: the reader sees the server's
    close reply, and both threads finish (RFC 6455 §7.1.2)."""
    server = ws_server()
    ws = wspool.connect(server.url)
    reader = run_in_thread(ws.recv)
    assert wait_locked(ws._read_lock, WAIT)
    ws.close(timeout=1.0)
    result = reader.outcome(WAIT, "close() left recv blocked")
    assert result == "" or isinstance(result, WebSocketConnectionClosedException)
    assert ws.sock is None


def test_close_from_another_thread_with_silent_server(ws_server: WSServerFactory) -> None:
    """close() against a silent server while a recv is blocked: after the timeout
    the socket is closed and the reader wakes up too."""
    server = ws_server(lambda conn: conn.idle())
    ws = wspool.connect(server.url)
    reader = run_in_thread(ws.recv)
    assert wait_locked(ws._read_lock, WAIT)
    ws.close(timeout=0.1)
    result = reader.outcome(WAIT, "close() left recv blocked on a silent server")
    assert isinstance(result, WebSocketConnectionClosedException)


def test_settimeout_raises_and_connection_stays_usable(ws_server: WSServerFactory) -> None:
    """A read timeout raises WebSocketTimeoutException (a TimeoutError) and loses
    nothing: the connection keeps working."""
    server = ws_server()
    with wspool.connect(server.url) as ws:
        assert ws.gettimeout() is None
        ws.settimeout(0.05)
        assert ws.gettimeout() == 0.05
        assert ws.timeout == 0.05
        with pytest.raises(WebSocketTimeoutException) as info:
            ws.recv()
        assert isinstance(info.value, TimeoutError)
        assert server.url in str(info.value)
        ws.timeout = WAIT
        ws.send("still alive")
        assert ws.recv() == "still alive"


def test_timeout_option_applies_to_reads(ws_server: WSServerFactory) -> None:
    """connect(timeout=...) sets the timeout of every later read."""
    server = ws_server()
    with wspool.connect(server.url, timeout=0.05) as ws:
        assert ws.gettimeout() == 0.05
        with pytest.raises(WebSocketTimeoutException):
            ws.recv_data()
        ws.settimeout(WAIT)
        ws.send(b"ok")
        assert ws.recv() == b"ok"


def test_write_timeout_drops_the_connection(ws_server: WSServerFactory, no_fd_leaks: None) -> None:
    """A send that times out may have written part of a frame (and moved the
    compression context on): the connection is dropped rather than left corrupt."""
    stop = threading.Event()
    server = ws_server(lambda conn: stop.wait(WAIT))  # never reads
    ws = wspool.connect(server.url, compression=None, timeout=0.2)
    with pytest.raises(WebSocketTimeoutException) as info:
        for _ in range(64):  # far more than the socket buffers hold
            ws.send_binary(b"\x00" * MIB)
    assert server.url in str(info.value)
    assert ws.sock is None
    with pytest.raises(WebSocketConnectionClosedException):
        ws.send("after")
    stop.set()


def test_timeout_in_the_middle_of_a_message_loses_nothing(ws_server: WSServerFactory) -> None:
    """A timeout while half a frame has arrived keeps the half: the next recv
    completes the message."""
    go = threading.Event()

    def handler(conn: ServerConnection) -> None:
        data = encode_frame(Opcode.TEXT, b"split message")
        conn.send_raw(data[:5])
        go.wait(WAIT)
        conn.send_raw(data[5:])
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, timeout=0.1) as ws:
        with pytest.raises(WebSocketTimeoutException):
            ws.recv()
        go.set()
        ws.settimeout(WAIT)
        assert ws.recv() == "split message"


def test_open_timeout_when_server_never_answers_the_upgrade(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """TCP is accepted but no handshake answer comes: open_timeout bounds the wait."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    with pytest.raises(WebSocketTimeoutException) as info:
        wspool.connect(server.url, open_timeout=0.2)
    assert server.url in str(info.value)


def test_open_timeout_covers_a_slow_trickling_answer(ws_server: WSServerFactory) -> None:
    """open_timeout bounds the whole handshake, not each read: an answer trickling
    in one byte at a time cannot keep connect() waiting forever."""
    server = ws_server(
        handshake=lambda request: Response(
            **{**accept(request).__dict__, "chunk_size": 1, "pause": 0.05}
        )
    )
    with pytest.raises(WebSocketTimeoutException):
        wspool.connect(server.url, open_timeout=0.3)


# ------------------------------------------------------------ server behaviours


def test_fragmented_messages_from_the_server(ws_server: WSServerFactory) -> None:
    """Fragments are joined; a UTF-8 character may be split between fragments (§5.4)."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("ünïcödé €uro 😀", fragment_size=1)
        conn.send_message(bytes(range(256)) * 10, fragment_size=100)
        conn.recv_message(WAIT)

    server = ws_server(handler)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        assert ws.recv() == "ünïcödé €uro 😀"
        assert ws.recv() == bytes(range(256)) * 10


def test_messages_right_after_101_are_not_lost(ws_server: WSServerFactory) -> None:
    """Frames sent in the same TCP segment as the 101 answer are delivered, and a ping
    among them is answered (RFC 6455 §4.1: data may follow the handshake at once)."""

    def handshake(request: Request) -> Response:
        response = accept(request, compression=False)
        response.after = (
            encode_frame(Opcode.TEXT, b"first")
            + encode_frame(Opcode.PING, b"early")
            + encode_frame(Opcode.BINARY, b"second")
        )
        return response

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        out.put(conn.recv_frame(WAIT))

    seen, out = reporting(handler)
    server = ws_server(seen, handshake=handshake)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.recv() == "first"
        assert ws.recv() == b"second"
        pong: Frame = out.get(timeout=WAIT)
        assert (pong.opcode, pong.payload) == (Opcode.PONG, b"early")


def test_close_right_after_101(ws_server: WSServerFactory) -> None:
    """A close frame in the same segment as the 101: recv returns "" at once."""

    def handshake(request: Request) -> Response:
        response = accept(request)
        response.after = encode_frame(Opcode.CLOSE, b"\x03\xe8")
        return response

    handler, out = serve_then_record_close(lambda conn: None)
    server = ws_server(handler, handshake=handshake)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert ws.recv() == ""
    assert ws.close_status == 1000
    assert out.get(timeout=WAIT) == 1000  # the close reply echoes the code
    ws.close()


P = WebSocketProtocolException
U = WebSocketPayloadException
T, B, C, CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION, Opcode.CLOSE

# (name, bytes the server sends, exception class, close code the client must send)
BAD_FRAMES: list[tuple[str, bytes, type[WebSocketProtocolException], int]] = [
    ("masked frame §5.1", encode_frame(T, b"hi", mask=True), P, 1002),
    ("reserved data opcode 0x3 §5.2", encode_frame(0x3, b"x"), P, 1002),
    ("reserved control opcode 0xB §5.2", encode_frame(0xB, b"x"), P, 1002),
    ("RSV1 without deflate §5.2", encode_frame(T, b"x", rsv1=True), P, 1002),
    ("RSV2 §5.2", encode_frame(T, b"x", rsv2=True), P, 1002),
    ("RSV3 §5.2", encode_frame(B, b"x", rsv3=True), P, 1002),
    ("close code 999 §7.4", encode_frame(CLOSE, b"\x03\xe7"), P, 1002),
    ("close code 1005 §7.4.1", encode_frame(CLOSE, b"\x03\xed"), P, 1002),
    ("close code 1006 §7.4.1", encode_frame(CLOSE, b"\x03\xee"), P, 1002),
    ("close code 5000 §7.4.2", encode_frame(CLOSE, b"\x13\x88"), P, 1002),
    ("1-byte close payload §5.5.1", encode_frame(CLOSE, b"\x03"), P, 1002),
    ("bad UTF-8 text §8.1", encode_frame(T, b"\xff\xfe"), U, 1007),
    (
        "bad UTF-8 across fragments §8.1",
        encode_frame(T, b"ok", fin=False) + encode_frame(C, b"\xc3\x28"),
        U,
        1007,
    ),
    ("bad UTF-8 close reason §5.5.1", encode_frame(CLOSE, b"\x03\xe8\xff"), U, 1007),
    ("ping of 126 bytes §5.5", encode_frame(Opcode.PING, b"x" * 126), P, 1002),
    ("fragmented ping §5.5", encode_frame(Opcode.PING, b"x", fin=False), P, 1002),
    ("16-bit length for 5 bytes §5.2", encode_frame(T, b"hello", length_bytes=2), P, 1002),
    ("64-bit length for 200 bytes §5.2", encode_frame(B, b"x" * 200, length_bytes=8), P, 1002),
    ("continuation without start §5.4", encode_frame(C, b"x"), P, 1002),
    (
        "new message inside a fragmented one §5.4",
        encode_frame(T, b"a", fin=False) + encode_frame(T, b"b"),
        P,
        1002,
    ),
]


@pytest.mark.parametrize(
    ("data", "exc_class", "code"),
    [pytest.param(data, exc, code, id=name) for name, data, exc, code in BAD_FRAMES],
)
def test_bad_frame_fails_the_connection(
    ws_server: WSServerFactory,
    data: bytes,
    exc_class: type[WebSocketProtocolException],
    code: int,
    no_fd_leaks: None,
) -> None:
    """The core rejects the frame: recv raises the specific exception, the server gets
    a close frame with the matching code (RFC 6455 §7.1.7, §7.4.1) and the socket is
    released."""
    handler, out = serve_then_record_close(lambda conn: conn.send_raw(data))
    server = ws_server(handler)
    ws = wspool.connect(server.url, compression=None, timeout=WAIT)
    with pytest.raises(exc_class) as info:
        ws.recv()
    assert type(info.value) is exc_class
    assert info.value.close_code == code
    assert server.url in str(info.value)
    assert out.get(timeout=WAIT) == code
    assert ws.sock is None
    with pytest.raises(WebSocketConnectionClosedException):
        ws.recv()
    ws.close()


def test_messages_before_a_bad_frame_are_delivered(ws_server: WSServerFactory) -> None:
    """Messages that arrived before the violation (same segment) still come out."""
    data = encode_frame(Opcode.TEXT, b"good") + encode_frame(0x3, b"bad")
    handler, out = serve_then_record_close(lambda conn: conn.send_raw(data))
    server = ws_server(handler)
    ws = wspool.connect(server.url, compression=None, timeout=WAIT)
    assert ws.recv() == "good"
    with pytest.raises(WebSocketProtocolException):
        ws.recv()
    assert out.get(timeout=WAIT) == 1002


def test_rsv1_on_continuation_with_deflate_is_rejected(ws_server: WSServerFactory) -> None:
    """With permessage-deflate on, RSV1 is allowed only on a message's first frame
    (RFC 7692 §6.1)."""
    data = encode_frame(Opcode.TEXT, b"a", fin=False) + encode_frame(
        Opcode.CONTINUATION, b"b", rsv1=True
    )
    handler, out = serve_then_record_close(lambda conn: conn.send_raw(data))
    server = ws_server(handler)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert ws.extensions == ["permessage-deflate"]
    with pytest.raises(WebSocketProtocolException):
        ws.recv()
    assert out.get(timeout=WAIT) == 1002


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (1011, "oops"), (3000, "app"), (4999, "ünï")],
)
def test_server_close_codes_are_reported(
    ws_server: WSServerFactory, code: int, reason: str, no_fd_leaks: None
) -> None:
    """The server's close code and reason appear as close_status / close_reason; the
    client echoes the code (RFC 6455 §5.5.1) and the stream then ends."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        conn.send_close(code, reason)
        out.put(recv_close_code(conn))
        conn.close_tcp()

    seen, out = reporting(handler)
    server = ws_server(seen)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert ws.recv() == ""
    assert (ws.close_status, ws.close_reason) == (code, reason)
    assert out.get(timeout=WAIT) == code
    with pytest.raises(WebSocketConnectionClosedException):
        ws.recv()
    assert ws.sock is None
    with pytest.raises(WebSocketConnectionClosedException):
        ws.send("x")


def test_server_close_without_code_is_1005(ws_server: WSServerFactory) -> None:
    """An empty close frame means "no status" (1005, RFC 6455 §7.1.5); the reply is
    empty too."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        conn.send_close(None)
        frame = conn.recv_frame(WAIT)
        out.put((frame.opcode, frame.payload))

    seen, out = reporting(handler)
    server = ws_server(seen)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert ws.recv() == ""
    assert ws.close_status == 1005
    assert out.get(timeout=WAIT) == (Opcode.CLOSE, b"")
    ws.close()


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_server_drops_tcp(ws_server: WSServerFactory, how: str, no_fd_leaks: None) -> None:
    """TCP ends without a close frame: WebSocketConnectionClosedException, status 1006."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("last words")
        if how == "fin":
            conn.close_tcp()
        else:
            conn.abort()

    server = ws_server(handler)
    ws = wspool.connect(server.url, timeout=WAIT)
    if how == "fin":
        assert ws.recv() == "last words"
    with pytest.raises(WebSocketConnectionClosedException) as info:
        while True:
            ws.recv()
    assert server.url in str(info.value)
    assert ws.close_status == 1006
    assert ws.sock is None
    ws.close()


def test_iteration_ends_when_tcp_drops(ws_server: WSServerFactory) -> None:
    """`for msg in ws` also ends when the stream ends without a close frame."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("only")
        conn.close_tcp()

    server = ws_server(handler)
    ws = wspool.connect(server.url, timeout=WAIT)
    assert list(ws) == ["only"]
    assert ws.close_status == 1006


# ------------------------------------------------------------------- compression


def test_compression_is_offered_and_negotiated_by_default(ws_server: WSServerFactory) -> None:
    """The default offer is permessage-deflate with client_max_window_bits (RFC 7692
    §7.1.2.2); both directions are then compressed (RSV1 set, §6)."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        frame = conn.recv_frame(WAIT)
        out.put(frame)
        conn.send_message(conn._in.decompress(frame.payload).decode())
        conn.recv_message(WAIT)

    seen, out = reporting(handler)
    server = ws_server(seen)
    text = "compress me " * 500
    with wspool.connect(server.url, timeout=WAIT) as ws:
        offers = server.requests[0].extensions
        assert offers[0][0] == "permessage-deflate"
        assert "client_max_window_bits" in offers[0][1]
        assert ws.extensions == ["permessage-deflate"]
        assert ws.headers["sec-websocket-extensions"] == "permessage-deflate"
        ws.send(text)
        frame: Frame = out.get(timeout=WAIT)
        assert frame.rsv1
        assert len(frame.payload) < len(text) // 10
        assert ws.recv() == text


def test_compression_none_sends_no_offer(ws_server: WSServerFactory) -> None:
    """compression=None: no Sec-WebSocket-Extensions header, frames are plain."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        out.put(conn.recv_frame(WAIT))

    seen, out = reporting(handler)
    server = ws_server(seen)
    with wspool.connect(server.url, compression=None, timeout=WAIT) as ws:
        assert server.requests[0].get("Sec-WebSocket-Extensions") is None
        assert ws.extensions == []
        ws.send("x" * 5000)
        frame: Frame = out.get(timeout=WAIT)
        assert not frame.rsv1
        assert frame.payload == b"x" * 5000


def test_compression_declined_by_server(ws_server: WSServerFactory) -> None:
    """The server may decline the offer: the connection works uncompressed."""
    server = ws_server(compression=False)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.extensions == []
        ws.send("y" * 5000)
        assert ws.recv() == "y" * 5000


WINDOW_PARAMS: list[dict[str, object]] = [
    {f"{side}_max_window_bits": bits} for side in ("server", "client") for bits in range(8, 16)
]
RESPONSE_PARAMS: list[dict[str, object]] = [
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    *WINDOW_PARAMS,
    {"server_max_window_bits": 9, "client_max_window_bits": 10, "client_no_context_takeover": True},
]


@pytest.mark.parametrize(
    "params", RESPONSE_PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_every_deflate_response_parameter(
    ws_server: WSServerFactory, params: dict[str, object]
) -> None:
    """Every parameter a server may put in its answer (RFC 7692 §7.1) is accepted and
    honoured: repeated messages (which use the context) go through both ways."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        frames = []
        for _ in range(3):
            frame = conn.recv_frame(WAIT)
            frames.append(frame)
            data = conn._in.decompress(frame.payload) if frame.rsv1 else frame.payload
            conn.send_message(data)
        out.put(frames)
        conn.recv_message(WAIT)

    seen, out = reporting(handler)
    server = ws_server(seen, compression=params)
    # varied but compressible: back-references reach beyond a small window
    message = bytes((i * 7919) % 251 for i in range(3000)) * 3
    with wspool.connect(server.url, compression=DeflateOptions(min_size=0), timeout=WAIT) as ws:
        assert ws.extensions[0].startswith("permessage-deflate")
        for _ in range(3):
            ws.send(message)
            assert ws.recv() == message
        frames: list[Frame] = out.get(timeout=WAIT)
    assert all(f.rsv1 for f in frames)
    bits = params.get("client_max_window_bits")
    if isinstance(bits, int):
        # The client must not refer further back than the window it was given: an
        # inflater with exactly that window (even 8 bits) reads every frame.
        inflater = zlib.decompressobj(-bits)
        for frame in frames:
            assert inflater.decompress(frame.payload + b"\x00\x00\xff\xff") == message
    if params.get("client_no_context_takeover"):
        # Each message stands alone: a fresh decompressor reads every one of them.
        for frame in frames:
            assert (
                zlib.decompressobj(-15).decompress(frame.payload + b"\x00\x00\xff\xff") == message
            )


def test_server_answer_with_unoffered_deflate_parameter_is_refused(
    ws_server: WSServerFactory,
) -> None:
    """client_max_window_bits in the answer when the client did not offer it is a
    handshake failure (RFC 7692 §7.1.2.2)."""

    def handshake(request: Request) -> Response:
        return accept(request).set_header(
            "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=10"
        )

    server = ws_server(handshake=handshake)
    with pytest.raises(WebSocketHandshakeException) as info:
        wspool.connect(server.url, compression={"client_max_window_bits": False})
    assert server.url in str(info.value)


def test_deflate_options_are_offered(ws_server: WSServerFactory) -> None:
    """DeflateOptions / a dict choose what is offered (RFC 7692 §7.1)."""
    server = ws_server()
    options = DeflateOptions(
        server_max_window_bits=10,
        client_max_window_bits=12,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )
    with wspool.connect(server.url, compression=options, timeout=WAIT) as ws:
        ws.send("z" * 3000)
        assert ws.recv() == "z" * 3000
    offer = server.requests[0].extensions[0][1]
    assert offer == {
        "server_max_window_bits": "10",
        "client_max_window_bits": "12",
        "server_no_context_takeover": None,
        "client_no_context_takeover": None,
    }
    with wspool.connect(server.url, compression={"server_no_context_takeover": True}) as ws:
        assert "server_no_context_takeover" in server.requests[1].extensions[0][1]
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect(server.url, compression="brotli")


def test_large_and_fragmented_compressed_messages(ws_server: WSServerFactory) -> None:
    """Big compressed messages, fragmented on both sides, survive the round trip."""

    def handler(conn: ServerConnection, out: queue.Queue[Any]) -> None:
        first = conn.recv_message(WAIT)
        conn.send_message(first.data, opcode=first.opcode, fragment_size=997)
        second = conn.recv_message(WAIT)
        out.put(second)
        conn.send_message(second.data, opcode=second.opcode, fragment_size=50_000)
        conn.recv_message(WAIT)

    seen, out = reporting(handler)
    server = ws_server(seen)
    big = os.urandom(MIB // 2) + b"abc" * 300_000
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.send(big)
        assert ws.recv() == big
        pieces = [f"chunk {i} " * 400 for i in range(50)]
        for piece in pieces[:-1]:
            ws.send_fragment(piece)
        ws.send_fragment(pieces[-1], fin=True)
        assert out.get(timeout=WAIT) == (Opcode.TEXT, "".join(pieces).encode())
        assert ws.recv() == "".join(pieces)


def test_max_size_bounds_decompression(ws_server: WSServerFactory, no_fd_leaks: None) -> None:
    """A small compressed frame that inflates past max_size is refused with 1009
    (RFC 7692 §8.1: bound the memory decompression uses)."""
    bomb = b"\x00" * (4 * MIB)
    handler, out = serve_then_record_close(lambda conn: conn.send_message(bomb))
    server = ws_server(handler)
    ws = wspool.connect(server.url, max_size=MIB, timeout=WAIT)
    with pytest.raises(WebSocketMessageTooBigException) as info:
        ws.recv()
    assert info.value.close_code == 1009
    assert out.get(timeout=WAIT) == 1009
    ws.close()


def test_compressed_message_within_max_size(ws_server: WSServerFactory) -> None:
    """A message that inflates to exactly max_size is accepted."""
    data = b"\x00" * MIB
    server = ws_server(lambda conn: (conn.send_message(data), conn.recv_message(WAIT)))
    with wspool.connect(server.url, max_size=MIB, timeout=WAIT) as ws:
        assert ws.recv() == data


# --------------------------------------------------------------------- handshake


def test_request_is_a_valid_upgrade(ws_server: WSServerFactory) -> None:
    """The request line and headers are what RFC 6455 §4.1 asks for."""
    server = ws_server()
    with wspool.connect(server.url + "/path/x?q=1&r=2", timeout=WAIT) as ws:
        assert ws.status == ws.getstatus() == 101
        assert ws.getheaders()["upgrade"] == "websocket"
    request = server.requests[0]
    assert request.problem() is None
    assert request.path == "/path/x?q=1&r=2"
    assert request.get("Host") == f"127.0.0.1:{server.port}"
    assert request.get("Origin") == f"http://127.0.0.1:{server.port}"
    assert request.get("Authorization") is None


def test_default_path_is_slash(ws_server: WSServerFactory) -> None:
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT):
        pass
    assert server.requests[0].path == "/"


def test_subprotocols(ws_server: WSServerFactory) -> None:
    """The offered list goes out in order; the server's choice is ws.subprotocol
    (RFC 6455 §4.1 step 10, §11.3.4)."""

    def handshake(request: Request) -> Response:
        return accept(request, subprotocol=request.subprotocols[1])

    server = ws_server(handshake=handshake)
    with wspool.connect(server.url, subprotocols=["chat.v1", "chat.v2"], timeout=WAIT) as ws:
        assert ws.subprotocol == ws.getsubprotocol() == "chat.v2"
    assert server.requests[0].subprotocols == ["chat.v1", "chat.v2"]


def test_no_subprotocol_chosen(ws_server: WSServerFactory) -> None:
    """The server may pick none of the offered subprotocols."""
    server = ws_server()
    with wspool.connect(server.url, subprotocols=["a"], timeout=WAIT) as ws:
        assert ws.subprotocol is None


@pytest.mark.parametrize(
    "header",
    [
        {"X-Token": "abc", "X-Other": "1 2"},
        ["X-Token: abc", "X-Other: 1 2"],
        [("X-Token", "abc"), ("X-Other", "1 2")],
    ],
    ids=["dict", "strings", "tuples"],
)
def test_header_forms(ws_server: WSServerFactory, header: Any) -> None:
    """header= accepts a dict, "Name: value" strings and (name, value) pairs."""
    server = ws_server()
    with wspool.connect(server.url, header=header, timeout=WAIT):
        pass
    request = server.requests[0]
    assert request.get("X-Token") == "abc"
    assert request.get("X-Other") == "1 2"


def test_header_injection_is_refused(ws_server: WSServerFactory) -> None:
    """CR/LF in a header value would smuggle headers: refused before connecting."""
    server = ws_server()
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect(server.url, header={"X-Evil": "a\r\nInjected: yes"})
    assert server.requests == []


def test_cookie_origin_and_host(ws_server: WSServerFactory) -> None:
    """cookie, origin and host replace the generated headers."""
    server = ws_server()
    with wspool.connect(
        server.url,
        cookie="session=1; theme=dark",
        origin="https://app.example",
        host="virtual.example",
        timeout=WAIT,
    ):
        pass
    request = server.requests[0]
    assert request.get("Cookie") == "session=1; theme=dark"
    assert request.get("Origin") == "https://app.example"
    assert request.get("Host") == "virtual.example"


def test_suppress_origin(ws_server: WSServerFactory) -> None:
    """suppress_origin=True leaves the Origin header out."""
    server = ws_server()
    with wspool.connect(server.url, suppress_origin=True, timeout=WAIT):
        pass
    assert server.requests[0].get("Origin") is None


def test_basic_auth_from_url(ws_server: WSServerFactory) -> None:
    """ws://user:pass@host/ sends Basic credentials (RFC 7617) and never shows the
    password in ws.url or repr."""
    server = ws_server()
    url = f"ws://alice:s%3Acret@127.0.0.1:{server.port}/auth"
    with wspool.connect(url, timeout=WAIT) as ws:
        assert "s%3Acret" not in ws.url and "s:cret" not in ws.url
        assert "cret" not in repr(ws)
    expected = "Basic " + base64.b64encode(b"alice:s:cret").decode()
    assert server.requests[0].get("Authorization") == expected


def test_bad_status_exception_has_status_headers_and_body(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """A non-101 answer: WebSocketBadStatusException with status, headers and a body
    excerpt, naming the URL without credentials (RFC 6455 §4.1 step 5)."""
    body = b"go away: " + b"x" * 10_000
    server = ws_server(handshake=lambda request: refuse(403, body, [("X-Why", "banned")]))
    with pytest.raises(WebSocketBadStatusException) as info:
        wspool.connect(f"ws://bob:hunter2@127.0.0.1:{server.port}/x", timeout=WAIT)
    exc = info.value
    assert exc.status_code == 403
    assert exc.resp_headers["x-why"] == "banned"
    assert ("X-Why", "banned") in exc.headers
    assert exc.body.startswith(b"go away: ")
    assert 0 < len(exc.body) <= 4096
    assert "403" in str(exc)
    assert f"127.0.0.1:{server.port}/x" in str(exc)
    assert "hunter2" not in str(exc)
    assert "hunter2" not in repr(exc.args)


def test_bad_status_with_short_body(ws_server: WSServerFactory) -> None:
    server = ws_server(handshake=lambda request: refuse(500, b"boom"))
    with pytest.raises(WebSocketBadStatusException) as info:
        wspool.connect(server.url)
    assert (info.value.status_code, info.value.body) == (500, b"boom")


def test_server_closes_before_answering(ws_server: WSServerFactory) -> None:
    """TCP closed (or reset) instead of an answer: WebSocketHandshakeException."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.CLOSE))
    with pytest.raises(WebSocketHandshakeException) as info:
        wspool.connect(server.url, timeout=WAIT)
    assert server.url in str(info.value)
    server2 = ws_server(handshake=lambda request: Response(action=HandshakeAction.RESET))
    with pytest.raises(WebSocketHandshakeException):
        wspool.connect(server2.url, timeout=WAIT)


def _redirecting(
    status: int, location: Callable[[Request], str]
) -> Callable[[Request], Response | None]:
    def handshake(request: Request) -> Response | None:
        if request.path.startswith("/final"):
            return None
        return redirect(location(request), status)

    return handshake


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_followed(ws_server: WSServerFactory, status: int) -> None:
    """Each redirect status leads to the Location (RFC 9110 §15.4)."""
    server = ws_server()
    server.handshake = _redirecting(status, lambda r: f"ws://127.0.0.1:{server.port}/final")
    with wspool.connect(server.url + "/start", timeout=WAIT) as ws:
        ws.send("hi")
        assert ws.recv() == "hi"
        assert ws.url == f"ws://127.0.0.1:{server.port}/final"
    assert [r.path for r in server.requests] == ["/start", "/final"]


def test_relative_redirect(ws_server: WSServerFactory) -> None:
    """A relative Location is resolved against the current URL (RFC 3986 §5)."""
    server = ws_server()

    def handshake(request: Request) -> Response | None:
        if request.path == "/a/b?x=1":
            return redirect("final?y=2", 307)
        if request.path == "/a/final?y=2":
            return redirect("/final/abs", 302)
        return None

    server.handshake = handshake
    with wspool.connect(server.url + "/a/b?x=1", timeout=WAIT):
        pass
    assert [r.path for r in server.requests] == ["/a/b?x=1", "/a/final?y=2", "/final/abs"]


def test_http_scheme_in_location(ws_server: WSServerFactory) -> None:
    """A Location with http:// maps to ws://."""
    server = ws_server()
    server.handshake = _redirecting(301, lambda r: f"http://127.0.0.1:{server.port}/final")
    with wspool.connect(server.url, timeout=WAIT) as ws:
        assert ws.url.startswith("ws://")


def test_redirect_limit_exceeded(ws_server: WSServerFactory, no_fd_leaks: None) -> None:
    """More redirects than redirect_limit: WebSocketRedirectException naming the URL."""
    server = ws_server()
    server.handshake = lambda r: redirect(f"/hop{len(server.requests)}", 302)
    with pytest.raises(WebSocketRedirectException) as info:
        wspool.connect(server.url, redirect_limit=2, timeout=WAIT)
    assert len(server.requests) == 3
    assert f"127.0.0.1:{server.port}" in str(info.value)
    with pytest.raises(WebSocketRedirectException):
        wspool.connect(server.url, redirect_limit=0, timeout=WAIT)
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect(server.url, redirect_limit=-1)


def test_default_redirect_limit_is_three(ws_server: WSServerFactory) -> None:
    server = ws_server()

    def handshake(request: Request) -> Response | None:
        hop = int(request.path.strip("/") or 0)
        return None if hop == 3 else redirect(f"/{hop + 1}")

    server.handshake = handshake
    with wspool.connect(server.url, timeout=WAIT):
        pass
    assert len(server.requests) == 4


def test_redirect_loop_is_detected(ws_server: WSServerFactory) -> None:
    server = ws_server()
    server.handshake = lambda r: redirect("/b" if r.path == "/a" else "/a", 302)
    with pytest.raises(WebSocketRedirectException) as info:
        wspool.connect(server.url + "/a", redirect_limit=10, timeout=WAIT)
    assert "loop" in str(info.value)
    assert len(server.requests) == 2


def test_redirect_without_location(ws_server: WSServerFactory) -> None:
    """A 3xx without Location cannot be followed: the handshake fails with its status."""
    server = ws_server(handshake=lambda request: refuse(302))
    with pytest.raises(WebSocketHandshakeException) as info:
        wspool.connect(server.url, timeout=WAIT)
    assert server.url in str(info.value)
    assert "302" in str(info.value)


def test_redirect_to_another_host_drops_credentials(ws_server: WSServerFactory) -> None:
    """Credentials (URL user info, Authorization header, cookie) and a Host override
    are only sent to the host they were given for; another port counts as another
    host (the origin changes, RFC 6454 §4)."""
    target = ws_server()
    first = ws_server(handshake=lambda r: redirect(f"ws://127.0.0.1:{target.port}/there", 307))
    with wspool.connect(
        f"ws://u:p@127.0.0.1:{first.port}/here",
        header={"Authorization": "Bearer secret", "X-Keep": "yes"},
        cookie="sid=1",
        host="virtual.example",
        timeout=WAIT,
    ):
        pass
    sent = first.requests[0]
    assert sent.get("Authorization") == "Bearer secret"
    assert sent.get("Cookie") == "sid=1"
    assert sent.get("Host") == "virtual.example"
    followed = target.requests[0]
    assert followed.get("Authorization") is None
    assert followed.get("Cookie") is None
    assert followed.get("X-Keep") == "yes"
    # a Host override was meant for the first server only
    assert followed.get("Host") == f"127.0.0.1:{target.port}"


def test_redirect_to_same_host_keeps_credentials(ws_server: WSServerFactory) -> None:
    server = ws_server()
    server.handshake = _redirecting(302, lambda r: "/final")
    with wspool.connect(f"ws://u:p@127.0.0.1:{server.port}/", cookie="sid=1", timeout=WAIT):
        pass
    expected = "Basic " + base64.b64encode(b"u:p").decode()
    assert [r.get("Authorization") for r in server.requests] == [expected, expected]
    assert [r.get("Cookie") for r in server.requests] == ["sid=1", "sid=1"]


def _break(edit: Callable[[Request, Response], object]) -> Callable[[Request], Response]:
    def handshake(request: Request) -> Response:
        response = accept(request)
        edit(request, response)
        return response

    return handshake


BROKEN_ANSWERS: dict[str, Callable[[Request, Response], object]] = {
    "wrong accept key §4.1": lambda q, r: r.set_header("Sec-WebSocket-Accept", "AAAA"),
    "missing accept key §4.1": lambda q, r: r.set_header("Sec-WebSocket-Accept", None),
    "missing Upgrade §4.1": lambda q, r: r.set_header("Upgrade", None),
    "wrong Upgrade §4.1": lambda q, r: r.set_header("Upgrade", "h2c"),
    "missing Connection §4.1": lambda q, r: r.set_header("Connection", None),
    "unoffered subprotocol §4.1": lambda q, r: r.set_header("Sec-WebSocket-Protocol", "evil"),
    "unoffered extension §9.1": lambda q, r: r.set_header("Sec-WebSocket-Extensions", "x-foo"),
    "bad deflate window §7.1": lambda q, r: r.set_header(
        "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=7"
    ),
    "deflate twice §7": lambda q, r: r.set_header(
        "Sec-WebSocket-Extensions", "permessage-deflate, permessage-deflate"
    ),
}


@pytest.mark.parametrize("edit", BROKEN_ANSWERS.values(), ids=BROKEN_ANSWERS.keys())
def test_broken_101_answer_is_refused(
    ws_server: WSServerFactory, edit: Callable[[Request, Response], object], no_fd_leaks: None
) -> None:
    """A 101 that does not complete a valid handshake: WebSocketHandshakeException
    naming the URL (without credentials), and the socket is closed."""
    server = ws_server(handshake=_break(edit))
    with pytest.raises(WebSocketHandshakeException) as info:
        wspool.connect(f"ws://me:topsecret@127.0.0.1:{server.port}/p", timeout=WAIT)
    assert f"127.0.0.1:{server.port}/p" in str(info.value)
    assert "topsecret" not in str(info.value)


def test_extension_answer_without_offer_is_refused(ws_server: WSServerFactory) -> None:
    """compression=None offers nothing, so a deflate answer is a failure (§9.1)."""

    def handshake(request: Request) -> Response:
        return accept(request).set_header("Sec-WebSocket-Extensions", "permessage-deflate")

    server = ws_server(handshake=handshake)
    with pytest.raises(WebSocketHandshakeException):
        wspool.connect(server.url, compression=None, timeout=WAIT)


def test_subprotocol_answer_without_offer_is_refused(ws_server: WSServerFactory) -> None:
    server = ws_server(handshake=lambda request: accept(request, subprotocol="chat"))
    with pytest.raises(WebSocketHandshakeException):
        wspool.connect(server.url, timeout=WAIT)


def test_unreachable_and_bad_urls_name_the_url() -> None:
    """Connection refused is an OSError (as in websocket-client) naming the URL without
    credentials; a malformed URL is a configuration error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: refused
        with pytest.raises(ConnectionRefusedError) as info:
            wspool.connect(f"ws://x:pw@127.0.0.1:{port}/", open_timeout=WAIT)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "pw" not in str(info.value).replace(f"{port}", "")
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect("http://127.0.0.1:1/")


# ------------------------------------------------------------------ size limits


def test_default_max_size_is_16_mib(ws_server: WSServerFactory) -> None:
    """16 MiB + 1 byte is refused with 1009 by default, as soon as the frame header
    says so: the server sends only the header and still gets the close frame."""
    header = encode_frame(Opcode.BINARY, b"")[:1] + b"\x7f" + (16 * MIB + 1).to_bytes(8, "big")
    handler, out = serve_then_record_close(lambda conn: conn.send_raw(header))
    server = ws_server(handler, compression=False)
    ws = wspool.connect(server.url, timeout=WAIT)
    with pytest.raises(WebSocketMessageTooBigException) as info:
        ws.recv()
    assert info.value.close_code == 1009
    assert out.get(timeout=WAIT) == 1009


def test_max_size_counts_the_whole_fragmented_message(ws_server: WSServerFactory) -> None:
    """Fragments that are each small but together exceed max_size: 1009."""
    handler, out = serve_then_record_close(
        lambda conn: conn.send_message(b"x" * 3000, fragment_size=1000)
    )
    server = ws_server(handler, compression=False)
    ws = wspool.connect(server.url, max_size=2500, timeout=WAIT)
    with pytest.raises(WebSocketMessageTooBigException):
        ws.recv()
    assert out.get(timeout=WAIT) == 1009


def test_max_size_none_lifts_the_limit(ws_server: WSServerFactory) -> None:
    payload = b"\x01" * (16 * MIB + 1)
    server = ws_server(
        lambda conn: (conn.send_message(payload, compress=False), conn.recv_message(WAIT)),
        compression=False,
    )
    with wspool.connect(server.url, max_size=None, timeout=WAIT) as ws:
        assert ws.recv() == payload


def test_16_mb_text_echo(ws_server: WSServerFactory) -> None:
    """A 16 MB text message (within the default limit) goes both ways."""
    text = "0123456789abcdé" * MIB  # 16 bytes of UTF-8 per 15 characters
    assert len(text.encode()) == 16 * MIB
    server = ws_server()
    with wspool.connect(server.url, timeout=WAIT) as ws:
        ws.send(text)
        assert ws.recv() == text


def test_skip_utf8_validation(ws_server: WSServerFactory) -> None:
    """skip_utf8_validation=True delivers invalid text instead of failing with 1007."""
    server = ws_server(
        lambda conn: (
            conn.send_raw(encode_frame(Opcode.TEXT, b"ok\xff")),
            conn.send_message("fine"),
            conn.recv_message(WAIT),
        )
    )
    with wspool.connect(server.url, skip_utf8_validation=True, timeout=WAIT) as ws:
        data = ws.recv()
        assert isinstance(data, str)
        assert data.encode("utf-8", "surrogateescape") == b"ok\xff"
        assert ws.recv() == "fine"


# -------------------------------------------------------------- other options


def test_sockopt_source_address_and_aliases(ws_server: WSServerFactory) -> None:
    """sockopt is applied, source_address binds the local end, create_connection and
    enable_multithread are accepted as in websocket-client."""
    server = ws_server()
    with wspool.create_connection(
        server.url,
        sockopt=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
        source_address=("127.0.0.1", 0),
        enable_multithread=False,
        timeout=WAIT,
    ) as ws:
        assert isinstance(ws, WebSocket)
        assert ws.sock is not None
        assert ws.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert ws.fileno() == ws.sock.fileno()
        assert "OPEN" in repr(ws).upper()
        local_port = ws.sock.getsockname()[1]
    assert server.requests[0].client_address == ("127.0.0.1", local_port)


INVALID_OPTIONS: list[dict[str, Any]] = [
    {"max_size": -1},
    {"max_size": 1.5},
    {"compression": "brotli"},
    {"compression": {"bogus": 1}},
    {"proxy_type": "gopher"},
    {"subprotocols": ["bad value"]},
    {"header": {"X-Evil": "a\r\nInjected: yes"}},
    {"header": {"Sec-WebSocket-Key": "mine"}},
    {"redirect_limit": -1},
    {"timeout": -1},
    {"open_timeout": -0.5},
    {"close_timeout": None},
    {"http_proxy_host": "127.0.0.1", "http_proxy_port": "abc"},
]


@pytest.mark.parametrize("options", INVALID_OPTIONS, ids=lambda o: ",".join(map(str, o.items())))
def test_invalid_options_fail_before_connecting(
    ws_server: WSServerFactory, options: dict[str, Any], no_fd_leaks: None
) -> None:
    """An unusable option raises WebSocketConfigurationException (also a ValueError)
    naming the URL without credentials, before anything is sent to the server."""
    server = ws_server()
    with pytest.raises(WebSocketConfigurationException) as info:
        wspool.connect(f"ws://user:pa55@127.0.0.1:{server.port}/", **options)
    assert isinstance(info.value, ValueError)
    assert f"ws://127.0.0.1:{server.port}/" in str(info.value)
    assert "pa55" not in str(info.value)
    assert server.requests == []


def test_timeout_zero_means_non_blocking(ws_server: WSServerFactory) -> None:
    """timeout=0: a read with nothing to read raises WebSocketTimeoutException at
    once instead of being taken for the end of the stream."""
    server = ws_server()
    with wspool.connect(server.url, timeout=0) as ws:
        with pytest.raises(WebSocketTimeoutException):
            ws.recv()
        assert ws.connected
        ws.settimeout(WAIT)
        ws.send("ok")
        assert ws.recv() == "ok"


# ---------------------------------------------------------------------- threads


def test_concurrent_senders_and_one_reader(
    ws_server: WSServerFactory, no_thread_leaks: None, no_fd_leaks: None
) -> None:
    """One thread blocked in recv while 8 threads send: every message arrives intact,
    each sender's messages in order (frames never interleave, compression stays in
    step)."""
    senders, per_sender = 8, 60
    server = ws_server()
    ws = wspool.connect(server.url, timeout=WAIT)
    received: list[str | bytes] = []

    def reader() -> None:
        for _ in range(senders * per_sender):
            received.append(ws.recv())

    def sender(n: int) -> None:
        for i in range(per_sender):
            # every third message is big enough to be compressed
            ws.send(f"{n}:{i}:" + ("p" * 2000 if i % 3 == 0 else ""))

    threads = [threading.Thread(target=reader)]
    threads += [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads)
    assert len(received) == senders * per_sender
    order: dict[str, list[int]] = {}
    for message in received:
        assert isinstance(message, str)
        n, i, pad = message.split(":")
        assert pad in ("", "p" * 2000)
        order.setdefault(n, []).append(int(i))
    assert order == {str(n): list(range(per_sender)) for n in range(senders)}
    ws.close()


# ------------------------------------------------- websocket-client's WebSocket object


def test_websocket_object_connects_and_reconnects(ws_server: WSServerFactory) -> None:
    """WebSocket(options) with no socket, then connect(url): constructor options are
    defaults for each connect; a closed WebSocket connects again."""
    seen: queue.Queue[Frame] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        while True:
            try:
                frame = conn.recv_frame(WAIT)
            except PeerClosed:
                return
            if frame.opcode == Opcode.CLOSE:
                conn.send_close(1000)
                return
            seen.put(frame)
            conn.send_message(frame.payload.decode(), opcode=frame.opcode)

    server = ws_server(handler)
    keys = iter([b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", b"\x0a\x0b\x0c\x0d"] * 4)
    ws = WebSocket(get_mask_key=lambda n: next(keys), skip_utf8_validation=True)
    assert not ws.connected and ws.sock is None and ws.getstatus() is None
    with pytest.raises(WebSocketConnectionClosedException):
        ws.recv()
    ws.close()  # nothing to close: does nothing
    for path in ("/first", "/second"):
        ws.connect(server.url + path, compression=None, timeout=WAIT)
        assert ws.connected and isinstance(ws.sock, socket.socket)
        assert ws.getstatus() == 101 and ws.url == server.url + path
        ws.send("hi")
        assert ws.recv() == "hi"
        ws.close()
        assert not ws.connected and ws.sock is None
    assert [seen.get(timeout=WAIT).mask_key for _ in range(2)] == [
        b"\x01\x02\x03\x04",
        b"\x0a\x0b\x0c\x0d",
    ]
    assert [r.path for r in server.requests] == ["/first", "/second"]


def test_connect_while_connected_drops_the_old_connection(ws_server: WSServerFactory) -> None:
    server = ws_server()
    ws = WebSocket()
    ws.connect(server.url + "/a", timeout=WAIT)
    old = ws.sock
    assert old is not None
    ws.connect(server.url + "/b", timeout=WAIT)
    assert old.fileno() == -1
    ws.send("x")
    assert ws.recv() == "x"
    ws.close()


def test_timeout_before_connect_is_kept(ws_server: WSServerFactory) -> None:
    """settimeout() before connect() is the timeout of the connection it opens, and
    connect(timeout=...) is kept for gettimeout() and the next connect."""
    server = ws_server()
    ws = WebSocket()
    assert ws.gettimeout() is None
    ws.settimeout(2.5)
    assert ws.gettimeout() == 2.5
    ws.connect(server.url)
    assert ws.gettimeout() == 2.5 and ws.sock is not None and ws.sock.gettimeout() == 2.5
    ws.close()
    ws.connect(server.url, timeout=1.5)
    ws.close()
    assert ws.gettimeout() == 1.5
    ws.connect(server.url)
    assert ws.gettimeout() == 1.5
    ws.close()


def test_unknown_options_warn_in_websocket_client_names(ws_server: WSServerFactory) -> None:
    """create_connection, WebSocket() and ws.connect ignore an unknown option with a
    warning that names the closest known option and points at the caller's line;
    wspool.connect raises."""
    server = ws_server()
    with pytest.warns(wspool.UnknownOptionWarning, match=r"'headers'.*'header'") as record:
        ws = wspool.create_connection(server.url, headers={"X-A": "1"})
    assert len(record) == 1 and record[0].filename == __file__
    ws.close()
    with pytest.warns(wspool.UnknownOptionWarning, match="'cookies'") as record:
        ws = WebSocket(cookies="a=b")
        ws.connect(server.url)
    assert len(record) == 1 and record[0].filename == __file__
    ws.close()
    with pytest.warns(wspool.UnknownOptionWarning, match="ping_interval.*Pool"):
        wspool.create_connection(server.url, ping_interval=5).close()
    with pytest.raises(WebSocketConfigurationException, match="did you mean 'header'"):
        wspool.connect(server.url, headers={"X-A": "1"})  # type: ignore[call-arg]
    assert server.requests[0].get("X-A") is None


def test_create_connection_class_gets_every_option(ws_server: WSServerFactory) -> None:
    """class_ is instantiated with every option (websocket-client passes them all)."""
    server = ws_server()
    made: list[dict[str, Any]] = []

    class Recording(WebSocket):
        def __init__(self, **options: Any) -> None:
            made.append(options)
            super().__init__(**options)

    ws = wspool.create_connection(server.url, timeout=3, class_=Recording, origin="http://o")
    assert isinstance(ws, Recording)
    assert made == [{"origin": "http://o"}]
    assert ws.gettimeout() == 3
    ws.close()
    assert server.requests[0].get("Origin") == "http://o"


def test_iteration_and_next(ws_server: WSServerFactory) -> None:
    """The WebSocket is its own iterator; it stops at the server's close frame."""

    def handler(conn: ServerConnection) -> None:
        for text in ("a", "b", "c"):
            conn.send_message(text)
        conn.send_close(1000)
        conn.recv_frame(WAIT)

    server = ws_server(handler)
    ws = wspool.create_connection(server.url, timeout=WAIT)
    assert iter(ws) is ws
    assert next(ws) == "a"
    assert ws.next() == "b"
    assert list(ws) == ["c"]
    with pytest.raises(StopIteration):
        next(ws)
    ws.close()


def test_send_close_then_read_the_reply(ws_server: WSServerFactory) -> None:
    """send_close sends the frame and returns; recv then gets the reply ("")."""
    got: queue.Queue[tuple[int, str]] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        frame = conn.recv_frame(WAIT)
        got.put(parse_close_payload(frame.payload))
        conn.send_close(1000, "bye")

    server = ws_server(handler)
    ws = wspool.create_connection(server.url, timeout=WAIT)
    with pytest.raises(WebSocketConfigurationException):
        ws.send_close(999)  # refused, nothing sent: the connection stays open
    assert ws.connected
    assert ws.send_close(wspool.STATUS_GOING_AWAY, b"leaving") == 6 + 2 + 7
    assert not ws.connected
    assert got.get(timeout=WAIT) == (1001, b"leaving")
    assert ws.recv() == ""
    assert (ws.close_status, ws.close_reason) == (1000, "bye")
    ws.close()
    with pytest.raises(WebSocketConnectionClosedException):
        ws.send_close()


def test_send_frame_goes_through_the_core(ws_server: WSServerFactory) -> None:
    """send_frame(ABNF.create_frame(...)): whole and fragmented messages, control
    frames; RSV bits and bad close frames are refused."""
    frames: queue.Queue[Frame] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        while True:
            frame = conn.recv_frame(WAIT)
            frames.put(frame)
            if frame.opcode == Opcode.CLOSE:
                conn.send_close(1000)
                return

    server = ws_server(handler)
    ws = wspool.create_connection(server.url, timeout=WAIT, compression=None)
    ws.send_frame(ABNF.create_frame("Hel", ABNF.OPCODE_TEXT, 0))
    ws.send_frame(ABNF.create_frame("lo", ABNF.OPCODE_CONT, 1))
    ws.send_frame(ABNF.create_frame(b"p", ABNF.OPCODE_PING))
    with pytest.raises(WebSocketConfigurationException, match="RSV"):
        ws.send_frame(ABNF(1, 1, 0, 0, ABNF.OPCODE_TEXT, 1, b"x"))
    with pytest.raises(WebSocketConfigurationException, match="close"):
        ws.send_frame(ABNF.create_frame(b"\x03\xe7", ABNF.OPCODE_CLOSE))  # 999
    ws.send_frame(ABNF.create_frame(b"\x03\xe8ok", ABNF.OPCODE_CLOSE))
    got = [frames.get(timeout=WAIT) for _ in range(4)]
    assert [(f.opcode, f.fin, f.payload) for f in got] == [
        (Opcode.TEXT, False, b"Hel"),
        (Opcode.CONTINUATION, True, b"lo"),
        (Opcode.PING, True, b"p"),
        (Opcode.CLOSE, True, b"\x03\xe8ok"),
    ]
    assert all(f.masked for f in got)
    ws.close()
