"""websocket-client 1.9's API that its documented snippets rely on, under
``import wspool as websocket``: the WebSocket object's life (constructor options,
connect, reconnect, accessors, timeouts), create_connection's ``class_``, unknown
options, the default timeout, close codes, ABNF frames, iteration, send_close, abort
and shutdown, and the FAQ entries about them.  The checklist of every doc section is
at the top of test_websocket_client_compat.py.
"""

from __future__ import annotations

import socket
import time
import warnings
from typing import Any

import pytest
from compat_support import WSServerFactory, websocket_client_state
from helpers import run_in_thread, wait_locked, wait_until
from wsserver import (
    HandshakeAction,
    Opcode,
    Request,
    Response,
    ServerConnection,
    accept,
    echo_handler,
)

import wspool
import wspool as websocket
from wspool import create_connection

__all__ = ["websocket_client_state"]  # the autouse fixture, imported from compat_support

KEEPALIVE = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),)


def keepalive_on(ws: websocket.WebSocket) -> bool:
    assert ws.sock is not None
    return ws.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0


def chat_subprotocol(request: Request) -> Response:
    return accept(request, subprotocol="chat", headers=[("X-Served-By", "wsserver")])


def silent_handshake(request: Request) -> Response:
    """Never answer the upgrade request (the docs' "no connection response")."""
    return Response(action=HandshakeAction.SILENT)


# --------------------------------------------------------------------- the WebSocket object


def test_websocket_constructor_options_and_accessors(ws_server: WSServerFactory) -> None:
    """WebSocket(sockopt=..., ...) without a socket, then connect(): constructor options
    are defaults of every connect; a closed WebSocket connects again; connected, sock,
    getstatus(), getheaders(), getsubprotocol(), is_ssl(), settimeout()/gettimeout()
    before and after connect."""
    server = ws_server(handshake=chat_subprotocol)
    ws = websocket.WebSocket(
        sockopt=KEEPALIVE,
        sslopt={"cert_reqs": 0},  # unused for ws://, as in websocket-client
        fire_cont_frame=False,
        enable_multithread=True,
        skip_utf8_validation=False,
    )
    assert not ws.connected and ws.sock is None
    ws.settimeout(2.5)
    assert ws.gettimeout() == 2.5

    ws.connect(server.url + "/first", subprotocols=["chat"])
    assert ws.connected and isinstance(ws.sock, socket.socket)
    assert keepalive_on(ws)
    assert ws.getstatus() == 101
    headers = ws.getheaders()
    assert headers["x-served-by"] == "wsserver"  # names lower-cased, as websocket-client has them
    assert headers["upgrade"].lower() == "websocket"
    assert ws.getsubprotocol() == "chat"
    assert ws.is_ssl() is False
    assert ws.gettimeout() == 2.5 and ws.sock.gettimeout() == 2.5
    ws.settimeout(4)
    assert ws.gettimeout() == 4 and ws.sock.gettimeout() == 4

    ws.close()
    assert not ws.connected and ws.sock is None

    ws.connect(server.url + "/second", subprotocols=["chat"])  # the same object, again
    assert ws.connected and keepalive_on(ws)  # the constructor's sockopt, again
    ws.send("second life")
    assert ws.recv() == "second life"
    ws.close()
    assert [r.path for r in server.requests] == ["/first", "/second"]


def test_create_connection_class_gets_the_options(ws_server: WSServerFactory) -> None:
    """create_connection(url, class_=Subclass, **options): as in websocket-client the
    class is called with the options as keyword arguments, then connected."""
    server = ws_server()
    seen: dict[str, Any] = {}

    class Recording(websocket.WebSocket):
        def __init__(self, **options: Any) -> None:
            seen.update(options)
            super().__init__(**options)

    ws = create_connection(
        server.url,
        timeout=3,
        class_=Recording,
        sockopt=KEEPALIVE,
        header=["X-Trace: 1"],
        skip_utf8_validation=True,
    )
    assert isinstance(ws, Recording)
    assert seen["sockopt"] == KEEPALIVE
    assert seen["header"] == ["X-Trace: 1"]
    assert seen["skip_utf8_validation"] is True
    assert keepalive_on(ws) and ws.gettimeout() == 3
    assert server.requests[0].get("X-Trace") == "1"
    ws.close()


# --------------------------------------------------------------------- unknown options


def _unknown_via_create_connection(url: str) -> websocket.WebSocket:
    return websocket.create_connection(url, headers={"X-Typo": "1"})


def _unknown_via_constructor(url: str) -> websocket.WebSocket:
    ws = websocket.WebSocket(headers={"X-Typo": "1"})
    ws.connect(url)
    return ws


