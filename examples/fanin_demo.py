"""Demo: hundreds of WebSocket feeds fanned in through one ``wspool.Pool``.

Starts the embedded demo feed (``wspool.demofeed``, on 127.0.0.1) with one symbol
per connection, opens ``--connections`` feeds to it through one pool, subscribes
each to its symbol in ``on_open``, streams for ``--seconds`` once all are open and
checks in ``on_message`` that every feed's sequence numbers arrive in order and
without gaps; at the end the feed's own count of messages sent must equal what
arrived.  A status line (open feeds,
msgs/s, total, errors, undelivered queue depth, median latency) updates about four
times a second; a summary follows.  Exit status 0 means every message the server
sent arrived, in order, with no error; 1 means something was lost, reordered or
failed; 130 means Ctrl-C (which still closes every feed cleanly).

    python -m pip install -e . && python examples/fanin_demo.py
    python examples/fanin_demo.py --connections 500 --seconds 10 --rate 20
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import wspool
from wspool.demofeed import DemoFeed

POOL_NAME = "fanin"
OPEN_WAIT = 10.0  # seconds for every feed to open before streaming is timed anyway


# ------------------------------------------------------------------ the client side


@dataclass
class Feed:
    """What one connection has seen.  Only that connection's callbacks write it, and
    the pool runs them one at a time, so it needs no lock."""

    symbol: str
    opened: bool = False
    received: int = 0  # ticks
    acks: int = 0  # other messages (the subscription's acknowledgement)
    last_seq: int = 0
    out_of_order: int = 0
    missing: int = 0
    close_code: int | None = None


class FanIn:
    """The callbacks and the counters shared between them."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()  # guards errors and the latency samples
        self._latencies: list[float] = []
        self.all_latencies: list[float] = []

    def on_open(self, conn: wspool.Connection) -> None:
        feed = self.feeds[conn.label]  # type: ignore[index]
        feed.opened = True
        feed.last_seq = 0  # a new session starts a new sequence
        conn.send_json({"op": "subscribe", "channel": "ticker", "symbols": [feed.symbol]})

    def on_message(self, conn: wspool.Connection, message: str | bytes) -> None:
        tick = json.loads(message)
        feed = self.feeds[conn.label]  # type: ignore[index]
        if tick["type"] != "ticker":
            feed.acks += 1
            return
        seq = tick["seq"]
        if seq <= feed.last_seq:
            feed.out_of_order += 1
        else:
            feed.missing += seq - feed.last_seq - 1
            feed.last_seq = seq
        feed.received += 1
        latency = time.time() - tick["ts"]
        with self._lock:
            self._latencies.append(latency)

    def on_error(self, conn: wspool.Connection, error: BaseException) -> None:
        text = error.format() if isinstance(error, wspool.CallbackError) else str(error)
        with self._lock:
            self.errors.append(f"{conn.label}: {text}")

    def on_close(self, conn: wspool.Connection, code: int, reason: str) -> None:
        feed = self.feeds[conn.label]  # type: ignore[index]
        feed.close_code = code

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_open": self.on_open,
            "on_message": self.on_message,
            "on_error": self.on_error,
            "on_close": self.on_close,
        }

    def take_latencies(self) -> list[float]:
        with self._lock:
            samples, self._latencies = self._latencies, []
        self.all_latencies.extend(samples)
        return samples

    @property
    def received(self) -> int:
        return sum(feed.received for feed in self.feeds.values())

    @property
    def acks(self) -> int:
        return sum(feed.acks for feed in self.feeds.values())


