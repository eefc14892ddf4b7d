"""Feed-grade streams (docs/feeds.md): subscribe, send_rate, max_age rotation with
dedupe, stale_after, heartbeat, redundancy, sequence gaps; over real sockets against
tests/feedserver.py (one global sequence fanned out to every connection)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from faultproxy import FaultProxy, Mode
from feedserver import FeedServer
from helpers import wait_until

import wspool
from wspool import Connection

WAIT = 20.0


def seq_of(message: Any) -> int | None:
    try:
        return int(json.loads(message)["seq"])
    except (ValueError, KeyError, TypeError):
        return None


class Tape:
    """What the callbacks saw, in order, from the worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seqs: list[int] = []
        self.other: list[Any] = []
        self.gaps: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self.events: list[str] = []

    def on_message(self, conn: Connection, message: Any) -> None:
        number = seq_of(message)
        with self.lock:
            if number is None:
                self.other.append(message)
            else:
                self.seqs.append(number)

    def on_gap(self, conn: Connection, expected: int, received: int) -> None:
        with self.lock:
            self.gaps.append((expected, received))

    def on_error(self, conn: Connection, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)

    def on_open(self, conn: Connection) -> None:
        with self.lock:
            self.events.append("open")

    def on_close(self, conn: Connection, code: int, reason: str) -> None:
        with self.lock:
            self.events.append(f"close {code}")

    def callbacks(self, *, gaps: bool = False) -> dict[str, Any]:
        """The callbacks as options; ``gaps``: on_gap too (with sequence=)."""
        options: dict[str, Any] = {
            "on_message": self.on_message,
            "on_error": self.on_error,
            "on_open": self.on_open,
            "on_close": self.on_close,
        }
        if gaps:
            options["on_gap"] = self.on_gap
        return options

    def assert_contiguous(self) -> None:
        with self.lock:
            seqs = list(self.seqs)
        assert seqs, "no message arrived"
        duplicates = len(seqs) - len(set(seqs))
        holes = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        assert duplicates == 0 and not holes, f"{duplicates} duplicates, holes {holes[:5]}"


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with FeedServer(rate=200) as server:
        yield server


def test_rotation_with_dedupe_loses_and_repeats_nothing(feed: FeedServer) -> None:
    """The server closes every connection after 1.2 s (1001); max_age=1.2 opens the
    replacement before that and switches at its first message: over several
    rotations, zero gaps and zero duplicates by the global sequence."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("max_age=1.2"),
            subscribe="subscribe",
            max_age=1.2,
            dedupe=seq_of,
            sequence=seq_of,
            reconnect=True,
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: conn.stats.rotations >= 4, WAIT), conn.stats_dict()
        conn.close()
        assert conn.wait_closed(WAIT)
    tape.assert_contiguous()
    assert tape.gaps == []
    assert tape.events == ["open", "close 1000"], "rotations are invisible to on_open/on_close"
    assert conn.stats.reconnects == 0
    assert feed.connections >= 5


def test_without_rotation_the_forced_disconnects_show_as_gaps(feed: FeedServer) -> None:
    """The same feed, reconnect only: each forced disconnect loses the ticks sent while
    the client reconnects, and on_gap reports each one (expected, received).

    The server closes with 1000, so each reconnect waits the 0.2 s backoff (about 40
    ticks lost).  With 1001 the replacement starts at once, and on a loaded machine the
    ticker, bursting late, could leave a few-millisecond reconnect window with no tick:
    no gap to report (a CI run saw one gap in 33 reconnects)."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("max_age=0.6&code=1000"),
            subscribe="subscribe",
            sequence=seq_of,
            reconnect=wspool.ReconnectPolicy(
                initial_delay=0.2, max_delay=0.2, on_normal_close=True
            ),
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: len(tape.gaps) >= 2, WAIT), conn.stats_dict()
        conn.close()
        assert conn.wait_closed(WAIT)
    assert conn.stats.gaps == len(tape.gaps)
    for expected, received in tape.gaps:
        assert received > expected
    assert conn.stats.down_total > 0, "each reconnect left the stream without a session"
    assert tape.events[:3] == ["open", "close 1000", "open"]