def _unknown_via_connect(url: str) -> websocket.WebSocket:
    ws = websocket.WebSocket()
    ws.connect(url, headers={"X-Typo": "1"})
    return ws


@pytest.mark.parametrize(
    "open_with",
    [_unknown_via_create_connection, _unknown_via_constructor, _unknown_via_connect],
    ids=["create_connection", "WebSocket()", "ws.connect"],
)
def test_unknown_option_is_ignored_with_a_hint(ws_server: WSServerFactory, open_with: Any) -> None:
    """websocket-client ignores options it does not know, so scripts carry some: its
    entry points warn (UnknownOptionWarning, a UserWarning) naming the option and the
    closest known one, and go on without it."""
    server = ws_server()
    assert issubclass(websocket.UnknownOptionWarning, UserWarning)
    with pytest.warns(
        websocket.UnknownOptionWarning, match=r"'headers'.*did you mean 'header'\?"
    ) as caught:
        ws = open_with(server.url)
    assert len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller's line
    assert ws.connected
    ws.close()
    assert server.requests[0].get("X-Typo") is None


def test_unknown_option_raises_in_wspool_front_ends(ws_server: WSServerFactory) -> None:
    """wspool's own entry points (wspool.connect, Pool.connect) refuse an unknown option
    with the same hint, before connecting (docs/migration.md, differences on purpose)."""
    server = ws_server()
    hint = r"'headers'.*did you mean 'header'\?"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refusal, not a warning
        with pytest.raises(websocket.WebSocketConfigurationException, match=hint):
            wspool.connect(server.url, headers={"X-Typo": "1"})  # type: ignore[call-arg]
        with (
            wspool.Pool(workers=1) as pool,
            pytest.raises(websocket.WebSocketConfigurationException, match=hint),
        ):
            pool.connect(server.url, headers={"X-Typo": "1"})  # type: ignore[call-arg]
    assert server.requests == []


# --------------------------------------------------------------------- the default timeout


def test_setdefaulttimeout_is_the_default_of_every_front_end(ws_server: WSServerFactory) -> None:
    """examples.rst "Setting Timeout Value": setdefaulttimeout()/getdefaulttimeout() set
    the socket timeout of connections opened afterwards (create_connection,
    WebSocket().connect, wspool.connect) and bound their opening too; an explicit
    timeout still wins."""
    server = ws_server()
    silent = ws_server(handshake=silent_handshake)
    assert websocket.getdefaulttimeout() is None

    websocket.setdefaulttimeout(0.5)
    assert websocket.getdefaulttimeout() == 0.5
    first = websocket.create_connection(server.url)
    second = websocket.WebSocket()
    second.connect(server.url)
    third = wspool.connect(server.url)
    explicit = websocket.create_connection(server.url, timeout=2)
    for ws in (first, second, third):
        assert ws.gettimeout() == 0.5
        assert ws.sock is not None and ws.sock.gettimeout() == 0.5
    assert explicit.gettimeout() == 2
    with pytest.raises(websocket.WebSocketTimeoutException):
        second.recv()  # the echo server says nothing unprompted
    for ws in (first, second, third, explicit):
        ws.close()

    started = time.monotonic()
    with pytest.raises(websocket.WebSocketTimeoutException):
        websocket.create_connection(silent.url)
    assert time.monotonic() - started < 3  # bounded by the default, not open_timeout's 10 s


# --------------------------------------------------------------------- close codes, frames


def test_status_constants() -> None:
    """websocket.STATUS_* are RFC 6455 §7.4.1's codes, ints as in websocket-client."""
    expected = {
        "STATUS_NORMAL": 1000,
        "STATUS_GOING_AWAY": 1001,
        "STATUS_PROTOCOL_ERROR": 1002,
        "STATUS_UNSUPPORTED_DATA_TYPE": 1003,
        "STATUS_STATUS_NOT_AVAILABLE": 1005,
        "STATUS_ABNORMAL_CLOSED": 1006,
        "STATUS_INVALID_PAYLOAD": 1007,
        "STATUS_POLICY_VIOLATION": 1008,
        "STATUS_MESSAGE_TOO_BIG": 1009,
        "STATUS_INVALID_EXTENSION": 1010,
        "STATUS_UNEXPECTED_CONDITION": 1011,
        "STATUS_SERVICE_RESTART": 1012,
        "STATUS_TRY_AGAIN_LATER": 1013,
        "STATUS_BAD_GATEWAY": 1014,
        "STATUS_TLS_HANDSHAKE_ERROR": 1015,
    }
    for name, code in expected.items():
        value = getattr(websocket, name)
        assert isinstance(value, int) and value == code, name
    assert 1000 in websocket.VALID_CLOSE_STATUS and 1005 not in websocket.VALID_CLOSE_STATUS


