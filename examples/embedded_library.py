"""Embedding a ``wspool.Pool`` inside a library with its own callback API.

``FeedClient`` is what a vendor's market-data package could ship: its users call
``subscribe(symbol, callback)`` and never see WebSockets.  Underneath, one pool
connection carries every subscription:

* no ``run_forever``: the pool's threads start on the first subscribe and the
  caller's thread stays free;
* subscriptions live in the client, and ``on_open`` sends all of them, so they
  survive reconnects;
* a raising user callback is logged and does not stop the others;
* ``close()`` or a ``with`` block ends it; a forgotten ``close()`` is still a clean
  exit, because the pool closes its connections (closing handshake) when the
  interpreter exits.

    python examples/embedded_library.py                 # ends with feed.close()
    python examples/embedded_library.py --forget-close  # never calls close()

The demo runs against the embedded demo feed (``wspool.demofeed``, on 127.0.0.1),
whose ``/ticker`` protocol ``FeedClient`` speaks; ``--url`` points it at another
server that speaks it (``python -m wspool.demofeed`` in another terminal, say).

    python examples/embedded_library.py --url ws://127.0.0.1:8765/ticker
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import wspool
from wspool.demofeed import DemoFeed

logger = logging.getLogger("feedclient")


# --------------------------------------------------------------------- the library


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    price: float
    size: float


TickCallback = Callable[[Tick], object]


class Subscription:
    """Returned by :meth:`FeedClient.subscribe`; :meth:`cancel` ends it."""

    def __init__(self, client: FeedClient, symbol: str, callback: TickCallback) -> None:
        self.client = client
        self.symbol = symbol
        self.callback = callback

    def cancel(self) -> None:
        """End it: once this returns the callback is not called again.  From another
        thread it waits for a running call of this client's callbacks to finish."""
        self.client._cancel(self)


class FeedClient:
    """A tick feed with a callback API, backed by one pooled WebSocket connection.

    Callbacks run on the pool's worker threads, one tick at a time and in the order
    the server sent them.  Thread-safe: subscribe and cancel from any thread.
    """

    def __init__(
        self,
        url: str,
        *,
        ping_interval: float = 20.0,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        self.url = url
        self.ping_interval = ping_interval
        self.on_error = on_error
        # Creating a pool starts no thread; the first connect does.
        self._pool = wspool.Pool(workers=2, name="feedclient")
        self._conn: wspool.Connection | None = None
        self._subscriptions: dict[str, list[Subscription]] = {}
        # Guards _subscriptions and _conn.  Held while sending (sends never block on the
        # network), so a subscribe and the on_open replay cannot miss each other, and
        # while calling back, so that cancel() returning means no further call.
        # Re-entrant: callbacks may subscribe and cancel.
        self._lock = threading.RLock()
        self._closed = False

    def subscribe(self, symbol: str, callback: TickCallback) -> Subscription:
        subscription = Subscription(self, symbol, callback)
        with self._lock:
            if self._closed:
                raise RuntimeError("this FeedClient is closed: create a new one")
            first = symbol not in self._subscriptions
            self._subscriptions.setdefault(symbol, []).append(subscription)
            if self._conn is None:
                self._conn = self._pool.connect(
                    self.url,
                    label="feedclient",
                    on_open=self._on_open,
                    on_message=self._on_message,
                    on_error=self._on_error,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval / 2,
                    reconnect=wspool.ReconnectPolicy(initial_delay=0.5, max_delay=30.0),
                )
            elif first:
                # If the connection is not open, _on_open sends it once it is.
                self._send({"op": "subscribe", "symbols": [symbol]})
        return subscription

    def _cancel(self, subscription: Subscription) -> None:
        with self._lock:
            subscriptions = self._subscriptions.get(subscription.symbol, [])
            if subscription in subscriptions:
                subscriptions.remove(subscription)
            if not subscriptions and self._subscriptions.pop(subscription.symbol, None) is not None:
                self._send({"op": "unsubscribe", "symbols": [subscription.symbol]})

    def _send(self, request: dict[str, Any]) -> None:
        conn = self._conn  # the caller holds self._lock
        if conn is None or conn.state is not wspool.ConnectionState.OPEN:
            return
        # Lost meanwhile: the reconnect's on_open sends the current set.
        with contextlib.suppress(wspool.WebSocketConnectionClosedException):
            conn.send_json(request)

    def _on_open(self, conn: wspool.Connection) -> None:
        with self._lock:
            if self._subscriptions:
                conn.send_json({"op": "subscribe", "symbols": sorted(self._subscriptions)})

    def _on_message(self, conn: wspool.Connection, message: str | bytes) -> None:
        data = json.loads(message)
        if data.get("type") != "ticker":
            return  # acknowledgements
        tick = Tick(data["symbol"], float(data["price"]), float(data["size"]))
        with self._lock:
            for subscription in list(self._subscriptions.get(tick.symbol, ())):
                if subscription not in self._subscriptions.get(tick.symbol, ()):
                    continue  # cancelled by an earlier callback for this tick
                try:
                    subscription.callback(tick)
                except Exception:
                    logger.exception("a %s callback raised; the others still run", tick.symbol)

    def _on_error(self, conn: wspool.Connection, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)
        else:
            logger.warning("feed problem (reconnecting): %s", error)

    def close(self) -> None:
        """Close the connection (closing handshake) and stop the pool's threads."""
        with self._lock:
            self._closed = True
        self._pool.close()

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------- demo


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("feedclient")]


