"""Market-data fan-in that survives forced disconnects: one stream per symbol, one Pool.

The shape of a real ingester: a subscription sent on every session (``subscribe=``),
make-before-break rotation before the venue cuts the session (``max_age=``), each tick
delivered once across the overlapping sessions (``dedupe=``), a watchdog for a feed
that goes quiet while its socket still answers pings (``stale_after=``), and gap
detection by sequence number (``sequence=`` with ``on_gap``) that would tell an order
book to resync.  Callbacks of different streams run on different workers at once, so
the aggregate (trades, volume, VWAP, last price) is updated under one lock.

    python examples/market_data_fanin.py                  # the demo, about 4 s
    python examples/market_data_fanin.py --seconds 10 --no-rotation
    python examples/market_data_fanin.py --url wss://venue.example/ws BTC-USD ETH-USD

The demo starts ``wspool.demofeed.DemoFeed``, which closes every session after
``--session-age`` seconds (1001, as venues do every 24 hours), and makes every session
of one stream (SOL-USD) go quiet soon after it opens.  It checks itself: on the other
streams no gap and nothing out of order, each rotated; the quiet one replaced by the
watchdog and the ticks it missed reported by ``on_gap``.  With ``--no-rotation`` the
venue's cuts become reconnects (started at once on its close 1001, so on loopback they
rarely lose a tick; on a real network each can, and ``on_gap`` says which).  With
``--url`` it runs until Ctrl-C (or ``--seconds``) against a venue speaking the demo
feed's protocol; adapt :func:`subscription` and :func:`tick_key` to yours.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import wspool
from wspool.demofeed import DemoFeed

GRACE = 10.0  # the most a demo run is extended while waiting for its outcome

# ------------------------------------------------------------ the venue's protocol


def subscription(symbol: str) -> dict[str, Any]:
    """The subscribe request, sent first on every session of the symbol's stream."""
    return {"op": "subscribe", "channel": "ticker", "symbols": [symbol]}


def parse(message: str | bytes) -> dict[str, Any]:
    value = json.loads(message)
    return value if isinstance(value, dict) else {}


def tick_key(message: str | bytes) -> tuple[str, int] | None:
    """What makes a tick unique (dedupe): (symbol, sequence).  Acks have none."""
    tick = parse(message)
    if tick.get("type") != "ticker":
        return None
    return tick["symbol"], tick["seq"]


def tick_seq(message: str | bytes) -> int | None:
    tick = parse(message)
    return tick["seq"] if tick.get("type") == "ticker" else None


# ------------------------------------------------------------------- the aggregate


@dataclass
class SymbolState:
    trades: int = 0
    volume: float = 0.0
    notional: float = 0.0
    last_price: float | None = None
    last_seq: int | None = None
    out_of_order: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume else None


