"""wspool.sinks.ShardLeases against real engines: redis-server and nats-server
(JetStream KV), started on loopback ports of their own (tests/engines.py).

Owners share the shards fairly and disjointly, a new member makes the others give
work away, a closed owner's shards move within a round, a dead one's within the
TTL, compare-and-set keeps a stale owner off a lease taken over, replicas put each
shard on distinct owners, and an engine outage drops the leases before they could
be taken, then they come back.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import Engine, NatsServer, RedisServer, find_binary
from helpers import wait_until

from wspool.sinks import LeaseError, ShardLeases, SinkError
from wspool.sinks.lease import preference_order

TTL = 1.2
ROUND = TTL / 3

pytestmark = pytest.mark.skipif(
    (find_binary("redis-server") is None or find_binary("nats-server") is None)
    and not os.environ.get("CI"),
    reason="redis-server and nats-server are needed (.ci/run installs them)",
)

_groups = itertools.count()


@pytest.fixture(autouse=True)
def _no_leaks(no_thread_leaks: None) -> None:
    """Every lease thread ends with its test (close() joins it)."""


def _start(kind: str, folder: Path) -> Engine:
    server: Engine = RedisServer(folder) if kind == "redis" else NatsServer(folder)
    server.start()
    return server


@pytest.fixture(scope="module", params=["redis", "nats"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    server = _start(request.param, tmp_path_factory.mktemp(request.param))
    yield server
    server.stop()


@pytest.fixture
def group() -> str:
    return f"t{os.getpid()}-{next(_groups)}"


Make = Callable[..., ShardLeases]


@pytest.fixture
def make(engine: Engine, group: str) -> Iterator[Make]:
    """Makes started ShardLeases on the engine (group, ttl of the test); all closed
    at the end."""
    made: list[ShardLeases] = []

    def factory(owner: str, shards: int = 6, **options: Any) -> ShardLeases:
        options.setdefault("ttl", TTL)
        url = options.pop("url", engine.url)
        leases = ShardLeases(url, options.pop("group", group), shards, owner=owner, **options)
        made.append(leases)
        leases.start()
        return leases

    yield factory
    for leases in made:
        leases.close()


def _owner_of(engine: Engine, group: str, shard: int, replica: int = 0) -> tuple[str | None, int]:
    """The owner of a lease slot read straight from the engine, and its JetStream
    sequence (0 for Redis)."""
    if isinstance(engine, RedisServer):
        client = engine.client()
        try:
            value = client.command("GET", f"{group}:shard:{shard}:{replica}")
        finally:
            client.close()
        assert value is None or isinstance(value, bytes)
        return (None if value is None else value.decode()), 0
    assert isinstance(engine, NatsServer)
    answer = engine.api(
        f"$JS.API.STREAM.MSG.GET.KV_{group}",
        {"last_by_subj": f"$KV.{group}.shard.{shard}.{replica}"},
    )
    if "error" in answer:
        assert answer["error"]["err_code"] == 10037, answer
        return None, 0
    message = answer["message"]
    return base64.b64decode(message["data"]).decode(), int(message["seq"])


def _take_over(engine: Engine, group: str, shard: int, owner: str) -> None:
    """Another owner takes a slot by force, as if the lease had expired and been
    claimed: the value changes under the holder's feet."""
    if isinstance(engine, RedisServer):
        client = engine.client()
        try:
            assert client.command("SET", f"{group}:shard:{shard}:0", owner, "PX", 30_000) == "OK"
        finally:
            client.close()
        return
    assert isinstance(engine, NatsServer)
    _, seq = _owner_of(engine, group, shard)
    client = engine.client()
    try:
        reply = client.new_reply()
        client.publish(
            f"$KV.{group}.shard.{shard}.0",
            owner.encode(),
            reply=reply,
            headers={"Nats-Expected-Last-Subject-Sequence": str(seq)},
        )
        client.flush()
        while True:
            message = client.next_message()
            if message.subject == reply:
                assert "seq" in message.json(), message.json()
                return
    finally:
        client.close()


