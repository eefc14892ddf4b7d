"""wspool.Pool against the real test server: many connections, ordering, keepalive,
reconnect, backpressure, errors in callbacks and a clean shutdown."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import CallbackRecorder, open_fds, run_python, wait_until
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer, accept

import wspool
from wspool.pool import CallbackError, Connection, ConnectionState, Pool

WSServerFactory = Callable[..., WSServer]


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=4) as p:
        yield p


def test_echo_open_message_close(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    cbs = rec.callbacks(on_open=lambda c: (c.send("hello"), c.send(b"\x00bin")))
    conn = pool.connect(server.url, label="a", **cbs)
    rec.wait_messages(2, label="a")
    assert rec.messages("a") == ["hello", b"\x00bin"]
    assert conn.state is ConnectionState.OPEN
    assert conn.extensions == ["permessage-deflate"]
    conn.close(1000, "bye")
    assert conn.wait_closed(5)
    assert rec.names("a") == ["open", "message", "message", "close"]
    assert rec.calls[-1].args == (1000, "")
    assert conn.state is ConnectionState.CLOSED
    # invariant 3 (docs/architecture.md): callbacks run on the pool's workers, never on
    # the dispatcher or the caller's thread
    callback_threads = {t.name for t in rec.threads()}
    assert pool.dispatcher.name not in callback_threads
    assert threading.current_thread().name not in callback_threads
    with pytest.raises(wspool.WebSocketConnectionClosedException, match="already closed"):
        conn.send("late")


def _numbered_feed(count: int) -> Callable[[ServerConnection], None]:
    def handler(conn: ServerConnection) -> None:
        for i in range(count):
            conn.send_message(str(i))
        try:
            conn.recv_message(timeout=30)
        except PeerClosed:
            return
        conn.send_close(1000)
        conn.close_tcp()

    return handler


def test_hundreds_of_connections_keep_per_connection_order(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    n_conn, n_msg = 200, 50
    server = ws_server(_numbered_feed(n_msg))
    rec = CallbackRecorder()
    for i in range(n_conn):
        pool.connect(server.url, label=i, compression=None, **rec.callbacks())
    rec.wait_messages(n_conn * n_msg, timeout=30)
    for i in range(n_conn):
        assert rec.messages(i) == [str(k) for k in range(n_msg)], i
        assert rec.names(i)[0] == "open"
    assert rec.count("error") == 0


def test_callbacks_of_different_connections_run_in_parallel(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server(_numbered_feed(1))
    barrier = threading.Barrier(2, timeout=10)
    passed: list[bool] = []

    def on_message(conn: Connection, msg: Any) -> None:
        barrier.wait()  # both connections' callbacks must be in flight at once
        passed.append(True)

    for label in ("x", "y"):
        pool.connect(server.url, label=label, on_message=on_message)
    wait_until(lambda: len(passed) >= 2, timeout=10)
    assert passed == [True, True]


def test_sends_from_many_threads_arrive_intact_and_in_order(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    received: dict[int, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def recorder(conn: ServerConnection) -> None:
        port = conn.sock.getpeername()[1]
        while True:
            try:
                opcode, data = conn.recv_message(timeout=30)
            except PeerClosed:
                return
            if opcode == Opcode.CLOSE:
                conn.send_close(1000)
                conn.close_tcp()
                return
            with lock:
                received[port].append(data.decode())

    server = ws_server(recorder)
    rec = CallbackRecorder()
    conns = [pool.connect(server.url, label=i, **rec.callbacks()) for i in range(100)]
    rec.wait_open(100)
    per_thread = 20

    def sender(t: int) -> None:
        for k in range(per_thread):
            for conn in conns:
                conn.send(f"{t}:{k}:" + "x" * (k * 37))

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def all_received() -> bool:
        with lock:
            return sum(len(v) for v in received.values()) == 100 * 8 * per_thread

    wait_until(all_received, timeout=20, interval=0.02)
    with lock:
        assert len(received) == 100
        for messages in received.values():
            assert len(messages) == 8 * per_thread
            for t in range(8):
                mine = [m for m in messages if m.startswith(f"{t}:")]
                assert [int(m.split(":")[1]) for m in mine] == list(range(per_thread))
                assert all(m.endswith("x" * (int(m.split(":")[1]) * 37)) for m in mine)


def test_server_restart_reconnects_with_paired_open_and_close(ws_server: WSServerFactory) -> None:
    first = ws_server(_numbered_feed(3))
    port = first.port
    rec = CallbackRecorder()
    with Pool(workers=2) as pool:
        conns = [
            pool.connect(
                first.url,
                label=i,
                reconnect={"initial_delay": 0.05, "max_delay": 0.2},
                compression=None,
                **rec.callbacks(),
            )
            for i in range(10)
        ]
        rec.wait_messages(30)
        first.stop()
        rec.wait_closed(10)
        second = ws_server(_numbered_feed(3), port=port)
        rec.wait_messages(60, timeout=15)
        assert second.accepted >= 10
        for i in range(10):
            names = [n for n in rec.names(i) if n != "error"]
            assert names == ["open"] + ["message"] * 3 + ["close", "open"] + ["message"] * 3
            assert rec.messages(i) == ["0", "1", "2"] * 2  # nothing delivered twice
            assert conns[i].stats.reconnects == 1


def test_missing_pong_is_detected_and_reported(pool: Pool, ws_server: WSServerFactory) -> None:
    def silent(conn: ServerConnection) -> None:
        conn.auto_pong = False
        conn.idle()

    server = ws_server(silent)
    rec = CallbackRecorder()
    started = time.monotonic()
    conn = pool.connect(
        server.url, label="p", ping_interval=0.2, ping_timeout=0.1, **rec.callbacks()
    )
    rec.wait_closed(timeout=5)
    elapsed = time.monotonic() - started
    errors = rec.errors()
    assert isinstance(errors[0], wspool.WebSocketTimeoutException)
    assert "ping_timeout" in str(errors[0]) and server.url.split("//")[1] in str(errors[0])
    assert rec.calls[-1].args[0] == 1011
    assert elapsed < 5
    assert conn.state is ConnectionState.CLOSED


def test_pong_measures_round_trip_time(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    before = time.time()
    conn = pool.connect(server.url, label="r", ping_interval=0.05, **rec.callbacks())
    rec.wait_open()
    assert conn.stats.last_ping_at is None or conn.stats.last_ping_at >= before

    def rtt_measured() -> bool:
        if conn.stats.last_rtt is not None:
            return True
        conn.send("tick")  # events carry the RTT into stats
        return False

    wait_until(rtt_measured, timeout=5, interval=0.02)
    assert conn.stats.last_rtt is not None and conn.stats.last_rtt >= 0
    sent = conn.stats.last_ping_at  # time.time() of the last keepalive ping
    assert sent is not None and before <= sent <= time.time()


def test_callback_exception_reaches_on_error_and_delivery_goes_on(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server(_numbered_feed(5))
    rec = CallbackRecorder()

    def on_message(conn: Connection, msg: Any) -> None:
        if msg == "2":
            raise ValueError("boom on two")

    pool.connect(server.url, label="feed-7", **rec.callbacks(on_message=on_message))
    rec.wait_messages(5, label="feed-7")
    rec.wait_for(lambda: rec.count("error") == 1)
    error = rec.errors()[0]
    assert isinstance(error, CallbackError)
    assert isinstance(error.original, ValueError)
    assert error.callback == "on_message"
    assert "feed-7" in str(error) and "'2'" in str(error)
    text = error.format()
    assert "boom on two" in text and "Traceback" in text and "on_message" in text


def test_callback_exception_without_on_error_is_logged(
    pool: Pool, ws_server: WSServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = ws_server(_numbered_feed(2))
    seen: list[Any] = []

    def on_message(conn: Connection, msg: Any) -> None:
        seen.append(msg)
        if msg == "0":
            raise RuntimeError("logged, not lost")

    with caplog.at_level("ERROR", logger="wspool"):
        pool.connect(server.url, on_message=on_message)
        wait_until(lambda: len(seen) >= 2, timeout=5)
    assert seen == ["0", "1"]
    assert any("logged, not lost" in r.getMessage() or r.exc_info for r in caplog.records)


def test_slow_callback_pauses_reading_and_loses_nothing(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    total, pad = 3000, 1000
    padding = "." * pad

    def padded_feed(conn: ServerConnection) -> None:
        for i in range(total):
            conn.send_message(f"{i}:{padding}")
        try:
            conn.recv_message(timeout=30)
        except PeerClosed:
            return
        conn.send_close(1000)
        conn.close_tcp()

    server = ws_server(padded_feed)
    gate = threading.Event()
    seen: list[str] = []

    def on_message(conn: Connection, msg: Any) -> None:
        gate.wait(10)
        seen.append(msg)

    try:
        conn = pool.connect(server.url, on_message=on_message, max_queue=100, compression=None)
        wait_until(lambda: conn.queue_depth >= 100, timeout=5)
        time.sleep(0.2)  # the server keeps sending; the client must not keep reading
        # Bounded: reading stops at the mark, so at most one more read (256 KiB, about
        # 260 of these ~1 KB messages) is queued past it, whatever the server sends.
        assert 100 <= conn.queue_depth <= 100 + 262 * 1024 // pad
    finally:
        gate.set()
    wait_until(lambda: len(seen) >= total, timeout=20)
    assert [m.split(":")[0] for m in seen] == [str(i) for i in range(total)]


def test_close_leaves_no_thread_socket_or_fd_behind(
    ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    server = ws_server()
    wspool.connect(server.url).close()  # the server's own threads are up now
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    pool = Pool(workers=3)
    rec = CallbackRecorder()
    for i in range(20):
        pool.connect(server.url, label=i, **rec.callbacks())
    rec.wait_open(20)
    assert open_fds() >= fds_before + 20
    pool.close()
    assert rec.count("close") == 20
    # close() has joined the pool's threads already: no grace period for them
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert leftover == []
    # no_fd_leaks checks every socket and fd (compared by target) at teardown


def test_bad_options_raise_at_connect(pool: Pool) -> None:
    with pytest.raises(wspool.WebSocketConfigurationException, match="ping_timeout"):
        pool.connect("ws://127.0.0.1:9/", ping_interval=1, ping_timeout=2)
    with pytest.raises(wspool.WebSocketConfigurationException, match=r"scheme|ws://"):
        pool.connect("http://127.0.0.1:9/")
    with pytest.raises(wspool.WebSocketConfigurationException, match="did you mean 'on_message'"):
        pool.connect("ws://127.0.0.1:9/", on_mesage=print)


def test_refused_handshake_is_not_retried_unless_retryable(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    from wsserver import refuse

    server = ws_server(handshake=lambda request: refuse(403, b"go away"))
    rec = CallbackRecorder()
    pool.connect(server.url, label="r", reconnect={"initial_delay": 0.01}, **rec.callbacks())
    rec.wait_closed()
    error = rec.errors()[0]
    assert isinstance(error, wspool.WebSocketBadStatusException) and error.status_code == 403
    assert server.accepted == 1


def test_untrusted_certificate_is_reported_and_not_retried(
    pool: Pool, ws_server: WSServerFactory, tls_server_ctx: Any
) -> None:
    server = ws_server(ssl_context=tls_server_ctx, check_errors=False)
    rec = CallbackRecorder()
    pool.connect(server.url, label="tls", reconnect={"initial_delay": 0.01}, **rec.callbacks())
    rec.wait_closed()
    error = rec.errors()[0]
    assert isinstance(error, wspool.WebSocketTLSException)
    assert "certificate" in str(error)


def test_close_while_connecting_and_abort(pool: Pool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        rec = CallbackRecorder()
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        conn = pool.connect(url, label="c", **rec.callbacks())
        conn.close()
        assert conn.wait_closed(5)
        other = pool.connect(url, label="a", **rec.callbacks())
        other.abort()
        assert other.wait_closed(5)
        assert rec.names("c") == ["close"] and rec.names("a") == ["close"]
    finally:
        listener.close()


def test_run_forever_returns_when_every_connection_closed(ws_server: WSServerFactory) -> None:
    def close_soon(conn: ServerConnection) -> None:
        conn.send_message("bye")
        conn.close(1000, "done")

    server = ws_server(close_soon)
    rec = CallbackRecorder()
    with Pool(workers=2) as pool:
        for i in range(5):
            pool.connect(server.url, label=i, **rec.callbacks())
        assert pool.run_forever() is False
        assert pool.connections == []
    assert rec.count("close") == 5 and rec.count("message") == 5


def test_stats(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server(_numbered_feed(10))
    rec = CallbackRecorder()
    conn = pool.connect(server.url, label="s", **rec.callbacks())
    rec.wait_messages(10, label="s")
    conn.send("x")
    stats = pool.stats()
    assert stats["connections"] == 1 and stats["open"] == 1
    assert stats["messages_in"] == 10 and stats["messages_out"] == 1
    assert conn.stats.bytes_in >= 10 and conn.stats.last_message_at is not None
    assert stats["per_connection"][0]["label"] == "s"


_EMBEDDED = """
from wsserver import WSServer
import wspool

