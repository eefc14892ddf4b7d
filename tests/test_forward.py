"""``wspool forward`` as a subprocess, against real engines (tests/engines.py) and a real
WebSocket feed server (``CountingFeed`` below, on tests/wsserver.py).

Every message of every feed reaches its Redis stream / JetStream subject in order;
feeds.toml defaults, subscriptions and labels apply; bad files and options exit 2
with a message naming what is wrong; ``--shard 0/2`` and ``1/2`` together forward each
feed exactly once; SIGTERM closes, flushes and exits 0 with nothing lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import NatsServer, RedisServer, find_binary
from helpers import wait_until
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer

from wspool.processes import rendezvous

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    (find_binary("redis-server") is None or find_binary("nats-server") is None)
    and not os.environ.get("CI"),
    reason="redis-server and nats-server are needed (.ci/run installs them)",
)


class CountingFeed:
    """A feed per path: ``/NAME?count=N&rate=R&wait=1`` sends ``{"feed": NAME, "n": i,
    "ts": T}`` for i = 1, 2, ... (N messages, or for ever), R per second (flat out
    without), after the first client message with ``wait=1`` (kept in
    ``subscriptions[NAME]``).  ``sent[NAME]`` counts what was sent; nothing is sent
    once the client's close frame arrived.  ``headers[NAME]`` is the request's.

    ``clock=R`` instead numbers messages by one clock per server (R ticks a second
    since it started): every connection to any path sends the same ``n`` for the same
    tick, as an exchange's trade ids, so two holders of one feed send equal messages."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.subscriptions: dict[str, list[str]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.active = 0
        self.epoch = time.monotonic()
        self.lock = threading.Lock()
        self.server = WSServer(self._handler, compression=False)

    def __enter__(self) -> CountingFeed:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def url(self, name: str, query: str = "") -> str:
        return f"{self.server.url}/{name}" + (f"?{query}" if query else "")

    def _handler(self, conn: ServerConnection) -> None:
        parts = urllib.parse.urlsplit(conn.request.path)
        name = parts.path.strip("/")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        count = int(query["count"]) if "count" in query else None
        rate = float(query["rate"]) if "rate" in query else None
        clock = float(query["clock"]) if "clock" in query else None
        with self.lock:
            self.active += 1
            self.sent.setdefault(name, 0)
            self.headers[name] = dict(conn.request.headers)
        stop = threading.Event()
        go = threading.Event()

        def writer() -> None:
            go.wait()
            i = 0
            next_at = time.monotonic()
            if clock is not None:
                i = int((next_at - self.epoch) * clock)
            while count is None or i < count:
                if clock is not None:
                    next_at = self.epoch + (i + 1) / clock
                    if stop.wait(max(0.0, next_at - time.monotonic())):
                        return
                with conn._send_lock:
                    if stop.is_set():
                        return
                    i += 1
                    body = {"feed": name, "n": i, "ts": time.time()}
                    try:
                        conn.send_message(json.dumps(body))
                    except OSError:
                        return
                    with self.lock:
                        self.sent[name] += 1
                if rate is not None:
                    next_at += 1.0 / rate
                    if stop.wait(max(0.0, next_at - time.monotonic())):
                        return

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        if "wait" not in query:
            go.set()
        try:
            while not self.server.stopping.is_set():
                try:
                    opcode, data = conn.recv_message(timeout=0.05)
                except TimeoutError:
                    continue
                if opcode == Opcode.CLOSE:
                    with conn._send_lock:
                        stop.set()
                        with contextlib.suppress(OSError):
                            conn.send_close(1000)
                    break
                with self.lock:
                    self.subscriptions.setdefault(name, []).append(data.decode())
                go.set()
        except (PeerClosed, OSError):
            pass
        finally:
            stop.set()
            go.set()
            thread.join(5)
            with contextlib.suppress(OSError):
                conn.close_tcp()
            with self.lock:
                self.active -= 1


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", name="redis")
def redis_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", name="nats")
def nats_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="feed")
def feed_fixture() -> Iterator[CountingFeed]:
    with CountingFeed() as server:
        yield server