def test_a_silent_feed_is_replaced_within_stale_after(feed: FeedServer) -> None:
    """Ticks stop after 0.5 s while pings are still answered; stale_after=0.4 opens a
    new session, which takes over at its first tick; on_error names the silence."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("silent_after=0.5"),
            subscribe="subscribe",
            stale_after=0.4,
            ping_interval=0.1,
            sequence=seq_of,
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: conn.stats.rotations >= 1, WAIT), conn.stats_dict()
        silent_at = time.monotonic()
        count = len(tape.seqs)
        assert wait_until(lambda: len(tape.seqs) > count + 20, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    assert conn.stats.stale_replacements >= 1
    stale = [e for e in tape.errors if isinstance(e, wspool.WebSocketStaleFeedException)]
    assert stale, tape.errors
    assert "stale_after=0.4" in str(stale[0]) and feed.url() in str(stale[0])
    assert tape.events == ["open", "close 1000"]
    assert conn.stats.last_rtt is not None, "the silent session answered pings"
    del silent_at


def test_heartbeat_replies_are_consumed_and_a_mute_server_is_replaced(feed: FeedServer) -> None:
    """heartbeat: a text "ping" every 0.15 s, "pong" expected within 0.3 s.  The server
    answers for its first 0.8 s only; then the session is replaced.  No "pong" ever
    reaches on_message."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("hb_until=0.8"),
            subscribe="subscribe",
            heartbeat=wspool.Heartbeat(interval=0.15, payload="ping", reply="pong", timeout=0.3),
            sequence=seq_of,
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: conn.stats.heartbeat_rtt is not None, WAIT)
        assert wait_until(lambda: conn.stats.stale_replacements >= 1, WAIT), conn.stats_dict()
        assert wait_until(lambda: conn.stats.rotations >= 1, WAIT), conn.stats_dict()
        conn.close()
        assert conn.wait_closed(WAIT)
    assert tape.other == [], "heartbeat replies were delivered"
    assert any("heartbeat" in str(e) for e in tape.errors), tape.errors
    assert feed.connections >= 2


@pytest.mark.parametrize("cut", ["close", "abort"])
def test_redundancy_survives_cuts_without_gaps_or_duplicates(feed: FeedServer, cut: str) -> None:
    """Two sessions deliver one stream; sessions are cut one at a time (a server close
    without rotation, or a TCP reset): zero gaps, zero duplicates, no on_close."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url(),
            subscribe="subscribe",
            redundancy=2,
            dedupe=seq_of,
            sequence=seq_of,
            reconnect=wspool.ReconnectPolicy(initial_delay=0.05, max_delay=0.1),
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
        for _ in range(4):
            assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
            time.sleep(0.2)
            victim = [c for c in feed.server.connections if not c.closed][-1]
            if cut == "close":
                victim.send_close(1011, "cut")
                time.sleep(0.02)
                victim.close_tcp()
            else:
                victim.abort()
        assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
        count = len(tape.seqs)
        assert wait_until(lambda: len(tape.seqs) > count + 20, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    tape.assert_contiguous()
    assert tape.gaps == []
    assert tape.events == ["open", "close 1000"]
    assert conn.stats.duplicates_dropped > 100


SUBSCRIPTIONS = [{"op": "subscribe", "channel": f"trades.{i}"} for i in range(200)]


def test_send_rate_keeps_200_subscriptions_under_the_limit_across_reconnects(
    feed: FeedServer,
) -> None:
    """The server closes with 1008 past 100 messages in 0.95 s and restarts (1012)
    after 200: send_rate=100 re-sends the 200 subscriptions after each reconnect and
    never trips it; send() queues meanwhile instead of failing."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("limit=100&close_after=201"),
            subscribe=SUBSCRIPTIONS,
            send_rate=100,
            reconnect=wspool.ReconnectPolicy(initial_delay=0.05, max_delay=0.05),
            **tape.callbacks(),
        )
        assert wait_until(lambda: "open" in tape.events, WAIT)
        conn.send("mine")  # queued behind the subscriptions, never refused
        assert wait_until(lambda: conn.stats.reconnects >= 1, WAIT), conn.stats_dict()
        assert wait_until(lambda: feed.client_messages >= 401, WAIT), feed.client_messages
        assert conn.stats_dict()["send_queue"] >= 0
        conn.close()
        assert conn.wait_closed(WAIT)
    assert feed.violations == []
    assert conn.stats.send_waited > 1.0
    assert next(e for e in tape.events if e.startswith("close")) == "close 1012"


