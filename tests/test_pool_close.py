"""Pool.close() with work still queued, and exact send counters.

The rule (docs/reliability.md): closing a pool closes every connection with a closing
handshake, then delivers every message already received to its callbacks, in order,
then on_close, before close() returns; the workers stop only after that.  Nothing is
dropped and nothing is logged as an error on an ordinary close.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from conftest import WSServerFactory
from helpers import wait_until
from wsserver import ServerConnection

from wspool import Pool


def _burst(count: int):  # type: ignore[no-untyped-def]
    def handler(conn: ServerConnection) -> None:
        for i in range(count):
            conn.send_message(f"m{i}")
        conn.recv_message(10)  # until the client's close frame
        conn.send_close(1000)

    return handler


@pytest.mark.parametrize("how", ["close", "with"])
def test_close_delivers_queued_messages_before_on_close(
    ws_server: WSServerFactory, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    server = ws_server(_burst(30))
    got: list[str] = []
    order: list[str] = []
    first = threading.Event()

    def on_message(_conn: object, message: str) -> None:
        first.set()
        time.sleep(0.02)  # slower than the server: messages queue up
        got.append(message)

    def on_close(_conn: object, code: int, reason: str) -> None:
        order.append(f"close {len(got)}")

    caplog.set_level(logging.WARNING, logger="wspool")
    pool = Pool(workers=2)
    conn = pool.connect(server.url, on_message=on_message, on_close=on_close, max_queue=100)
    assert first.wait(5)
    assert wait_until(lambda: conn.stats.messages_in == 30)
    if how == "close":
        pool.close(timeout=10)
    else:
        with pool:
            pass
    assert got == [f"m{i}" for i in range(30)]
    assert order == ["close 30"], "on_close comes after the last queued message"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_send_counters_are_exact_under_concurrent_senders(ws_server: WSServerFactory) -> None:
    def sink(conn: ServerConnection) -> None:
        for _ in range(8 * 500):
            conn.recv_message(10)
        conn.recv_message(10)

    server = ws_server(sink)
    with Pool(workers=1) as pool:
        opened = threading.Event()
        conn = pool.connect(server.url, on_open=lambda _c: opened.set(), compression=None)
        assert opened.wait(5)
        start = threading.Barrier(8)

        def sender() -> None:
            start.wait()
            for _ in range(500):
                conn.send("0123456789")

        threads = [threading.Thread(target=sender) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert conn.stats.messages_out == 8 * 500
        assert conn.stats.bytes_out == 8 * 500 * (2 + 4 + 10)  # header, mask key, payload
        assert pool.stats()["messages_out"] == 8 * 500


def test_close_timeout_bounds_the_network_not_the_callbacks(
    ws_server: WSServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A backlog that takes longer than the close timeout is still delivered in full
    (wspool never drops a message it received), then on_close; no error is logged."""
    server = ws_server(_burst(12))
    got: list[str] = []
    closed: list[int] = []

    def on_message(_conn: object, message: str) -> None:
        time.sleep(0.1)
        got.append(message)

    caplog.set_level(logging.WARNING, logger="wspool")
    pool = Pool(workers=1)
    conn = pool.connect(
        server.url,
        on_message=on_message,
        on_close=lambda _c, code, _r: closed.append(len(got)),
    )
    assert wait_until(lambda: conn.stats.messages_in == 12)
    started = time.monotonic()
    pool.close(timeout=0.3)
    assert time.monotonic() - started < 5
    assert got == [f"m{i}" for i in range(12)]
    assert closed == [12]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