class Forward:
    """One ``wspool forward`` subprocess; stderr goes to a file (read with ``err``)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wspool", "forward", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._file,
        )

    @property
    def err(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()


@pytest.fixture(name="forward")
def forward_fixture(tmp_path: Path) -> Iterator[Any]:
    started: list[Forward] = []

    def start(*args: str) -> Forward:
        proc = Forward(list(args), tmp_path / f"forward-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def run_forward(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wspool", "forward", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def xlen(redis: RedisServer, key: str) -> int:
    client = redis.client()
    try:
        value = client.command("XLEN", key)
    finally:
        client.close()
    assert isinstance(value, int)
    return value


def numbers(entries: list[dict[str, bytes]]) -> list[int]:
    return [json.loads(e["data"])["n"] for e in entries]


# ---------------------------------------------------------------------- tests


def test_three_feeds_reach_redis_in_order(
    redis: RedisServer, feed: CountingFeed, forward: Any
) -> None:
    n = 300
    urls = [feed.url(name, f"count={n}") for name in ("a", "b", "c")]
    proc = forward(*urls, "--to", f"redis://127.0.0.1:{redis.port}/t1:{{label}}")
    assert wait_until(lambda: all(xlen(redis, f"t1:c{i}") == n for i in (1, 2, 3)), timeout=15), (
        proc.err
    )
    for i, name in enumerate(("a", "b", "c"), 1):
        entries = redis.entries(f"t1:c{i}")
        assert numbers(entries) == list(range(1, n + 1))
        assert {json.loads(e["data"])["feed"] for e in entries} == {name}
        assert [int(e["seq"]) for e in entries] == list(range(1, n + 1))
        assert {e["label"] for e in entries} == {f"c{i}".encode()}
    assert proc.stop() == 0, proc.err


def test_three_feeds_reach_jetstream_in_order(
    nats: NatsServer, feed: CountingFeed, forward: Any
) -> None:
    n = 200
    urls = [feed.url(name, f"count={n}") for name in ("a", "b", "c")]
    proc = forward(
        *urls,
        "--to",
        f"nats://127.0.0.1:{nats.port}/fwd1.{{label}}",
        "--create-stream",
        "FWD1",
        "--stats-every",
        "0.3",
    )

    def stored() -> int:
        try:
            return int(nats.api("$JS.API.STREAM.INFO.FWD1")["state"]["messages"])
        except (KeyError, TypeError):
            return 0

    assert wait_until(lambda: stored() == 3 * n, timeout=15), proc.err
    by_subject: dict[str, list[int]] = {}
    for message in nats.messages("FWD1"):
        by_subject.setdefault(message.subject, []).append(json.loads(message.payload)["n"])
        assert message.headers["Nats-Msg-Id"].startswith(message.headers["Wspool-Label"] + ":")
    assert by_subject == {f"fwd1.c{i}": list(range(1, n + 1)) for i in (1, 2, 3)}
    assert wait_until(lambda: '"sink"' in proc.err, timeout=5)
    stats = [json.loads(line) for line in proc.err.splitlines() if line.startswith("{")]
    assert stats[-1]["sink"]["written"] == 3 * n
    assert stats[-1]["pool"]["connections"] == 3
    assert proc.stop() == 0, proc.err


def test_feeds_file_defaults_subscribe_and_labels(
    redis: RedisServer, feed: CountingFeed, forward: Any, tmp_path: Path
) -> None:
    toml = tmp_path / "feeds.toml"
    toml.write_text(
        f"""
[defaults]
subscribe = "hello"
header = ["X-Desk: fx"]
ping_interval = 5

[[feed]]
url = "{feed.url("btc", "count=50&wait=1")}"
label = "btc"
subscribe = {{op = "subscribe", args = ["trades"]}}

