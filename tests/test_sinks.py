"""wspool.sinks against real engines: redis-server and nats-server (JetStream), started
by the tests on loopback ports of their own (tests/engines.py).

Every delivered message reaches the engine, in order per connection; an engine stopped
and restarted loses nothing while the buffer stays bounded and the Pool pauses
reading; JetStream stores a record published by two sinks once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import Engine, NatsServer, RedisServer, find_binary
from helpers import wait_until

import wspool
from wspool.demofeed import DemoFeed
from wspool.sinks import (
    NatsJetStreamSink,
    Record,
    RedisStreamSink,
    Sink,
    SinkClosedError,
    SinkError,
)

FAST = wspool.ReconnectPolicy(initial_delay=0.02, factor=2.0, max_delay=0.2)

# Outside CI a machine without the engines skips these tests; in CI (which installs
# them, .ci/run) a missing engine is a failure, never a skip.
pytestmark = pytest.mark.skipif(
    (find_binary("redis-server") is None or find_binary("nats-server") is None)
    and not os.environ.get("CI"),
    reason="redis-server and nats-server are needed (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def feed() -> Iterator[DemoFeed]:
    with DemoFeed(rate=200.0, seed=1) as running:
        yield running


class Target:
    """One engine behind one interface: make a sink, read back what it stored."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name  # unique per test: stream keys / subjects / stream name

    def sink(self, **options: Any) -> Sink:
        if isinstance(self.engine, RedisServer):
            return RedisStreamSink(
                self.engine.url, stream=f"{self.name}:{{label}}", reconnect=FAST, **options
            )
        return NatsJetStreamSink(
            self.engine.url,
            subject=f"{self.name}.{{label}}",
            create_stream=self.name,
            reconnect=FAST,
            **options,
        )

    def stored(self, labels: list[str]) -> dict[str, list[tuple[int, bytes]]]:
        """label -> [(seq, data)] in stream order."""
        out: dict[str, list[tuple[int, bytes]]] = {label: [] for label in labels}
        if isinstance(self.engine, RedisServer):
            for label in labels:
                for entry in self.engine.entries(f"{self.name}:{label}"):
                    assert entry["label"].decode() == label
                    out[label].append((int(entry["seq"]), entry["data"]))
            return out
        assert isinstance(self.engine, NatsServer)
        for message in self.engine.messages(self.name):
            label = message.headers["Wspool-Label"]
            assert message.subject == f"{self.name}.{label}"
            out[label].append((int(message.headers["Wspool-Seq"]), message.payload))
        return out


_names = iter(range(1_000_000))


@pytest.fixture(params=["redis", "nats"])
def target(request: pytest.FixtureRequest) -> Target:
    engine = request.getfixturevalue(request.param)
    return Target(engine, f"t{next(_names)}")