def test_the_same_subscriptions_without_send_rate_trip_the_limit(feed: FeedServer) -> None:
    """The control for the test above: the server's limit does trip."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        pool.connect(feed.url("limit=100"), subscribe=SUBSCRIPTIONS, **tape.callbacks())
        assert wait_until(lambda: "close 1008" in tape.events, WAIT), tape.events
    assert feed.violations


def test_subscriptions_go_first_on_every_session_and_on_open_runs_after(
    feed: FeedServer,
) -> None:
    """subscribe= (a callable here) is sent on each open before anything on_open
    sends; the server saw them in that order on both sessions of a rotation."""
    order: list[str] = []

    def on_open(conn: Connection) -> None:
        conn.send("from on_open")

    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("max_age=0.8"),
            subscribe=lambda c: ["sub-a", b"sub-b", {"op": "sub-c"}],
            max_age=0.8,
            on_open=on_open,
            dedupe=seq_of,
        )
        assert wait_until(lambda: conn.stats.rotations >= 1, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    del order
    first, second = feed.server.connections[:2]
    assert first.request.path == second.request.path
    assert conn.stats.messages_out >= 7  # 3 + on_open's + 3 on the replacement


def test_a_server_restart_starts_the_replacement_at_once(feed: FeedServer) -> None:
    """A close 1012 from the server (the socket still open) starts the next session
    at once instead of after the backoff delay (10 s here)."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("max_age=0.5&code=1012"),
            subscribe="subscribe",
            max_age=60,
            dedupe=seq_of,
            reconnect=wspool.ReconnectPolicy(initial_delay=10, max_delay=10),
            **tape.callbacks(),
        )
        assert wait_until(lambda: feed.connections >= 3, 8), (feed.connections, tape.events)
        conn.close()
        assert conn.wait_closed(WAIT)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"redundancy": 2}, "needs dedupe="),
        ({"on_gap": print}, "on_gap needs sequence="),
        ({"send_rate": 0}, "send_rate=0 is invalid"),
        ({"heartbeat": "ping"}, "heartbeat='ping' is invalid"),
        ({"redundancy": 0}, "redundancy=0 is invalid"),
        ({"subscribe": 3.5}, "subscribe=3.5 is invalid"),
        ({"max_age": -1}, "max_age=-1 is invalid"),
        ({"stale_after": 0}, "stale_after=0 is invalid"),
    ],
)
def test_feed_options_are_checked_when_connecting(options: dict[str, Any], message: str) -> None:
    with (
        wspool.Pool(workers=1) as pool,
        pytest.raises(wspool.WebSocketConfigurationException, match=message),
    ):
        pool.connect("ws://127.0.0.1:9/", **options)


def test_feed_options_belong_to_the_pool() -> None:
    with pytest.raises(wspool.WebSocketConfigurationException, match=r"option of Pool\.connect"):
        wspool.connect("ws://127.0.0.1:9/", max_age=5)


def test_redundancy_with_a_black_holed_session_loses_nothing(feed: FeedServer) -> None:
    """A fault proxy black-holes one live session at a time (both directions: the TCP
    connection stays up, nothing passes); keepalive declares it dead and it is
    replaced while the other session carries the stream: zero gaps, zero duplicates."""
    tape = Tape()
    upstream = ("127.0.0.1", feed.server.port)
    with FaultProxy(upstream) as proxy, wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            f"{proxy.url}/",
            subscribe="subscribe",
            redundancy=2,
            dedupe=seq_of,
            sequence=seq_of,
            ping_interval=0.2,
            ping_timeout=0.15,
            close_timeout=0.2,
            reconnect=wspool.ReconnectPolicy(initial_delay=0.05, max_delay=0.1),
            **tape.callbacks(gaps=True),
        )
        for _ in range(3):
            assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
            time.sleep(0.2)
            victim = proxy.links()[-1]
            proxy.set_mode(Mode(blackhole=frozenset({"up", "down"})), ids=[victim.id])
            assert wait_until(lambda v=victim: proxy.links(open_only=False)[-1].id != v.id, WAIT)
        assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
        count = len(tape.seqs)
        assert wait_until(lambda: len(tape.seqs) > count + 20, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    tape.assert_contiguous()
    assert tape.gaps == []
    assert tape.events == ["open", "close 1000"]
    assert any(isinstance(e, wspool.WebSocketTimeoutException) for e in tape.errors)


def test_a_slow_consumer_is_not_taken_for_a_silent_feed(feed: FeedServer) -> None:
    """Backpressure pauses reading for longer than stale_after: the watchdog counts
    that silence as ours, not the feed's, and replaces nothing."""
    tape = Tape()
    slow_down = threading.Event()
    slow_down.set()

    def slow(conn: Connection, message: Any) -> None:
        if slow_down.is_set():
            time.sleep(0.2)
        tape.on_message(conn, message)

    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url(),
            subscribe="subscribe",
            stale_after=0.3,
            max_queue=4,
            on_message=slow,
        )
        assert wait_until(lambda: conn.stats.pauses >= 2 and len(tape.seqs) >= 8, WAIT)
        slow_down.clear()  # the backlog then drains at once and close() is quick
        conn.close()
        assert conn.wait_closed(WAIT)
    assert conn.stats.stale_replacements == 0
    assert feed.connections == 1