def _fragments_then_echo(conn: ServerConnection) -> None:
    """Send "fragmented" in three frames, then echo each whole message back."""
    conn.send_message("fragmented", fragment_size=4)
    while True:
        opcode, data = conn.recv_message()
        if opcode == Opcode.CLOSE:
            conn.send_close(1000)
            conn.close_tcp()
            return
        conn.send_message(data, opcode=opcode)


def test_abnf_frames_sent_and_received(ws_server: WSServerFactory) -> None:
    """ABNF.create_frame builds frames (masked, with fin/rsv/opcode/data), format() and
    validate() work on them, send_frame sends them (a message in two fragments here);
    with fire_cont_frame=True recv_frame()/recv_data_frame() give each frame as an ABNF."""
    server = ws_server(_fragments_then_echo, compression=False)
    ABNF = websocket.ABNF

    first = ABNF.create_frame("Hel", ABNF.OPCODE_TEXT, 0)
    last = ABNF.create_frame("lo", ABNF.OPCODE_CONT, 1)
    assert (first.fin, first.rsv1, first.rsv2, first.rsv3) == (0, 0, 0, 0)
    assert (first.opcode, first.mask_value, first.mask) == (ABNF.OPCODE_TEXT, 1, 1)
    wire = last.format()
    assert wire[0] == 0x80 and wire[1] == 0x80 | 2  # FIN + CONT; MASK + length 2
    last.validate()
    ping = ABNF(fin=0, opcode=ABNF.OPCODE_PING, data="x")
    with pytest.raises(websocket.WebSocketProtocolException):
        ping.validate()  # a fragmented control frame (RFC 6455 §5.5)

    ws = websocket.WebSocket(fire_cont_frame=True)
    ws.connect(server.url)
    frames = [ws.recv_frame() for _ in range(3)]
    assert [(f.opcode, f.fin, f.data) for f in frames] == [
        (ABNF.OPCODE_TEXT, 0, b"frag"),
        (ABNF.OPCODE_CONT, 0, b"ment"),
        (ABNF.OPCODE_CONT, 1, b"ed"),
    ]
    assert all(isinstance(f, ABNF) and f.mask_value == 0 for f in frames)  # servers don't mask

    ws.send_frame(first)
    ws.send_frame(last)
    opcode, frame = ws.recv_data_frame()
    assert (opcode, frame.fin, frame.data) == (ABNF.OPCODE_TEXT, 1, b"Hello")
    ws.close()


def _three_messages_then_close(conn: ServerConnection) -> None:
    for message in ("one", "two", "three"):
        conn.send_message(message)
    conn.close(1000)


def test_iterating_over_messages(ws_server: WSServerFactory) -> None:
    """next(ws), ws.next() and ``for message in ws`` give the messages in order; the
    iteration ends with StopIteration at the server's close.  A difference on purpose
    from websocket-client, whose iterator yields "" for the close frame and raises
    WebSocketConnectionClosedException on the next step."""
    server = ws_server(_three_messages_then_close)
    ws = websocket.create_connection(server.url)
    assert next(ws) == "one"
    assert ws.next() == "two"
    assert list(ws) == ["three"]
    with pytest.raises(StopIteration):
        next(ws)
    ws.close()
    assert server.connections[0].close_received == (1000, b"")


def _answer_close(conn: ServerConnection) -> None:
    opcode, _ = conn.recv_message()
    assert opcode == Opcode.CLOSE
    conn.send_close(1000, "closing too")
    conn.close_tcp()


def test_send_close_then_recv_returns_empty(ws_server: WSServerFactory) -> None:
    """ws.send_close(status, reason) sends the close frame and returns; recv() then
    gives "" for the server's close frame, as in websocket-client; close() ends it."""
    server = ws_server(_answer_close)
    ws = websocket.create_connection(server.url)
    ws.send_close(websocket.STATUS_GOING_AWAY, b"bye")
    assert ws.recv() == ""
    assert not ws.connected
    ws.close()
    assert ws.sock is None
    assert wait_until(lambda: server.connections[0].closed)
    assert server.connections[0].close_received == (1001, b"bye")


def test_abort_wakes_a_blocked_recv(ws_server: WSServerFactory) -> None:
    """ws.abort() from another thread wakes a thread blocked in recv() with
    WebSocketConnectionClosedException (websocket-client's "low-level asynchronous
    abort")."""
    server = ws_server()
    ws = websocket.create_connection(server.url)
    blocked = run_in_thread(ws.recv, name="blocked recv")
    assert wait_locked(ws._read_lock)  # the reader is inside recv
    ws.abort()
    assert isinstance(blocked.outcome(), websocket.WebSocketConnectionClosedException)
    assert not ws.connected and ws.sock is None