class Received:
    """What on_message handed to the sink, per label, in order (recorded after the
    sink accepted it, on the same worker, so per-label order is the delivery order)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.lock = threading.Lock()
        self.by_label: dict[str, list[bytes]] = {}

    def on_message(self, conn: wspool.Connection, message: str | bytes) -> None:
        self.sink.on_message(conn, message)
        data = message.encode() if isinstance(message, str) else message
        with self.lock:
            self.by_label.setdefault(str(conn.label), []).append(data)

    def count(self, label: str) -> int:
        with self.lock:
            return len(self.by_label.get(label, []))


def subscribe(conn: wspool.Connection) -> None:
    conn.send("go")


def check_stored(
    target: Target, received: Received, labels: list[str], *, resent: bool = False
) -> int:
    """Everything received is stored, in order, numbered 1..n per label; exactly once,
    unless ``resent`` (Redis after a lost connection: at least once), when a record
    may appear again, only right after a run that includes its first copy."""
    stored = target.stored(labels)
    total = 0
    for label in labels:
        got = received.by_label.get(label, [])
        assert got, f"{label} received nothing"
        entries = stored[label]
        if resent:
            first: dict[int, bytes] = {}
            for seq, data in entries:
                if seq in first:
                    assert first[seq] == data, (label, seq)
                else:
                    # A new record comes right after the highest one so far.
                    assert seq == len(first) + 1, (label, seq)
                    first[seq] = data
            entries = sorted(first.items())
        assert [seq for seq, _ in entries] == list(range(1, len(got) + 1)), label
        assert [data for _, data in entries] == got, label
        total += len(got)
    return total


def test_every_message_of_twenty_connections_arrives_in_order(
    target: Target, feed: DemoFeed
) -> None:
    sink = target.sink(batch=50, buffer=500)
    received = Received(sink)
    labels = [f"c{i}" for i in range(20)]
    with wspool.Pool(workers=4) as pool:
        for label in labels:
            pool.connect(
                feed.url + "/ticker",
                label=label,
                on_open=subscribe,
                on_message=received.on_message,
            )
        assert wait_until(lambda: all(received.count(label) >= 30 for label in labels), 20)
    assert sink.close(10)
    total = check_stored(target, received, labels)
    stats = sink.stats()
    assert stats["records_in"] == stats["written"] == total
    assert stats["buffered"] == 0 and stats["retries"] == 0
    assert stats["batches"] >= 1


def test_engine_restart_loses_nothing_and_pauses_the_pool(target: Target, feed: DemoFeed) -> None:
    sink = target.sink(batch=5, buffer=20, timeout=2.0)
    received = Received(sink)
    labels = [f"r{i}" for i in range(4)]
    peak = [0]

    def sample() -> dict[str, Any]:
        stats = sink.stats()
        peak[0] = max(peak[0], stats["buffered"])
        return stats

    with wspool.Pool(workers=2) as pool:
        conns = [
            pool.connect(
                feed.url + "/ticker",
                label=label,
                on_open=subscribe,
                on_message=received.on_message,
                max_queue=4,
            )
            for label in labels
        ]
        assert wait_until(lambda: all(received.count(label) >= 10 for label in labels), 20)
        target.engine.stop()
        try:
            # The outage: the buffer fills, writers block, the Pool stops reading.
            assert wait_until(lambda: sample()["blocked"] > 0, 20)
            assert wait_until(lambda: all(c.stats.pauses > 0 for c in conns), 20)
            assert wait_until(lambda: sink.url in str(sample()["last_error"]), 20)
            held = sum(received.count(label) for label in labels)
        finally:
            # Also on failure: blocked workers would hold up the Pool's close.
            target.engine.start()
        assert wait_until(
            lambda: (
                sample()["written"] >= held + 100
                and all(received.count(label) >= 40 for label in labels)
            ),
            30,
        )
    assert sink.close(10)
    assert peak[0] <= 20
    # Redis may have applied commands whose replies the stop cut off: those are sent
    # again (at least once).  JetStream drops the repeats by Nats-Msg-Id.
    resent = isinstance(target.engine, RedisServer)
    total = check_stored(target, received, labels, resent=resent)
    stats = sink.stats()
    assert stats["records_in"] == stats["written"] == total
    assert stats["reconnects"] >= 1 and stats["retries"] >= 1
    assert stats["blocked_seconds"] > 0


def test_large_binary_and_non_ascii_text_round_trip(target: Target) -> None:
    # Big enough to span many reads on both sides of each protocol client.
    big = bytes(range(256)) * 1200
    messages: list[str | bytes] = ["déjà vu ✓", big, "", b"", "\r\n in text\r\n"]
    sink = target.sink(batch=2, buffer=4)
    for message in messages:
        sink.write("big", message)
    assert sink.close(10)
    expected = [m.encode() if isinstance(m, str) else m for m in messages]
    assert target.stored(["big"])["big"] == list(enumerate(expected, start=1))


def tick_key(message: str | bytes) -> str:
    """The demo feed's identity of a tick, (symbol, seq); a digest for anything else."""
    body = json.loads(message)
    if body.get("type") == "ticker":
        return f"{body['symbol']}:{body['seq']}"
    return hashlib.sha256(message if isinstance(message, bytes) else message.encode()).hexdigest()


