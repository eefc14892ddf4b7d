"""1,000 logical streams rotating at once (max_age, dedupe) against the embedded demo
feed: the threads stay one dispatcher plus the workers, every stream keeps its
sequence without gaps or duplicates, and memory per stream does not grow with the
number of rotations."""

from __future__ import annotations

import json
import threading
from typing import Any

from helpers import wait_until

import wspool
from wspool import Connection
from wspool.demofeed import DemoFeed
from wspool.pool.connection import SessionRole

STREAMS = 1000
WORKERS = 4


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4


def key(message: Any) -> tuple[str, int] | None:
    tick = json.loads(message)
    return (tick["symbol"], tick["seq"]) if tick.get("type") == "ticker" else None


def structures(conns: list[Connection]) -> tuple[int, int]:
    """(sessions not retiring, dedupe entries) over every stream."""
    sessions = sum(1 for c in conns for m in c._members if m.role is not SessionRole.RETIRING)
    remembered = sum(c._stream.remembered + c._stream.held for c in conns if c._stream)
    return sessions, remembered


def test_a_thousand_streams_rotate_concurrently_with_bounded_threads_and_memory() -> None:
    lock = threading.Lock()
    last: dict[int, int] = {}
    problems: list[str] = []
    counts = [0]

    def on_message(conn: Connection, message: Any) -> None:
        tick = json.loads(message)
        if tick.get("type") != "ticker":
            return
        with lock:
            counts[0] += 1
            previous = last.get(conn.label)
            if previous is not None and tick["seq"] != previous + 1:
                problems.append(f"{conn.label}: {previous} -> {tick['seq']}")
            last[conn.label] = tick["seq"]

    symbols = [f"S{i}" for i in range(50)]
    with DemoFeed(rate=4, symbols=symbols) as feed:
        baseline = threading.active_count()
        with wspool.Pool(workers=WORKERS) as pool:
            conns = [
                pool.connect(
                    f"{feed.url}/ticker?id={i}",
                    label=i,
                    subscribe={
                        "op": "subscribe",
                        "channel": "ticker",
                        "symbols": [symbols[i % 50]],
                    },
                    max_age=1.0,
                    dedupe=key,
                    on_message=on_message,
                )
                for i in range(STREAMS)
            ]
            assert wait_until(lambda: all(c.stats.rotations >= 4 for c in conns), 60)
            threads = threading.active_count() - baseline
            first_round = rss_kib()
            bounds = [structures(conns)]
            assert wait_until(lambda: all(c.stats.rotations >= 8 for c in conns), 60)
            later = rss_kib()
            bounds.append(structures(conns))
            totals = pool.stats()
            for conn in conns:
                conn.close()
            assert all(c.wait_closed(30) for c in conns)
    assert threads == 1 + WORKERS, f"{threads} threads beside the test's own"
    assert problems == [], problems[:5]
    assert totals["rotations"] >= 8 * STREAMS
    for sessions, remembered in bounds:
        assert sessions <= 2 * STREAMS, "at most a session and its replacement per stream"
        assert remembered <= 64 * STREAMS, "dedupe keeps only the overlap"
    grown = (later - first_round) / STREAMS
    assert grown < 8, f"memory grew {grown:.1f} KiB per stream over four more rotations"
    assert counts[0] > STREAMS * 4
