"""Where a message's latency goes inside the Pool, stage by stage.

    python -m bench.stages [--connections 200] [--rate 50] [--count 500] [--settle 1.5]
                           [--workers 8] [--deliver workers|dispatcher] [--ramp]
                           [--switch-interval S] [--json]

Runs the latency scenario's feed (``/paced``: timestamped messages at ``rate`` per
second on each connection) against the bench's feed server, in this process, with
timestamps taken at each hand-over of a message through the Pool:

``sent``      the server's ``"ts"``, just before its write (``time.monotonic_ns()``,
              system-wide on Linux);
``select``    the dispatcher's ``select()`` returned with the socket ready;
``readable``  the dispatcher started reading this socket (``Session._on_readable``);
``parsed``    the frames were read and decoded (``Connection.session_events``);
``queued``    the events are in the connection's ``DeliveryQueue``;
``drain``     a drain task started on a worker (or, with ``--deliver dispatcher``, in
              the dispatcher's command phase);
``deliver``   the drain reached this message (earlier ones of its batch went first);
``callback``  the user callback was entered.

Each stage is the difference of two neighbours; the table gives p50/p99/p99.9 per stage
for the steady state (messages sent ``settle`` seconds after the last connection
opened) and, with ``--ramp`` (feeds that start at each handshake), for the ramp-up as
well.  "Tail" is the median of each stage over the slowest 1% of messages: the stages
that make the tail.  The hooks wrap private methods of this wspool (instrumentation
only: they add a few microseconds per message and change nothing else).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import wspool
from bench.drivers._common import paced_urls, stamp_of
from bench.drivers.wspool_pool import _Fleet
from bench.run import FeedServer
from wspool.pool import connection as connection_module
from wspool.pool import delivery as delivery_module
from wspool.pool import dispatcher as dispatcher_module
from wspool.pool import session as session_module

STAGES = (
    ("sent", "select"),
    ("select", "readable"),
    ("readable", "parsed"),
    ("parsed", "queued"),
    ("queued", "drain"),
    ("drain", "deliver"),
    ("deliver", "callback"),
)
#: What each stage stands for, in the printed table.
MEANING = {
    "sent>select": "network + dispatcher busy elsewhere (GIL, earlier work)",
    "select>readable": "other sockets read first in the same turn",
    "readable>parsed": "recv + frame decode + UTF-8",
    "parsed>queued": "DeliveryQueue.put_many",
    "queued>drain": "hand-off: worker wake-up and its wait for the GIL",
    "drain>deliver": "earlier messages of the same drain batch",
    "deliver>callback": "callback wrapper",
}

Stamps = tuple[int, int, int, int, int]  # select, readable, parsed, queued, drain-or-queued


class StageClock:
    """Timestamps at each stage, recorded by wrapping the Pool's own methods."""

    def __init__(self) -> None:
        self.local = threading.local()
        self._by_event: dict[int, tuple[int, int, int, int]] = {}

    @contextmanager
    def installed(self) -> Iterator[StageClock]:
        now = time.monotonic_ns
        local = self.local
        by_event = self._by_event
        Dispatcher = dispatcher_module.Dispatcher
        Session = session_module.Session
        Connection = connection_module.Connection
        DeliveryQueue = delivery_module.DeliveryQueue
        saved = {
            (Dispatcher, "start"): Dispatcher.start,
            (Session, "_on_readable"): Session._on_readable,
            (Connection, "session_events"): Connection.session_events,
            (DeliveryQueue, "_drain"): DeliveryQueue._drain,
            (Connection, "_deliver"): Connection._deliver,
        }
        start, on_readable = Dispatcher.start, Session._on_readable
        session_events, drain, deliver = (
            Connection.session_events,
            DeliveryQueue._drain,
            Connection._deliver,
        )

        def timed_start(self: Any) -> None:
            start(self)
            selector = self._selector
            inner = selector.select

            def select(timeout: float | None = None) -> Any:
                ready = inner(timeout)
                local.select = now()
                return ready

            selector.select = select

        def timed_readable(self: Any) -> None:
            local.readable = now()
            local.select_seen = getattr(local, "select", local.readable)
            on_readable(self)

        def timed_events(self: Any, session: Any, events: Any, *args: Any) -> None:
            parsed = now()
            session_events(self, session, events, *args)
            queued = now()
            readable = getattr(local, "readable", parsed)
            stamps = (getattr(local, "select_seen", readable), readable, parsed, queued)
            for event in events:
                by_event[id(event)] = stamps

        def timed_drain(self: Any) -> None:
            local.drain = now()
            drain(self)

        def timed_deliver(self: Any, item: Any) -> None:
            stamps = by_event.pop(id(item), None)
            if stamps is not None:
                local.current = (*stamps, max(getattr(local, "drain", 0), stamps[3]), now())
            deliver(self, item)

        Dispatcher.start = timed_start  # type: ignore[method-assign]
        Session._on_readable = timed_readable  # type: ignore[method-assign]
        Connection.session_events = timed_events  # type: ignore[method-assign]
        DeliveryQueue._drain = timed_drain  # type: ignore[method-assign]
        Connection._deliver = timed_deliver  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for (cls, name), fn in saved.items():
                setattr(cls, name, fn)
            by_event.clear()

    def current(self) -> tuple[int, ...] | None:
        """In a callback: the stamps of the message being delivered on this thread."""
        return getattr(self.local, "current", None)


