"""wspool.Pool: one dispatcher thread, callbacks on the worker pool (default options).

The scenario functions take the Pool's options from :func:`pool_options`, so a variant
(``wspool_pool_inline``: callbacks on the dispatcher thread) reuses them unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import wspool
from bench.drivers._common import (
    BIG,
    OPEN_TIMEOUT,
    SEND_MESSAGE,
    Countdown,
    Params,
    Result,
    Sample,
    Unsupported,
    check_message,
    feed_urls,
    fragments_url,
    large_url,
    latency_report,
    os_threads,
    paced_urls,
    parse_count,
    ramp_up,
    rss_kib,
    stamp_of,
)


def pool_options(params: Params) -> dict[str, Any]:
    """Pool defaults unless the run asks otherwise: ``{"workers": 2}`` for experiments,
    ``{"deliver": "dispatcher"}`` from the inline variant."""
    return {name: params[name] for name in ("workers", "deliver") if name in params}


def make_pool(params: Params) -> wspool.Pool:
    """The run's Pool; a ``deliver`` that an older wspool lacks is unsupported."""
    options = pool_options(params)
    try:
        return wspool.Pool(**options)
    except TypeError as exc:
        if "deliver" not in options:
            raise
        raise Unsupported(
            f"this wspool's Pool has no deliver={options['deliver']!r} (TypeError: {exc})"
        ) from None


class _Fleet:
    """Connections opened through one Pool, with open/close bookkeeping."""

    def __init__(self, pool: wspool.Pool) -> None:
        self.pool = pool
        self.connections: list[wspool.Connection] = []
        self.errors: list[str] = []
        self.opened = 0
        self._lock = threading.Lock()
        self._open: Countdown | None = None

    @property
    def all_open_ns(self) -> int | None:
        """``time.monotonic_ns()`` when the last connection opened, once all have."""
        return None if self._open is None else self._open.done_ns

    def open_all(self, urls: list[str], labels: list[Any] | None = None, **options: Any) -> float:
        """Connect to every URL and wait until all are open; returns the seconds taken."""
        self._open = Countdown(len(urls))
        labels = labels or [None] * len(urls)
        started = time.monotonic()
        for url, label in zip(urls, labels, strict=True):
            self.connections.append(
                self.pool.connect(
                    url,
                    label=label,
                    on_open=self._on_open,
                    on_error=self._on_error,
                    max_size=BIG,
                    **options,
                )
            )
        deadline = started + OPEN_TIMEOUT
        while not self._open.wait(0.05):
            if self.errors or time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {self.opened}/{len(urls)} connections opened: {self.errors[:3]}"
                )
        return time.monotonic() - started

    def _on_open(self, conn: wspool.Connection) -> None:
        with self._lock:
            self.opened += 1
        assert self._open is not None
        self._open.hit()

    def _on_error(self, conn: wspool.Connection, error: BaseException) -> None:
        with self._lock:
            self.errors.append(repr(error))


def fanin(params: Params) -> Result:
    per_connection = params["count"]
    urls = feed_urls(params)
    done = Countdown(len(urls))

    def on_message(conn: wspool.Connection, message: str) -> None:
        counter = conn.label
        counter[0] += 1  # callbacks of one connection never overlap
        if counter[0] == per_connection:
            done.hit()

    compression = "deflate" if params.get("deflate") else None
    counters = [[0] for _ in urls]
    with make_pool(params) as pool:
        fleet = _Fleet(pool)
        fleet.open_all(urls, counters, on_message=on_message, compression=compression)
        started = time.monotonic()
        for conn in fleet.connections:
            conn.send("go")
        finished = done.wait(params.get("timeout", 300))
        seconds = time.monotonic() - started
        messages = sum(c[0] for c in counters)
    return {
        "opened": fleet.opened,
        "messages": messages,
        "seconds": seconds,
        "errors": len(fleet.errors),
        "finished": finished,
    }


