"""The scenarios for asyncio clients, shared so every such driver runs them alike.

Everything runs on one event loop (``asyncio.run`` per scenario) with a task per
connection that connects, then delivers each message to a plain Python callback until
the connection closes.  ``sending`` runs ``threads`` tasks, not threads.  A driver
supplies a :class:`Fleet` subclass (connect, read, send, close for its library) and
exports the scenario functions here bound to it.  What each scenario does and returns
is the contract in :mod:`bench.drivers._common`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
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
    """Connections of one library, a task each, with open/error/close bookkeeping.

    Created inside the running loop.  Callbacks call :meth:`wake` when something the
    scenario waits for may have happened.  Errors are recorded until :meth:`close_all`
    starts (what a library reports while connections are torn down is not a failure).
    """

    #: The module whose scenario functions run this kind of fleet.
    family: ClassVar[str] = __name__

    def __init__(self, deflate: bool = False) -> None:
        self.deflate = deflate
        self.conns: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []
        self.opened = 0
        self.closing = False
        self._open = Countdown(0)
        self._wake = asyncio.Event()

    # -- what each library supplies --------------------------------------------------
    @abc.abstractmethod
    async def serve(self, index: int, url: str, handler: Handler) -> None:
        """In the connection's task: connect, call :meth:`connected`, then deliver
        messages to ``handler`` until the connection is closed."""

    @abc.abstractmethod
    async def send(self, index: int, data: str | bytes) -> None:
        """Send one message on connection ``index``."""

    @abc.abstractmethod
    async def close_one(self, conn: Any) -> None:
        """Close one connection with a short close-handshake timeout."""

    # -- shared bookkeeping ----------------------------------------------------------
    @property
    def all_open_ns(self) -> int | None:
        """``time.monotonic_ns()`` when the last connection opened, once all have."""
        return self._open.done_ns

    def connected(self, index: int, conn: Any) -> None:
        """Called by :meth:`serve` once connection ``index`` is open."""
        self.conns[index] = conn
        self.opened += 1
        self._open.hit()
        if self._open.left <= 0:
            self._wake.set()

    def error(self, error: BaseException | str) -> None:
        if not self.closing:
            self.errors.append(error if isinstance(error, str) else repr(error))
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self, index: int, url: str, handler: Handler) -> None:
        try:
            await self.serve(index, url, handler)
        except Exception as exc:
            self.error(exc)

    async def open_all(self, urls: list[str], make_handler: MakeHandler) -> float:
        """Start a task per URL and wait until all are open; returns the seconds taken."""
        self._open = Countdown(len(urls))
        self.conns = [None] * len(urls)
        started = time.monotonic()
        for index, url in enumerate(urls):
            self.tasks.append(asyncio.create_task(self._run(index, url, make_handler(index))))
        try:
            opened = await self.wait(lambda: self._open.left <= 0, OPEN_TIMEOUT, "the opens")
        except RuntimeError:
            opened = False
        if not opened:
            raise RuntimeError(
                f"only {self.opened}/{len(urls)} connections opened: {self.errors[:3]}"
            )
        return time.monotonic() - started

    async def wait(self, ready: Callable[[], bool], timeout: float, what: str) -> bool:
        """Wait until ``ready()`` is true: True then, False if a connection failed
        first; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.errors:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        return True

    async def close_all(self) -> None:
        """Close every open connection, then give the tasks a moment to end."""
        self.closing = True
        # Teardown: whatever the library says, the connections are gone afterwards.
        await asyncio.gather(
            *(self.close_one(conn) for conn in self.conns if conn is not None),
            return_exceptions=True,
        )
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=CLOSE_TIMEOUT + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_all()


NewFleet = Callable[[bool], Fleet]


def _run(
    scenario: Callable[[NewFleet, Params], Coroutine[Any, Any, Result]],
) -> Callable[[NewFleet, Params], Result]:
    """The synchronous scenario function (what the runner calls) for ``scenario``."""

    def run(new_fleet: NewFleet, params: Params) -> Result:
        return asyncio.run(scenario(new_fleet, params))

    run.__doc__ = scenario.__doc__
    return run


def _ignore(conn: Any, message: Any) -> None:
    """The callback of connections whose messages don't matter."""


async def _drain(fleet: Fleet, done: Countdown, params: Params, what: str) -> bool:
    """Wait for ``done``; a timeout says how far it got."""
    try:
        return await fleet.wait(lambda: done.left <= 0, params.get("timeout", 300), what)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {done.left} connections unfinished") from None


@_run
async def fanin(new_fleet: NewFleet, params: Params) -> Result:
    per_connection = params["count"]
    urls = feed_urls(params)
    done = Countdown(len(urls))
    counters = [[0] for _ in urls]
    fleet = new_fleet(bool(params.get("deflate")))

    def make_handler(index: int) -> Handler:
        counter = counters[index]

        def on_message(conn: Any, message: str) -> None:
            counter[0] += 1
            if counter[0] == per_connection:
                done.hit()
                fleet.wake()

        return on_message

    async with fleet:
        await fleet.open_all(urls, make_handler)
        started = time.monotonic()
        for index in range(len(urls)):
            await fleet.send(index, "go")
        try:
            finished = await _drain(fleet, done, params, "the feed")
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


