"""Market-data fan-in: several feeds, one ``wspool.Pool``, one aggregated view.

The shape of a real script: a list of ``(url, symbols)``, one pool, a subscription
sent from ``on_open`` (which runs again after every reconnect, so subscriptions come
back by themselves), a :class:`wspool.ReconnectPolicy`, keepalive pings, and an
aggregate (trade counters, VWAP, top of book) that callbacks on several worker
threads update under one lock.

    python examples/market_data_fanin.py                 # --demo: local exchanges
    python examples/market_data_fanin.py --demo --seconds 10
    python examples/market_data_fanin.py --feed wss://example.org/ws BTC-USD,ETH-USD

The demo starts three local exchanges (``tests/wsserver.py``, on 127.0.0.1); one of
them restarts a session part-way (close code 1012) to show the reconnect and the
automatic resubscription.  With ``--feed`` the script runs until Ctrl-C (or
``--seconds``); adapt :func:`subscribe_message` and :meth:`Market.apply` to your
venue's protocol.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import wspool

if TYPE_CHECKING:
    from wsserver import ServerConnection  # tests/wsserver.py, the demo venues' server

GRACE = 10.0  # the most a demo run is extended while waiting for its outcome

# --------------------------------------------------------------------- aggregation


@dataclass
class SymbolState:
    trades: int = 0
    volume: float = 0.0
    notional: float = 0.0
    last_price: float | None = None
    bids: dict[float, float] = field(default_factory=dict)  # price -> size
    asks: dict[float, float] = field(default_factory=dict)

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume else None

    def best(self) -> tuple[float | None, float | None]:
        return (max(self.bids, default=None), min(self.asks, default=None))


class Market:
    """The aggregated view.  Callbacks of different feeds run on different workers at
    the same time, so every update and every read holds ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.symbols: dict[str, SymbolState] = {}
        self.subscriptions: dict[str, int] = {}  # feed label -> subscribe messages sent
        self.messages = 0
        self.errors: list[str] = []

    def apply(self, update: dict[str, Any]) -> None:
        """One decoded message: a trade, a book snapshot or a book delta."""
        kind = update.get("type")
        with self.lock:
            self.messages += 1
            if kind not in ("trade", "book"):
                return  # acks, heartbeats: counted, nothing to aggregate
            state = self.symbols.setdefault(update["s"], SymbolState())
            if kind == "trade":
                price, size = float(update["p"]), float(update["q"])
                state.trades += 1
                state.volume += size
                state.notional += price * size
                state.last_price = price
                return
            if update.get("snapshot"):
                state.bids.clear()
                state.asks.clear()
            for side, levels in (
                (state.bids, update.get("bids", ())),
                (state.asks, update.get("asks", ())),
            ):
                for price, size in levels:
                    if size:
                        side[float(price)] = float(size)
                    else:
                        side.pop(float(price), None)


def subscribe_message(symbols: Sequence[str]) -> dict[str, Any]:
    """The venue's subscribe request (the demo exchange speaks this one)."""
    return {
        "op": "subscribe",
        "args": [f"{channel}:{s}" for s in symbols for channel in ("trades", "book")],
    }


# --------------------------------------------------------------------- the pool

_print_lock = threading.Lock()


def say(text: str, file: TextIO = sys.stdout) -> None:
    """print() from callbacks: workers print at the same time, keep lines whole."""
    with _print_lock:
        print(text, file=file, flush=True)


def start_feeds(
    pool: wspool.Pool,
    feeds: Sequence[tuple[str, Sequence[str]]],
    market: Market,
    *,
    ping_interval: float,
    ping_timeout: float,
    reconnect: wspool.ReconnectPolicy,
) -> list[wspool.Connection]:
    """Connect every feed; returns at once (the pool connects in the background)."""
    symbols_of = {f"feed{index}": list(symbols) for index, (_, symbols) in enumerate(feeds)}

    def on_open(conn: wspool.Connection) -> None:
        # Runs on every (re)connect: a new session knows nothing of old subscriptions.
        name = str(conn.label)
        conn.send_json(subscribe_message(symbols_of[name]))
        with market.lock:
            market.subscriptions[name] = market.subscriptions.get(name, 0) + 1

    def on_message(conn: wspool.Connection, message: str | bytes) -> None:
        update = json.loads(message)
        market.apply(update if isinstance(update, dict) else {"type": "other"})

    def on_error(conn: wspool.Connection, error: BaseException) -> None:
        with market.lock:
            market.errors.append(f"{conn.label}: {error}")
        if isinstance(error, wspool.CallbackError):
            say(error.format(), file=sys.stderr)  # a bug in our callback: full traceback

    def on_close(conn: wspool.Connection, code: int, reason: str) -> None:
        say(f"  [{conn.label}] closed {code} {reason!r} -> {conn.state.value}")

    def on_reconnect(conn: wspool.Connection) -> None:
        say(f"  [{conn.label}] reconnected; on_open resubscribes")

    return [
        pool.connect(
            url,
            label=name,
            on_open=on_open,
            on_message=on_message,
            on_error=on_error,
            on_close=on_close,
            on_reconnect=on_reconnect,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            reconnect=reconnect,
        )
        for name, (url, _) in zip(symbols_of, feeds, strict=True)
    ]


