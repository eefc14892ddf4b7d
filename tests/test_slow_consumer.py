"""A slow consumer is not a dead network: the Pool's keepalive under backpressure.

When callbacks fall behind, the delivery queue pauses reading the socket, and the pong
that proves the peer alive waits behind the unread data.  The session then holds the
pong deadline and sends no keepalive ping until reading resumes, when the deadline
restarts with a full ``ping_timeout`` (docs/architecture.md, "Keepalive under
backpressure").  These tests use the real test server, which puts its pong *behind* a
burst of messages, exactly where a slow consumer leaves it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import CallbackRecorder, wait_until
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer

import wspool
from wspool.pool import Connection, ConnectionState, Pool
from wspool.pool.session import _RECV_SIZE

WSServerFactory = Callable[..., WSServer]

PING_INTERVAL = 1.0
PING_TIMEOUT = 0.5  # must be shorter than ping_interval (options.py refuses 1 and 1)
#: Slack for the dispatcher's timer heap and a loaded machine.
TICK = 0.5


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=2) as p:
        yield p


def _message(seq: int, size: int) -> str:
    return f"{seq:04d}:" + "x" * size


def _burst_on_first_ping(
    count: int, size: int, *, pong_first: bool, pong_later: bool = True
) -> tuple[Callable[[ServerConnection], None], list[ServerConnection]]:
    """A peer that answers the first keepalive ping with ``count`` sequence-numbered
    messages and only *then* its pong (``pong_first``), so the pong is stuck behind
    them while the client is paused; later pings are answered at once (``pong_later``).
    Returns the handler and the list its connections are put in."""
    seen: list[ServerConnection] = []

    def handler(conn: ServerConnection) -> None:
        seen.append(conn)
        conn.auto_pong = False
        burst_sent = False
        try:
            while True:
                frame = conn.recv_frame(timeout=30)
                if frame.opcode == Opcode.PING:
                    conn.pings.append(frame.payload)
                    if not burst_sent:
                        burst_sent = True
                        for seq in range(count):
                            conn.send_message(_message(seq, size))
                        if pong_first:
                            conn.send_pong(frame.payload)
                    elif pong_later:
                        conn.send_pong(frame.payload)
                elif frame.opcode == Opcode.CLOSE:
                    with contextlib.suppress(OSError):
                        conn.send_close(1000)
                    conn.close_tcp()
                    return
        except (PeerClosed, OSError):
            return  # the client dropped the connection (the timeout tests)

    return handler, seen


def test_slow_consumer_keeps_a_healthy_connection_open(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    count, size, slow, max_queue = 12, 100_000, 3, 2
    handler, peers = _burst_on_first_ping(count, size, pong_first=True)
    server = ws_server(handler)
    rec = CallbackRecorder(timeout=20)
    depths: list[int] = []
    paused_seen: list[dict[str, Any]] = []

    def on_message(conn: Connection, msg: str) -> None:
        depths.append(conn.queue_depth)
        seq = int(msg[:4])
        if seq == 0:
            # Message 1 arrived meanwhile: the queue is at max_queue, reading paused.
            time.sleep(1)
            paused_seen.append(pool.stats())
            time.sleep(2)
        elif seq < slow:
            time.sleep(3)

    conn = pool.connect(
        server.url,
        label="slow",
        compression=None,  # the bound below counts wire bytes per read
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_queue=max_queue,
        **rec.callbacks(on_message=on_message),
    )
    rec.wait_open()
    opened = time.monotonic()

    def all_delivered() -> bool:
        depths.append(conn.queue_depth)
        return rec.count("message") >= count or rec.count("close") > 0

    assert wait_until(all_delivered, timeout=20, interval=0.01)
    # Past several ping intervals, most of them paused with the pong unread: still open.
    assert time.monotonic() - opened >= slow * 3
    assert rec.errors() == [] and rec.count("close") == 0
    assert conn.state is ConnectionState.OPEN
    assert rec.messages() == [_message(seq, size) for seq in range(count)]  # none lost, in order

    # The queue kept its bound: reading stops after the read that reaches max_queue, and
    # one read (at most _RECV_SIZE bytes) completes at most this many messages.
    per_read = _RECV_SIZE // (size + 5) + 1
    assert max(depths) <= max_queue - 1 + per_read, depths
    assert max(depths) >= max_queue  # and backpressure did kick in

    # The pause showed while it lasted, in the connection's stats and the pool's.
    assert paused_seen and paused_seen[0]["paused"] == 1 and paused_seen[0]["pauses"] >= 1
    entry = paused_seen[0]["per_connection"][0]
    assert entry["paused"] is True and entry["paused_total"] > 0
    stats = conn.stats
    assert stats.pauses >= 1
    assert stats.paused_total >= 2.5  # message 0's 3 s at least

    # Keepalive resumed after the backlog: a fresh ping is answered and its round trip
    # is measured; the ping held across the pause gave no (pause-inflated) sample.
    pings_before = len(peers[0].pings)
    assert wait_until(lambda: len(peers[0].pings) > pings_before, timeout=5)

    def rtt_measured() -> bool:
        if conn.stats.last_rtt is not None:
            return True
        conn.send("tick")  # an event carries the session's RTT into stats
        return False

    assert wait_until(rtt_measured, timeout=5, interval=0.05)
    assert conn.stats.last_rtt is not None and conn.stats.last_rtt < PING_TIMEOUT
    assert not conn.stats.paused
    totals = pool.stats()
    assert totals["paused"] == 0 and totals["pauses"] == conn.stats.pauses
    assert totals["per_connection"][0]["paused_total"] == pytest.approx(
        conn.stats.paused_total, abs=0.01
    )
    conn.close()
    rec.wait_closed()
    assert rec.calls[-1].args[0] == 1000


def test_a_peer_that_stops_answering_still_times_out(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """The control: nothing paused on our side, no pong: 1011 after one interval and
    one timeout."""

    def silent(conn: ServerConnection) -> None:
        conn.auto_pong = False
        with contextlib.suppress(PeerClosed, OSError, TimeoutError):
            while True:
                conn.recv_message(timeout=30)

    server = ws_server(silent)
    rec = CallbackRecorder()
    conn = pool.connect(
        server.url, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, **rec.callbacks()
    )
    rec.wait_open()
    opened = time.monotonic()
    rec.wait_closed(timeout=PING_INTERVAL + PING_TIMEOUT + 5)
    elapsed = time.monotonic() - opened
    assert PING_INTERVAL + PING_TIMEOUT - 0.05 <= elapsed <= PING_INTERVAL + PING_TIMEOUT + TICK
    assert rec.calls[-1].args[0] == 1011
    errors = rec.errors()
    assert len(errors) == 1 and isinstance(errors[0], wspool.WebSocketTimeoutException)
    assert "ping_timeout" in str(errors[0])
    assert conn.stats.pauses == 0 and not conn.stats.paused and conn.stats.paused_total == 0


def test_held_deadline_restarts_with_a_full_timeout_on_resume(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """A peer that dies while we are paused is still found: the deadline held during
    the pause runs again, a full ping_timeout, from the resume."""
    handler, _ = _burst_on_first_ping(4, 100, pong_first=False, pong_later=False)
    server = ws_server(handler)
    rec = CallbackRecorder()
    consumed = threading.Event()
    consumed_at: list[float] = []

    def on_message(conn: Connection, msg: str) -> None:
        if msg.startswith("0000:"):
            time.sleep(2)  # well past the ping's first deadline
            consumed_at.append(time.monotonic())
            consumed.set()

    conn = pool.connect(
        server.url,
        compression=None,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_queue=2,
        **rec.callbacks(on_message=on_message),
    )
    rec.wait_open()
    assert consumed.wait(10)
    assert conn.state is ConnectionState.OPEN  # held: not closed at 1.5 s
    rec.wait_closed(timeout=5)
    closed_at = time.monotonic()
    # Resumed right after message 0 (the other three are fast); then a full timeout.
    since_resume = closed_at - consumed_at[0]
    assert PING_TIMEOUT - 0.05 <= since_resume <= PING_TIMEOUT + TICK, since_resume
    assert rec.calls[-1].args[0] == 1011
    assert rec.messages() == [_message(seq, 100) for seq in range(4)]
    # Paused at least for message 0's 2 s (the items of the end may pause it once more).
    assert conn.stats.pauses >= 1 and conn.stats.paused_total >= 1.5