def _partitioned(owners: list[ShardLeases], shards: int) -> bool:
    """Every shard held by exactly one of ``owners``, each at most its fair share."""
    sets = [o.held for o in owners]
    fair = -(-shards // len(owners))
    return (
        sum(len(s) for s in sets) == shards
        and frozenset().union(*sets) == set(range(shards))
        and all(len(s) <= fair for s in sets)
    )


# ----------------------------------------------------------------------- sharing


def test_one_owner_takes_every_shard(make: Make, engine: Engine, group: str) -> None:
    changes: list[tuple[frozenset[int], frozenset[int]]] = []
    leases = make("solo", on_change=lambda gained, lost: changes.append((gained, lost)))
    # The first round runs inside start(): everything is held when it returns.
    assert leases.held == frozenset(range(6))
    assert leases.members == ["solo"]
    assert changes == [(frozenset(range(6)), frozenset())]
    assert all(_owner_of(engine, group, s)[0] == "solo" for s in range(6))
    stats = leases.stats()
    assert stats["held"] == list(range(6)) and stats["claims"] == 6 and stats["losses"] == 0
    assert stats["fair_share"] == 6 and stats["connected"] is True
    # Renewals keep the leases well past the TTL.
    assert leases.wait_for(lambda held: leases.stats()["rounds"] >= 5, 5.0)
    assert leases.held == frozenset(range(6)) and leases.stats()["losses"] == 0


def test_three_owners_converge_to_two_shards_each(make: Make) -> None:
    owners = [make(name) for name in ("a", "b", "c")]
    assert wait_until(
        lambda: all(len(o.held) == 2 for o in owners) and _partitioned(owners, 6), 5.0
    )
    assert all(o.members == ["a", "b", "c"] for o in owners)
    # Stable: nothing moves once shared.
    before = [o.held for o in owners]
    assert owners[0].wait_for(None, 2.0) and owners[0].wait_for(None, 2.0)
    assert [o.held for o in owners] == before


def test_a_new_member_gets_work_without_anyone_dying(make: Make) -> None:
    a, b = make("a"), make("b")
    assert wait_until(
        lambda: len(a.held) == 3 and len(b.held) == 3 and _partitioned([a, b], 6), 5.0
    )
    released = a.stats()["releases"] + b.stats()["releases"]
    c = make("c")
    owners = [a, b, c]
    assert wait_until(
        lambda: all(len(o.held) == 2 for o in owners) and _partitioned(owners, 6), 5.0
    )
    # Each gave away exactly its one shard above the new share.
    assert a.stats()["releases"] + b.stats()["releases"] - released == 2
    assert all(o.stats()["losses"] == 0 for o in owners)


def test_preference_is_stable_and_differs_between_owners() -> None:
    assert preference_order("a", "g", 8) == preference_order("a", "g", 8)
    assert sorted(preference_order("a", "g", 8)) == list(range(8))
    orders = {tuple(preference_order(name, "g", 8)) for name in "abcdef"}
    assert len(orders) == 6
    assert preference_order("a", "g", 8) != preference_order("a", "h", 8)


def test_an_owner_comes_back_to_its_preferred_shards(make: Make, group: str) -> None:
    # The same owner name (a restart) claims the same shards in the same share.
    a, b = make("a"), make("b")
    assert wait_until(lambda: _partitioned([a, b], 6), 5.0)
    first = b.held
    b.close()
    assert a.wait_for(6, 3.0)
    again = make("b", group=group)
    assert wait_until(lambda: len(again.held) == 3 and _partitioned([a, again], 6), 5.0)
    assert again.held == first


# ----------------------------------------------------------------------- fail-over


def test_close_releases_at_once_and_the_others_take_over(
    make: Make, engine: Engine, group: str
) -> None:
    a, b, c = make("a"), make("b"), make("c")
    assert wait_until(lambda: _partitioned([a, b, c], 6), 5.0)
    freed = c.held
    began = time.monotonic()
    c.close()
    # Deleted in the engine by close() itself, not left to expire.
    assert all(_owner_of(engine, group, s)[0] is None for s in freed)
    assert wait_until(lambda: _partitioned([a, b], 6), 3.0)
    # One renew round (ttl / 3), well before the TTL an expiry would need.
    assert time.monotonic() - began < TTL * 0.9
    assert c.held == frozenset() and a.members == b.members == ["a", "b"]
    c.close()  # idempotent


def test_a_dead_owner_loses_its_shards_within_the_ttl(make: Make) -> None:
    a, b, c = make("a"), make("b"), make("c")
    assert wait_until(lambda: _partitioned([a, b, c], 6), 5.0)
    c._stop_renewing()  # the machine dies: no release
    began = time.monotonic()
    assert wait_until(lambda: _partitioned([a, b], 6), TTL + 3 * ROUND + 1.0)
    took = time.monotonic() - began
    # Its leases had to expire first: not before ttl minus the last round.
    assert TTL - ROUND - 0.1 <= took <= TTL + 2 * ROUND + 0.5
    assert a.members == ["a", "b"]
    assert a.stats()["losses"] == b.stats()["losses"] == 0


def test_a_stale_owner_cannot_renew_or_delete_a_lease_taken_over(
    make: Make, engine: Engine, group: str
) -> None:
    lost: list[frozenset[int]] = []
    got = threading.Event()

    def on_change(gained: frozenset[int], gone: frozenset[int]) -> None:
        if gone:
            lost.append(gone)
            got.set()

    # A long TTL here: in JetStream the intruder's put expires with the bucket's
    # max_age (the TTL), and once it has, the key is free again and the holder may
    # lose and re-claim it in one round (no change to report), and the checks below
    # that the intruder still holds it would fail.  Twelve seconds: the holder renews
    # every 4 s, the wait allows it 8 s on a loaded machine (CI runs three test
    # processes on two cores; 3 s was once too little), and the intruder's put still
    # outlives the checks that follow by seconds.
    ttl = 12.0
    a = make("a", on_change=on_change, ttl=ttl)
    assert a.held == frozenset(range(6))
    token = a._leases[3].token
    _take_over(engine, group, 3, "intruder")
    assert got.wait(ttl * 2 / 3)
    assert lost == [frozenset({3})]
    assert 3 not in a.held and a.stats()["losses"] == 1
    # The renewal did not overwrite the intruder, a release by hand with the old
    # token does not delete it, and neither does close().
    assert _owner_of(engine, group, 3)[0] == "intruder"
    a._stop_renewing()
    a._engine.connect(1.0)
    a._engine.release([((3, 0), token)])
    assert a._engine.renew([((3, 0), token)]) == [None]
    assert _owner_of(engine, group, 3)[0] == "intruder"
    a.close()
    assert _owner_of(engine, group, 3)[0] == "intruder"
    assert all(_owner_of(engine, group, s)[0] is None for s in range(6) if s != 3)


def test_replicas_put_every_shard_on_two_distinct_owners(
    make: Make, engine: Engine, group: str
) -> None:
    owners = [make(name, shards=4, replicas=2) for name in ("a", "b", "c")]

    def doubled() -> bool:
        counts = [sum(s in o.held for o in owners) for s in range(4)]
        return counts == [2, 2, 2, 2] and all(len(o.held) <= 3 for o in owners)

    assert wait_until(doubled, 6.0)
    for shard in range(4):
        names = {_owner_of(engine, group, shard, r)[0] for r in range(2)}
        assert len(names) == 2 and None not in names


def test_replicas_unblock_an_owner_whose_free_slot_is_on_its_own_shard(
    make: Make, group: str
) -> None:
    # Two owners whose least preferred shard is the same: when a third joins, both
    # give that shard back, the newcomer can take only one of its two slots, and
    # every other slot is held.  An owner at its share must trade to unblock it.
    names = [f"o{i}" for i in range(64)]
    last = {name: preference_order(name, group, 4)[-1] for name in names}
    first, second = next((x, y) for x in names for y in names if x < y and last[x] == last[y])
    a, b = make(first, shards=4, replicas=2), make(second, shards=4, replicas=2)
    assert a.wait_for(4, 3.0) and b.wait_for(4, 3.0)
    owners = [a, b, make("c", shards=4, replicas=2)]

    def doubled() -> bool:
        counts = [sum(s in o.held for o in owners) for s in range(4)]
        return counts == [2, 2, 2, 2] and all(len(o.held) <= 3 for o in owners)

    assert wait_until(doubled, 6.0)


def test_two_replicas_with_two_owners_each_hold_everything(make: Make) -> None:
    a = make("a", shards=3, replicas=2)
    assert a.held == frozenset(range(3))  # one replica of each shard, never two
    b = make("b", shards=3, replicas=2)
    assert b.wait_for(3, 3.0)
    assert a.held == frozenset(range(3))


# ----------------------------------------------------------------------- engine outage


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_an_engine_outage_drops_the_leases_then_they_return(kind: str, tmp_path: Path) -> None:
    server = _start(kind, tmp_path)
    changes: list[tuple[frozenset[int], frozenset[int]]] = []
    leases = ShardLeases(
        server.url,
        "outage",
        4,
        owner="a",
        ttl=TTL,
        on_change=lambda gained, lost: changes.append((gained, lost)),
    )
    try:
        leases.start()
        assert leases.held == frozenset(range(4))
        server.stop()
        began = time.monotonic()
        assert leases.wait_for(0, TTL + 1.0)
        # Dropped at the safety margin (two thirds of the TTL), not later.
        assert time.monotonic() - began <= TTL * 2 / 3 + 0.3
        # ``held`` stops counting a lease the moment it passes the margin; the lease
        # thread counts the loss when its failing round returns (a request timeout
        # later), so wait for the count rather than read it at once.
        assert wait_until(lambda: leases.stats()["losses"] == 4, 3.0)
        stats = leases.stats()
        assert stats["renew_errors"] >= 1 and stats["losses"] == 4
        assert stats["last_error"] and server.url.split("//")[1] in stats["last_error"]
        assert wait_until(lambda: changes[-1] == (frozenset(), frozenset(range(4))), 3.0)
        server.start()
        assert leases.wait_for(4, 5.0)
        assert wait_until(lambda: changes[-1] == (frozenset(range(4)), frozenset()), 3.0)
    finally:
        leases.close()
        server.stop()


# ----------------------------------------------------------------------- errors


def test_bad_arguments_are_refused_clearly(engine: Engine) -> None:
    url = engine.url
    cases: list[tuple[dict[str, Any], str]] = [
        ({"shards": 0}, "shards must be an int >= 1"),
        ({"shards": 2.5}, "shards must be an int >= 1"),
        ({"replicas": 0}, "replicas must be an int >= 1"),
        ({"ttl": 0.1}, "ttl must be a number of seconds >= 0.3"),
        ({"ttl": "5"}, "ttl must be a number"),
        ({"group": "a.b"}, "group must be a name of letters"),
        ({"group": ""}, "group must be a name of letters"),
        ({"owner": "has space"}, "owner must be a non-empty name"),
        ({"owner": "dot.ted"}, "owner must be a non-empty name"),
        ({"on_change": 3}, "on_change must be a function"),
        ({"timeout": 0}, "timeout must be a number"),
    ]
    for change, message in cases:
        options: dict[str, Any] = {"group": "g", "shards": 4, **change}
        with pytest.raises(ValueError, match=message):
            ShardLeases(url, options.pop("group"), options.pop("shards"), **options)


def test_bad_urls_name_the_url_without_the_password() -> None:
    for url, message in [
        ("http://127.0.0.1:1", "needs a redis://"),
        ("redis://", "needs a redis://"),
        ("redis://u:secret@127.0.0.1:99999", "bad port in redis://"),
        ("redis://u:secret@127.0.0.1:6379/zero", "database of a redis:// URL must be a number"),
        ("nats://secret@127.0.0.1:4222/x", "a nats:// URL has no path"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            ShardLeases(url, "g", 4)
        assert "secret" not in str(info.value)


@pytest.mark.parametrize("scheme", ["redis", "nats"])
def test_an_unreachable_engine_fails_start_naming_the_url(scheme: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once closed
    leases = ShardLeases(f"{scheme}://user:secret@127.0.0.1:{port}", "g", 4, ttl=TTL, timeout=1.0)
    with pytest.raises(LeaseError, match=f"{scheme}://user:\\*\\*\\*@127.0.0.1:{port}") as info:
        leases.start()
    assert isinstance(info.value, SinkError) and "secret" not in str(info.value)
    assert "is the engine running" in str(info.value)
    leases.close()


def test_a_wrong_password_fails_start(engine: Engine) -> None:
    host = engine.url.split("//", 1)[1]
    scheme = engine.url.split(":", 1)[0]
    leases = ShardLeases(f"{scheme}://user:secret@{host}", "g", 4, ttl=TTL, timeout=2.0)
    if isinstance(engine, RedisServer):
        # The test redis has no ACL users: AUTH is refused.
        with pytest.raises(LeaseError, match="user:\\*\\*\\*@") as info:
            leases.start()
        assert "secret" not in str(info.value)
    else:
        # The test nats-server has no authorization: any credentials are accepted.
        leases.start()
        assert leases.held == frozenset(range(4))
    leases.close()


@pytest.mark.parametrize("engine", ["nats"], indirect=True)  # a JetStream KV matter
def test_a_bucket_with_another_ttl_is_refused(engine: Engine, make: Make, group: str) -> None:
    assert isinstance(engine, NatsServer)
    make("a")
    with pytest.raises(LeaseError, match=f"max_age {TTL:g}s .* ttl \\(2s\\)"):
        make("b", ttl=2.0)


@pytest.mark.parametrize("engine", ["nats"], indirect=True)  # a JetStream KV matter
def test_the_kv_bucket_config(engine: Engine, make: Make, group: str) -> None:
    assert isinstance(engine, NatsServer)
    make("a")
    info = engine.api(f"$JS.API.STREAM.INFO.KV_{group}")
    config = info["config"]
    assert config["subjects"] == [f"$KV.{group}.>"]
    assert config["max_msgs_per_subject"] == 1
    assert config["max_age"] == int(TTL * 1e9)
    assert config.get("deny_delete", False) is False  # releases delete by sequence
    assert json.dumps(config)  # plain JSON, nothing exotic


def test_a_failing_on_change_does_not_stop_the_renewals(engine: Engine, group: str) -> None:
    calls: list[frozenset[int]] = []

    def broken(gained: frozenset[int], lost: frozenset[int]) -> None:
        calls.append(gained)
        raise RuntimeError("callback bug")

    with ShardLeases(engine.url, group, 3, owner="a", ttl=TTL, on_change=broken) as a:
        assert calls == [frozenset(range(3))] and a.held == frozenset(range(3))
        with ShardLeases(engine.url, group, 3, owner="b", ttl=TTL) as b:
            assert wait_until(lambda: len(a.held) == 2 and len(b.held) == 1, 3.0)
        # b left: a takes its shard back, reported through the broken callback.
        assert wait_until(lambda: a.held == frozenset(range(3)), 3.0)
        # Called on each change though it raised: the release, then the claim.
        assert wait_until(lambda: len(calls) == 3, 1.0)
        assert calls[1] == frozenset() and len(calls[2]) == 1
        assert a.stats()["losses"] == 0