def percentile(samples: list[float], fraction: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def pool_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(POOL_NAME + "-"))


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=300, help="feeds to open (300)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to stream (5)")
    parser.add_argument("--rate", type=float, default=10.0, help="ticks/s per feed (10)")
    parser.add_argument("--workers", type=int, default=8, help="callback threads (8)")
    parser.add_argument("--deflate", action="store_true", help="compress (permessage-deflate)")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.seconds <= 0 or args.rate <= 0 or args.workers < 1:
        parser.error("--connections, --seconds, --rate and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fanin = FanIn()
    symbols = [f"SYM{i:03d}" for i in range(args.connections)]
    server = DemoFeed(rate=args.rate, symbols=symbols).start()
    live = sys.stdout.isatty()
    interrupted = False
    peak_threads = 0
    started = time.monotonic()
    print(
        f"feed server on {server.url}; {args.connections} feeds x {args.rate:g} ticks/s "
        f"for {args.seconds:g}s once open, {args.workers} workers"
    )
    pool = wspool.Pool(workers=args.workers, name=POOL_NAME)
    streaming_since, streamed_before = started, 0
    try:
        connections = []
        for symbol in symbols:
            fanin.feeds[symbol] = Feed(symbol)
            conn = pool.connect(
                f"{server.url}/ticker",
                label=symbol,
                compression="deflate" if args.deflate else None,
                **fanin.callbacks(),
            )
            connections.append(conn)
        last_total, last_at, last_line = 0, started, 0.0
        # The --seconds of streaming start once every feed is open (or OPEN_WAIT passed).
        stop_at = started + OPEN_WAIT + args.seconds
        while (now := time.monotonic()) < stop_at:
            time.sleep(min(0.25, stop_at - now))
            now = time.monotonic()
            total = fanin.received
            rate = (total - last_total) / max(1e-6, now - last_at)
            last_total, last_at = total, now
            peak_threads = max(peak_threads, pool_threads())
            is_open = sum(1 for c in connections if c.state is wspool.ConnectionState.OPEN)
            if is_open == args.connections and stop_at > now + args.seconds:
                stop_at = now + args.seconds
                streaming_since, streamed_before = now, total
            queued = sum(c.queue_depth for c in connections)
            line = (
                f"open {is_open:>4}/{args.connections} | {rate:>8,.0f} msg/s | total "
                f"{total:>9,} | errors {len(fanin.errors)} | queue {queued:>5} | "
                f"p50 {ms(percentile(fanin.take_latencies(), 0.5))}"
            )
            if live:
                print(f"\r{line}   ", end="", flush=True)
            elif now - last_line >= 1.0:  # piped: one plain line a second
                print(line, flush=True)
                last_line = now
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # msgs/s over the streaming phase (after every feed opened)
        elapsed = time.monotonic() - streaming_since
        streamed = fanin.received - streamed_before
        if live:
            print()
        try:
            pool.close(timeout=5.0)  # closing handshakes, then the last on_close callbacks
        except KeyboardInterrupt:
            interrupted = True
        server.close()
    fanin.take_latencies()
    rate = streamed / max(elapsed, 1e-6)
    # Every closing handshake is done, so the feed sent nothing after these counts.
    sent = server.stats()["messages_sent"]
    return summarize(fanin, args, rate, peak_threads, interrupted, sent)


def summarize(
    fanin: FanIn,
    args: argparse.Namespace,
    rate: float,
    threads: int,
    interrupted: bool,
    sent: int,
) -> int:
    feeds = list(fanin.feeds.values())
    opened = sum(1 for f in feeds if f.opened)
    clean = sum(1 for f in feeds if f.close_code == 1000)
    received = fanin.received + fanin.acks
    # Gaps inside each feed's sequence, and whatever the feed sent that never arrived.
    lost = sum(f.missing for f in feeds) + max(0, sent - received)
    out_of_order = sum(f.out_of_order for f in feeds)
    latencies = fanin.all_latencies
    print("summary")
    print(f"  connections   {opened}/{args.connections} opened, {clean} closed cleanly")
    print(
        f"  messages      {received:,} received ({fanin.received:,} ticks, {fanin.acks} acks), "
        f"{rate:,.0f} msg/s while all open"
    )
    print(f"  server sent   {sent:,} (the feed's own count)")
    print(f"  lost          {lost}")
    print(f"  out of order  {out_of_order}")
    print(f"  errors        {len(fanin.errors)}")
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f"  latency       p50 {ms(p50)}, p99 {ms(p99)}")
    print(f"  threads       {threads} pool threads (1 dispatcher + up to {args.workers} workers)")
    for error in fanin.errors[:5]:
        print(f"  error: {error}")
    if interrupted:
        print("result: interrupted")
        return 130
    problems = []
    if opened < args.connections:
        problems.append(f"{args.connections - opened} feeds never opened")
    if clean < opened:
        problems.append(f"{opened - clean} feeds did not close cleanly")
    if lost:
        problems.append(f"{lost} messages lost")
    if out_of_order:
        problems.append(f"{out_of_order} messages out of order")
    if fanin.errors:
        problems.append(f"{len(fanin.errors)} errors")
    if not received:
        problems.append("no messages at all")
    print("result: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
