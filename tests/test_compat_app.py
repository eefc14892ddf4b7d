"""websocket-client 1.9's documented WebSocketApp snippets, run under
``import wspool as websocket`` against the local test server: examples/echoapp_client.py,
the examples.rst WebSocketApp examples, the FAQ's callback-error entry, threading.rst's
on_close examples, and the app API they rely on.  The snippets with rel are in
test_compat_rel.py; the checklist of every doc section is at the top of
test_websocket_client_compat.py.

The snippets talk to streaming servers that never stop; here the test server stops
(a close frame), or a line the test adds ends the run, and sleeps are cut to
fractions of a second.  Each test's docstring says what was changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from compat_support import (
    CLOSE_REASON,
    GREETING,
    Output,
    WSServerFactory,
    close_after_first_message,
    close_at_once,
    feed,
    greet_then_echo,
    record_masks,
    run_app,
    websocket_client_state,
)
from helpers import WAIT, run_in_thread, wait_until
from wsserver import (
    HandshakeAction,
    Opcode,
    Request,
    Response,
    ServerConnection,
    WSServer,
    accept,
    echo_handler,
)

import wspool as websocket

__all__ = ["websocket_client_state"]  # the autouse fixture, from compat_support


def choose_first_subprotocol(request: Request) -> Response:
    offered = request.subprotocols
    return accept(request, subprotocol=offered[0] if offered else None)


# --------------------------------------------------------------------- examples/, examples.rst


def test_example_echoapp_client(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples/echoapp_client.py (and threading.rst "threading library usage"): on_open
    starts a thread that sends three messages, then closes; every echo is printed, then
    on_close.  Changed: the URL, and sleeps of 0.05 s instead of 1 s."""
    server = ws_server()
    output = Output(capsys)
    threads: list[threading.Thread] = []

    def on_message(ws: Any, message: Any) -> None:
        print(message)

    def on_error(ws: Any, error: Any) -> None:
        print(error)

    def on_close(ws: Any, close_status_code: Any, close_msg: Any) -> None:
        print("### closed ###")

    def on_open(ws: Any) -> None:
        def run(*args: Any) -> None:
            for i in range(3):
                # send the message, then wait
                # so thread doesn't exit and socket
                # isn't closed
                ws.send("Hello %d" % i)  # noqa: UP031 (the example's line)
                time.sleep(0.05)

            time.sleep(0.05)
            ws.close()
            print("Thread terminating...")

        thread = threading.Thread(target=run)
        threads.append(thread)
        thread.start()

    websocket.enableTrace(True)
    host = server.url + "/"
    ws = websocket.WebSocketApp(host, on_message=on_message, on_error=on_error, on_close=on_close)
    ws.on_open = on_open
    assert run_app(ws) is False

    threads[0].join(WAIT)
    output.wait_for("Thread terminating...")
    lines = output.lines()
    assert lines[:3] == ["Hello 0", "Hello 1", "Hello 2"]
    assert sorted(lines[3:]) == ["### closed ###", "Thread terminating..."]
    assert server.connections[0].close_received == (1000, b"")


