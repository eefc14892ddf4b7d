"""``wspool forward URL... --to ENGINE``: every message of every feed into an engine.

One :class:`wspool.Pool` holds the feeds (the URLs of the command line and the
``[[feed]]`` tables of ``-f feeds.toml``); every message goes to one sink
(:class:`~wspool.sinks.RedisStreamSink` or :class:`~wspool.sinks.NatsJetStreamSink`).
``--shard I/N`` keeps the feeds whose label's rendezvous slot is ``I``; ``--lease URL
--shards N`` takes shards dynamically from :class:`~wspool.sinks.lease.ShardLeases`
and opens or closes the feeds of the shards it gains or loses.

SIGTERM and Ctrl-C close every connection with a closing handshake, flush the sink
(bounded by ``--flush-timeout``), release the leases and exit 0 (SIGTERM) or 130.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import re
import signal
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qs, urlsplit, urlunsplit

from wspool.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    options_from_args,
)
from wspool.exceptions import WebSocketConfigurationException, WebSocketException
from wspool.options import pool_options
from wspool.pool import Connection, Pool
from wspool.processes import rendezvous
from wspool.protocol.trace import enableTrace
from wspool.sinks import NatsJetStreamSink, RedisStreamSink, Sink, SinkError
from wspool.sinks._base import redacted_url

if TYPE_CHECKING:
    from wspool.sinks.lease import ShardLeases

log = logging.getLogger("wspool")

#: Keys of a ``[[feed]]`` table (and of ``[defaults]``, but for url and label).
FEED_KEYS = frozenset(
    {
        "url",
        "label",
        "subscribe",
        "redundancy",
        "max_age",
        "stale_after",
        "heartbeat",
        "send_rate",
        "dedupe",
        "sequence",
        "header",
        "subprotocols",
        "origin",
        "ping_interval",
        "ping_timeout",
        "reconnect",
        "max_size",
        "open_timeout",
    }
)
#: Keys passed to Pool.connect as they are (the library checks them).
_PASS_THROUGH = FEED_KEYS - {"url", "label", "dedupe", "sequence", "header"}

DEFAULT_STREAM = "wspool:{label}"
DEFAULT_SUBJECT = "wspool.{label}"


class UsageError(Exception):
    """A bad option, --to URL or feeds file: exit 2 with this message."""


# ---------------------------------------------------------------------- --to


@dataclass(frozen=True)
class Target:
    """What ``--to`` names: the engine URL for the sink, and the stream/subject."""

    kind: str  # "redis" or "nats"
    url: str  # for the sink: redis://auth@host:port/db, nats://auth@host:port
    name: str  # the stream key pattern (redis) or the subject pattern (nats)
    shown: str  # --to without its password


def parse_target(value: str) -> Target:
    """``redis://[auth@]host[:port]/STREAM[?db=N]`` or ``nats://[auth@]host[:port]/SUBJECT``."""
    parts = urlsplit(value)
    try:
        shown = redacted_url(parts)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"--to {parts.scheme}://...: bad port: {exc}") from None
    if parts.query:
        shown += "?" + parts.query
    if parts.scheme not in ("redis", "nats") or not parts.hostname:
        raise UsageError(
            f"--to {shown}: give redis://host[:port]/STREAM_KEY or nats://host[:port]/SUBJECT "
            "(e.g. redis://127.0.0.1:6379/wspool:{label})"
        )
    name = parts.path[1:] if parts.path.startswith("/") else parts.path
    query = parse_qs(parts.query, keep_blank_values=True)
    db = "0"
    if parts.scheme == "redis":
        unknown = set(query) - {"db"}
        if unknown:
            raise UsageError(f"--to {shown}: unknown parameter {sorted(unknown)[0]!r} (only db=N)")
        if "db" in query:
            db = query["db"][-1]
            if not db.isdigit():
                raise UsageError(f"--to {shown}: db must be a number, not {db!r}")
        if name.isdigit():
            raise UsageError(
                f"--to {shown}: the path is the stream key, not the database; "
                f"write redis://host:port/STREAM?db={name} (e.g. /wspool:{{label}}?db={name})"
            )
        name = name or DEFAULT_STREAM
        try:
            name.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"--to {shown}: the stream key may contain {{label}} and nothing else in "
                f"braces ({exc})"
            ) from None
        url = urlunsplit(("redis", parts.netloc, f"/{db}", "", ""))
    else:
        if query:
            raise UsageError(f"--to {shown}: a nats:// target takes no parameters")
        name = name or DEFAULT_SUBJECT
        try:
            example = name.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"--to {shown}: the subject may contain {{label}} and nothing else in "
                f"braces ({exc})"
            ) from None
        if re.search(r"\s|/", example) or example.startswith(".") or example.endswith("."):
            raise UsageError(f"--to {shown}: {name!r} is not a valid NATS subject")
        url = urlunsplit(("nats", parts.netloc, "", "", ""))
    return Target(parts.scheme, url, name, shown)