def measure(params: dict[str, Any]) -> dict[str, Any]:
    """One run: the stage samples of every message, split steady / ramp-up."""
    clock = StageClock()
    samples: list[tuple[int, tuple[int, ...]]] = []  # (sent, points sent..callback)
    now = time.monotonic_ns
    per_connection = params["count"]
    left = [len(paced_urls(params))]
    done = threading.Event()
    lock = threading.Lock()

    def on_message(conn: wspool.Connection, message: str) -> None:
        entered = now()
        sent = stamp_of(message)
        stamps = clock.current()
        if stamps is not None:
            samples.append((sent, (sent, *stamps, entered)))
        counter = conn.label
        counter[0] += 1
        if counter[0] == per_connection:
            with lock:
                left[0] -= 1
                if not left[0]:
                    done.set()

    pool_options = {"workers": params["workers"], "deliver": params["deliver"]}
    urls = paced_urls(params)
    with clock.installed(), wspool.Pool(**pool_options) as pool:
        fleet = _Fleet(pool)
        fleet.open_all(urls, [[0] for _ in urls], on_message=on_message)
        if params.get("start") != "open":
            for conn in fleet.connections:
                conn.send("go")
        finished = done.wait(params.get("timeout", 300))
    all_open = fleet.all_open_ns or 0
    steady_from = all_open + int(params["settle"] * 1e9)
    return {
        "params": {k: v for k, v in params.items() if k != "base"},
        "switch_interval": sys.getswitchinterval(),
        "complete": finished,
        "errors": len(fleet.errors),
        "steady": summarize([p for s, p in samples if s >= steady_from]),
        "ramp": summarize([p for s, p in samples if s < all_open]),
    }


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else 0.0


def summarize(points: list[tuple[int, ...]]) -> dict[str, Any]:
    """Per-stage p50/p99/p99.9 (µs), and each stage's median over the slowest 1%."""
    if not points:
        return {"messages": 0}
    totals = [p[-1] - p[0] for p in points]
    tail_from = sorted(totals)[int(0.99 * len(totals))]
    tail = [p for p, total in zip(points, totals, strict=True) if total >= tail_from]
    report: dict[str, Any] = {"messages": len(points), "stages": {}}
    names = ("sent", "select", "readable", "parsed", "queued", "drain", "deliver", "callback")
    for index, (first, second) in enumerate(STAGES):
        assert names[index] == first and names[index + 1] == second
        values = [p[index + 1] - p[index] for p in points]
        report["stages"][f"{first}>{second}"] = {
            "p50_us": _pct(values, 0.5),
            "p99_us": _pct(values, 0.99),
            "p999_us": _pct(values, 0.999),
            "tail_median_us": statistics.median(p[index + 1] - p[index] for p in tail) / 1000,
        }
    report["total"] = {
        "p50_us": _pct(totals, 0.5),
        "p99_us": _pct(totals, 0.99),
        "p999_us": _pct(totals, 0.999),
        "tail_median_us": statistics.median(p[-1] - p[0] for p in tail) / 1000,
    }
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"bench.stages {json.dumps(report['params'])}"]
    if not report["complete"] or report["errors"]:
        lines.append(f"WARNING: complete={report['complete']} errors={report['errors']}")
    for part in ("steady", "ramp"):
        data = report[part]
        if not data["messages"]:
            continue
        lines.append("")
        lines.append(f"{part} ({data['messages']:,} messages), microseconds:")
        lines.append(f"  {'stage':18} {'p50':>8} {'p99':>8} {'p99.9':>8} {'tail':>8}  meaning")
        rows = [*data["stages"].items(), ("total", data["total"])]
        for name, row in rows:
            lines.append(
                f"  {name:18} {row['p50_us']:8.0f} {row['p99_us']:8.0f} {row['p999_us']:8.0f}"
                f" {row['tail_median_us']:8.0f}  {MEANING.get(name, '')}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rate", type=int, default=50, help="messages per second per connection")
    parser.add_argument("--count", type=int, default=500, help="messages per connection")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds after the last open")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--deliver", choices=("workers", "dispatcher"), default="workers")
    parser.add_argument("--ramp", action="store_true", help="feeds start at each handshake")
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="S",
        help="sys.setswitchinterval(S) first (default 0.005): how long a thread that wants "
        "the GIL waits for the running one; a stage that shrinks with it is a GIL wait",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    server = FeedServer()
    try:
        params: dict[str, Any] = {
            "base": server.base,
            "connections": args.connections,
            "rate": args.rate,
            "count": args.count,
            "settle": args.settle,
            "workers": args.workers,
            "deliver": args.deliver,
        }
        if args.ramp:
            params["start"] = "open"
        report = measure(params)
    finally:
        server.close()
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["complete"] and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
