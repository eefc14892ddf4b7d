"""The pool Connection's state machine: transitions, the close() races, DEBUG logging,
and the Pool meaning of ``timeout`` (a write that makes no progress).

Real sockets against the stdlib test server; no timing assertions beyond generous
bounds that only stop a broken build from hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import WSServerFactory
from helpers import CallbackRecorder, wait_until
from wsserver import ServerConnection

import wspool
from wspool import ConnectionState, Pool, ReconnectPolicy
from wspool.pool.connection import _TRANSITIONS

# A backoff no test waits for: a connection that is still RECONNECTING when close()
# comes must end at once, not after this.
LONG_BACKOFF = ReconnectPolicy(initial_delay=600.0, max_delay=600.0, reset_after=0.0)


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=2) as p:
        yield p


def close_at_once(conn: ServerConnection) -> None:
    conn.close(1011, "go away")


def test_every_state_has_a_way_out_and_closed_is_final() -> None:
    states = {state for state, _ in _TRANSITIONS} | set(_TRANSITIONS.values())
    assert states == set(ConnectionState)
    for state in ConnectionState:
        if state is not ConnectionState.CLOSED:
            assert any(
                new is ConnectionState.CLOSED or (old, event) == (state, "close")
                for (old, event), new in _TRANSITIONS.items()
                if old is state
            ), state
    # From CLOSED the only event is a repeated close(), which changes nothing.
    assert [(e, n) for (s, e), n in _TRANSITIONS.items() if s is ConnectionState.CLOSED] == [
        ("close", ConnectionState.CLOSED)
    ]


def test_close_while_waiting_to_reconnect_ends_at_once(
    ws_server: WSServerFactory, pool: Pool
) -> None:
    server = ws_server(close_at_once)
    rec = CallbackRecorder()
    conn = pool.connect(server.url, reconnect=LONG_BACKOFF, **rec.callbacks())
    rec.wait_closed()
    assert wait_until(lambda: conn.state is ConnectionState.RECONNECTING)
    conn.close()
    assert conn.wait_closed(5.0), conn.state
    assert conn.state is ConnectionState.CLOSED
    assert rec.names() == ["open", "close"]


def test_close_racing_the_session_that_just_ended(ws_server: WSServerFactory, pool: Pool) -> None:
    """close() from on_close (a worker) races the dispatcher deciding to reconnect:
    whichever wins, the connection ends at once and no new session is opened."""
    connections = []
    for _ in range(20):
        server = ws_server(close_at_once)
        rec = CallbackRecorder()
        conn = pool.connect(
            server.url,
            reconnect=LONG_BACKOFF,
            **rec.callbacks(on_close=lambda c, code, reason: c.close()),
        )
        connections.append((server, rec, conn))
    for server, rec, conn in connections:
        assert conn.wait_closed(5.0), conn.state
        assert rec.names() == ["open", "close"]
        assert len(server.requests) == 1  # never reopened


def test_close_from_another_thread_during_the_race(ws_server: WSServerFactory, pool: Pool) -> None:
    server = ws_server(close_at_once)
    for _ in range(10):
        rec = CallbackRecorder()
        opened = threading.Event()
        conn = pool.connect(
            server.url,
            reconnect=LONG_BACKOFF,
            **rec.callbacks(on_open=lambda c, opened=opened: opened.set()),
        )
        assert opened.wait(5.0)
        time.sleep(0.001)  # land somewhere around the server's close
        conn.close()
        assert conn.wait_closed(5.0), conn.state


def test_close_before_open_gives_open_then_close(ws_server: WSServerFactory, pool: Pool) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    conn = pool.connect(server.url, **rec.callbacks())
    conn.close()
    assert conn.wait_closed(5.0)
    # Either the session was stopped before it opened (on_close only) or it opened and
    # was closed at once (on_open, on_close): on_close is always last and once.
    assert rec.names() in (["close"], ["open", "close"])


def test_send_after_close_is_refused(ws_server: WSServerFactory, pool: Pool) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    conn = pool.connect(server.url, **rec.callbacks())
    rec.wait_open()
    conn.close()
    with pytest.raises(wspool.WebSocketConnectionClosedException):
        conn.send("too late")
    assert conn.wait_closed(5.0)


def test_transitions_are_logged_at_debug_without_credentials(
    ws_server: WSServerFactory, pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    server = ws_server()
    url = server.url.replace("ws://", "ws://user:s3cret@")
    caplog.set_level(logging.DEBUG, logger="wspool")
    rec = CallbackRecorder()
    conn = pool.connect(url, **rec.callbacks())
    rec.wait_open()
    conn.close()
    assert conn.wait_closed(5.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "wspool"]
    assert any("connecting -> open (opened)" in line for line in lines), lines
    assert any("open -> closing (close)" in line for line in lines), lines
    assert any("closing -> closed (ended)" in line for line in lines), lines
    assert any("session upgrading -> open" in line for line in lines), lines
    assert not any("s3cret" in line for line in lines)


def test_pool_timeout_drops_a_connection_whose_writes_stall(
    ws_server: WSServerFactory, pool: Pool
) -> None:
    """``timeout`` on the pool: a write that makes no progress for that long (the peer
    stopped reading) drops the connection, as a blocked sendall does in the blocking
    client."""
    release = threading.Event()

    def never_reads(conn: ServerConnection) -> None:
        release.wait(30)

    server = ws_server(never_reads, check_errors=False)
    rec = CallbackRecorder()
    conn = pool.connect(server.url, timeout=0.5, compression=None, **rec.callbacks())
    rec.wait_open()
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(64):  # far more than the loopback socket buffers hold
            if conn.state is not ConnectionState.OPEN:
                break
            conn.send(chunk)
        rec.wait_closed(timeout=10)
    finally:
        release.set()
    (error,) = rec.errors()
    assert isinstance(error, wspool.WebSocketTimeoutException)
    assert "timeout=0.5" in str(error) and "not reading" in str(error)


def test_pool_without_timeout_keeps_a_slow_reader(ws_server: WSServerFactory, pool: Pool) -> None:
    """The default (no ``timeout``): a peer that reads slowly is waited for."""

    def slow_reader(conn: ServerConnection) -> None:
        time.sleep(1.0)
        for _ in range(8):
            conn.recv_message()
        conn.send_message("done")
        conn.close(1000)

    server = ws_server(slow_reader)
    rec = CallbackRecorder()
    conn = pool.connect(server.url, compression=None, **rec.callbacks())
    rec.wait_open()
    for _ in range(8):
        conn.send(b"y" * (1 << 20))
    rec.wait_closed()
    assert rec.messages() == ["done"] and rec.errors() == []


# ------------------------------------------------------------ add_done_callback


def test_done_callback_runs_once_when_the_connection_ends(
    ws_server: WSServerFactory, pool: Pool
) -> None:
    """Once per connection, when it is CLOSED for good: not between reconnects; at
    once when added to a connection that has already ended."""
    server = ws_server(close_at_once)
    rec = CallbackRecorder()
    done: list[tuple[ConnectionState, str]] = []
    conn = pool.connect(server.url, reconnect=LONG_BACKOFF, **rec.callbacks())
    conn.add_done_callback(lambda c: done.append((c.state, threading.current_thread().name)))
    rec.wait_closed()
    assert wait_until(lambda: conn.state is ConnectionState.RECONNECTING)
    assert done == []  # a reconnect is coming: not done
    conn.close()
    assert conn.wait_closed(5.0)
    assert wait_until(lambda: len(done) == 1)
    assert [state for state, _ in done] == [ConnectionState.CLOSED]
    late: list[wspool.Connection] = []
    conn.add_done_callback(late.append)
    assert late == [conn]


def test_done_callback_when_the_pool_closes(ws_server: WSServerFactory) -> None:
    """Closing the pool ends its connections, also one waiting to reconnect."""
    server = ws_server(close_at_once)
    rec = CallbackRecorder()
    done = threading.Event()
    with Pool(workers=1) as own:
        conn = own.connect(server.url, reconnect=LONG_BACKOFF, **rec.callbacks())
        conn.add_done_callback(lambda c: done.set())
        rec.wait_closed()
        assert wait_until(lambda: conn.state is ConnectionState.RECONNECTING)
    assert done.wait(5.0)


def test_done_callback_error_is_logged(
    ws_server: WSServerFactory, pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    conn = pool.connect(server.url, **rec.callbacks())
    rec.wait_open()

    def broken(_conn: wspool.Connection) -> None:
        raise RuntimeError("boom")

    after: list[wspool.Connection] = []
    conn.add_done_callback(broken)
    conn.add_done_callback(after.append)
    with caplog.at_level(logging.ERROR, logger="wspool"):
        conn.close()
        assert conn.wait_closed(5.0)
        # Done callbacks run on the dispatcher right after the end, not before
        # wait_closed returns.
        assert wait_until(lambda: after == [conn]), "a failing one must not stop the next"
    assert any("done callback" in r.getMessage() and r.exc_info for r in caplog.records)