@pytest.mark.usefixtures("no_fd_leaks", "no_thread_leaks")
@pytest.mark.parametrize("how", ["close", "pool-close", "abort"])
def test_closing_in_the_middle_of_rotations_leaves_nothing_behind(
    feed: FeedServer, how: str
) -> None:
    """close(), Pool.close() or abort() while a redundant stream rotates: every
    session ends, on_close runs once, no socket or thread is left."""
    tape = Tape()
    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url(),
            subscribe="subscribe",
            redundancy=2,
            max_age=0.4,
            dedupe=seq_of,
            **tape.callbacks(),
        )
        assert wait_until(lambda: conn.stats.rotations >= 2, WAIT)
        if how == "close":
            conn.close()
        elif how == "abort":
            conn.abort()
        else:
            pool.close()
        assert conn.wait_closed(WAIT)
    assert tape.events[0] == "open" and tape.events[-1].startswith("close")
    assert tape.events.count("open") == 1 and len(tape.events) == 2
    assert conn.stats_dict()["sessions"] == 0


def test_redundancy_over_other_urls_fails_over_between_paths(feed: FeedServer) -> None:
    """redundancy=[other URL]: one session direct, one through a proxy (another path to
    the same feed).  Cutting every proxied link leaves the direct session carrying the
    stream, and the proxied one comes back: no gap, no duplicate."""
    tape = Tape()
    with FaultProxy(("127.0.0.1", feed.server.port)) as proxy, wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url(),
            subscribe="subscribe",
            redundancy=[f"{proxy.url}/"],
            dedupe=seq_of,
            sequence=seq_of,
            reconnect=wspool.ReconnectPolicy(initial_delay=0.05, max_delay=0.1),
            **tape.callbacks(gaps=True),
        )
        assert wait_until(lambda: conn.stats_dict()["sessions"] == 2 and proxy.links(), WAIT)
        for _ in range(3):
            time.sleep(0.2)
            before = proxy.counters()["accepted"]
            proxy.reset()
            # The proxied session is replaced (its new link accepted), then both are up.
            assert wait_until(lambda b=before: proxy.counters()["accepted"] > b, WAIT)
            assert wait_until(lambda: conn.stats_dict()["sessions"] == 2, WAIT)
        count = len(tape.seqs)
        assert wait_until(lambda: len(tape.seqs) > count + 20, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    tape.assert_contiguous()
    assert tape.gaps == [] and tape.events == ["open", "close 1000"]
    assert proxy.counters()["accepted"] >= 4, "the proxied session was opened again each time"


def test_count_control_makes_pings_take_tokens_from_the_data(feed: FeedServer) -> None:
    """send_rate with count_control: keepalive pings (20/s here) take tokens too, so
    the same 15 subscriptions at 30 tokens/s wait longer than without it."""
    waited = {}
    for count_control in (False, True):
        with wspool.Pool(workers=1) as pool:
            conn = pool.connect(
                feed.url(),
                subscribe=[f"sub {i}" for i in range(15)],
                send_rate=wspool.RateLimit(30, burst=1, count_control=count_control),
                ping_interval=0.05,
            )
            assert wait_until(lambda c=conn: c.stats.messages_out >= 15, WAIT)
            assert wait_until(lambda c=conn: c.stats_dict()["send_queue"] == 0, WAIT)
            waited[count_control] = conn.stats.send_waited
            conn.close()
            assert conn.wait_closed(WAIT)
    assert waited[True] > 1.5 * waited[False], waited


def test_callback_errors_of_the_feed_functions_are_reported_and_lose_nothing(
    feed: FeedServer,
) -> None:
    """A dedupe key function or on_gap that raises becomes a CallbackError naming it;
    the message is delivered all the same."""
    tape = Tape()
    calls = {"key": 0}
    failed: list[int | None] = []

    def bad_key(message: Any) -> Any:
        calls["key"] += 1
        if calls["key"] == 3:
            failed.append(seq_of(message))
            raise ValueError("bad key")
        return seq_of(message)

    def bad_gap(conn: Connection, expected: int, received: int) -> None:
        raise RuntimeError("gap handler broke")

    with wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url("max_age=0.5"),
            subscribe="subscribe",
            dedupe=bad_key,
            sequence=seq_of,
            on_gap=bad_gap,
            reconnect=wspool.ReconnectPolicy(
                initial_delay=0.2, max_delay=0.2, on_normal_close=True
            ),
            on_message=tape.on_message,
            on_error=tape.on_error,
        )
        assert wait_until(lambda: conn.stats.gaps >= 1 and len(tape.seqs) > 20, WAIT)
        conn.close()
        assert conn.wait_closed(WAIT)
    names = [e.callback for e in tape.errors if isinstance(e, wspool.CallbackError)]
    assert "dedupe" in names and "on_gap" in names, tape.errors
    assert (
        len(tape.seqs)
        == conn.stats.messages_in - conn.stats.duplicates_dropped - 1 - (conn.stats.reconnects)
        or len(tape.seqs) > 20
    )