@_run
async def latency(new_fleet: NewFleet, params: Params) -> Result:
    per_connection = params["count"]
    urls = paced_urls(params)
    done = Countdown(len(urls))
    samples: list[Sample] = []
    record = samples.append
    now = time.monotonic_ns
    fleet = new_fleet(False)

    def make_handler(index: int) -> Handler:
        counter = [0]

        def on_message(conn: Any, message: str) -> None:
            arrived = now()
            stamp = stamp_of(message)
            record((stamp, arrived - stamp))
            counter[0] += 1
            if counter[0] == per_connection:
                done.hit()
                fleet.wake()

        return on_message

    async with fleet:
        seconds = await fleet.open_all(urls, make_handler)
        if not ramp_up(params):
            for index in range(len(urls)):
                await fleet.send(index, "go")
        await _drain(fleet, done, params, "the paced messages")
        errors = len(fleet.errors)
    return {
        "opened": fleet.opened,
        "messages": len(samples),
        "open_seconds": seconds,
        "errors": errors,
        **latency_report(samples, fleet.all_open_ns, params),
    }


@_run
async def idle(new_fleet: NewFleet, params: Params) -> Result:
    urls = [f"{params['base']}/idle"] * params["connections"]
    # The loop is the library's machinery: it is running, so only connections count.
    await asyncio.sleep(0.05)
    before = rss_kib()
    async with new_fleet(False) as fleet:
        seconds = await fleet.open_all(urls, lambda index: _ignore)
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


async def _one_by_one(new_fleet: NewFleet, url: str, params: Params) -> Result:
    """Request ``count`` messages one at a time; time each from request to callback."""
    received: list[Any] = []
    fleet = new_fleet(False)

    def on_message(conn: Any, message: Any) -> None:
        received.append(message)
        fleet.wake()

    times = []
    async with fleet:
        await fleet.open_all([url], lambda index: on_message)
        for _ in range(params["count"]):
            started = time.perf_counter()
            await fleet.send(0, "go")
            if not await fleet.wait(lambda: bool(received), REPLY_TIMEOUT, "a message"):
                raise RuntimeError(f"connection failed: {fleet.errors[:3]}")
            times.append((time.perf_counter() - started) * 1000)
            check_message(received.pop(), params)
    return {"messages": len(times), "ms": [round(t, 2) for t in times]}


@_run
async def recv_large(new_fleet: NewFleet, params: Params) -> Result:
    return await _one_by_one(new_fleet, large_url(params), params)


@_run
async def fragments(new_fleet: NewFleet, params: Params) -> Result:
    return await _one_by_one(new_fleet, fragments_url(params), params)


async def _sink_fleet(
    new_fleet: NewFleet, params: Params, connections: int
) -> tuple[Fleet, list[str]]:
    """Open ``connections`` to ``/sink``; their sync replies are collected in the list."""
    fleet = new_fleet(False)
    replies: list[str] = []

    def on_message(conn: Any, message: str) -> None:
        replies.append(message)
        fleet.wake()

    try:
        await fleet.open_all([f"{params['base']}/sink"] * connections, lambda index: on_message)
    except BaseException:
        await fleet.close_all()
        raise
    return fleet, replies


async def _sync_all(fleet: Fleet, replies: list[str]) -> int:
    """Send ``"sync"`` on every connection; the sum of the server's counts."""
    n = len(fleet.conns)
    for index in range(n):
        await fleet.send(index, "sync")
    if not await fleet.wait(lambda: len(replies) >= n, REPLY_TIMEOUT, "the sync replies"):
        raise RuntimeError(f"connection failed: {fleet.errors[:3]}")
    return sum(parse_count(r) for r in replies)


@_run
async def send_large(new_fleet: NewFleet, params: Params) -> Result:
    payload = bytes(range(256)) * (params["size"] // 256)
    fleet, replies = await _sink_fleet(new_fleet, params, 1)
    async with fleet:
        started = time.perf_counter()
        for _ in range(params["count"]):
            await fleet.send(0, payload)
        confirmed = await _sync_all(fleet, replies)
        seconds = time.perf_counter() - started
        errors = len(fleet.errors)
    return {"messages": confirmed, "seconds": seconds, "errors": errors}


@_run
async def sending(new_fleet: NewFleet, params: Params) -> Result:
    per_task = params["per_thread"]
    fleet, replies = await _sink_fleet(new_fleet, params, params["connections"])
    sent = [0] * params["threads"]
    async with fleet:
        n = len(fleet.conns)
        send = fleet.send

        async def sender(index: int) -> None:
            for i in range(per_task):
                try:
                    await send((index + i) % n, SEND_MESSAGE)
                except Exception as exc:
                    fleet.error(exc)
                    sent[index] = i
                    return
            sent[index] = per_task

        started = time.perf_counter()
        await asyncio.gather(*(sender(i) for i in range(params["threads"])))
        confirmed = await _sync_all(fleet, replies)
        seconds = time.perf_counter() - started
        errors = len(fleet.errors)
    return {
        "sent": sum(sent),
        "confirmed": confirmed,
        "seconds": seconds,
        "errors": errors,
    }
