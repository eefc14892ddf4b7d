"""``Pool(deliver="dispatcher")``: callbacks on the dispatcher thread (docs/architecture.md,
"Inline delivery"), against the real test server.

The behaviours every front end shares run on this mode too, through the ``pool-inline``
front end of ``tests/frontends.py``; here is what is particular to it: where the
callbacks run, the blocking waits it refuses, order and backpressure with no worker in
between, and a clean end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import CallbackRecorder, wait_until
from wsserver import PeerClosed, ServerConnection, WSServer

import wspool
from wspool.pool import Connection, Pool

WSServerFactory = Callable[..., WSServer]


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=2, deliver="dispatcher", name="inline") as p:
        yield p


def _numbered_feed(count: int, pad: int = 0) -> Callable[[ServerConnection], None]:
    padding = "." * pad

    def handler(conn: ServerConnection) -> None:
        for i in range(count):
            conn.send_message(f"{i}:{padding}" if pad else str(i))
        try:
            conn.recv_message(timeout=30)
        except PeerClosed:
            return
        conn.send_close(1000)
        conn.close_tcp()

    return handler


def test_a_bad_deliver_value_is_refused_with_the_choices() -> None:
    with pytest.raises(wspool.WebSocketConfigurationException, match=r"'workers'.*'dispatcher'"):
        Pool(deliver="inline")


def test_every_callback_runs_on_the_dispatcher_thread_in_order(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server(_numbered_feed(200))
    rec = CallbackRecorder()
    conns = [
        pool.connect(server.url, label=i, compression=None, **rec.callbacks()) for i in range(5)
    ]
    rec.wait_messages(5 * 200, timeout=20)
    for conn in conns:
        conn.close()
        assert conn.wait_closed(5)
    for i in range(5):
        assert rec.messages(i) == [str(k) for k in range(200)]
        names = rec.names(i)
        assert names[0] == "open" and names[-1] == "close"
    assert {t.name for t in rec.threads()} == {pool.dispatcher.name}
    assert repr(pool).endswith("deliver='dispatcher'>")


def test_the_blocking_waits_raise_on_the_dispatcher_instead_of_hanging(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server()
    raised: dict[str, str] = {}
    done = threading.Event()

    def on_open(conn: Connection) -> None:
        waits: dict[str, Callable[[], object]] = {
            "wait_closed": lambda: conn.wait_closed(1),
            "drain": lambda: conn.drain(1),
            "Pool.close": pool.close,
            "run_forever": pool.run_forever,
        }
        for name, wait in waits.items():
            try:
                wait()
            except wspool.DispatcherThreadError as exc:
                raised[name] = str(exc)
        conn.send("still fine")  # sends return at once on the dispatcher

    def on_message(conn: Connection, message: Any) -> None:
        conn.close()  # returns at once
        done.set()

    conn = pool.connect(server.url, on_open=on_open, on_message=on_message)
    assert done.wait(10)
    assert conn.wait_closed(5)  # from this thread, it waits as usual
    assert set(raised) == {"wait_closed", "drain", "Pool.close", "run_forever"}
    assert server.url in raised["wait_closed"]
    assert "call conn.close()" in raised["Pool.close"]
    assert isinstance(wspool.DispatcherThreadError("x"), RuntimeError)


def test_a_raising_callback_reaches_on_error_and_delivery_goes_on(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server(_numbered_feed(10))
    seen: list[str] = []
    errors: list[BaseException] = []

    def on_message(conn: Connection, message: Any) -> None:
        seen.append(message)
        if message == "3":
            raise ValueError("bad tick")

    pool.connect(server.url, on_message=on_message, on_error=lambda c, e: errors.append(e))
    wait_until(lambda: len(seen) == 10, timeout=10)
    assert seen == [str(i) for i in range(10)]
    assert len(errors) == 1 and isinstance(errors[0], wspool.CallbackError)
    assert "bad tick" in errors[0].format()


def test_backpressure_pauses_reading_and_loses_nothing(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    # A callback slower than the feed, on the dispatcher: each turn's reads queue more
    # than max_queue, so the socket is paused and resumed again and again.
    total = 3000
    server = ws_server(_numbered_feed(total, pad=1000))
    seen: list[str] = []
    slow = threading.Event()

    def on_message(conn: Connection, message: Any) -> None:
        slow.wait(0.0002)
        seen.append(message.split(":")[0])

    conn = pool.connect(server.url, on_message=on_message, max_queue=50, compression=None)
    wait_until(lambda: len(seen) >= total, timeout=30)
    assert seen == [str(i) for i in range(total)]
    assert conn.stats_dict()["pauses"] >= 1
    conn.close()
    assert conn.wait_closed(5)


def test_close_ends_every_connection_and_runs_the_last_callbacks(
    ws_server: WSServerFactory,
) -> None:
    server = ws_server()
    rec = CallbackRecorder()
    pool = Pool(deliver="dispatcher", name="inline-close")
    conns = [pool.connect(server.url, label=i, **rec.callbacks()) for i in range(20)]
    wait_until(lambda: rec.count("open") == 20, timeout=10)
    pool.close()
    assert all(c.state is wspool.ConnectionState.CLOSED for c in conns)
    assert rec.count("close") == 20
    assert not pool.dispatcher.running
