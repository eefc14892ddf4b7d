"""``wspool demo``: many connections to the embedded demo feed, no network needed.

A :class:`wspool.demofeed.DemoFeed` runs on loopback in this process; every
connection subscribes to one of its symbols (round robin) and counts the ticks in its
``on_message`` callback.  The live view is ``top`` when stdout is a terminal, else
the status line when stderr is one; a summary line ends the run.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from typing import TextIO

from wspool.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Console,
    RateMeter,
    StatusTicker,
    is_terminal,
)
from wspool.cli._top import Sampler, show, top_callbacks
from wspool.pool import Connection, ConnectionState, Pool


def _raise_fd_limit(need: int) -> None:
    """Both ends of every connection live in this process: ask for enough files."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``wspool demo``; returns the exit status."""
    from wspool.demofeed import DemoFeed

    _raise_fd_limit(2 * args.connections + 256)
    screen = is_terminal(out)
    gone = threading.Event()
    console = Console(out, err, on_gone=gone.set)
    sampler = Sampler([])
    on_error = top_callbacks(args, console, sampler, screen=screen)["on_error"]
    lock = threading.Lock()
    counted = [0]

    def on_message(_conn: Connection, _message: object) -> None:
        with lock:
            counted[0] += 1

    meter = RateMeter()

    def status() -> str:
        connections = sampler.connections
        up = sum(1 for c in connections if c.state is ConnectionState.OPEN)
        with lock:
            messages = counted[0]
        return (
            f"wspool demo: {up}/{len(connections)} up  {meter.add(messages):.0f} msg/s  "
            f"{messages} messages  {sum(sampler.errors.values())} errors"
        )

    started = time.monotonic()
    interrupted = False
    ticker: StatusTicker | None = None
    with DemoFeed(rate=args.rate, max_session_age=args.max_age) as feed:
        symbols = feed.symbols

        def on_open(conn: Connection) -> None:
            # c1 takes the first symbol, c2 the second, ...: sent on every (re)open.
            symbol = symbols[(int(str(conn.label)[1:]) - 1) % len(symbols)]
            conn.send_json({"op": "subscribe", "channel": "ticker", "symbols": [symbol]})

        pool = Pool()
        try:
            for i in range(args.connections):
                conn = pool.connect(
                    feed.url + "/ticker",
                    label=f"c{i + 1}",
                    on_open=on_open,
                    on_message=on_message,
                    on_error=on_error,
                    reconnect=True,
                )
                sampler.connections.append(conn)
            until = started + args.seconds
            if screen:
                show(args, sampler.connections, sampler, console, gone, screen=True, until=until)
            else:
                if is_terminal(err):
                    ticker = StatusTicker(console, status).start()
                while (left := until - time.monotonic()) > 0 and not gone.is_set():
                    time.sleep(min(left, 0.2))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if ticker is not None:
                ticker.stop()
            elapsed = time.monotonic() - started
            with contextlib.suppress(KeyboardInterrupt):
                pool.close()
    connections = sampler.connections
    with lock:
        messages = counted[0]
    reconnects = sum(c.stats.reconnects for c in connections)
    errors = sum(sampler.errors.values())
    console.error(
        f"wspool demo: {messages} messages in {elapsed:.1f} s ({messages / elapsed:.0f} msg/s) "
        f"from {len(connections)} connections, {reconnects} reconnects, {errors} errors"
    )
    return EXIT_INTERRUPTED if interrupted else EXIT_OK
