"""wspool.ProcessPool: fan-in through 2 child processes (spawn), one Pool in each.

Only ``fanin`` runs.  The callbacks run in the children, so ``on_open`` sends the "go"
itself and the clock starts at the first ``connect()``, once the children answer:
opening the connections is inside the measured time (``wspool-pool`` starts its clock
after every connection is open), which makes the number pessimistic.  Messages are
counted by the children's ``stats()`` (``messages_in``, nothing left undelivered).
"""

from __future__ import annotations

import time
from typing import Any

import wspool
from bench.drivers._common import BIG, Params, Result, feed_urls

#: Child processes; ``{"processes": N}`` in the params overrides it.
PROCESSES = 2


def go(conn: wspool.Connection) -> None:
    """on_open, in a child: start the feed."""
    conn.send("go")


def count(conn: wspool.Connection, message: str) -> None:
    """on_message, in a child: the callback's share of the work (as the Pool driver's)."""
    conn.label[1] += 1


def _by_index(url: str, label: Any) -> str:
    # Every connection has the same URL: spread them by their index instead.
    return str(label[0])


def fanin(params: Params) -> Result:
    urls = feed_urls(params)
    total = len(urls) * params["count"]
    deadline = time.monotonic() + params.get("timeout", 300)
    options: dict[str, Any] = {"compression": "deflate" if params.get("deflate") else None}
    with wspool.ProcessPool(params.get("processes", PROCESSES), key=_by_index) as pool:
        # Wait for the children to answer: their start-up is not part of the fan-in.
        while not all(entry["alive"] for entry in pool.stats()["processes"]):
            time.sleep(0.05)
        started = time.monotonic()
        for index, url in enumerate(urls):
            pool.connect(
                url, label=[index, 0], on_open=go, on_message=count, max_size=BIG, **options
            )
        finished = False
        while time.monotonic() < deadline:
            stats = pool.stats()
            if stats["messages_in"] >= total and stats["queue_depth"] == 0:
                finished = True
                break
            time.sleep(0.05)
        seconds = time.monotonic() - started
        stats = pool.stats()
    return {
        "opened": sum(1 for entry in stats["per_connection"] if entry["opened_at"] is not None),
        "messages": stats["messages_in"],
        "seconds": seconds,
        # Errors reach on_error in the children; the runner's counts (every message
        # sent and received, every connection upgraded) catch what they would show.
        "errors": 0,
        "finished": finished,
    }