server = WSServer().start()
pool = wspool.Pool(workers=2)
done = []
pool.connect(server.url, on_open=lambda c: c.send("x"),
             on_close=lambda c, code, reason: print("on_close", code, flush=True))
import time
time.sleep(0.3)
print("leaving without close", flush=True)
"""


def test_embedded_pool_closes_cleanly_at_interpreter_exit() -> None:
    result = run_python(_EMBEDDED, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "leaving without close" in result.stdout
    assert "on_close 1000" in result.stdout, result.stdout + result.stderr


_INTERRUPTED = """
import os, signal, threading
from wsserver import WSServer
import wspool

server = WSServer().start()
pool = wspool.Pool(workers=2)
opened = threading.Event()
pool.connect(server.url, on_open=lambda c: opened.set(),
             on_close=lambda c, code, reason: print("on_close", code, flush=True))
opened.wait(5)
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
print("run_forever returned", pool.run_forever(), flush=True)
pool.close()
server.stop()
"""


def test_ctrl_c_closes_every_connection() -> None:
    result = run_python(_INTERRUPTED, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "on_close 1000" in result.stdout and "run_forever returned True" in result.stdout


def test_host_names_are_resolved_off_the_dispatcher(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    cbs = rec.callbacks(on_open=lambda c: c.send("named"))
    # "localhost" may resolve to ::1 first, where nothing listens: every address is tried.
    pool.connect(f"ws://localhost:{server.port}/", label="n", **cbs)
    rec.wait_for(lambda: rec.messages("n") == ["named"])


def test_retryable_status_is_retried_until_accepted(pool: Pool, ws_server: WSServerFactory) -> None:
    from wsserver import refuse

    answers = iter([refuse(503, b"busy"), refuse(429, b"slow down")])
    server = ws_server(handshake=lambda request: next(answers, None))
    rec = CallbackRecorder()
    pool.connect(
        server.url,
        label="r",
        reconnect={"initial_delay": 0.01, "max_delay": 0.05},
        **rec.callbacks(),
    )
    rec.wait_open()
    statuses = [error.status_code for error in rec.errors()]
    assert statuses == [503, 429]
    assert rec.names("r") == ["error", "error", "open"]


def test_max_attempts_ends_the_connection(pool: Pool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens: every attempt is refused
    rec = CallbackRecorder()
    conn = pool.connect(
        f"ws://127.0.0.1:{port}/",
        label="m",
        reconnect={"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 2},
        **rec.callbacks(),
    )
    assert conn.wait_closed(5)
    assert rec.names("m") == ["error", "error", "error", "close"]
    assert "refused" in str(rec.errors("m")[0]).lower()


def test_normal_server_close_reconnects_only_when_configured(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    def close_at_once(conn: ServerConnection) -> None:
        conn.close(1000, "maintenance")

    server = ws_server(close_at_once)
    rec = CallbackRecorder()
    quiet = pool.connect(
        server.url,
        label="no",
        reconnect={"initial_delay": 0.01, "on_normal_close": False},
        **rec.callbacks(),
    )
    assert quiet.wait_closed(5)
    assert rec.names("no") == ["open", "close"]
    again = pool.connect(
        server.url, label="yes", reconnect={"initial_delay": 0.01}, **rec.callbacks()
    )
    rec.wait_open(3, label="yes")
    again.close()
    assert again.wait_closed(5)
    names = rec.names("yes")
    assert names.count("open") == names.count("close")  # every open pairs with a close


def test_ping_pong_data_and_reconnect_callbacks(ws_server: WSServerFactory) -> None:
    def chatty(conn: ServerConnection) -> None:
        conn.send_ping(b"srv-ping")
        conn.send_message(b"\x01\x02")
        conn.close(1001, "going away")

    server = ws_server(chatty)
    seen: list[tuple[Any, ...]] = []
    done = threading.Event()

    def on_open(conn: Connection) -> None:
        seen.append(("open",))
        conn.ping(b"cli-ping")

    def on_close(conn: Connection, code: int, reason: str) -> None:
        seen.append(("close", code, reason))
        if conn.stats.reconnects >= 1:
            conn.close()
            done.set()

    with Pool(workers=2) as pool:
        pool.connect(
            server.url,
            reconnect={"initial_delay": 0.01},
            on_open=on_open,
            on_close=on_close,
            on_ping=lambda c, d: seen.append(("ping", d)),
            on_pong=lambda c, d: seen.append(("pong", d)),
            on_data=lambda c, d, op, fin: seen.append(("data", d, op, fin)),
            on_reconnect=lambda c: seen.append(("reconnect",)),
        )
        assert done.wait(10)
    first = seen[: seen.index(("close", 1001, "going away")) + 1]
    assert first[0] == ("open",)
    assert ("ping", b"srv-ping") in first
    assert ("data", b"\x01\x02", 2, True) in first
    rest = seen[len(first) :]
    assert rest[:2] == [("reconnect",), ("open",)]


def test_error_in_on_error_is_logged_and_delivery_continues(
    pool: Pool, ws_server: WSServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = ws_server(_numbered_feed(3))
    seen: list[Any] = []

    def on_message(conn: Connection, msg: Any) -> None:
        seen.append(msg)
        raise KeyError(msg)

    def on_error(conn: Connection, err: BaseException) -> None:
        raise RuntimeError("on_error itself failed")

    with caplog.at_level("ERROR", logger="wspool"):
        pool.connect(server.url, on_message=on_message, on_error=on_error)
        wait_until(lambda: len(seen) >= 3, timeout=5)
        time.sleep(0.05)
    assert seen == ["0", "1", "2"]
    assert sum("on_error raised" in r.getMessage() for r in caplog.records) == 3


def test_callback_error_format_with_locals(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server(_numbered_feed(1))
    errors: list[CallbackError] = []
    got = threading.Event()

    def on_message(conn: Connection, msg: Any) -> None:
        secret_local = "visible-in-locals"
        raise ValueError(secret_local[:3])

    def on_error(conn: Connection, err: BaseException) -> None:
        assert isinstance(err, CallbackError)
        errors.append(err)
        got.set()

    pool.connect(server.url, label={"feed": 1}, on_message=on_message, on_error=on_error)
    assert got.wait(5)
    assert "visible-in-locals" in errors[0].format(locals=True)
    assert "visible-in-locals" not in errors[0].format()
    assert "{'feed': 1}" in str(errors[0])


def test_close_while_waiting_to_reconnect_keeps_open_and_close_paired(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    def drop(conn: ServerConnection) -> None:
        conn.close_tcp()

    server = ws_server(drop)
    rec = CallbackRecorder()
    conn = pool.connect(
        server.url,
        label="w",
        reconnect={"initial_delay": 30, "max_delay": 30, "reset_after": 0},
        **rec.callbacks(),
    )
    rec.wait_closed()
    wait_until(lambda: conn.state is ConnectionState.RECONNECTING, timeout=5)
    assert conn.state is ConnectionState.RECONNECTING
    conn.close()
    assert conn.wait_closed(5)
    assert [n for n in rec.names("w") if n != "error"] == ["open", "close"]


def test_what_the_session_negotiated_stays_readable_after_it_ended(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    # A server that closes at once: on_open may run after the close was handled; the
    # subprotocol and headers it reads are still those of the opening.
    def choose(request: Any) -> Any:
        return accept(request, subprotocol=request.subprotocols[0])

    server = ws_server(lambda conn: conn.close(1000), handshake=choose)
    seen: list[Any] = []
    conn = pool.connect(
        server.url,
        subprotocols=["STOMP"],
        on_open=lambda c: seen.append((c.subprotocol, c.headers.get("sec-websocket-protocol"))),
    )
    assert conn.wait_closed(5)
    assert seen == [("STOMP", "STOMP")]
    assert conn.subprotocol == "STOMP" and conn.extensions == ["permessage-deflate"]