def test_jetstream_stores_a_record_from_two_sinks_once(nats: NatsServer, feed: DemoFeed) -> None:
    name = f"t{next(_names)}"
    sinks = [
        NatsJetStreamSink(
            nats.url, subject=f"{name}.{{label}}", create_stream=name, key=tick_key, batch=20
        )
        for _ in range(2)
    ]
    keys: list[list[str]] = [[], []]

    def handler(i: int) -> Callable[[wspool.Connection, str | bytes], None]:
        def on_message(conn: wspool.Connection, message: str | bytes) -> None:
            sinks[i].on_message(conn, message)
            keys[i].append(tick_key(message))

        return on_message

    with wspool.Pool(workers=2) as pool:
        # Two connections holding the same feed, as two processes of one shard would.
        for i in range(2):
            pool.connect(
                feed.url + "/ticker", label="feed", on_open=subscribe, on_message=handler(i)
            )
        assert wait_until(lambda: len(set(keys[0]) & set(keys[1])) >= 100, 20)
    for sink in sinks:
        assert sink.close(10)
    unique = set(keys[0]) | set(keys[1])
    stored = nats.messages(name)
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert sorted(ids) == sorted(unique)
    duplicates = sum(sink.stats()["duplicates"] for sink in sinks)
    assert duplicates == len(keys[0]) + len(keys[1]) - len(unique)
    assert duplicates >= 100


def test_an_unreachable_engine_blocks_writers_and_drops_nothing_silently(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)  # a free port, never started
    sink = RedisStreamSink(server.url, batch=2, buffer=4, reconnect=FAST, timeout=1.0)
    for i in range(4):
        sink.write("x", f"m{i}")
    blocked: list[BaseException] = []

    def fifth() -> None:
        try:
            sink.write("x", "m4")
        except BaseException as exc:  # the outcome under test
            blocked.append(exc)

    thread = threading.Thread(target=fifth)
    thread.start()
    assert wait_until(lambda: sink.stats()["blocked"] == 1)
    assert wait_until(lambda: sink.stats()["errors"] >= 2)
    stats = sink.stats()
    assert stats["buffered"] == 4 and stats["written"] == 0
    assert f"127.0.0.1:{server.port}" in str(stats["last_error"])
    assert sink.close(0.2) is False
    thread.join(10)
    assert len(blocked) == 1 and isinstance(blocked[0], SinkClosedError)
    with pytest.raises(SinkClosedError):
        sink.write("x", "late")
    assert sink.stats()["buffered"] == 4


def test_a_refused_record_is_kept_and_retried(redis: RedisServer) -> None:
    admin = redis.client()
    try:
        admin.command("SET", "refused:x", "not a stream")
        sink = RedisStreamSink(redis.url, stream="refused:{label}", reconnect=FAST)
        record = sink.write("x", b"\x00binary")
        assert isinstance(record, Record) and record.type == "binary"
        assert wait_until(lambda: "WRONGTYPE" in str(sink.stats()["last_error"]))
        assert sink.stats()["written"] == 0 and sink.stats()["buffered"] == 1
        admin.command("DEL", "refused:x")
        assert sink.flush(10)
        assert sink.close(5)
    finally:
        admin.close()
    entries = redis.entries("refused:x")
    assert [(e["seq"], e["type"], e["data"]) for e in entries] == [(b"1", b"binary", b"\x00binary")]
    assert sink.stats()["retries"] >= 1 and sink.stats()["reconnects"] == 0


def test_redis_maxlen_bounds_the_stream_and_key_ids_are_stored(redis: RedisServer) -> None:
    with RedisStreamSink(
        redis.url, stream="bounded", maxlen=10, batch=100, key=lambda m: f"id-{m!s}"
    ) as sink:
        for i in range(1000):
            sink.write("b", str(i))
        assert sink.flush(10)
    entries = redis.entries("bounded")
    assert len(entries) < 1000  # MAXLEN ~ trims whole nodes: near 10, never all
    assert entries[-1]["data"] == b"999" and entries[-1]["id"] == b"id-999"
    assert entries[-1]["seq"] == b"1000"