def test_shutdown_closes_at_once(ws_server: WSServerFactory) -> None:
    """ws.shutdown() closes the socket immediately, without a closing handshake."""
    server = ws_server()
    ws = websocket.create_connection(server.url)
    assert server.wait_for_connections(1)
    ws.shutdown()
    assert not ws.connected and ws.sock is None
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.send("after shutdown")
    assert wait_until(lambda: server.connections[0].closed)
    assert server.connections[0].close_received is None  # no closing handshake


# --------------------------------------------------------------------- faq.rst


def _invalid_utf8_then_echo(conn: ServerConnection) -> None:
    conn.send_frame(Opcode.TEXT, b"caf\xe9 \xff")  # latin-1, not UTF-8
    echo_handler(conn)


def test_faq_why_is_this_library_slow_skip_utf8_validation(ws_server: WSServerFactory) -> None:
    """README "Performance" and faq.rst "Why is this library slow?" / "I get the error
    'utf8' codec can't decode byte": skip_utf8_validation=True lets text that is not
    UTF-8 through (recv_data gives its bytes; decode them as ISO-8859-1, the FAQ's
    workaround); without it the connection fails with WebSocketPayloadException (and
    close code 1007), as in websocket-client."""
    server = ws_server(_invalid_utf8_then_echo, compression=False)

    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(server.url)
    opcode, data = ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_TEXT, b"caf\xe9 \xff")
    assert data.decode("iso-8859-1") == "café ÿ"
    ws.send("still connected")
    assert ws.recv() == "still connected"
    ws.close()

    strict = websocket.create_connection(server.url)
    with pytest.raises(websocket.WebSocketPayloadException):
        strict.recv()
    assert not strict.connected
    strict.close()
    assert wait_until(lambda: server.connections[1].closed)
    close_received = server.connections[1].close_received
    assert close_received is not None and close_received[0] == websocket.STATUS_INVALID_PAYLOAD


def test_faq_connection_is_already_closed(ws_server: WSServerFactory) -> None:
    """faq.rst 'How to solve the "connection is already closed" error?': send()/recv()
    on a closed connection raise WebSocketConnectionClosedException("Connection is
    already closed."); connect() makes the same object usable again."""
    server = ws_server()
    ws = websocket.create_connection(server.url)
    ws.close()
    for call in (lambda: ws.send("late"), ws.recv):
        with pytest.raises(websocket.WebSocketConnectionClosedException) as info:
            call()
        assert info.value.args[0] == "Connection is already closed."
    try:
        ws.send("late")
    except websocket.WebSocketConnectionClosedException:
        ws.connect(server.url)
    ws.send("back")
    assert ws.recv() == "back"
    ws.close()


def _mixed_frames(conn: ServerConnection) -> None:
    conn.send_message("text")
    conn.send_message(b"binary", opcode=Opcode.BINARY)
    conn.send_ping(b"are you there")
    conn.send_message("fragmented", fragment_size=3)
    conn.close(1000, "done")


def test_faq_recv_frame_recv_data_frame_recv_data(ws_server: WSServerFactory) -> None:
    """faq.rst "What is the difference between recv_frame(), recv_data_frame(), and
    recv_data()?": recv_frame() gives the next frame, recv_data_frame() the next
    message as (opcode, ABNF), recv_data() as (opcode, bytes), control frames too when
    asked (control_frame=True) and the close frame always."""
    server = ws_server(_mixed_frames, compression=False)
    ws = websocket.create_connection(server.url)
    frame = ws.recv_frame()
    assert (frame.opcode, frame.fin, frame.data) == (websocket.ABNF.OPCODE_TEXT, 1, b"text")
    opcode, message = ws.recv_data_frame()
    assert (opcode, message.data) == (websocket.ABNF.OPCODE_BINARY, b"binary")
    assert ws.recv_data(control_frame=True) == (websocket.ABNF.OPCODE_PING, b"are you there")
    assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"fragmented")  # reassembled
    opcode, payload = ws.recv_data()
    assert (opcode, payload) == (websocket.ABNF.OPCODE_CLOSE, b"\x03\xe8done")
    ws.close()
    conn = server.connections[0]
    assert wait_until(lambda: conn.closed)
    assert conn.pongs == [b"are you there"]  # the ping was answered for us
    assert conn.close_received is not None and conn.close_received[0] == 1000