def demo(url: str, seconds: float, forget_close: bool) -> int:
    counts: dict[str, int] = {"AAPL": 0, "MSFT": 0, "NVDA": 0}
    late = []  # NVDA ticks delivered after cancel() returned: must stay empty
    cancelled = threading.Event()
    lock = threading.Condition()
    broken_calls: list[Tick] = []

    def count(tick: Tick) -> None:
        with lock:
            counts[tick.symbol] += 1
            lock.notify_all()

    def nvda(tick: Tick) -> None:
        if cancelled.is_set():
            late.append(tick)
        count(tick)

    def broken(tick: Tick) -> None:
        if not broken_calls:
            broken_calls.append(tick)
            raise ValueError("a user bug: the library logs it, the feed goes on")

    feed = FeedClient(url, ping_interval=5.0)
    print(f"pool threads before the first subscribe: {len(pool_threads())}")
    feed.subscribe("AAPL", count)
    feed.subscribe("MSFT", count)
    feed.subscribe("MSFT", broken)
    nvda_subscription = feed.subscribe("NVDA", nvda)
    print(f"pool threads after it: {len(pool_threads())} ({', '.join(sorted(pool_threads()))})")
    with lock:  # the clock starts with the first tick of each symbol
        lock.wait_for(lambda: all(counts.values()), timeout=10.0)
    time.sleep(seconds / 2)
    nvda_subscription.cancel()
    cancelled.set()
    with lock:
        at_cancel = dict(counts)
    print(f"cancelled NVDA after {at_cancel['NVDA']} ticks")
    with lock:  # the others go on (MSFT despite its broken callback)
        lock.wait_for(lambda: counts["MSFT"] > at_cancel["MSFT"], timeout=10.0)
    time.sleep(seconds / 2)
    if not forget_close:
        feed.close()
        print(f"closed; pool threads left: {len(pool_threads())}")
    with lock:
        print("ticks: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
        problems = [f"no {s} ticks" for s, n in counts.items() if n == 0]
        if counts["MSFT"] <= at_cancel["MSFT"]:
            problems.append("MSFT stopped after its callback raised")
    if late:
        problems.append(f"{len(late)} NVDA ticks after cancel()")
    print("demo: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="how long to run (2)")
    parser.add_argument("--forget-close", action="store_true", help="never call close()")
    parser.add_argument("--url", help="a server speaking the demo feed's /ticker protocol")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    logging.getLogger("feedclient").setLevel(logging.WARNING)
    if args.url:
        return demo(args.url, args.seconds, args.forget_close)
    feed = DemoFeed(rate=100, symbols=("AAPL", "MSFT", "NVDA")).start()

    def report() -> None:
        codes = sorted(code for code, n in feed.close_codes().items() for _ in range(n))
        print(f"at exit: the server received close codes {codes}")

    # Runs after the pool's own exit hook (threading's hooks come before atexit's),
    # so it can report what the server saw from a client nobody closed.
    atexit.register(report)
    status = demo(f"{feed.url}/ticker", args.seconds, args.forget_close)
    if not args.forget_close:
        feed.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