def print_summary(market: Market, connections: Sequence[wspool.Connection]) -> None:
    with market.lock:
        rows = sorted(market.symbols.items())
        messages, errors = market.messages, list(market.errors)
        subscriptions = dict(market.subscriptions)
    header = ("trades", "volume", "vwap", "last", "bid", "ask")
    print(f"{'symbol':<10} " + " ".join(f"{h:>{7 if h == 'trades' else 10}}" for h in header))
    for symbol, s in rows:
        bid, ask = s.best()
        print(
            f"{symbol:<10} {s.trades:>7} {s.volume:>10.0f} {fmt(s.vwap)} {fmt(s.last_price)} "
            f"{fmt(bid)} {fmt(ask)}"
        )
    for conn in connections:
        name = str(conn.label)
        rtt = conn.stats.last_rtt
        print(
            f"{name}: {conn.stats.messages_in} messages, {conn.stats.reconnects} reconnects, "
            f"{subscriptions.get(name, 0)} subscribes, "
            f"rtt {'-' if rtt is None else f'{rtt * 1000:.1f} ms'}"
        )
    print(f"total: {messages} messages, {len(rows)} symbols, {len(errors)} errors")
    for error in errors[:5]:
        print(f"  error: {error}")


def fmt(value: float | None) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.2f}"


# --------------------------------------------------------------------- demo exchange


