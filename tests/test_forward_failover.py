"""``wspool forward --lease``: shards over several processes, and what a SIGKILL costs.

Three forward processes share 6 shards by leases (in Redis, then in NATS KV) with a
2 s TTL; one is killed with SIGKILL; the feeds of its shards are forwarded again by the
others within the TTL plus a round, and the streams show the gap bounded by the
receive timestamps.  With ``--standby`` two processes hold every shard and JetStream's
dedup by ``Nats-Msg-Id`` stores each message once, with no gap when one is killed.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from engines import NatsServer, RedisServer
from helpers import wait_until
from test_forward import (  # noqa: F401 -- pytestmark applies here; fixtures by name
    CountingFeed,
    feed_fixture,
    forward_fixture,
    nats_fixture,
    pytestmark,
    redis_fixture,
    xlen,
)

TTL = 2.0
SHARDS = 6
LABELS = [f"f{i}" for i in range(10)]


def last_stats(proc: Any) -> dict[str, Any] | None:
    lines = [ln for ln in proc.err.splitlines() if ln.startswith('{"time"')]
    return json.loads(lines[-1]) if lines else None


def holdings(procs: list[Any]) -> list[set[int]]:
    out = []
    for proc in procs:
        stats = last_stats(proc)
        out.append(set(stats["leases"]["held"]) if stats else set())
    return out


def settled(procs: list[Any], members: int, replicas: int = 1) -> bool:
    held = holdings(procs)
    stats = [last_stats(p) for p in procs]
    if any(s is None or len(s["leases"]["members"]) != members for s in stats):
        return False
    counts = [sum(shard in h for h in held) for shard in range(SHARDS)]
    return counts == [replicas] * SHARDS


def feeds_toml(feed: CountingFeed, tmp_path: Any, query: str, dedupe: bool = False) -> str:
    path = tmp_path / "feeds.toml"
    extra = 'dedupe = "json:n"\n' if dedupe else ""
    path.write_text(
        "".join(f'[[feed]]\nurl = "{feed.url(x, query)}"\nlabel = "{x}"\n{extra}' for x in LABELS),
        encoding="utf-8",
    )
    return str(path)


@pytest.fixture(params=["redis", "nats"])
def lease_url(request: pytest.FixtureRequest) -> Iterator[str]:
    engine = request.getfixturevalue(request.param)
    yield engine.url


def test_killed_forwarders_shards_move_within_ttl(
    redis: RedisServer, feed: CountingFeed, forward: Any, tmp_path: Any, lease_url: str
) -> None:
    prefix = f"fo{int(time.time() * 1000) % 10**8}"
    group = prefix
    toml = feeds_toml(feed, tmp_path, "rate=50")
    common = [
        "-f", toml,
        "--to", f"redis://127.0.0.1:{redis.port}/{prefix}:{{label}}",
        "--lease", lease_url, "--shards", str(SHARDS), "--lease-ttl", str(TTL),
        "--lease-group", group, "--stats-every", "0.3", "-v",
    ]  # fmt: skip
    procs = [forward(*common) for _ in range(3)]
    assert wait_until(lambda: settled(procs, 3), timeout=15), [p.err for p in procs]
    held = holdings(procs)
    victim = max(range(3), key=lambda i: len(held[i]))
    moved = [x for x in LABELS if _shard(x) in held[victim]]
    assert moved, held
    # Every feed is being forwarded now.
    start = time.time()
    assert wait_until(lambda: all(_last_ts(redis, f"{prefix}:{x}") > start for x in LABELS), 10)
    procs[victim].proc.send_signal(signal.SIGKILL)
    killed = time.time()
    procs[victim].kill()
    others = [p for i, p in enumerate(procs) if i != victim]
    # Within the TTL plus a round (ttl / 3) plus the time to connect: forwarded again.
    bound = TTL + TTL / 3 + 1.5
    assert wait_until(
        lambda: all(_last_ts(redis, f"{prefix}:{x}") > killed + 0.2 for x in moved),
        timeout=bound + 3,
    ), [p.err for p in others]
    for x in moved:
        stamps = [float(e["ts"]) for e in redis.entries(f"{prefix}:{x}")]
        gap = max(b - a for a, b in pairwise(stamps))
        assert 0.2 < gap < bound, (x, gap)  # the kill shows, and it is bounded
    for x in LABELS:
        if x not in moved:  # untouched feeds kept flowing
            stamps = [
                float(e["ts"]) for e in redis.entries(f"{prefix}:{x}") if float(e["ts"]) > start
            ]
            assert max(b - a for a, b in pairwise(stamps)) < 1.0, x
    assert wait_until(lambda: settled(others, 2), timeout=10)
    for proc in others:
        assert proc.stop() == 0, proc.err


def test_a_stopped_forwarder_releases_its_shards_before_the_ttl(
    redis: RedisServer, feed: CountingFeed, forward: Any, tmp_path: Any
) -> None:
    # SIGTERM: close, flush, then release the leases; the others claim the shards in
    # their next round instead of waiting for the leases to expire.
    prefix = f"gr{int(time.time() * 1000) % 10**8}"
    toml = feeds_toml(feed, tmp_path, "rate=50")
    ttl = 6.0  # long, so that a takeover by expiry could not pass the bound below
    common = [
        "-f", toml,
        "--to", f"redis://127.0.0.1:{redis.port}/{prefix}:{{label}}",
        "--lease", redis.url, "--shards", str(SHARDS), "--lease-ttl", str(ttl),
        "--lease-group", prefix, "--stats-every", "0.3",
    ]  # fmt: skip
    procs = [forward(*common) for _ in range(2)]
    assert wait_until(lambda: settled(procs, 2), timeout=20), [p.err for p in procs]
    leaving = holdings(procs)[0]
    assert leaving
    stopped = time.monotonic()
    assert procs[0].stop() == 0, procs[0].err  # SIGTERM, exit 0
    # The member key of the stopped one is gone with its leases: one member, all shards.
    assert wait_until(lambda: settled(procs[1:], 1), timeout=ttl / 3 + 3), procs[1].err
    assert time.monotonic() - stopped < ttl  # released, not expired
    moved = [x for x in LABELS if _shard(x) in leaving]
    resumed = time.time()
    assert wait_until(
        lambda: all(_last_ts(redis, f"{prefix}:{x}") > resumed for x in moved), timeout=5
    )
    assert procs[1].stop() == 0, procs[1].err


def test_standby_on_jetstream_stores_each_message_once(
    nats: NatsServer, feed: CountingFeed, forward: Any, tmp_path: Any
) -> None:
    stream = f"SB{int(time.time() * 1000) % 10**8}"
    toml = feeds_toml(feed, tmp_path, "clock=40", dedupe=True)
    common = [
        "-f", toml,
        "--to", f"nats://127.0.0.1:{nats.port}/{stream.lower()}.{{label}}",
        "--create-stream", stream,
        "--lease", nats.url, "--shards", str(SHARDS), "--lease-ttl", str(TTL),
        "--lease-group", stream, "--standby", "--stats-every", "0.3",
    ]  # fmt: skip
    procs = [forward(*common) for _ in range(2)]
    assert wait_until(lambda: settled(procs, 2, replicas=2), timeout=15), [p.err for p in procs]
    # Both publish every message: JetStream acknowledges the second as a duplicate.
    assert wait_until(
        lambda: all((last_stats(p) or {}).get("sink", {}).get("duplicates", 0) > 50 for p in procs),
        timeout=10,
    )
    procs[0].proc.send_signal(signal.SIGKILL)
    procs[0].kill()
    killed_at = time.time()
    assert wait_until(lambda: _stream_ts(nats, stream) > killed_at + 1.0, timeout=10)
    assert procs[1].stop() == 0, procs[1].err
    by_label: dict[str, list[int]] = {}
    for message in nats.messages(stream):
        by_label.setdefault(message.headers["Wspool-Label"], []).append(
            json.loads(message.payload)["n"]
        )
    assert set(by_label) == set(LABELS)
    for label, ns in by_label.items():
        assert len(ns) == len(set(ns)), f"{label}: a message stored twice"
        # The survivor held every feed all along: no gap across the kill.
        tail = sorted(ns)
        assert tail == list(range(tail[0], tail[-1] + 1)), label


def _shard(label: str) -> int:
    from wspool.processes import rendezvous

    return rendezvous(label, SHARDS)


def _last_ts(redis: RedisServer, key: str) -> float:
    if xlen(redis, key) == 0:
        return 0.0
    client = redis.client()
    try:
        reply = client.command("XREVRANGE", key, "+", "-", "COUNT", 1)
    finally:
        client.close()
    assert isinstance(reply, list) and reply
    fields = reply[0][1]  # type: ignore[index]
    values = dict(zip(fields[::2], fields[1::2], strict=True))  # type: ignore[index]
    return float(values[b"ts"])


def _stream_ts(nats: NatsServer, stream: str) -> float:
    info = nats.api(f"$JS.API.STREAM.INFO.{stream}")
    last = info.get("state", {}).get("last_ts")
    if not last or last.startswith("0001"):
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(last[:26].rstrip("Z") + "+00:00").timestamp()
