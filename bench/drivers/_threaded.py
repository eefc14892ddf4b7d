"""The scenarios for thread-per-connection clients, shared so every such driver runs them alike.

Each connection gets its own thread, which connects, then reads and calls a plain Python
callback per message until the connection closes: the way these libraries are used for
many connections.  A driver supplies a :class:`Fleet` subclass (connect, read, send,
close for its library) and exports the scenario functions here bound to it.  What each
scenario does and returns is the contract in :mod:`bench.drivers._common`.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from bench.drivers._common import (
    CLOSE_TIMEOUT,
    OPEN_TIMEOUT,
    REPLY_TIMEOUT,
    SEND_MESSAGE,
    Countdown,
    Params,
    Result,
    Sample,
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

#: A message callback: ``(connection, message)``; ``str`` for text, bytes for binary.
Handler = Callable[[Any, Any], None]
#: Builds the callback of the connection with this index (its state lives in the closure).
MakeHandler = Callable[[int], Handler]


class Fleet(abc.ABC):
    """Connections of one library, a thread each, with open/error/close bookkeeping.

    Errors are recorded until :meth:`close_all` starts: what a library reports while
    connections are being torn down (a peer's close seen as an error, a socket shut
    under a reader) is not a failure of the run.
    """

    #: The module whose scenario functions run this kind of fleet.
    family: ClassVar[str] = __name__

    def __init__(self, deflate: bool = False) -> None:
        self.deflate = deflate
        self.conns: list[Any] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.opened = 0
        self.closing = False
        self._lock = threading.Lock()
        self._open = Countdown(0)

    # -- what each library supplies --------------------------------------------------
    @abc.abstractmethod
    def serve(self, index: int, url: str, handler: Handler) -> None:
        """In the connection's thread: connect, call :meth:`connected`, then read and
        call ``handler`` per message until the connection is closed."""

    @abc.abstractmethod
    def send(self, index: int, data: str | bytes) -> None:
        """Send one message on connection ``index`` (any thread)."""

    @abc.abstractmethod
    def close_one(self, conn: Any) -> None:
        """Close one connection with a short close-handshake timeout."""

    # -- shared bookkeeping ----------------------------------------------------------
    @property
    def all_open_ns(self) -> int | None:
        """``time.monotonic_ns()`` when the last connection opened, once all have."""
        return self._open.done_ns

    def connected(self, index: int, conn: Any) -> None:
        """Called by :meth:`serve` once connection ``index`` is open."""
        self.conns[index] = conn
        with self._lock:
            self.opened += 1
        self._open.hit()

    def error(self, error: BaseException | str) -> None:
        if not self.closing:
            with self._lock:
                self.errors.append(error if isinstance(error, str) else repr(error))

    def _run(self, index: int, url: str, handler: Handler) -> None:
        try:
            self.serve(index, url, handler)
        except BaseException as exc:
            self.error(exc)

    def open_all(self, urls: list[str], make_handler: MakeHandler) -> float:
        """Start a thread per URL and wait until all are open; returns the seconds taken."""
        self._open = Countdown(len(urls))
        self.conns = [None] * len(urls)
        started = time.monotonic()
        for index, url in enumerate(urls):
            thread = threading.Thread(
                target=self._run, args=(index, url, make_handler(index)), daemon=True
            )
            thread.start()
            self.threads.append(thread)
        deadline = started + OPEN_TIMEOUT
        while not self._open.wait(0.05):
            if self.errors or time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {self.opened}/{len(urls)} connections opened: {self.errors[:3]}"
                )
        return time.monotonic() - started

    def wait(self, ready: Callable[[float], bool], timeout: float, what: str) -> bool:
        """Wait until ``ready(poll)`` is true: True then, False if a connection failed
        first; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not ready(0.05):
            if self.errors:
                return False
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        return True

    def close_all(self) -> None:
        """Close every open connection, then give the threads a moment to end."""
        self.closing = True
        for conn in self.conns:
            if conn is not None:
                # Teardown: whatever the library says, the socket is gone afterwards.
                with contextlib.suppress(Exception):
                    self.close_one(conn)
        deadline = time.monotonic() + CLOSE_TIMEOUT + 1
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()


NewFleet = Callable[[bool], Fleet]


def _ignore(conn: Any, message: Any) -> None:
    """The callback of connections whose messages don't matter."""


def _drain(fleet: Fleet, done: Countdown, params: Params, what: str) -> bool:
    """Wait for ``done``; a timeout says how far it got."""
    timeout = params.get("timeout", 300)
    try:
        return fleet.wait(done.wait, timeout, what)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {done.left} connections unfinished") from None


def fanin(new_fleet: NewFleet, params: Params) -> Result:
    per_connection = params["count"]
    urls = feed_urls(params)
    done = Countdown(len(urls))
    counters = [[0] for _ in urls]

    def make_handler(index: int) -> Handler:
        counter = counters[index]  # only this connection's thread touches it

        def on_message(conn: Any, message: str) -> None:
            counter[0] += 1
            if counter[0] == per_connection:
                done.hit()

        return on_message

    with new_fleet(bool(params.get("deflate"))) as fleet:
        fleet.open_all(urls, make_handler)
        started = time.monotonic()
        for index in range(len(urls)):
            fleet.send(index, "go")
        try:
            finished = _drain(fleet, done, params, "the feed")
        except RuntimeError:  # too slow: report how far it got (the runner refuses it)
            finished = False
        seconds = time.monotonic() - started
        messages = sum(c[0] for c in counters)
        errors = len(fleet.errors)
    return {
        "opened": fleet.opened,
        "messages": messages,
        "seconds": seconds,
        "errors": errors,
        "finished": finished,
    }


