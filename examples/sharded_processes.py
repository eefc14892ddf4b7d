"""Sharding a URL list across processes: one ``wspool.Pool`` per process, merged stats.

One Pool uses one dispatcher thread, so one process tops out at what one core can
parse.  Past that, split the URLs across processes (stdlib ``multiprocessing``, the
``spawn`` start method: safe with threads, same on every OS), give each its own Pool,
and merge what they report.

* Assignment is by rendezvous hashing of the URL (``hashlib``, not ``hash()``, which
  is salted per process): every run, every machine and every process agrees on which
  process owns a URL, and adding a process moves only the URLs the new one wins.
* Each process sends its counters (connections, messages, reconnects, errors) through
  a ``multiprocessing.Queue`` when it is done; the parent adds them up.

The demo starts the embedded demo feed (``wspool.demofeed``, on 127.0.0.1) in the
parent, with sessions that the server rotates every second (close 1001, as exchanges
do), so the reconnect counters move; then ``--connections`` URLs to it are split
across ``--processes`` processes for ``--seconds``.

    python examples/sharded_processes.py
    python examples/sharded_processes.py --connections 1000 --processes 4 --seconds 10
    python examples/sharded_processes.py wss://a.example/ws wss://b.example/ws --seconds 30
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import wspool

COUNTERS = ("connections", "opened", "messages", "reconnects", "errors")


def shard_of(url: str, shards: int) -> int:
    """Rendezvous (highest random weight) hashing: the shard whose hash with ``url``
    is largest owns it."""

    def weight(shard: int) -> int:
        digest = hashlib.blake2b(f"{shard}|{url}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    return max(range(shards), key=weight)


def split(urls: Sequence[str], shards: int) -> list[list[str]]:
    assigned: list[list[str]] = [[] for _ in range(shards)]
    for url in urls:
        assigned[shard_of(url, shards)].append(url)
    return assigned


def run_shard(index: int, urls: list[str], seconds: float, results: Any) -> None:
    """A child process: its URLs through one Pool for ``seconds``, then its counters
    on ``results``.  Top level, so ``spawn`` can import it."""
    report: dict[str, Any] = {"shard": index, "pid": os.getpid(), "connections": len(urls)}
    opened = 0
    errors = 0
    lock = threading.Lock()

    def on_open(conn: wspool.Connection) -> None:
        nonlocal opened
        conn.send("go")  # the demo feed: every symbol; adapt to your servers
        with lock:
            opened += 1

    def on_error(conn: wspool.Connection, error: BaseException) -> None:
        nonlocal errors
        with lock:
            errors += 1

    try:
        policy = wspool.ReconnectPolicy(initial_delay=0.05, max_delay=2.0)
        with wspool.Pool(workers=2, name=f"shard{index}") as pool:
            for url in urls:
                pool.connect(url, on_open=on_open, on_error=on_error, reconnect=policy)
            time.sleep(seconds)
            stats = pool.stats()
        with lock:
            report.update(
                opened=opened,
                messages=stats["messages_in"],
                reconnects=stats["reconnects"],
                errors=errors,
            )
    except Exception as exc:  # reported, not lost with the process
        report["failure"] = repr(exc)
    results.put(report)


def run(urls: Sequence[str], processes: int, seconds: float) -> list[dict[str, Any]]:
    """Run the shards and return their reports, in shard order."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shards = split(urls, processes)
    children = [
        context.Process(target=run_shard, args=(i, part, seconds, results), name=f"shard{i}")
        for i, part in enumerate(shards)
        if part
    ]
    for child in children:
        child.start()
    reports = []
    try:
        for _ in children:
            reports.append(results.get(timeout=seconds + 60))
    except queue.Empty:
        print("a shard never reported", file=sys.stderr)
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
                child.join()
    return sorted(reports, key=lambda r: r["shard"])


def summarize(reports: list[dict[str, Any]], expected_shards: int) -> dict[str, int]:
    totals = dict.fromkeys(COUNTERS, 0)
    print(f"{'shard':>5} {'pid':>8} {'urls':>6} {'opened':>7} {'messages':>9} {'reconn':>7}")
    for report in reports:
        if "failure" in report:
            print(f"{report['shard']:>5} {report['pid']:>8} failed: {report['failure']}")
            continue
        for key in COUNTERS:
            totals[key] += report[key]
        print(
            f"{report['shard']:>5} {report['pid']:>8} {report['connections']:>6} "
            f"{report['opened']:>7} {report['messages']:>9,} {report['reconnects']:>7}"
        )
    print(
        f"total: {len(reports)}/{expected_shards} shards, {totals['connections']} connections, "
        f"{totals['opened']} opens, {totals['messages']:,} messages, "
        f"{totals['reconnects']} reconnects, {totals['errors']} errors"
    )
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="*", help="ws:// or wss:// URLs (none: --demo)")
    parser.add_argument("--demo", action="store_true", help="against the demo feed (default)")
    parser.add_argument("--connections", type=int, default=200, help="demo URLs (200)")
    parser.add_argument("--processes", type=int, default=2, help="processes (2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run (3)")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.processes < 1 or args.seconds <= 0:
        parser.error("--connections, --processes and --seconds must be positive")
    if args.urls and not args.demo:
        reports = run(args.urls, args.processes, args.seconds)
        summarize(reports, len([s for s in split(args.urls, args.processes) if s]))
        return 0 if len(reports) and not any("failure" in r for r in reports) else 1

    from wspool.demofeed import DemoFeed

    with DemoFeed(rate=5, max_session_age=1.0) as feed:
        # Distinct URLs (the feed ignores ``id``), so hashing spreads them.
        urls = [f"{feed.url}/ticker?id={i}" for i in range(args.connections)]
        shards = [s for s in split(urls, args.processes) if s]
        print(
            f"demo feed at {feed.url}; {len(urls)} URLs over {len(shards)} processes "
            f"({', '.join(str(len(s)) for s in shards)} by rendezvous hashing) "
            f"for {args.seconds:g}s"
        )
        reports = run(urls, args.processes, args.seconds)
        totals = summarize(reports, len(shards))
        served = feed.stats()
    print(
        f"feed: {served['connections_opened']} sessions served, "
        f"{served['rotations']} rotated by the server"
    )
    problems = []
    if len(reports) != len(shards) or any("failure" in r for r in reports):
        problems.append("a shard failed")
    if totals["connections"] != len(urls) or totals["opened"] < len(urls):
        problems.append("not every URL opened")
    if not totals["messages"]:
        problems.append("no messages")
    print("demo: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