def parse_shard(value: str) -> tuple[int, int]:
    """``I/N`` with ``0 <= I < N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if match is None:
        raise UsageError(f"--shard {value!r}: write it as I/N, e.g. --shard 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise UsageError(f"--shard {value!r}: needs 0 <= I < N and N >= 1")
    return index, count


# ---------------------------------------------------------------------- feeds


def message_field(spec: str, what: str) -> Callable[[str | bytes], Any]:
    """``"text"`` (the whole message) or ``"json:a.b"`` (a field of the JSON
    message, dotted path); the function returns None when the message has no such
    field (an ack, a heartbeat)."""
    if spec == "text":
        return lambda message: message
    if not spec.startswith("json:") or not spec[5:] or any(not p for p in spec[5:].split(".")):
        raise ValueError(f'{what} = {spec!r}: write "json:FIELD" (dotted path ok) or "text"')
    path = spec[5:].split(".")

    def get(message: str | bytes) -> Any:
        try:
            value: Any = json.loads(message)
        except ValueError:
            return None
        for part in path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, separators=(",", ":"))
        return value

    return get


def _sequence(spec: str) -> Callable[[str | bytes], int | None]:
    get = message_field(spec, "sequence")

    def seq(message: str | bytes) -> int | None:
        value = get(message)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

    return seq


@dataclass
class Feed:
    """One feed: its label, URL, Pool.connect options and dedupe key function."""

    label: str
    url: str
    options: dict[str, Any]
    where: str  # "the command line" or "feeds.toml, feed 3"
    key: Callable[[str | bytes], Any] | None = None
    shard: int = 0


def _feed_options(
    table: dict[str, Any], where: str, base: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[str | bytes], Any] | None]:
    options = dict(base)
    key = None
    for name, value in table.items():
        if name in ("url", "label"):
            continue
        if name == "header":
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise UsageError(f'{where}: header must be "Name: value" or a list of them')
            for h in values:
                head, sep, _ = h.partition(":")
                if not sep or not head.strip():
                    raise UsageError(f"{where}: header {h!r} is not 'Name: value'")
            options["header"] = list(options.get("header", [])) + values
        elif name in ("dedupe", "sequence"):
            if not isinstance(value, str):
                raise UsageError(f'{where}: {name} must be "json:FIELD" or "text", not {value!r}')
            try:
                if name == "dedupe":
                    key = message_field(value, "dedupe")
                    options["dedupe"] = key
                else:
                    options["sequence"] = _sequence(value)
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}") from None
        elif name == "redundancy" and isinstance(value, list):
            options["redundancy"] = list(value)
        else:
            options[name] = value
    return options, key


def _check_keys(table: Any, where: str, *, defaults: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table, not {type(table).__name__}")
    allowed = FEED_KEYS - {"url", "label"} if defaults else FEED_KEYS
    for name in table:
        if name not in allowed:
            near = sorted(allowed, key=lambda k: _distance(k, name))[0]
            hint = f" (did you mean {near!r}?)" if _distance(near, name) <= 3 else ""
            if defaults and name in ("url", "label"):
                hint = " (url and label belong in each [[feed]])"
            raise UsageError(
                f"{where}: unknown key {name!r}{hint}; known keys: {', '.join(sorted(allowed))}"
            )
    return table


def _distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def load_feeds(urls: list[str], file: str | None, base: dict[str, Any]) -> list[Feed]:
    """The feeds of the command line, then those of the file, labelled c1, c2, ...
    where no label is given."""
    raw: list[tuple[dict[str, Any], str]] = [({"url": u}, "the command line") for u in urls]
    defaults: dict[str, Any] = {}
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise UsageError(f"cannot read -f {file}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{file} is not valid TOML: {exc}") from None
        for name in data:
            if name not in ("defaults", "feed"):
                raise UsageError(
                    f"{file}: unknown top-level key {name!r}; use [defaults] and [[feed]] tables"
                )
        defaults = _check_keys(data.get("defaults", {}), f"{file}, [defaults]", defaults=True)
        feeds = data.get("feed", [])
        if not isinstance(feeds, list):
            raise UsageError(f"{file}: feed must be an array of tables: write [[feed]]")
        for i, table in enumerate(feeds, 1):
            where = f"{file}, feed {i}"
            _check_keys(table, where, defaults=False)
            if not isinstance(table.get("url"), str):
                raise UsageError(f'{where}: url = "wss://..." is required')
            raw.append((table, where))
    if not raw:
        raise UsageError("give at least one URL or -f feeds.toml with [[feed]] tables")
    result: list[Feed] = []
    seen: dict[str, str] = {}
    for index, (table, where) in enumerate(raw, 1):
        label = table.get("label", f"c{index}")
        if not isinstance(label, str) or not label:
            raise UsageError(f"{where}: label must be a non-empty string, not {label!r}")
        if label in seen:
            raise UsageError(
                f"{where}: label {label!r} is already used by {seen[label]}; labels name the "
                "streams and the shards, so each feed needs its own"
            )
        seen[label] = where
        options, key = _feed_options({**defaults, **table}, where, base)
        try:
            # Every option checked now, by the library's own code: a bad one is a
            # usage error naming the file and the feed even for a feed this process
            # does not hold (yet).
            pool_options(table["url"], options)
        except (WebSocketException, ValueError) as exc:
            raise UsageError(f"{where} ({label}): {exc}") from None
        result.append(Feed(label, table["url"], options, where, key))
    return result


# ---------------------------------------------------------------------- the run


def make_sink(args: argparse.Namespace, target: Target, key: Callable[[str | bytes], Any]) -> Sink:
    common: dict[str, Any] = {"key": key}
    if args.batch is not None:
        common["batch"] = args.batch
    if args.buffer is not None:
        common["buffer"] = args.buffer
    if target.kind == "redis":
        if args.stream or args.create_stream or args.duplicate_window is not None:
            raise UsageError("--stream, --create-stream and --duplicate-window are for nats://")
        maxlen = None if args.maxlen == 0 else args.maxlen
        return RedisStreamSink(target.url, target.name, maxlen=maxlen, **common)
    if args.maxlen != 100_000:
        raise UsageError("--maxlen is for redis://")
    return NatsJetStreamSink(
        target.url,
        target.name,
        stream=args.stream,
        create_stream=args.create_stream,
        duplicate_window=args.duplicate_window,
        **common,
    )


@dataclass
class Forwarder:
    """The running feeds: which are connected, and the shard bookkeeping."""

    pool: Pool
    sink: Sink
    feeds: list[Feed]
    err: TextIO
    verbose: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: dict[str, Connection] = field(default_factory=dict)
    stopping: bool = False
    errors: int = 0
    local: threading.local = field(default_factory=threading.local)

    def say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"wspool forward: {text}", file=self.err, flush=True)

    def dedupe_id(self, message: str | bytes) -> str | None:
        """The sink's key: the feed's dedupe value prefixed with its label, so two
        feeds with the same message ids do not collide in one JetStream stream.  The
        label is the one :meth:`on_message` set on this worker thread."""
        feed: Feed | None = getattr(self.local, "feed", None)
        if feed is None or feed.key is None:
            return None
        try:
            value = feed.key(message)
        except Exception:
            return None
        if value is None:
            return None
        text = value.hex() if isinstance(value, bytes) else str(value)
        if len(text) > 100 or not text.isprintable() or " " in text:
            # A whole message ("text") or a long value: a digest keeps the id one short
            # line (a Nats-Msg-Id header), equal for equal values on every machine.
            text = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        return f"{feed.label}:{text}"

    def connect(self, feed: Feed) -> None:
        def on_message(_conn: Connection, message: str | bytes) -> None:
            self.local.feed = feed
            try:
                self.sink.write(feed.label, message)
            finally:
                self.local.feed = None

        def on_error(conn: Connection, error: BaseException) -> None:
            with self.lock:
                self.errors += 1
            self.say(f"{feed.label} {conn.url}: {error}")

        with self.lock:
            if self.stopping or feed.label in self.live:
                return
            conn = self.pool.connect(
                feed.url,
                label=feed.label,
                on_message=on_message,
                on_error=on_error,
                **feed.options,
            )
            self.live[feed.label] = conn
        if self.verbose:
            self.say(f"connecting {feed.label} {conn.url} (shard {feed.shard})")

    def disconnect(self, feed: Feed) -> None:
        with self.lock:
            conn = self.live.pop(feed.label, None)
        if conn is not None:
            conn.close()
            if self.verbose:
                self.say(f"closed {feed.label} {conn.url} (shard {feed.shard} lost)")

    def on_change(self, gained: frozenset[int], lost: frozenset[int]) -> None:
        """ShardLeases' callback (its thread): open the gained shards' feeds, close
        the lost ones'."""
        self.say(f"shards gained {sorted(gained)} lost {sorted(lost)}")
        for feed in self.feeds:
            if feed.shard in lost:
                self.disconnect(feed)
        for feed in self.feeds:
            if feed.shard in gained:
                try:
                    self.connect(feed)
                except Exception as exc:
                    if not self.stopping:  # else: the pool closing under us, quietly
                        log.warning("forward: could not connect %s: %s", feed.label, exc)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True


