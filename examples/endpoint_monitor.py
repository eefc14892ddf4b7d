"""Endpoint monitor: watch many WebSocket endpoints through one ``wspool.Pool``.

Every endpoint is one pool connection with keepalive pings and reconnects.  A table
printed every ``--every`` seconds shows each one's status (connecting / open /
reconnecting / closed), the round-trip time of its last ping (``conn.stats.last_rtt``),
how long ago its last message came, its reconnects and errors, and the last error.

    python examples/endpoint_monitor.py                       # --demo: local servers
    python examples/endpoint_monitor.py wss://a.example/ws wss://b.example/ws --every 5

The demo starts three embedded demo feeds (``wspool.demofeed``, on 127.0.0.1) and
watches their ``/health`` paths (a heartbeat message five times a second) plus one
port where nothing listens.  Part-way through it stops one
server and later starts it again on the same port, so the table shows that endpoint
go from open to reconnecting and back.  Without ``--seconds`` a real run lasts until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import wspool
from wspool.demofeed import DemoFeed

GRACE = 10.0  # the most a demo run is extended while waiting for its outcome


@dataclass
class Health:
    """What the callbacks learned about one endpoint (the pool's stats hold the rest)."""

    errors: int = 0
    last_error: str = ""


class Monitor:
    def __init__(self) -> None:
        self.health: dict[object, Health] = {}  # by connection label
        self.lock = threading.Lock()  # the table is read on the main thread

    def watch(
        self, pool: wspool.Pool, urls: Sequence[str], *, ping_interval: float, max_delay: float
    ) -> list[wspool.Connection]:
        policy = wspool.ReconnectPolicy(initial_delay=min(0.2, max_delay), max_delay=max_delay)
        connections = []
        for index, url in enumerate(urls):
            # The label shows up in error messages: an index, never a URL that may
            # carry credentials (conn.url is the redacted one).
            self.health[index] = Health()
            connections.append(
                pool.connect(
                    url,
                    label=index,
                    on_error=self.on_error,
                    ping_interval=ping_interval,
                    ping_timeout=ping_interval * 0.8,
                    reconnect=policy,
                )
            )
        return connections

    def on_error(self, conn: wspool.Connection, error: BaseException) -> None:
        # Refused connections, timeouts, lost sockets: the pool reconnects by itself.
        with self.lock:
            health = self.health[conn.label]
            health.errors += 1
            health.last_error = (
                error.message if isinstance(error, wspool.WebSocketException) else str(error)
            )

    def table(self, connections: Sequence[wspool.Connection], elapsed: float) -> str:
        now = time.time()
        width = max(len(c.url) for c in connections)
        lines = [
            f"-- {elapsed:5.1f}s " + "-" * (width + 60),
            f"{'endpoint':<{width}}  {'status':<12} {'rtt':>9} {'last msg':>9} "
            f"{'reconn':>6} {'errors':>6}  last error",
        ]
        with self.lock:
            for conn in connections:
                health = self.health[conn.label]
                stats = conn.stats
                rtt = "-" if stats.last_rtt is None else f"{stats.last_rtt * 1000:.1f} ms"
                age = (
                    "-" if stats.last_message_at is None else f"{now - stats.last_message_at:.1f}s"
                )
                lines.append(
                    f"{conn.url:<{width}}  {conn.state.value:<12} {rtt:>9} {age:>9} "
                    f"{stats.reconnects:>6} {health.errors:>6}  {health.last_error[:60]}"
                )
        return "\n".join(lines)


def monitor(
    urls: Sequence[str],
    *,
    seconds: float | None,
    every: float,
    ping_interval: float,
    max_delay: float,
    during: Sequence[tuple[float, str, Callable[[], object]]] = (),
    until: Callable[[list[wspool.Connection]], bool] | None = None,
) -> tuple[Monitor, list[wspool.Connection], bool]:
    """Watch ``urls``; print the table every ``every`` seconds until ``seconds`` or
    Ctrl-C.  ``during`` lists ``(at_second, message, action)`` steps the demo runs;
    ``until`` may extend the run (by up to GRACE seconds) until it holds."""
    watcher = Monitor()
    steps = sorted(during, key=lambda step: step[0])
    interrupted = False
    started = time.monotonic()
    with wspool.Pool(workers=2, name="monitor") as pool:
        connections = watcher.watch(pool, urls, ping_interval=ping_interval, max_delay=max_delay)
        next_table = started + every

        def finished(elapsed: float) -> bool:
            if seconds is None or elapsed < seconds or steps:
                return False
            return until is None or until(connections) or elapsed >= seconds + GRACE

        try:
            while not finished(time.monotonic() - started):
                now = time.monotonic()
                while steps and now - started >= steps[0][0]:
                    _, message, action = steps.pop(0)
                    print(f"** {message}")
                    action()
                if now >= next_table:
                    print(watcher.table(connections, now - started), flush=True)
                    next_table += every
                wake = min([next_table] + [started + s[0] for s in steps[:1]])
                if seconds is not None and now - started < seconds:
                    wake = min(wake, started + seconds)
                # Short naps: the end may come from `until`, which nothing signals.
                time.sleep(min(0.1, max(0.0, wake - time.monotonic())))
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted")
        print(watcher.table(connections, time.monotonic() - started), flush=True)
    return watcher, connections, interrupted


# --------------------------------------------------------------------- demo


def unused_port() -> int:
    """A loopback port with nothing listening (the OS just handed it out)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


OPEN = wspool.ConnectionState.OPEN


def run_demo(args: argparse.Namespace) -> int:
    seconds = 6.0 if args.seconds is None else args.seconds
    servers = [DemoFeed().start() for _ in range(3)]
    bounced = servers[1]
    port = bounced.port
    urls = [f"{server.url}/health?rate=5" for server in servers]
    urls.append(f"ws://127.0.0.1:{unused_port()}/health")  # nothing listens there

    def stop() -> None:
        bounced.close()  # close 1001 to its client, then nothing listens on the port

    def restart() -> None:
        servers[1] = DemoFeed(port=port).start()  # same port: same URL

    try:
        _, connections, interrupted = monitor(
            urls,
            seconds=seconds,
            every=args.every or 1.0,
            ping_interval=args.ping_interval or 0.5,
            max_delay=1.0,
            # Do not stop before the bounced endpoint is back (a loaded machine is slow).
            until=lambda conns: conns[1].stats.reconnects >= 1 and conns[1].state is OPEN,
            during=[
                (seconds / 3, f"stopping the server on port {port}", stop),
                (seconds * 2 / 3, f"starting it again on port {port}", restart),
            ],
        )
    finally:
        for server in servers:
            server.close()
    if interrupted:
        return 130
    # The demo checks itself: the bounced endpoint came back, the others stayed up
    # and answered pings, the dead one never opened.
    live, dead = connections[:3], connections[3]
    problems = [f"{c.url} has no ping round trip" for c in live if c.stats.last_rtt is None]
    if live[1].stats.reconnects < 1:
        problems.append(f"{live[1].url} did not reconnect after the restart")
    if dead.stats.opened_at is not None:
        problems.append(f"{dead.url} opened, yet nothing listens there")
    print("demo: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="*", help="ws:// or wss:// endpoints (none: --demo)")
    parser.add_argument("--demo", action="store_true", help="watch local demo servers")
    parser.add_argument("--seconds", type=float, help="stop after this long (demo: 6)")
    parser.add_argument("--every", type=float, help="seconds between tables (5; demo: 1)")
    parser.add_argument("--ping-interval", type=float, help="keepalive seconds (10; demo: 0.5)")
    args = parser.parse_args(argv)
    if args.demo or not args.urls:
        return run_demo(args)
    _, _, interrupted = monitor(
        args.urls,
        seconds=args.seconds,
        every=args.every or 5.0,
        ping_interval=args.ping_interval or 10.0,
        max_delay=30.0,
    )
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