class DemoVenue:
    """A local exchange: answers subscribes with a book snapshot per symbol, then
    streams trades and book deltas (``rate`` messages/s per session).  Prices and
    books live here, shared by sessions, so a reconnect resumes the same market.
    With ``restart_after``, the first session ends with 1012 (service restart) after
    that many seconds, as a venue rolling its servers would."""

    def __init__(self, rate: float, restart_after: float | None = None) -> None:
        self.rate = rate
        self.restart_after = restart_after
        self.sessions = 0
        self.rng = random.Random()
        self.mids: dict[str, float] = {}
        self.books: dict[str, dict[str, dict[float, int]]] = {}
        # Handler threads of concurrent sessions share the market state.
        self.lock = threading.Lock()

    def snapshot(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            if symbol not in self.mids:
                mid = self.mids[symbol] = round(self.rng.uniform(20, 900), 2)
                self.books[symbol] = {
                    "bids": {round(mid - i * 0.5, 2): self.rng.randint(1, 50) for i in range(1, 6)},
                    "asks": {round(mid + i * 0.5, 2): self.rng.randint(1, 50) for i in range(1, 6)},
                }
            book = self.books[symbol]
            return {
                "type": "book",
                "s": symbol,
                "snapshot": True,
                "bids": sorted(book["bids"].items(), reverse=True),
                "asks": sorted(book["asks"].items()),
            }

    def next_update(self, symbols: Sequence[str]) -> dict[str, Any]:
        """A trade, or a book delta that keeps the book uncrossed around the new mid."""
        rng = self.rng
        with self.lock:
            symbol = rng.choice(symbols)
            mid = self.mids[symbol] = round(self.mids[symbol] + rng.uniform(-0.3, 0.3), 2)
            if rng.random() < 0.5:
                return {"type": "trade", "s": symbol, "p": mid, "q": rng.randint(1, 10)}
            book = self.books[symbol]
            delta: dict[str, list[tuple[float, int]]] = {"bids": [], "asks": []}
            crossed = {"bids": [p for p in book["bids"] if p >= mid]}
            crossed["asks"] = [p for p in book["asks"] if p <= mid]
            for side, prices in crossed.items():
                for price in prices:
                    del book[side][price]
                    delta[side].append((price, 0))
            side = rng.choice(("bids", "asks"))
            price = round(mid + (-0.5 if side == "bids" else 0.5) * rng.randint(1, 6), 2)
            size = rng.randint(0, 50)
            if size:
                book[side][price] = size
            else:
                book[side].pop(price, None)
            delta[side].append((price, size))
            return {"type": "book", "s": symbol, **delta}

    def handler(self, conn: ServerConnection) -> None:
        from wsserver import Opcode

        with self.lock:
            self.sessions += 1
            first = self.sessions == 1
        restart_at = None
        if first and self.restart_after is not None:
            restart_at = time.monotonic() + self.restart_after
        symbols: list[str] = []
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            if restart_at is not None and now >= restart_at:
                conn.close(1012, "service restart")
                return
            wait = max(0.0, next_at - now) if symbols else 1.0
            if restart_at is not None:
                wait = min(wait, max(0.0, restart_at - now))
            try:
                opcode, data = conn.recv_message(timeout=wait)
            except TimeoutError:
                pass
            else:
                if opcode == Opcode.CLOSE:
                    conn.send_close(1000)
                    return
                request = json.loads(data)
                wanted = sorted({arg.split(":", 1)[1] for arg in request.get("args", ())})
                conn.send_message(json.dumps({"type": "subscribed", "symbols": wanted}))
                for symbol in wanted:
                    conn.send_message(json.dumps(self.snapshot(symbol)))
                symbols = sorted(set(symbols) | set(wanted))
                continue
            if symbols and time.monotonic() >= next_at:
                conn.send_message(json.dumps(self.next_update(symbols)))
                next_at += 1.0 / self.rate


def run(
    feeds: Sequence[tuple[str, Sequence[str]]],
    args: argparse.Namespace,
    until: Callable[[Market], bool] | None = None,
) -> tuple[Market, list[wspool.Connection], bool]:
    """Stream for ``args.seconds`` (None: until Ctrl-C), close, print the summary.

    ``until`` may extend the run, by up to GRACE seconds, until it holds.  Returns
    the market, the connections and whether Ctrl-C ended the run."""
    market = Market()
    interrupted = False
    policy = wspool.ReconnectPolicy(initial_delay=0.2, max_delay=10.0)
    with wspool.Pool(workers=4, name="marketdata") as pool:
        connections = start_feeds(
            pool,
            feeds,
            market,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_interval / 2,
            reconnect=policy,
        )
        print(f"{len(feeds)} feeds, {sum(len(s) for _, s in feeds)} symbols; Ctrl-C stops")
        try:
            if args.seconds is None:
                pool.run_forever()  # reconnecting feeds never end: until Ctrl-C
            else:
                time.sleep(args.seconds)
                grace_end = time.monotonic() + GRACE
                while until is not None and not until(market) and time.monotonic() < grace_end:
                    time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted")
    # Leaving the with block closed every feed: closing handshakes, last on_close.
    print_summary(market, connections)
    return market, connections, interrupted


def demo_done(symbol_sets: Sequence[Sequence[str]]) -> Callable[[Market], bool]:
    def done(market: Market) -> bool:
        with market.lock:
            traded = all(
                market.symbols.get(s, SymbolState()).trades for ss in symbol_sets for s in ss
            )
            return traded and market.subscriptions.get("feed1", 0) >= 2

    return done


def run_demo(args: argparse.Namespace) -> int:
    """Three local venues; the second restarts its first session part-way."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from wsserver import WSServer

    if args.seconds is None:
        args.seconds = 5.0
    symbol_sets = [["AAPL", "MSFT", "NVDA"], ["BTC-USD", "ETH-USD"], ["EURUSD", "USDJPY", "GBPUSD"]]
    venues = [DemoVenue(args.rate), DemoVenue(args.rate, args.seconds / 3), DemoVenue(args.rate)]
    servers = [WSServer(venue.handler).start() for venue in venues]
    try:
        urls = [f"{server.url}/ws" for server in servers]
        # Do not stop before the restarted feed is back and every symbol traded (a
        # loaded machine is slow); the checks below then judge the outcome.
        market, connections, interrupted = run(
            list(zip(urls, symbol_sets, strict=True)), args, until=demo_done(symbol_sets)
        )
    finally:
        for server in servers:
            server.stop()
    if interrupted:
        return 130
    # The demo checks itself.  Every delta went out before the venue's close reply and
    # the pool delivers in order, so each local book must equal the venue's own.
    problems = []
    for venue, symbols in zip(venues, symbol_sets, strict=True):
        for symbol in symbols:
            state = market.symbols.get(symbol, SymbolState())
            if state.trades == 0:
                problems.append(f"no trades for {symbol}")
            book = venue.books.get(symbol, {})
            if state.bids != book.get("bids") or state.asks != book.get("asks"):
                problems.append(f"the {symbol} book differs from the venue's")
    if connections[1].stats.reconnects < 1 or market.subscriptions.get("feed1", 0) < 2:
        problems.append("feed1 did not reconnect and resubscribe")
    print("demo: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="local venues (default without --feed)")
    parser.add_argument(
        "--feed",
        nargs=2,
        action="append",
        metavar=("URL", "SYMBOLS"),
        help="a feed URL and its comma-separated symbols; repeat for more feeds",
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (demo: 5)")
    parser.add_argument("--rate", type=float, default=50.0, help="demo messages/s per venue")
    parser.add_argument(
        "--ping-interval", type=float, help="keepalive ping every N seconds (20; demo: 1)"
    )
    args = parser.parse_args(argv)
    if args.demo or not args.feed:
        if args.ping_interval is None:
            args.ping_interval = 0.5  # short, so the demo's summary shows round trips
        return run_demo(args)
    if args.ping_interval is None:
        args.ping_interval = 20.0
    _, _, interrupted = run([(url, symbols.split(",")) for url, symbols in args.feed], args)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