def test_first_connection_websocketapp_example(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "Creating Your First WebSocket Connection", WebSocketApp example:
    every message is printed; the server's close frame ends run_forever (False)."""
    server = ws_server(feed("trade 1", "trade 2"))
    output = Output(capsys)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    wsapp = websocket.WebSocketApp(server.url + "/ws/btcusdt@trade", on_message=on_message)
    assert run_app(wsapp) is False

    assert output.lines() == ["trade 1", "trade 2"]
    assert server.requests[0].path == "/ws/btcusdt@trade"


def test_websocketapp_common_headers_example(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp common headers example": cookie in the constructor,
    origin and host in run_forever."""
    server = ws_server(close_at_once)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    wsapp = websocket.WebSocketApp(server.url, cookie="chocolate", on_message=on_message)
    assert run_app(wsapp, origin="testing_websockets.com", host="127.0.0.1") is False

    request = server.requests[0]
    assert request.get("Cookie") == "chocolate"
    assert request.get("Origin") == "testing_websockets.com"
    assert request.get("Host") == "127.0.0.1"


@pytest.mark.parametrize("protocol", ["STOMP", "testproto"])
def test_websocketapp_subprotocols_example(ws_server: WSServerFactory, protocol: str) -> None:
    """examples.rst "WebSocketApp subprotocols example" (["STOMP"]; the older page
    ["testproto"]): offered in Sec-WebSocket-Protocol, the server's choice is
    ws.sock.getsubprotocol() while the app runs.  Added: an on_open that records it."""
    server = ws_server(close_at_once, handshake=choose_first_subprotocol)
    chosen: list[Any] = []

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    wsapp = websocket.WebSocketApp(server.url, subprotocols=[protocol], on_message=on_message)
    wsapp.on_open = lambda ws: chosen.append(ws.sock.getsubprotocol())
    assert run_app(wsapp) is False

    assert server.requests[0].subprotocols == [protocol]
    assert chosen == [protocol]


def test_websocketapp_suppress_origin_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocketApp suppress origin example": run_forever(suppress_origin=True)."""
    server = ws_server(close_at_once)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    wsapp = websocket.WebSocketApp(server.url, on_message=on_message)
    assert run_app(wsapp, suppress_origin=True) is False
    assert run_app(wsapp) is False  # a finished app runs again: Origin is back

    assert server.requests[0].get("Origin") is None
    assert server.requests[1].get("Origin") == f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    "header",
    [
        {"CustomHeader1": "123", "NewHeader2": "Test"},
        ["CustomHeader1: 123", "NewHeader2: Test"],
    ],
    ids=["dict", "list"],
)
def test_websocketapp_custom_headers_example(ws_server: WSServerFactory, header: Any) -> None:
    """examples.rst "WebSocketApp custom headers example": header= as a dict or a list."""
    server = ws_server(close_at_once)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    wsapp = websocket.WebSocketApp(server.url, header=header, on_message=on_message)
    assert run_app(wsapp) is False

    request = server.requests[0]
    assert (request.get("CustomHeader1"), request.get("NewHeader2")) == ("123", "Test")


def test_websocketapp_timeout_example(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp timeout example": setdefaulttimeout(), then
    run_forever() to a server that never answers the handshake: on_error gets a
    WebSocketTimeoutException ("Program should print a 'timed out' error message") and
    run_forever returns True.  Changed: 0.3 s instead of 5 s."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    output = Output(capsys)
    errors: list[BaseException] = []

    def on_error(wsapp: Any, err: BaseException) -> None:
        print("EXAMPLE error encountered: ", err)
        errors.append(err)

    websocket.setdefaulttimeout(0.3)
    wsapp = websocket.WebSocketApp(server.url, on_error=on_error)
    started = time.monotonic()
    assert run_app(wsapp) is True

    assert time.monotonic() - started < 3  # the default timeout bounded the opening
    [error] = errors
    assert isinstance(error, websocket.WebSocketTimeoutException)
    assert output.out.startswith("EXAMPLE error encountered: ")


def _ping_pong_server(conn: ServerConnection) -> None:
    """Ping the client, wait for its keepalive ping (answered), then close."""
    conn.send_ping(b"server ping")
    while not conn.pings:
        frame = conn.recv_frame()
        if frame.opcode == Opcode.PING:
            conn.pings.append(frame.payload)
            conn.send_pong(frame.payload)
        elif frame.opcode == Opcode.PONG:
            conn.pongs.append(frame.payload)
    conn.close(1000)


def test_websocketapp_ping_pong_example(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp ping/pong example": the client answers the server's
    ping by itself (then on_ping), sends keepalive pings with ping_payload (on_pong for
    each answer).  Changed: ping_interval=0.3, ping_timeout=0.25 instead of 60 and 10."""
    server = ws_server(_ping_pong_server, compression=False)
    output = Output(capsys)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)

    def on_ping(wsapp: Any, message: Any) -> None:
        print("Got a ping! A pong reply has already been automatically sent.")

    def on_pong(wsapp: Any, message: Any) -> None:
        print("Got a pong! No need to respond")

    wsapp = websocket.WebSocketApp(
        server.url, on_message=on_message, on_ping=on_ping, on_pong=on_pong
    )
    assert (
        run_app(
            wsapp,
            ping_interval=0.3,
            ping_timeout=0.25,
            ping_payload="This is an optional ping payload",
        )
        is False
    )

    assert output.lines() == [
        "Got a ping! A pong reply has already been automatically sent.",
        "Got a pong! No need to respond",
    ]
    conn = server.connections[0]
    assert conn.pongs == [b"server ping"]
    assert conn.pings == [b"This is an optional ping payload"]


def test_websocketapp_sending_close_status_code(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp sending close() status code example":
    wsapp.close(status=websocket.STATUS_PROTOCOL_ERROR) from on_message, with
    run_forever(skip_utf8_validation=True)."""
    server = ws_server(greet_then_echo)
    output = Output(capsys)

    websocket.enableTrace(True)

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)
        wsapp.close(status=websocket.STATUS_PROTOCOL_ERROR)

    wsapp = websocket.WebSocketApp(server.url, on_message=on_message)
    assert run_app(wsapp, skip_utf8_validation=True) is False

    assert output.lines() == [GREETING]
    assert server.connections[0].close_received == (1002, b"")


def test_websocketapp_receiving_close_status_code(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp receiving close status code example": on_close gets
    the server's close code and reason."""
    server = ws_server(close_after_first_message)
    output = Output(capsys)

    websocket.enableTrace(True)

    def on_close(wsapp: Any, close_status_code: Any, close_msg: Any) -> None:
        # Because on_close was triggered, we know the opcode = 8
        print("on_close args:")
        if close_status_code or close_msg:
            print("close status code: " + str(close_status_code))
            print("close message: " + str(close_msg))

    def on_open(wsapp: Any) -> None:
        wsapp.send("Hello")

    wsapp = websocket.WebSocketApp(server.url, on_close=on_close, on_open=on_open)
    run_app(wsapp)

    assert output.lines() == [
        "on_close args:",
        "close status code: 4000",
        f"close message: {CLOSE_REASON}",
    ]


def test_websocketapp_custom_masking_key(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp custom masking key code example":
    WebSocketApp(..., get_mask_key=zero_mask_key) masks every frame with four NULs.
    Added: on_open sends a message, on_message closes after printing its echo."""
    keys: list[bytes] = []
    server = ws_server(record_masks(keys), compression=False)
    output = Output(capsys)

    websocket.enableTrace(True)

    def zero_mask_key(_: int) -> str:
        return "\x00\x00\x00\x00"

    def on_message(wsapp: Any, message: Any) -> None:
        print(message)
        wsapp.close()

    wsapp = websocket.WebSocketApp(
        server.url,
        on_message=on_message,
        get_mask_key=zero_mask_key,  # type: ignore[arg-type]  # a str, as in the docs
    )
    wsapp.on_open = lambda ws: ws.send("Hello, Server")
    assert run_app(wsapp) is False

    assert output.lines() == ["Hello, Server"]
    assert keys == [b"\x00\x00\x00\x00"] * 2  # the message and the close frame


def test_websocketapp_custom_opcode(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "WebSocketApp custom opcode code example": ws.send(data,
    websocket.ABNF.OPCODE_PING) from on_message sends a ping; the pong reaches on_pong.
    Added: on_pong closes, so that run_forever returns."""
    server = ws_server()
    output = Output(capsys)

    websocket.enableTrace(True)

    def on_open(wsapp: Any) -> None:
        wsapp.send("Hello")

    def on_message(ws: Any, message: Any) -> None:
        print(message)
        ws.send("Send a ping", websocket.ABNF.OPCODE_PING)

    def on_pong(wsapp: Any, message: Any) -> None:
        print("Got a pong! No need to respond")
        wsapp.close()

    wsapp = websocket.WebSocketApp(
        server.url, on_open=on_open, on_message=on_message, on_pong=on_pong
    )
    assert run_app(wsapp) is False

    assert output.lines() == ["Hello", "Got a pong! No need to respond"]
    assert server.connections[0].pings == [b"Send a ping"]


def test_faq_troubleshoot_an_unclear_callback_error(
    ws_server: WSServerFactory, capsys: Any
) -> None:
    """faq.rst "How to troubleshoot an unclear callback error?": an exception raised in
    a callback reaches on_error as itself (with its traceback), and the connection goes
    on.  Added: on_message raises for the first message."""
    server = ws_server(feed("first", "second"))
    output = Output(capsys)
    errors: list[BaseException] = []

    def on_message(ws: Any, message: Any) -> None:
        print(message)
        if message == "first":
            raise ValueError("cannot handle " + message)

    def on_error(wsapp: Any, err: BaseException) -> None:
        print("Got a an error: ", err)
        errors.append(err)

    wsapp = websocket.WebSocketApp(server.url + "/", on_message=on_message, on_error=on_error)
    run_app(wsapp)

    assert output.lines() == ["first", "Got a an error:  cannot handle first", "second"]
    [error] = errors
    assert isinstance(error, ValueError) and error.__traceback__ is not None


# --------------------------------------------------------------------- threading.rst


Callback = Callable[..., None]


def _on_close_script(
    *, in_thread: bool
) -> tuple[Callback, Callback, Callback, list[threading.Thread]]:
    """threading.rst's first two examples: on_open sends "hi", on_message closes (in a
    thread of its own in the second)."""
    threads: list[threading.Thread] = []

    def on_open(ws: Any) -> None:
        ws.send("hi")

    def on_message(ws: Any, message: Any) -> None:
        def run(*args: Any) -> None:
            print(message)
            ws.close()
            print("Message received...")

        if in_thread:
            thread = threading.Thread(target=run)
            threads.append(thread)
            thread.start()
        else:
            run()

    def on_close(ws: Any, close_status_code: Any, close_msg: Any) -> None:
        print(">>>>>>CLOSED")

    return on_open, on_message, on_close, threads


@pytest.mark.parametrize("in_thread", [False, True], ids=["without", "with"])
def test_threading_on_close_examples(
    ws_server: WSServerFactory, capsys: Any, in_thread: bool
) -> None:
    """threading.rst "Possible issues with threading": the "NOT working on_close()
    example, without threading" and the "Working on_close() example, with threading":
    in wspool on_close runs in both (ws.close() from a callback is fine)."""
    server = ws_server()
    output = Output(capsys)
    on_open, on_message, on_close, threads = _on_close_script(in_thread=in_thread)

    websocket.enableTrace(True)
    wsapp = websocket.WebSocketApp(
        server.url + "/ws/1", on_open=on_open, on_message=on_message, on_close=on_close
    )
    assert run_app(wsapp) is False

    for thread in threads:
        thread.join(WAIT)
    output.wait_for("Message received...")
    lines = output.lines()
    assert lines[0] == "hi"
    assert sorted(lines[1:]) == [">>>>>>CLOSED", "Message received..."]
    assert server.connections[0].close_received == (1000, b"")


@pytest.mark.parametrize("delay", ["sleep", "timer"])
def test_threading_on_close_with_delays(
    ws_server: WSServerFactory, capsys: Any, delay: str
) -> None:
    """threading.rst: the "NOT working on_close() example, with sleep delay" (on_message
    sleeps while the main thread calls ws.close()) and the "Working on_close() example,
    with threading delay" (on_message arms a threading.Timer that closes): on_close runs
    once in both.  Changed: 0.2 s and 0.1 s instead of 2 s and 1 s, the greeting server
    (echo.websocket.events spoke first)."""
    server = ws_server(greet_then_echo)
    output = Output(capsys)
    timers: list[threading.Timer] = []

    def on_close(ws: Any, close_status_code: Any, close_msg: Any) -> None:
        print("### closed ###")

    def on_message(ws: Any, message: Any) -> None:
        print(message)
        if delay == "sleep":
            time.sleep(0.2)
        else:
            timer = threading.Timer(0.2, ws.close)
            timers.append(timer)
            timer.start()

    websocket.enableTrace(True)
    host = server.url + "/"
    ws = websocket.WebSocketApp(host, on_message=on_message, on_close=on_close)
    runner = threading.Thread(target=ws.run_forever)
    runner.start()
    time.sleep(0.1)
    ws.close()

    runner.join(WAIT)
    assert not runner.is_alive(), "run_forever did not return after ws.close()"
    for timer in timers:
        timer.join(WAIT)
    assert output.lines().count("### closed ###") == 1
    assert wait_until(lambda: server.connections[0].closed)
    assert server.connections[0].close_received == (1000, b"")


# --------------------------------------------------------------------- the API behind them


def test_run_forever_ignores_an_unknown_option_with_a_hint(ws_server: WSServerFactory) -> None:
    """websocket-client's run_forever ignores keyword options it does not know; wspool
    warns (UnknownOptionWarning) naming the closest known one, and runs."""
    server = ws_server(close_at_once)
    opened: list[bool] = []
    wsapp = websocket.WebSocketApp(server.url, on_open=lambda ws: opened.append(True))
    with pytest.warns(websocket.UnknownOptionWarning, match=r"'origni'.*did you mean 'origin'\?"):
        assert run_app(wsapp, origni="testing_websockets.com") is False
    assert opened == [True]
    assert server.requests[0].get("Origin") == f"http://127.0.0.1:{server.port}"


def test_keep_running_false_in_on_open_ends_run_forever(ws_server: WSServerFactory) -> None:
    """``ws.keep_running = False`` (websocket-client's loop flag) from on_open ends the
    run: closing handshake, on_close, run_forever returns False."""
    server = ws_server()
    closes: list[tuple[Any, Any]] = []

    def on_open(ws: Any) -> None:
        ws.keep_running = False

    wsapp = websocket.WebSocketApp(
        server.url, on_open=on_open, on_close=lambda ws, code, msg: closes.append((code, msg))
    )
    assert run_app(wsapp) is False
    assert len(closes) == 1
    assert server.connections[0].close_received == (1000, b"")


def test_sock_shutdown_ends_run_forever(ws_server: WSServerFactory) -> None:
    """``ws.sock.shutdown()`` from a callback drops the connection at once (no closing
    handshake); run_forever returns and on_close runs once."""
    server = ws_server(greet_then_echo)
    closes: list[tuple[Any, Any]] = []

    def on_message(ws: Any, message: Any) -> None:
        ws.sock.shutdown()

    wsapp = websocket.WebSocketApp(
        server.url,
        on_message=on_message,
        on_close=lambda ws, code, msg: closes.append((code, msg)),
    )
    run_app(wsapp)
    assert closes == [(None, None)]
    assert wait_until(lambda: server.connections[0].closed)
    assert server.connections[0].close_received is None
    assert wsapp.sock is None


def _drop_first_connection() -> tuple[list[WSServer], Callable[[ServerConnection], None]]:
    box: list[WSServer] = []

    def handler(conn: ServerConnection) -> None:
        conn.send_message(f"connection {len(box[0].connections)}")
        if len(box[0].connections) == 1:
            conn.abort()  # a lost connection (TCP reset), not a close
            return
        echo_handler(conn)

    return box, handler


def test_set_reconnect_is_the_default_delay(ws_server: WSServerFactory, capsys: Any) -> None:
    """websocket.set_reconnect(n): run_forever's reconnect delay when it is given none;
    a lost connection is opened again (on_reconnect instead of on_open).  Changed: 0.05 s."""
    box, handler = _drop_first_connection()
    server = ws_server(handler)
    box.append(server)
    output = Output(capsys)

    def on_message(ws: Any, message: Any) -> None:
        print(message)
        if message == "connection 2":
            ws.close()

    wsapp = websocket.WebSocketApp(
        server.url,
        on_open=lambda ws: print("open"),
        on_reconnect=lambda ws: print("reconnect"),
        on_message=on_message,
    )
    websocket.set_reconnect(0.05)
    try:
        runner = run_in_thread(wsapp.run_forever, name="run_forever")
        output.wait_for("connection 2")
    finally:
        websocket.set_reconnect(0)
    assert runner.result() is True  # an error led to the reconnect
    assert output.lines() == ["open", "connection 1", "reconnect", "connection 2"]
    assert server.accepted == 2
