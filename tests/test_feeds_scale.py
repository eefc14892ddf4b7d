"""1,000 logical streams rotating at once (max_age, dedupe) against the embedded demo
feed: the threads stay one dispatcher plus the workers, every stream keeps its
sequence without gaps or duplicates, and memory per stream does not grow with the
number of rotations."""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from typing import Any

import pytest
from helpers import wait_until

import wspool
from wspool import Connection
from wspool.demofeed import DemoFeed
from wspool.pool.connection import SessionRole

STREAMS = 1000
WORKERS = 4
MAX_AGE = 1.0
# Waits are long: on two loaded cores 1,000 openings a second fall behind (locally
# 11 s for the whole test, 95 s beside eight busy loops).
WAIT_ROUNDS = 150


def live_blocks() -> int:
    """The fewest memory blocks the interpreter held over one rotation period.

    Not the RSS: that keeps its high-water mark, so a backlog on a loaded machine (CI
    runs three test processes on two cores) would read as growth.  Live blocks go down
    again; the minimum over a period skips the moments when many replacements are
    opening at once."""
    samples = []
    for _ in range(5):
        gc.collect()
        samples.append(sys.getallocatedblocks())
        time.sleep(MAX_AGE / 5)
    return min(samples)


def key(message: Any) -> tuple[str, int] | None:
    tick = json.loads(message)
    return (tick["symbol"], tick["seq"]) if tick.get("type") == "ticker" else None


def structures(conns: list[Connection]) -> tuple[int, int]:
    """(sessions not retiring, dedupe entries) over every stream."""
    sessions = sum(1 for c in conns for m in c._members if m.role is not SessionRole.RETIRING)
    remembered = sum(c._stream.remembered + c._stream.held for c in conns if c._stream)
    return sessions, remembered


def laggards(conns: list[Connection], rotations: int) -> str:
    behind = [c for c in conns if c.stats.rotations < rotations]
    shown = ", ".join(
        f"{c.label}: {c.stats.rotations} rotations, {c.state.value}, "
        f"{[(m.role.name, m.session.state.name) for m in c._members]}"
        for c in behind[:5]
    )
    return f"{len(behind)} streams below {rotations} rotations: {shown}"


@pytest.mark.timeout(2 * WAIT_ROUNDS + 60)
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
                    max_age=MAX_AGE,
                    dedupe=key,
                    on_message=on_message,
                )
                for i in range(STREAMS)
            ]
            for rotations in (4, 8):
                done = wait_until(
                    lambda: all(c.stats.rotations >= rotations for c in conns),  # noqa: B023
                    WAIT_ROUNDS,
                    interval=0.1,
                )
                assert done, laggards(conns, rotations)
                if rotations == 4:
                    threads = threading.active_count() - baseline
                    first_round = live_blocks()
                    bounds = [structures(conns)]
            later = live_blocks()
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
    # A stream holds about 400 blocks (two sessions while rotating); one leaked session
    # per rotation would add a few hundred over four rotations.
    assert grown < 100, f"memory grew {grown:.0f} blocks per stream over four more rotations"
    assert counts[0] > STREAMS * 4