[[feed]]
url = "{feed.url("eth", "count=50&wait=1")}"
dedupe = "json:n"
sequence = "json:n"
""",
        encoding="utf-8",
    )
    proc = forward("-f", str(toml), "--to", f"redis://127.0.0.1:{redis.port}/t3:{{label}}")
    # Unlabelled feeds are c1, c2, ... by position: the second feed is c2.
    assert wait_until(
        lambda: xlen(redis, "t3:btc") == 50 and xlen(redis, "t3:c2") == 50, timeout=15
    ), proc.err
    assert json.loads(feed.subscriptions["btc"][0]) == {"op": "subscribe", "args": ["trades"]}
    assert feed.subscriptions["eth"] == ["hello"]
    assert feed.headers["btc"]["X-Desk"] == "fx" and feed.headers["eth"]["X-Desk"] == "fx"
    eth = redis.entries("t3:c2")
    assert numbers(eth) == list(range(1, 51))
    assert [e["id"] for e in eth] == [f"c2:{i}".encode() for i in range(1, 51)]
    assert proc.stop() == 0, proc.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[feed]\nurl = 1", "is not valid TOML"),
        ('[[feed]]\nurl = "ws://x"\nsubscrib = "a"', "feed 1: unknown key 'subscrib'"),
        ('[defaults]\nlabel = "x"\n[[feed]]\nurl = "ws://x"', "[defaults]: unknown key 'label'"),
        ('[[feed]]\nlabel = "x"', 'feed 1: url = "wss://..." is required'),
        ('[[feed]]\nurl = "ws://x"\ndedupe = "id"', 'write "json:FIELD"'),
        ('[[feed]]\nurl = "ws://x"\n[[feed]]\nurl = "ws://y"\nlabel = "c1"', "already used"),
        ('[[feed]]\nurl = "ws://x"\nredundancy = 2', "needs dedupe"),
        ('[[feed]]\nurl = "ws://x"\nmax_age = -1', "max_age"),
        ("[feeds]\n", "unknown top-level key 'feeds'"),
    ],
)
def test_bad_feeds_file_is_a_usage_error(
    tmp_path: Path, redis: RedisServer, text: str, expected: str
) -> None:
    toml = tmp_path / "feeds.toml"
    toml.write_text(text, encoding="utf-8")
    done = run_forward("-f", str(toml), "--to", f"redis://127.0.0.1:{redis.port}/x")
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    if "TOML" not in expected and "top-level" not in expected:
        assert str(toml) in done.stderr or "feed" in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "http://127.0.0.1/x"], "give redis://host[:port]/STREAM_KEY"),
        (["--to", "redis://127.0.0.1:6379/3"], "the path is the stream key"),
        (["--to", "redis://u:hunter2@127.0.0.1:6379/s?x=1"], "unknown parameter 'x'"),
        (["--to", "redis://127.0.0.1:99999/s"], "bad port"),
        (["--to", "nats://127.0.0.1/a b"], "not a valid NATS subject"),
        (["--to", "redis://127.0.0.1/{oops}"], "may contain {label}"),
        (["--to", "redis://127.0.0.1/s", "--shard", "2/2"], "needs 0 <= I < N"),
        (["--to", "redis://127.0.0.1/s", "--shard", "one"], "write it as I/N"),
        (["--to", "redis://127.0.0.1/s", "--stream", "S"], "are for nats://"),
        (["--to", "redis://127.0.0.1/s", "--lease", "redis://127.0.0.1"], "needs --shards"),
        ([], "--to is required"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], expected: str) -> None:
    done = run_forward("ws://127.0.0.1:9/feed", *args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "hunter2" not in done.stderr


def test_unreachable_engine_exits_1_naming_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "never")  # a free port, never started
    done = run_forward("ws://127.0.0.1:9/feed", "--to", f"redis://:pw@127.0.0.1:{server.port}/s")
    assert done.returncode == 1, done.stderr
    assert f"redis://***@127.0.0.1:{server.port}" in done.stderr
    assert "pw" not in done.stderr.replace("pw@", "")  # never the password


def test_unreachable_lease_engine_exits_1_naming_it(redis: RedisServer, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "never")
    lease = f"redis://:pw@127.0.0.1:{server.port}"
    done = run_forward(
        "ws://127.0.0.1:9/feed",
        "--to",
        f"redis://127.0.0.1:{redis.port}/s",
        "--lease",
        lease,
        "--shards",
        "2",
    )
    assert done.returncode == 1, done.stderr
    assert f"redis://***@127.0.0.1:{server.port}" in done.stderr
    assert ":pw@" not in done.stderr


def test_two_static_shards_cover_every_feed_once(
    redis: RedisServer, feed: CountingFeed, forward: Any, tmp_path: Path
) -> None:
    labels = [f"feed{i}" for i in range(8)]
    toml = tmp_path / "feeds.toml"
    toml.write_text(
        "".join(f'[[feed]]\nurl = "{feed.url(x, "count=40")}"\nlabel = "{x}"\n' for x in labels),
        encoding="utf-8",
    )
    to = f"redis://127.0.0.1:{redis.port}/t5:{{label}}"
    procs = [forward("-f", str(toml), "--to", to, "--shard", f"{i}/2") for i in (0, 1)]
    assert wait_until(lambda: all(xlen(redis, f"t5:{x}") == 40 for x in labels), timeout=15)
    for proc in procs:
        assert proc.stop() == 0, proc.err
    for x in labels:
        assert numbers(redis.entries(f"t5:{x}")) == list(range(1, 41))  # once, not twice
    for i, proc in enumerate(procs):
        line = next(ln for ln in proc.err.splitlines() if f"shard {i}/2" in ln)
        got = set(line.split(": ")[-1].split())
        assert got == {x for x in labels if rendezvous(x, 2) == i}
    assert {rendezvous(x, 2) for x in labels} == {0, 1}  # both shards have work


def test_sigterm_closes_flushes_and_loses_nothing(
    redis: RedisServer, feed: CountingFeed, forward: Any
) -> None:
    urls = [feed.url(name, "rate=400") for name in ("x", "y")]
    proc = forward(*urls, "--to", f"redis://127.0.0.1:{redis.port}/t6:{{label}}", "-v")
    assert wait_until(lambda: xlen(redis, "t6:c1") > 200 and xlen(redis, "t6:c2") > 200, 15)
    assert proc.stop(signal.SIGTERM) == 0, proc.err
    # The closing handshakes happened: the server saw the close frames and stopped.
    assert wait_until(lambda: feed.active == 0, timeout=5)
    assert xlen(redis, "t6:c1") == feed.sent["x"]
    assert xlen(redis, "t6:c2") == feed.sent["y"]
    assert numbers(redis.entries("t6:c1")) == list(range(1, feed.sent["x"] + 1))


def test_sigint_exits_130_after_closing(
    redis: RedisServer, feed: CountingFeed, forward: Any
) -> None:
    proc = forward(feed.url("z", "rate=200"), "--to", f"redis://127.0.0.1:{redis.port}/t7")
    assert wait_until(lambda: xlen(redis, "t7") > 20, timeout=15), proc.err
    assert proc.stop(signal.SIGINT) == 130, proc.err
    assert wait_until(lambda: feed.active == 0, timeout=5)
    assert xlen(redis, "t7") == feed.sent["z"]