class _Stop:
    """The signal handlers: SIGTERM and SIGINT set an event with the exit status."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.status = EXIT_OK

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            return
        self.status = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
        self.event.set()


def run_forward(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``wspool forward``; returns the exit status."""
    del out  # nothing goes to stdout: the messages go into the engine
    try:
        return _run(args, err)
    except UsageError as exc:
        print(f"wspool forward: error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the handlers were set: nothing connected yet
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, err: TextIO) -> int:
    if args.debug:
        enableTrace(True)
    if args.to is None:
        raise UsageError(
            "--to is required: redis://host[:port]/STREAM or nats://host[:port]/SUBJECT"
        )
    target = parse_target(args.to)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.lease is not None:
        if shard is not None:
            raise UsageError("--shard and --lease are two ways to split the feeds: give one")
        if args.shards is None or args.shards < 1:
            raise UsageError("--lease needs --shards N (N >= 1): the same N on every machine")
    elif args.shards is not None or args.standby:
        raise UsageError("--shards and --standby go with --lease URL")
    if args.stats_every is not None and args.stats_every <= 0:
        raise UsageError("--stats-every must be > 0 seconds")
    try:
        base = options_from_args(args)
    except WebSocketConfigurationException as exc:
        raise UsageError(str(exc)) from None
    base.setdefault("reconnect", True)  # a forwarder stays connected
    if args.send:
        base["subscribe"] = list(args.send)
    feeds = load_feeds(list(args.urls), args.file, base)
    count: int = 1
    if args.lease is not None:
        count = int(args.shards or 1)
    elif shard is not None:
        count = shard[1]
    for feed in feeds:
        feed.shard = rendezvous(feed.label, count)
    if shard is not None:
        mine = [f for f in feeds if f.shard == shard[0]]
        print(
            f"wspool forward: shard {shard[0]}/{shard[1]}: {len(mine)} of {len(feeds)} feeds: "
            f"{' '.join(f.label for f in mine) or '(none)'}",
            file=err,
            flush=True,
        )
        feeds = mine

    # The sink, then a probe of the engine: unreachable at start is exit 1, now.
    holder: list[Forwarder] = []
    try:
        sink = make_sink(args, target, lambda m: holder[0].dedupe_id(m))
    except ValueError as exc:
        raise UsageError(f"--to {target.shown}: {exc}") from None
    try:
        sink._connect()  # the sink's own checks: AUTH, SELECT, the JetStream stream
        sink._disconnect()
    except (OSError, SinkError) as exc:
        sink.close(0)
        text = str(exc) if sink.url in str(exc) else f"{sink.url}: {exc}"
        print(
            f"wspool forward: error: cannot use {text} (is it running, and the URL right?)",
            file=err,
        )
        return EXIT_ERROR

    pool = Pool()
    forwarder = Forwarder(pool, sink, feeds, err, args.verbose)
    holder.append(forwarder)
    stop = _Stop()
    old = {s: signal.signal(s, stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
    leases: ShardLeases | None = None
    try:
        try:
            if args.lease is not None:
                leases = _start_leases(args, forwarder)
                if leases is None:
                    return EXIT_ERROR
            else:
                for feed in feeds:
                    forwarder.connect(feed)
                if args.verbose:
                    forwarder.say(f"{len(feeds)} feeds -> {target.shown}")
        except WebSocketConfigurationException as exc:
            raise UsageError(str(exc)) from None
        _wait(args, forwarder, leases, stop)
    finally:
        flushed = _shut_down(args, forwarder, leases)
        for s, handler in old.items():
            signal.signal(s, handler)
    if not flushed:
        return EXIT_ERROR
    if stop.event.is_set():
        return stop.status
    return EXIT_ERROR if forwarder.errors else EXIT_OK


def _start_leases(args: argparse.Namespace, forwarder: Forwarder) -> ShardLeases | None:
    from wspool.sinks.lease import ShardLeases

    try:
        leases = ShardLeases(
            args.lease,
            args.lease_group,
            args.shards,
            ttl=args.lease_ttl,
            replicas=2 if args.standby else 1,
            on_change=forwarder.on_change,
        )
    except ValueError as exc:
        raise UsageError(f"--lease: {exc}") from None
    try:
        leases.start()
    except SinkError as exc:
        forwarder.say(f"error: {exc}")
        return None
    forwarder.say(f"holding shards {sorted(leases.held)} of {args.shards} as {leases.owner}")
    if args.standby:
        bare = [f.label for f in forwarder.feeds if f.key is None]
        if bare:
            forwarder.say(
                f"warning: --standby without dedupe on {', '.join(bare[:5])}"
                f"{' ...' if len(bare) > 5 else ''}: both holders' copies are stored; "
                'give each feed dedupe = "json:FIELD" (JetStream then stores each once)'
            )
    return leases


def _wait(
    args: argparse.Namespace, forwarder: Forwarder, leases: ShardLeases | None, stop: _Stop
) -> None:
    every = args.stats_every
    next_stats = time.monotonic() + every if every else None
    while True:
        timeout = 0.2 if next_stats is None else max(0.0, min(0.2, next_stats - time.monotonic()))
        if stop.event.wait(timeout):
            return
        if leases is None and forwarder.feeds and not forwarder.pool.connections:
            return  # every feed ended for good (reconnect = false)
        if next_stats is not None and time.monotonic() >= next_stats:
            next_stats += every
            _print_stats(forwarder, leases)


def _print_stats(forwarder: Forwarder, leases: ShardLeases | None) -> None:
    pool = forwarder.pool.stats()
    pool.pop("per_connection", None)
    line: dict[str, Any] = {
        "time": round(time.time(), 3),
        "pool": pool,
        "sink": forwarder.sink.stats(),
    }
    if leases is not None:
        line["leases"] = leases.stats()
    with contextlib.suppress(OSError, ValueError):
        print(json.dumps(line, default=str), file=forwarder.err, flush=True)


def _shut_down(args: argparse.Namespace, forwarder: Forwarder, leases: ShardLeases | None) -> bool:
    """Closing handshakes, the sink flushed (bounded), the leases released."""
    forwarder.stop()
    ignore = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            forwarder.pool.close(args.close_timeout)
        except Exception:  # pragma: no cover - a bug: still flush and release
            traceback.print_exc(file=sys.stderr)
        flushed = forwarder.sink.close(args.flush_timeout)
        if not flushed:
            forwarder.say(
                f"error: {forwarder.sink.stats()['buffered']} message(s) could not be written "
                f"to {forwarder.sink.url} within --flush-timeout {args.flush_timeout:g} s"
            )
        if leases is not None:
            leases.close()
        if args.verbose:
            forwarder.say(f"stopped: {json.dumps(forwarder.sink.stats(), default=str)}")
        return flushed
    finally:
        signal.signal(signal.SIGINT, ignore)
