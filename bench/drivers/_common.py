"""What every driver shares: the scenario contract, counters and measurements.

A driver module defines one function per scenario it can run, each taking the
parameter dict from the runner and returning a result dict.  A scenario the library
cannot run (compression in websocket-client, say) raises :class:`Unsupported`.

Scenarios (``base`` is the feed server's ``ws://127.0.0.1:PORT``):

``fanin(connections, count, deflate)``
    Open ``connections`` to ``/feed?count=N&deflate=0|1``, wait until all are open,
    send ``"go"`` on each, and count text messages (``str``, decoded and so UTF-8
    validated) in a Python callback.  Returns ``opened``, ``messages``, ``seconds``
    (first "go" to last message) and ``errors``.
``latency(connections, count, rate, settle[, start])``
    The same against ``/paced``; each callback records the message's ``ts`` and
    ``time.monotonic_ns() - ts``.  With ``start="open"`` the server starts each
    connection's paced feed as soon as its handshake is done and no "go" is sent, so
    messages arrive while the other connections are still opening.  Returns
    ``opened``, ``messages``, ``open_seconds`` and :func:`latency_report`'s fields:
    ``p50_us``/``p99_us``/``p999_us``/``max_us`` over the steady state (messages sent
    ``settle`` seconds or more after the last connection opened), the same with a
    ``ramp_`` prefix over the ramp-up (messages sent before it opened).
``idle(connections)``
    Open ``connections`` to ``/idle``.  Returns ``opened``, ``open_seconds``,
    ``rss_kib_per_connection`` (resident growth over the open) and ``threads`` (the
    process's OS threads once all are open, main thread included).
``recv_large(size, type, count)`` / ``fragments(size, frag, count)``
    One connection; ``count`` times: send ``"go"``, wait for the whole message in the
    callback, check its type and length.  Returns ``messages`` and ``ms`` (one time
    per message, request to callback).
``send_large(size, count)``
    One connection to ``/sink``: send ``count`` binary messages of ``size`` bytes,
    then ``"sync"``, and wait for the server's count.  Returns ``messages`` (as counted
    by the server) and ``seconds``.
``sending(connections, threads, per_thread)``
    ``connections`` to ``/sink``; ``threads`` threads (tasks in asyncio libraries)
    each send ``per_thread`` 128-byte text messages round-robin over the connections;
    then a ``"sync"`` on each.  Returns ``sent``, ``confirmed`` (the servers' counts)
    and ``seconds``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

Params = dict[str, Any]
Result = dict[str, Any]

DRIVERS = {
    "wspool-pool": "bench.drivers.wspool_pool",
    "wspool-pool-inline": "bench.drivers.wspool_pool_inline",
    "wspool-processes": "bench.drivers.wspool_processes",
    "wspool-blocking": "bench.drivers.wspool_blocking",
    "websocket-client": "bench.drivers.websocket_client",
    "websockets-asyncio": "bench.drivers.websockets_asyncio",
    "websockets-sync": "bench.drivers.websockets_sync",
    "picows": "bench.drivers.picows_driver",
    "aiohttp": "bench.drivers.aiohttp_driver",
}

#: How long opening every connection may take.
OPEN_TIMEOUT = 60.0
#: How long one request (a large message, a sync reply) may take.
REPLY_TIMEOUT = 60.0
#: The close-handshake timeout drivers pass to their library.
CLOSE_TIMEOUT = 2.0
#: A frame/message-size limit that never gets in the way (the largest message is 16 MiB).
BIG = 64 * 1024 * 1024

#: The 128-byte text message the ``sending`` scenario sends.
_ORDER = '{"op":"order","id":1,"px":"65000.10","qty":"0.002","pad":"'
SEND_MESSAGE = (_ORDER + "y" * 128)[:126] + '"}'
assert len(SEND_MESSAGE) == 128


class Unsupported(Exception):
    """The library cannot run this scenario (the reason is the message)."""


class Countdown:
    """Thread-safe countdown: ``wait`` returns True once ``hit`` was called n times.

    ``done_ns`` is ``time.monotonic_ns()`` at the hit that reached zero (taken in the
    hitting thread, so a waiter's wake-up delay is not part of it), else None.
    """

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.done_ns: int | None = None
        if n <= 0:
            self.done_ns = time.monotonic_ns()
            self._done.set()

    def hit(self, k: int = 1) -> None:
        with self._lock:
            self._left -= k
            if self._left <= 0 and self.done_ns is None:
                self.done_ns = time.monotonic_ns()
                self._done.set()

    @property
    def left(self) -> int:
        return self._left

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def feed_urls(params: Params) -> list[str]:
    deflate = 1 if params.get("deflate") else 0
    url = f"{params['base']}/feed?count={params['count']}&deflate={deflate}"
    return [url] * params["connections"]


def paced_urls(params: Params) -> list[str]:
    url = f"{params['base']}/paced?rate={params['rate']}&count={params['count']}"
    if ramp_up(params):
        url += "&start=open"
    return [url] * params["connections"]


def ramp_up(params: Params) -> bool:
    """A latency run whose feeds start at each handshake, with no "go" sent."""
    return params.get("start") == "open"


def large_url(params: Params) -> str:
    return f"{params['base']}/large?size={params['size']}&type={params['type']}"


def fragments_url(params: Params) -> str:
    return f"{params['base']}/frag?size={params['size']}&frag={params['frag']}"


def stamp_of(text: str) -> int:
    """The ``"ts"`` field of a paced message, without a JSON parse."""
    start = text.index('"ts":') + 5
    return int(text[start : text.index(",", start)])


def status_field(name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/self/status")


def rss_kib() -> int:
    return status_field("VmRSS")


def os_threads() -> int:
    return status_field("Threads")


def latency_summary(latencies_ns: list[int]) -> Result:
    """p50/p99/p99.9/max in microseconds (nearest rank)."""
    if not latencies_ns:
        return {"p50_us": None, "p99_us": None, "p999_us": None, "max_us": None}
    ordered = sorted(latencies_ns)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1000, 1)

    return {
        "p50_us": rank(0.50),
        "p99_us": rank(0.99),
        "p999_us": rank(0.999),
        "max_us": round(ordered[-1] / 1000, 1),
    }


#: A latency sample: the server's send stamp and the latency, both in nanoseconds (one
#: tuple, so that appends from several threads keep each pair together).
Sample = tuple[int, int]


def latency_report(samples: list[Sample], all_open_ns: int | None, params: Params) -> Result:
    """Split latency samples by when the server sent them, against the moment the last
    connection opened: the ramp-up (sent before it), the steady state (sent ``settle``
    seconds or more after it; what arrives in between is in neither).  Steady
    percentiles keep the plain names (``p50_us``...), ramp-up ones a ``ramp_`` prefix;
    ``steady_messages`` and ``ramp_messages`` say how many samples each has."""
    if all_open_ns is None:  # never all open: the runner refuses the row anyway
        all_open_ns = max((stamp for stamp, _ in samples), default=0) + 1
    steady_from = all_open_ns + int(float(params.get("settle", 0)) * 1e9)
    ramp = [latency for stamp, latency in samples if stamp < all_open_ns]
    steady = [latency for stamp, latency in samples if stamp >= steady_from]
    report: Result = {"steady_messages": len(steady), "ramp_messages": len(ramp)}
    report.update(latency_summary(steady))
    report.update({f"ramp_{k}": v for k, v in latency_summary(ramp).items()})
    return report


def parse_count(reply: str) -> int:
    """The number in the sink's ``count:<n>`` reply."""
    if not reply.startswith("count:"):
        raise RuntimeError(f"unexpected reply to sync: {reply[:40]!r}")
    return int(reply[6:])


def check_message(message: object, params: Params) -> None:
    """A large/fragmented message has the requested type and length."""
    want_text = params.get("type", "text") == "text"
    if want_text and not isinstance(message, str):
        raise RuntimeError(f"expected text, got {type(message).__name__}")
    if not want_text and not isinstance(message, bytes | bytearray | memoryview):
        raise RuntimeError(f"expected binary, got {type(message).__name__}")
    size = len(message.encode()) if isinstance(message, str) else len(message)  # type: ignore[arg-type]
    if size != params["size"]:
        raise RuntimeError(f"expected {params['size']} bytes, got {size}")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(library: str, scenario: str, params: Params) -> Result:
    """Run one scenario: the driver module's own function, or, for a driver that
    exports a ``FLEET`` (a ``_threaded.Fleet`` or ``_async.Fleet`` subclass), the
    shared scenario of that family run with it."""
    module = importlib.import_module(DRIVERS[library])
    function: Callable[[Params], Result] | None = getattr(module, scenario, None)
    fleet = getattr(module, "FLEET", None)
    if function is None and fleet is not None:
        if params.get("deflate") and not getattr(module, "DEFLATE", True):
            raise Unsupported(f"{library} has no permessage-deflate")
        shared = getattr(importlib.import_module(fleet.family), scenario, None)
        if shared is not None:
            return shared(fleet, params)  # type: ignore[no-any-return]
    if function is None:
        raise Unsupported(f"{library} has no driver for {scenario}")
    return function(params)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    library, scenario, raw = argv
    params: Params = json.loads(raw)
    raise_fd_limit()
    # Peers and wspool log expected close-handshake timeouts at teardown; keep the
    # runner's output to the result line.
    logging.basicConfig(level=logging.CRITICAL)
    started = time.monotonic()
    try:
        result = run(library, scenario, params)
    except Unsupported as exc:
        result = {"unsupported": str(exc)}
    except BaseException as exc:  # reported, never hidden
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    print("RESULT " + json.dumps(result), flush=True)
    # A library's leftover non-daemon threads (a reader stuck in select, say) must not
    # keep the driver alive after its result is out.
    sys.stderr.flush()
    os._exit(0)
