"""Resource hygiene: connect/close cycles leak nothing; a dropped Pool does not hang exit.

The autouse leak checks of conftest (threads, file descriptors, ResourceWarnings)
apply to each test here; these add many cycles, so a leak of one descriptor or thread
per cycle shows as hundreds.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import WSServerFactory
from helpers import open_fds, run_python

import wspool

CYCLES = 1000


@pytest.mark.parametrize("front", ["connect", "pool"])
def test_thousand_connect_close_cycles_leak_nothing(
    ws_server: WSServerFactory, front: str, no_fd_leaks: None, no_thread_leaks: None
) -> None:
    server = ws_server()
    fds_before = open_fds()
    threads_before = threading.active_count()
    if front == "connect":
        for i in range(CYCLES):
            ws = wspool.connect(server.url, timeout=5, compression=None)
            if i % 100 == 0:
                ws.send("ping")
                assert ws.recv() == "ping"
            ws.close()
    else:
        with wspool.Pool(workers=2) as pool:
            batch = 50
            for _ in range(CYCLES // batch):
                opened = threading.Semaphore(0)
                conns = [
                    pool.connect(server.url, on_open=lambda _c, o=opened: o.release())
                    for _ in range(batch)
                ]
                for _ in conns:
                    assert opened.acquire(timeout=10)
                for conn in conns:
                    conn.close()
                for conn in conns:
                    assert conn.wait_closed(10)
            assert pool.connections == []
            # The pool's own threads (dispatcher, resolver, workers) do not grow.
            assert threading.active_count() <= threads_before + 2 + 2 + 1
    deadline = time.monotonic() + 5
    while open_fds() > fds_before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= fds_before + 2, "descriptors grew over the cycles"


def test_a_pool_dropped_without_close_does_not_hang_exit() -> None:
    """A script that makes a Pool, opens connections and just ends: the exit hook
    closes them (closing handshake, on_close) and the interpreter exits promptly."""
    script = r"""
        import sys
        import threading
        from wsserver import WSServer, echo_handler
        import wspool

        server = WSServer(echo_handler).start()
        pool = wspool.Pool(workers=2)
        opened = threading.Semaphore(0)
        for _ in range(20):
            pool.connect(server.url, on_open=lambda c: opened.release(),
                         on_close=lambda c, code, r: sys.stdout.write(f"closed {code}\n"))
        for _ in range(20):
            assert opened.acquire(timeout=10)
        del pool  # no close(): the exit hook has to do it
    """
    started = time.monotonic()
    result = run_python(script, timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    # One write per line: two workers' lines do not interleave.
    assert result.stdout.splitlines() == ["closed 1000"] * 20, result.stdout + result.stderr