def test_nats_errors_name_the_engine(nats: NatsServer) -> None:
    # A subject no stream listens to: JetStream has no responder, the record is kept.
    sink = NatsJetStreamSink(nats.url, subject="nostream.{label}", reconnect=FAST)
    sink.write("a b.c", "hello")
    assert wait_until(lambda: sink.stats()["errors"] >= 1)
    stats = sink.stats()
    assert nats.url in str(stats["last_error"]) and "nostream.a_b_c" in str(stats["last_error"])
    assert stats["buffered"] == 1 and stats["written"] == 0
    assert sink.close(0.2) is False


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisStreamSink("http://localhost:1")
    with pytest.raises(ValueError, match="batch"):
        RedisStreamSink("redis://127.0.0.1:1", batch=10, buffer=5)
    with pytest.raises(ValueError, match="stream"):
        RedisStreamSink("redis://127.0.0.1:1", stream="{nope}")
    with pytest.raises(ValueError, match="create_stream"):
        NatsJetStreamSink("nats://127.0.0.1:1", create_stream="a.b")
    sink = NatsJetStreamSink("nats://127.0.0.1:1", key=lambda m: "bad\r\nid", reconnect=FAST)
    with pytest.raises(ValueError, match="Nats-Msg-Id"):
        sink.write("x", "m")
    assert sink.close(1)
    assert isinstance(SinkClosedError("x"), SinkError)
    with pytest.raises(ValueError, match="database"):
        RedisStreamSink("redis://127.0.0.1:1/zero")


def test_engine_urls_are_shown_without_secrets() -> None:
    sinks = [
        RedisStreamSink("redis://me:s3cret@127.0.0.1:1/2", reconnect=FAST),
        NatsJetStreamSink("nats://t0ken@127.0.0.1:1", reconnect=FAST),
    ]
    assert [sink.url for sink in sinks] == [
        "redis://me:***@127.0.0.1:1/2",
        "nats://***@127.0.0.1:1",
    ]
    for sink in sinks:
        sink.write("x", "m")
        assert wait_until(lambda sink=sink: sink.stats()["last_error"] is not None)
        error = str(sink.stats()["last_error"])
        assert sink.url in error and "s3cret" not in error and "t0ken" not in error
        assert sink.close(0.1) is False
        assert "s3cret" not in repr(sink) and "t0ken" not in repr(sink)


def test_create_stream_uses_an_existing_stream_as_it_is(nats: NatsServer) -> None:
    name = f"t{next(_names)}"
    made = nats.api(
        f"$JS.API.STREAM.CREATE.{name}",
        {"name": name, "subjects": [f"{name}.>"], "duplicate_window": 30 * 10**9},
    )
    assert "error" not in made
    # Another duplicate window: "name already in use", so the sink keeps the stream.
    sink = NatsJetStreamSink(
        nats.url, subject=f"{name}.{{label}}", create_stream=name, duplicate_window=60
    )
    sink.write("x", "kept")
    assert sink.close(10)
    assert [m.payload for m in nats.messages(name)] == [b"kept"]
    info = nats.api(f"$JS.API.STREAM.INFO.{name}")
    assert info["config"]["duplicate_window"] == 30 * 10**9
    assert sink.stats()["errors"] == 0


def test_stream_names_a_stream_that_must_exist(nats: NatsServer) -> None:
    name = f"t{next(_names)}"
    assert "error" not in nats.api(
        f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": [f"{name}.>"]}
    )
    with NatsJetStreamSink(nats.url, subject=f"{name}.{{label}}", stream=name) as sink:
        sink.write("x", "expected")
        assert sink.flush(10)
    assert [m.headers["Nats-Expected-Stream"] for m in nats.messages(name)] == [name]
    missing = NatsJetStreamSink(
        nats.url, subject=f"{name}.{{label}}", stream="missing", reconnect=FAST
    )
    missing.write("x", "held")
    assert wait_until(lambda: "missing" in str(missing.stats()["last_error"]))
    assert nats.url in str(missing.stats()["last_error"])
    assert missing.close(0.1) is False
    assert len(nats.messages(name)) == 1