class Market:
    """The aggregated view, updated from several worker threads under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.symbols: dict[str, SymbolState] = {}
        self.errors: list[str] = []

    def apply(self, symbol: str, message: str | bytes) -> None:
        tick = parse(message)
        if tick.get("type") != "ticker":
            return  # the subscription's ack
        with self.lock:
            state = self.symbols.setdefault(symbol, SymbolState())
            seq = int(tick["seq"])
            if state.last_seq is not None and seq <= state.last_seq:
                state.out_of_order += 1  # never happens with dedupe: checked by the demo
            state.last_seq = seq
            size = float(tick["size"])
            state.trades += 1
            state.volume += size
            state.notional += float(tick["price"]) * size
            state.last_price = float(tick["price"])

    def gap(self, symbol: str, expected: int, received: int) -> None:
        with self.lock:
            self.symbols.setdefault(symbol, SymbolState()).gaps.append((expected, received))


# ------------------------------------------------------------------------ the pool

_print_lock = threading.Lock()


def say(text: str) -> None:
    """print() from callbacks: workers print at the same time, keep lines whole."""
    with _print_lock:
        print(text, flush=True)


def connect_streams(
    pool: wspool.Pool,
    urls: dict[str, str],
    market: Market,
    *,
    rotation: bool,
    max_age: float,
    stale_after: float,
) -> list[wspool.Connection]:
    """One stream per symbol; returns at once (the pool connects in the background)."""

    def on_message(conn: wspool.Connection, message: str | bytes) -> None:
        market.apply(conn.label, message)

    def on_gap(conn: wspool.Connection, expected: int, received: int) -> None:
        market.gap(conn.label, expected, received)
        say(f"  [{conn.label}] gap: expected {expected}, got {received} (resync the book)")

    def on_error(conn: wspool.Connection, error: BaseException) -> None:
        with market.lock:
            market.errors.append(f"{conn.label}: {error}")
        if isinstance(error, wspool.WebSocketStaleFeedException):
            say(f"  [{conn.label}] went silent: replacing its session")
        elif isinstance(error, wspool.CallbackError):
            say(error.format())  # a bug in our callback: the full traceback

    feed_options: dict[str, Any] = {"stale_after": stale_after}
    if rotation:
        feed_options.update(max_age=max_age, dedupe=tick_key)
    return [
        pool.connect(
            url,
            label=symbol,
            subscribe=subscription(symbol),
            sequence=tick_seq,
            on_gap=on_gap,
            on_message=on_message,
            on_error=on_error,
            ping_interval=5.0,
            ping_timeout=4.0,
            reconnect=wspool.ReconnectPolicy(initial_delay=0.2, max_delay=10.0),
            **feed_options,
        )
        for symbol, url in urls.items()
    ]


def print_summary(market: Market, streams: Sequence[wspool.Connection]) -> None:
    with market.lock:
        rows = dict(market.symbols)
        errors = list(market.errors)
    print(
        f"{'symbol':<9} {'ticks':>6} {'vwap':>10} {'last':>10} {'rotations':>9} "
        f"{'stale':>5} {'reconn':>6} {'dupes':>6} {'gaps':>5}"
    )
    for conn in streams:
        state = rows.get(conn.label, SymbolState())
        stats = conn.stats
        vwap = "-" if state.vwap is None else f"{state.vwap:.2f}"
        last = "-" if state.last_price is None else f"{state.last_price:.2f}"
        print(
            f"{conn.label:<9} {state.trades:>6} {vwap:>10} {last:>10} {stats.rotations:>9} "
            f"{stats.stale_replacements:>5} {stats.reconnects:>6} "
            f"{stats.duplicates_dropped:>6} {stats.gaps:>5}"
        )
    ticks = sum(s.trades for s in rows.values())
    print(f"total: {ticks} ticks, {len(rows)} symbols, {len(errors)} reports")


def run(
    urls: dict[str, str], args: argparse.Namespace, *, done: Any = None
) -> tuple[Market, list[wspool.Connection], bool]:
    """Stream for ``args.seconds`` (None: until Ctrl-C), then close and summarize.

    ``done(market, streams)`` may extend the run by up to GRACE seconds until it
    holds.  Returns the market, the streams and whether Ctrl-C ended the run."""
    market = Market()
    interrupted = False
    with wspool.Pool(workers=4, name="marketdata") as pool:
        streams = connect_streams(
            pool,
            urls,
            market,
            rotation=args.rotation,
            max_age=args.max_age,
            stale_after=args.stale_after,
        )
        print(f"{len(streams)} streams; Ctrl-C stops")
        try:
            if args.seconds is None:
                pool.run_forever()  # reconnecting streams never end: until Ctrl-C
            else:
                time.sleep(args.seconds)
                grace_end = time.monotonic() + GRACE
                while done is not None and not done(market, streams):
                    if time.monotonic() > grace_end:
                        break
                    time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted")
    # Leaving the with block closed every stream: closing handshakes, last callbacks.
    print_summary(market, streams)
    return market, streams, interrupted


SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD")
SILENT = "SOL-USD"  # the demo makes this stream go quiet for a while


def run_demo(args: argparse.Namespace) -> int:
    if args.seconds is None:
        args.seconds = 4.0
    feed = DemoFeed(rate=args.rate, symbols=SYMBOLS, max_session_age=args.session_age)
    with feed:
        urls = {symbol: f"{feed.url}/ticker" for symbol in SYMBOLS}
        # Every session of one stream goes quiet 0.1 s after it opened (pings still
        # answered): the watchdog replaces it, and on_gap shows the ticks it missed.
        urls[SILENT] += "?silent_after=0.1&silent_for=1000"

        def done(market: Market, streams: Sequence[wspool.Connection]) -> bool:
            silent = next(conn for conn in streams if conn.label == SILENT)
            if silent.stats.stale_replacements < 1 or silent.stats.gaps < 1:
                return False
            others = [conn for conn in streams if conn.label != SILENT]
            return not args.rotation or all(conn.stats.rotations >= 1 for conn in others)

        market, streams, interrupted = run(urls, args, done=done)
    if interrupted:
        return 130
    problems = []
    with market.lock:
        states = dict(market.symbols)
    for conn in streams:
        state = states.get(conn.label, SymbolState())
        stats = conn.stats
        if state.trades == 0:
            problems.append(f"no ticks for {conn.label}")
        if state.out_of_order:
            problems.append(f"{conn.label}: {state.out_of_order} ticks out of order")
        if conn.label == SILENT:
            if stats.stale_replacements < 1 or not state.gaps:
                problems.append(f"the silent {SILENT} was not replaced, or no gap was seen")
        elif args.rotation and (state.gaps or stats.rotations < 1):
            problems.append(f"{conn.label}: gaps {state.gaps[:3]}, rotations {stats.rotations}")
    print("demo: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a venue's URL (default: the local demo feed)")
    parser.add_argument("symbols", nargs="*", help="symbols to follow with --url")
    parser.add_argument("--seconds", type=float, help="run time (default: 4 for the demo)")
    parser.add_argument("--rate", type=float, default=20.0, help="demo ticks/s per symbol")
    parser.add_argument(
        "--session-age", type=float, default=1.5, help="the demo venue cuts sessions this old"
    )
    parser.add_argument(
        "--max-age", type=float, default=1.2, help="rotate sessions this old (max_age)"
    )
    parser.add_argument(
        "--stale-after", type=float, default=0.5, help="replace a session this quiet"
    )
    parser.add_argument(
        "--no-rotation",
        dest="rotation",
        action="store_false",
        help="reconnect only: see the gaps each forced disconnect leaves",
    )
    args = parser.parse_args(argv)
    for name in ("seconds", "rate", "session_age", "max_age", "stale_after"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.url is None:
        if args.symbols:
            parser.error("symbols need --url")
        return run_demo(args)
    if not args.symbols:
        parser.error("--url needs at least one symbol")
    _, _, interrupted = run({symbol: args.url for symbol in args.symbols}, args)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