def latency(params: Params) -> Result:
    urls = paced_urls(params)
    per_connection = params["count"]
    done = Countdown(len(urls))
    samples: list[Sample] = []
    record = samples.append  # list.append is atomic under the GIL
    now = time.monotonic_ns

    def on_message(conn: wspool.Connection, message: str) -> None:
        arrived = now()
        stamp = stamp_of(message)
        record((stamp, arrived - stamp))
        counter = conn.label
        counter[0] += 1
        if counter[0] == per_connection:
            done.hit()

    counters = [[0] for _ in urls]
    with make_pool(params) as pool:
        fleet = _Fleet(pool)
        seconds = fleet.open_all(urls, counters, on_message=on_message)
        if not ramp_up(params):
            for conn in fleet.connections:
                conn.send("go")
        done.wait(params.get("timeout", 300))
    return {
        "opened": fleet.opened,
        "messages": len(samples),
        "open_seconds": seconds,
        "errors": len(fleet.errors),
        **latency_report(samples, fleet.all_open_ns, params),
    }


def idle(params: Params) -> Result:
    urls = [f"{params['base']}/idle"] * params["connections"]
    with make_pool(params) as pool:
        # Start the dispatcher before the baseline so only per-connection memory counts.
        pool.dispatcher.call_soon(lambda: None)
        time.sleep(0.05)
        before = rss_kib()
        fleet = _Fleet(pool)
        seconds = fleet.open_all(urls)
        after = rss_kib()
        threads = os_threads()
    return {
        "opened": fleet.opened,
        "open_seconds": seconds,
        "rss_kib_per_connection": (after - before) / max(1, fleet.opened),
        "threads": threads,
        "errors": len(fleet.errors),
    }


def _one_by_one(url: str, params: Params) -> Result:
    """Request ``count`` messages one at a time; time each from request to callback."""
    arrived = threading.Semaphore(0)
    received: list[Any] = []

    def on_message(conn: wspool.Connection, message: Any) -> None:
        received.append(message)
        arrived.release()

    times = []
    with make_pool(params) as pool:
        fleet = _Fleet(pool)
        fleet.open_all([url], on_message=on_message, compression=None)
        conn = fleet.connections[0]
        for _ in range(params["count"]):
            started = time.perf_counter()
            conn.send("go")
            if not arrived.acquire(timeout=60):
                raise RuntimeError(f"no message within 60 s: {fleet.errors}")
            times.append((time.perf_counter() - started) * 1000)
            check_message(received.pop(), params)
    return {"messages": len(times), "ms": [round(t, 2) for t in times]}


def recv_large(params: Params) -> Result:
    return _one_by_one(large_url(params), params)


def fragments(params: Params) -> Result:
    return _one_by_one(fragments_url(params), params)


def _sync_all(conns: list[wspool.Connection], replies: list[str], arrived: Countdown) -> int:
    for conn in conns:
        conn.send("sync")
    if not arrived.wait(60):
        raise RuntimeError(f"only {len(conns) - arrived.left}/{len(conns)} sync replies")
    return sum(parse_count(r) for r in replies)


def send_large(params: Params) -> Result:
    payload = bytes(range(256)) * (params["size"] // 256)
    replies: list[str] = []
    arrived = Countdown(1)

    def on_message(conn: wspool.Connection, message: str) -> None:
        replies.append(message)
        arrived.hit()

    with make_pool(params) as pool:
        fleet = _Fleet(pool)
        fleet.open_all([f"{params['base']}/sink"], on_message=on_message, compression=None)
        conn = fleet.connections[0]
        started = time.perf_counter()
        for _ in range(params["count"]):
            conn.send(payload)
        confirmed = _sync_all([conn], replies, arrived)
        seconds = time.perf_counter() - started
    return {"messages": confirmed, "seconds": seconds, "errors": len(fleet.errors)}


def sending(params: Params) -> Result:
    replies: list[str] = []
    urls = [f"{params['base']}/sink"] * params["connections"]
    arrived = Countdown(len(urls))

    def on_message(conn: wspool.Connection, message: str) -> None:
        replies.append(message)
        arrived.hit()

    per_thread = params["per_thread"]
    with make_pool(params) as pool:
        fleet = _Fleet(pool)
        fleet.open_all(urls, on_message=on_message, compression=None)
        conns = fleet.connections
        n = len(conns)

        def sender(index: int) -> None:
            for i in range(per_thread):
                conns[(index + i) % n].send(SEND_MESSAGE)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(params["threads"])]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        confirmed = _sync_all(conns, replies, arrived)
        seconds = time.perf_counter() - started
    return {
        "sent": per_thread * len(threads),
        "confirmed": confirmed,
        "seconds": seconds,
        "errors": len(fleet.errors),
    }