def latency(new_fleet: NewFleet, params: Params) -> Result:
    per_connection = params["count"]
    urls = paced_urls(params)
    done = Countdown(len(urls))
    samples: list[Sample] = []
    record = samples.append  # list.append is atomic under the GIL
    now = time.monotonic_ns

    def make_handler(index: int) -> Handler:
        counter = [0]

        def on_message(conn: Any, message: str) -> None:
            arrived = now()
            stamp = stamp_of(message)
            record((stamp, arrived - stamp))
            counter[0] += 1
            if counter[0] == per_connection:
                done.hit()

        return on_message

    with new_fleet(False) as fleet:
        seconds = fleet.open_all(urls, make_handler)
        if not ramp_up(params):
            for index in range(len(urls)):
                fleet.send(index, "go")
        _drain(fleet, done, params, "the paced messages")
        errors = len(fleet.errors)
    return {
        "opened": fleet.opened,
        "messages": len(samples),
        "open_seconds": seconds,
        "errors": errors,
        **latency_report(samples, fleet.all_open_ns, params),
    }


def idle(new_fleet: NewFleet, params: Params) -> Result:
    urls = [f"{params['base']}/idle"] * params["connections"]
    # Nothing runs before the first connection (no loop, no dispatcher): the baseline
    # is the process with the library imported.
    before = rss_kib()
    with new_fleet(False) as fleet:
        seconds = fleet.open_all(urls, lambda index: _ignore)
        after = rss_kib()
        threads = os_threads()
        errors = len(fleet.errors)
    return {
        "opened": fleet.opened,
        "open_seconds": seconds,
        "rss_kib_per_connection": (after - before) / max(1, fleet.opened),
        "threads": threads,
        "errors": errors,
    }


def _one_by_one(new_fleet: NewFleet, url: str, params: Params) -> Result:
    """Request ``count`` messages one at a time; time each from request to callback."""
    arrived = threading.Semaphore(0)
    received: list[Any] = []

    def on_message(conn: Any, message: Any) -> None:
        received.append(message)
        arrived.release()

    times = []
    with new_fleet(False) as fleet:
        fleet.open_all([url], lambda index: on_message)
        for _ in range(params["count"]):
            started = time.perf_counter()
            fleet.send(0, "go")
            if not fleet.wait(
                lambda poll: arrived.acquire(timeout=poll), REPLY_TIMEOUT, "a message"
            ):
                raise RuntimeError(f"connection failed: {fleet.errors[:3]}")
            times.append((time.perf_counter() - started) * 1000)
            check_message(received.pop(), params)
    return {"messages": len(times), "ms": [round(t, 2) for t in times]}


def recv_large(new_fleet: NewFleet, params: Params) -> Result:
    return _one_by_one(new_fleet, large_url(params), params)


def fragments(new_fleet: NewFleet, params: Params) -> Result:
    return _one_by_one(new_fleet, fragments_url(params), params)


def _sink_fleet(
    new_fleet: NewFleet, params: Params, connections: int
) -> tuple[Fleet, list[str], Countdown]:
    """Open ``connections`` to ``/sink``; their sync replies are collected in the list."""
    fleet = new_fleet(False)
    replies: list[str] = []
    arrived = Countdown(connections)

    def on_message(conn: Any, message: str) -> None:
        replies.append(message)
        arrived.hit()

    try:
        fleet.open_all([f"{params['base']}/sink"] * connections, lambda index: on_message)
    except BaseException:
        fleet.close_all()
        raise
    return fleet, replies, arrived


def _sync_all(fleet: Fleet, replies: list[str], arrived: Countdown) -> int:
    """Send ``"sync"`` on every connection; the sum of the server's counts."""
    for index in range(len(fleet.conns)):
        fleet.send(index, "sync")
    if not fleet.wait(arrived.wait, REPLY_TIMEOUT, "the sync replies"):
        raise RuntimeError(f"connection failed: {fleet.errors[:3]}")
    return sum(parse_count(r) for r in replies)


def send_large(new_fleet: NewFleet, params: Params) -> Result:
    payload = bytes(range(256)) * (params["size"] // 256)
    fleet, replies, arrived = _sink_fleet(new_fleet, params, 1)
    with fleet:
        started = time.perf_counter()
        for _ in range(params["count"]):
            fleet.send(0, payload)
        confirmed = _sync_all(fleet, replies, arrived)
        seconds = time.perf_counter() - started
        errors = len(fleet.errors)
    return {"messages": confirmed, "seconds": seconds, "errors": errors}


def sending(new_fleet: NewFleet, params: Params) -> Result:
    per_thread = params["per_thread"]
    fleet, replies, arrived = _sink_fleet(new_fleet, params, params["connections"])
    sent = [0] * params["threads"]
    with fleet:
        n = len(fleet.conns)
        send = fleet.send

        def sender(index: int) -> None:
            for i in range(per_thread):
                try:
                    send((index + i) % n, SEND_MESSAGE)
                except BaseException as exc:
                    fleet.error(exc)
                    sent[index] = i
                    return
            sent[index] = per_thread

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(params["threads"])]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        confirmed = _sync_all(fleet, replies, arrived)
        seconds = time.perf_counter() - started
        errors = len(fleet.errors)
    return {
        "sent": sum(sent),
        "confirmed": confirmed,
        "seconds": seconds,
        "errors": errors,
    }
