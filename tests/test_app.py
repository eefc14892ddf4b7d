"""wspool.app.WebSocketApp: websocket-client scripts running on the pool, against the
real test server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import WAIT, ThreadRun, run_in_thread, run_python, wait_until
from wsserver import ServerConnection, WSServer, echo_handler

import wspool
from wspool.app import AppSocket, WebSocketApp, shared_pool
from wspool.pool import Pool

WSServerFactory = Callable[..., WSServer]


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=3) as p:
        yield p


class Events:
    """Thread-safe record of app callback calls as ``(name, *args)`` tuples, with waits
    instead of sleeps.  (Pool tests use helpers.CallbackRecorder; an app's callbacks
    get the app first, and these tests record only what follows it.)"""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.calls: list[tuple[Any, ...]] = []

    def add(self, *call: Any) -> None:
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()

    def wait(
        self, predicate: Callable[[list[tuple[Any, ...]]], bool], timeout: float = WAIT
    ) -> None:
        if not wait_until(lambda: predicate(self.calls), timeout, condition=self.cond):
            raise AssertionError(f"timed out; calls: {self.calls[-10:]}")

    def names(self, *, errors: bool = True) -> list[str]:
        with self.cond:
            return [c[0] for c in self.calls if errors or c[0] != "error"]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [c[1:] for c in self.calls if c[0] == name]


def recording_app(url: str, events: Events, **kwargs: Any) -> WebSocketApp:
    """An app whose callbacks (those not given in kwargs) record into ``events``."""
    callbacks: dict[str, Any] = {
        "on_open": lambda ws: events.add("open"),
        "on_message": lambda ws, msg: events.add("message", msg),
        "on_error": lambda ws, exc: events.add("error", exc),
        "on_close": lambda ws, code, reason: events.add("close", code, reason),
    }
    callbacks.update(kwargs)
    return WebSocketApp(url, **callbacks)


def run_forever_in_thread(app: WebSocketApp, **options: Any) -> ThreadRun:
    """``app.run_forever(**options)`` in a thread; ``.result()`` joins it and returns
    what run_forever returned (raising what it raised)."""
    return run_in_thread(lambda: app.run_forever(**options), name="run_forever")


def test_websocket_client_style_script_runs_and_returns(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server()
    events = Events()
    seen_during_open: list[Any] = []

    def on_open(ws: WebSocketApp) -> None:
        events.add("open")
        sock = ws.sock
        seen_during_open.extend([isinstance(sock, AppSocket), sock and sock.connected])
        seen_during_open.append(ws.keep_running)
        ws.send("hello")
        ws.send(b"bytes-as-text")  # websocket-client's default opcode is text
        ws.send_bytes(b"\x00\x01")

    def on_message(ws: WebSocketApp, message: Any) -> None:
        events.add("message", message)
        if len(events.of("message")) == 3:
            ws.close()

    def on_close(ws: WebSocketApp, code: Any, reason: Any) -> None:
        events.add("close", code, reason, threading.get_ident(), ws.sock)

    app = recording_app(
        server.url,
        events,
        pool=pool,
        on_open=on_open,
        on_message=on_message,
        on_close=on_close,
        on_data=lambda ws, data, opcode, fin: events.add("data", data, opcode, fin),
    )
    # ping_timeout without ping_interval is accepted and unused, as in websocket-client.
    assert app.run_forever(ping_timeout=5) is False
    assert events.names() == ["open"] + ["data", "message"] * 3 + ["close"]
    assert [m for (m,) in events.of("message")] == ["hello", "bytes-as-text", b"\x00\x01"]
    assert events.of("data")[1] == ("bytes-as-text", 1, True)
    assert events.of("data")[2] == (b"\x00\x01", 2, True)
    # RFC 6455 §7.1.2: the server echoed our 1000; on_close ran on run_forever's thread
    # with the app no longer connected.
    assert events.of("close") == [(1000, "", threading.get_ident(), None)]
    assert seen_during_open == [True, True, True]
    assert app.keep_running is False and app.sock is None and app.has_errored is False
    with pytest.raises(wspool.WebSocketConnectionClosedException, match="already closed"):
        app.send("late")


def test_handshake_options_reach_the_server(pool: Pool, ws_server: WSServerFactory) -> None:
    from wsserver import accept

    server = ws_server(handshake=lambda request: accept(request, subprotocol="chat"))
    events = Events()

    def on_open(ws: WebSocketApp) -> None:
        assert ws.sock is not None
        events.add("open", ws.sock.getsubprotocol())
        ws.close()

    app = recording_app(
        server.url,
        events,
        pool=pool,
        header=lambda: ["X-Token: t-1"],  # callable headers are evaluated per run
        cookie="session=abc",
        subprotocols=["chat", "other"],
        on_open=on_open,
    )
    assert app.run_forever(origin="http://example.test", compression=None) is False
    assert events.of("open") == [("chat",)]
    request = server.requests[0]
    assert request.get("X-Token") == "t-1"
    assert request.get("Cookie") == "session=abc"
    assert request.get("Origin") == "http://example.test"
    assert request.subprotocols == ["chat", "other"]
    assert request.get("Sec-WebSocket-Extensions") is None


def _hello_then_echo(conn: ServerConnection) -> None:
    conn.send_message("hello")
    echo_handler(conn)


def test_reconnect_after_server_restart_calls_on_reconnect_instead_of_on_open(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """RFC 6455 §7.2.3: a lost connection is opened again after a delay.  As in
    websocket-client, on_reconnect runs instead of on_open (on_open when there is no
    on_reconnect), and on_close only once, at the very end."""
    first = ws_server(_hello_then_echo)
    with_hook, without_hook = Events(), Events()
    apps = [
        recording_app(
            first.url, with_hook, pool=pool, on_reconnect=lambda ws: with_hook.add("reconnect")
        ),
        recording_app(first.url, without_hook, pool=pool),
    ]
    runners = []
    for app in apps:
        runners.append(run_forever_in_thread(app, reconnect=0.05))
    for events in (with_hook, without_hook):
        events.wait(lambda calls: ("message", "hello") in calls)
    first.stop()
    for events in (with_hook, without_hook):
        events.wait(lambda calls: any(c[0] == "error" for c in calls))
    second = ws_server(_hello_then_echo, port=first.port)
    for events in (with_hook, without_hook):
        events.wait(lambda calls: calls.count(("message", "hello")) == 2)
    for app in apps:
        app.close()
    assert [runner.result() for runner in runners] == [True, True]  # an error happened
    assert second.accepted == 2
    assert with_hook.names(errors=False) == ["open", "message", "reconnect", "message", "close"]
    assert without_hook.names(errors=False) == ["open", "message", "open", "message", "close"]
    for events in (with_hook, without_hook):
        assert all(isinstance(exc, wspool.WebSocketException) for (exc,) in events.of("error"))
        assert events.of("close") == [(1000, "")]


def test_server_close_frame_ends_the_app_even_with_reconnect(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """RFC 6455 §7.1.5: the server's close code and reason reach on_close; a clean
    close is not an error and is not followed by a reconnect (websocket-client)."""

    def close_at_once(conn: ServerConnection) -> None:
        conn.close(1000, "done for today")

    server = ws_server(close_at_once)
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    runner = run_forever_in_thread(app, reconnect=0.01)
    try:
        assert runner.result() is False
    finally:
        app.close()  # a wrong reconnect would otherwise keep it running
    assert events.names() == ["open", "close"]
    assert events.of("close") == [(1000, "done for today")]
    assert server.accepted == 1


def test_keepalive_pings_carry_ping_payload(pool: Pool, ws_server: WSServerFactory) -> None:
    """RFC 6455 §5.5.2/§5.5.3: keepalive pings carry ping_payload; the pong echoes it."""
    server = ws_server()
    events = Events()

    def on_pong(ws: WebSocketApp, data: bytes) -> None:
        events.add("pong", data)
        ws.close()

    app = recording_app(server.url, events, pool=pool, on_pong=on_pong)
    assert app.run_forever(ping_interval=0.05, ping_payload="hb") is False
    assert events.of("pong")[0] == (b"hb",)
    assert server.connections[0].pings[0] == b"hb"
    assert app.ping_interval == 0.05 and app.ping_payload == "hb"


def test_missing_pong_ends_the_app_with_an_error(pool: Pool, ws_server: WSServerFactory) -> None:
    def silent(conn: ServerConnection) -> None:
        conn.auto_pong = False
        conn.idle()

    server = ws_server(silent)
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    assert app.run_forever(ping_interval=0.2, ping_timeout=0.1) is True
    assert events.names() == ["open", "error", "close"]
    (error,) = events.of("error")[0]
    assert isinstance(error, wspool.WebSocketTimeoutException) and "ping_timeout" in str(error)
    assert events.of("close") == [(None, None)]  # no close frame came from the server
    assert app.has_errored is True


def test_server_ping_reaches_on_ping(pool: Pool, ws_server: WSServerFactory) -> None:
    """RFC 6455 §5.5.2: a ping from the server reaches on_ping (and is answered)."""

    def pinger(conn: ServerConnection) -> None:
        conn.send_ping(b"srv")
        echo_handler(conn)

    server = ws_server(pinger)
    events = Events()

    def on_ping(ws: WebSocketApp, data: bytes) -> None:
        events.add("ping", data)
        ws.close()

    app = recording_app(server.url, events, pool=pool, on_ping=on_ping)
    assert app.run_forever() is False
    assert events.of("ping") == [(b"srv",)]
    assert server.connections[0].pongs == [b"srv"]


def test_connection_error_reaches_on_error_and_run_forever_returns_true(pool: Pool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens: the connection is refused
    events = Events()
    app = recording_app(f"ws://127.0.0.1:{port}/", events, pool=pool)
    assert app.run_forever() is True
    assert events.names() == ["error", "close"]
    (error,) = events.of("error")[0]
    # websocket-client's type for a refused port, its message naming the URL.
    assert isinstance(error, ConnectionRefusedError) and "refused" in str(error).lower()
    assert f"127.0.0.1:{port}" in str(error)
    assert events.of("close") == [(None, None)]


def test_callback_exception_reaches_on_error_as_itself(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    def feed(conn: ServerConnection) -> None:
        for i in range(3):
            conn.send_message(str(i))
        echo_handler(conn)

    server = ws_server(feed)
    events = Events()
    raised: list[BaseException] = []

    def on_message(ws: WebSocketApp, message: Any) -> None:
        events.add("message", message)
        if message == "0":
            exc = ValueError("bad first message")
            raised.append(exc)
            raise exc
        if message == "2":
            ws.close()

    app = recording_app(server.url, events, pool=pool, on_message=on_message)
    # A failing callback is not a connection error: the app goes on, returns False.
    assert app.run_forever() is False
    assert events.names() == ["open", "message", "error", "message", "message", "close"]
    assert events.of("error")[0][0] is raised[0]  # websocket-client passes the exception


def test_failing_on_close_is_reported_to_on_error(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    events = Events()

    def on_close(ws: WebSocketApp, code: Any, reason: Any) -> None:
        raise RuntimeError("on_close broke")

    app = recording_app(
        server.url, events, pool=pool, on_open=lambda ws: ws.close(), on_close=on_close
    )
    assert app.run_forever() is False
    (error,) = events.of("error")[0]
    assert isinstance(error, RuntimeError) and str(error) == "on_close broke"


def test_close_from_another_thread(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    runner = run_forever_in_thread(app)
    events.wait(lambda calls: ("open",) in calls)
    assert app.keep_running is True
    with pytest.raises(wspool.WebSocketException, match="already running"):
        app.run_forever()
    app.close(status=1001, reason="leaving")
    assert runner.result() is False
    assert events.names() == ["open", "close"]
    assert events.of("close") == [(1001, "")]  # the echo server returns the code only
    assert server.connections[0].close_received == (1001, b"leaving")
    assert app.keep_running is False and app.sock is None
    # The same app can run again, as a websocket-client app can.
    app.on_open = lambda ws: (events.add("open"), ws.close())
    assert app.run_forever() is False
    assert events.names() == ["open", "close", "open", "close"]


def test_two_apps_in_two_threads_share_one_pool(ws_server: WSServerFactory) -> None:
    server = ws_server()
    both_open = threading.Barrier(2, timeout=10)
    seen: dict[str, list[Any]] = {"a": [], "b": []}

    def make(name: str) -> WebSocketApp:
        def on_open(ws: WebSocketApp) -> None:
            both_open.wait()  # both connections are open on the pool at the same time
            seen[name].append(len(ws.pool.connections))
            ws.send(f"from {name}")

        def on_message(ws: WebSocketApp, message: Any) -> None:
            seen[name].append(message)
            ws.close()

        return WebSocketApp(server.url, on_open=on_open, on_message=on_message)

    apps = [make("a"), make("b")]
    runners = [run_forever_in_thread(app) for app in apps]
    assert [runner.result() for runner in runners] == [False, False]
    assert apps[0].pool is apps[1].pool is shared_pool()
    assert seen["a"][0] >= 2 and seen["a"][1:] == ["from a"]
    assert seen["b"][0] >= 2 and seen["b"][1:] == ["from b"]


def test_unsupported_and_invalid_arguments_raise_clearly() -> None:
    url = "ws://127.0.0.1:9/"
    config_error = wspool.WebSocketConfigurationException
    with pytest.raises(config_error, match=r"on_cont_message.*whole messages"):
        WebSocketApp(url, on_cont_message=lambda ws, data, fin: None)
    app = WebSocketApp(url)
    with pytest.raises(config_error, match=r"dispatcher=<object .*read\(sock, callback\)"):
        app.run_forever(dispatcher=object())
    with pytest.raises(config_error, match=r"ping_timeout .* shorter than ping_interval"):
        app.run_forever(ping_interval=1, ping_timeout=2)
    with pytest.raises(
        config_error, match=r"ping_timeout=0 is invalid: it must be a number of seconds > 0"
    ):
        app.run_forever(ping_interval=1, ping_timeout=0)
    with pytest.raises(config_error, match=r"ping_interval=-1 is invalid"):
        app.run_forever(ping_interval=-1)
    with pytest.raises(config_error, match="reconnect must be"):
        app.run_forever(reconnect=-1)
    with pytest.raises(ValueError, match="reconnect must be"):  # also a ValueError
        app.run_forever(reconnect="soon")  # type: ignore[arg-type]
    app.on_cont_message = lambda ws, data, fin: None  # set after construction
    with pytest.raises(config_error, match="on_cont_message"):
        app.run_forever()
    assert app.keep_running is False  # nothing started
    with pytest.raises(wspool.WebSocketConnectionClosedException):
        app.send("not running")


_INTERRUPTED = """
import os, signal, threading
from wsserver import WSServer
from wspool.app import WebSocketApp

server = WSServer().start()
def on_open(ws):
    threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
app = WebSocketApp(
    server.url,
    on_open=on_open,
    on_error=lambda ws, e: print("on_error", type(e).__name__, flush=True),
    on_close=lambda ws, code, reason: print("on_close", code, flush=True),
)
print("returned", app.run_forever(), flush=True)
server.stop()
"""


def test_ctrl_c_closes_and_run_forever_returns_true() -> None:
    """As in websocket-client 1.8: KeyboardInterrupt goes to on_error, the connection is
    closed (RFC 6455 §7.1.2 handshake), on_close runs and run_forever returns True."""
    result = run_python(_INTERRUPTED, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["on_error KeyboardInterrupt", "on_close 1000", "returned True"], (
        result.stdout + result.stderr
    )
