"""``python -m bench.soak``: many Pool connections through the fault proxy for a while,
with random cuts, resets and black holes and one server restart, then a verdict.

The server (``tests/faultproxy.py`` run as a process) streams ``"<cid>:<sid>:<seq>"``
messages; every (re)connection is a new session whose seq starts at 0.  The proxy
(``tests/faultproxy.FaultProxy``, in this process) injects the faults.  At the end the
command prints reconnects, messages, gaps, duplicates, reordered and lost messages,
max RSS, threads and fds, and exits 1 if any promise was broken:

* **duplicated**: a (session, seq) delivered twice;
* **reordered**: a seq delivered after a larger one of the same session;
* **lost**: a message the client *parsed* that never reached ``on_message``, that is a
  hole inside a session's delivered sequence (TCP gives the client a prefix of what
  the server wrote, so a later seq delivered means the earlier one was parsed too), or
  a connection whose ``stats.messages_in`` differs from what it delivered;
* **leaked**: threads or file descriptors still open after everything was closed.

**Gaps** are not failures: messages the server sent that were still in flight (in
the proxy, in a socket buffer, cut in half) when their connection was cut are not
promised to anyone.  They are counted from the server's own tally of what it sent.

``--connections 50 --seconds 60`` is the CI form; the default is the full soak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))

from faultproxy import FaultProxy, Mode  # noqa: E402

import wspool  # noqa: E402
from wspool import ReconnectPolicy  # noqa: E402


class ServerProcess:
    """The stream server in a process of its own; ``stop()`` returns what it sent."""

    def __init__(self, port: int = 0, interval: float = 0.1) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "faultproxy.py"),
                "--port",
                str(port),
                "--interval",
                str(interval),
                "--burst",
                "1",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            self.proc.communicate()
            raise SystemExit(f"soak: the stream server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> dict[str, int]:
        """SIGTERM: the server prints its per-session counts and exits at once (its
        connections see the TCP connection end, as in a crash)."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        for line in out.splitlines():
            if line.startswith("{"):
                sent: dict[str, int] = json.loads(line)["sent"]
                return sent
        return {}


class Recorder:
    """What the callbacks saw, per connection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.opens: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.unpaired: list[str] = []
        self.last_error: dict[str, str] = {}
        self.corrupted = 0  # messages that are not another message of this connection
        self._open: dict[str, bool] = defaultdict(bool)

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_open": self.on_open,
            "on_close": self.on_close,
            "on_error": self.on_error,
            "on_message": self.on_message,
        }

    def on_open(self, conn: Any) -> None:
        with self.lock:
            if self._open[conn.label]:
                self.unpaired.append(f"{conn.label}: on_open twice")
            self._open[conn.label] = True
            self.opens[conn.label] += 1

    def on_close(self, conn: Any, code: Any, reason: Any) -> None:
        with self.lock:
            if not self._open[conn.label] and self.opens[conn.label]:
                self.unpaired.append(f"{conn.label}: on_close without on_open")
            self._open[conn.label] = False
            self.closes[conn.label] += 1

    def on_error(self, conn: Any, error: BaseException) -> None:
        with self.lock:
            self.errors[type(error).__name__] += 1
            self.last_error[conn.label] = f"{type(error).__name__}: {error}"[:120]

    def on_message(self, conn: Any, message: str) -> None:
        try:
            cid, sid, seq = message.split(":")
            number = int(seq)
        except ValueError:
            cid, sid, number = "", "", -1
        with self.lock:
            if cid != conn.label:
                self.corrupted += 1
                self.unpaired.append(f"{conn.label}: got {message!r}")
                return
            if not self._open[conn.label]:
                self.unpaired.append(f"{conn.label}: message outside a session")
            self.messages[conn.label].append((sid, number))


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _inject(proxy: FaultProxy, rng: random.Random, counts: Counter[str], per_round: int) -> None:
    # A black-holed link keeps its hole (lifting it would resume a stream with bytes
    # missing): the client's keepalive must find it.
    links = [info for info in proxy.links() if not info.mode.blackhole]
    if not links:
        return
    chosen = rng.sample(links, min(per_round, len(links)))
    for info in chosen:
        fault = rng.choices(["cut", "reset", "blackhole", "slow"], weights=[5, 3, 1, 1])[0]
        counts[fault] += 1
        if fault == "cut":
            proxy.cut(after=rng.randint(0, 60), ids=[info.id])
        elif fault == "reset":
            proxy.reset(ids=[info.id])
        elif fault == "blackhole":
            holes = rng.choice([{"up"}, {"down"}, {"up", "down"}])
            proxy.set_mode(Mode(blackhole=frozenset(holes)), ids=[info.id])
        else:
            proxy.set_mode(Mode(split=rng.random() < 0.5, delay=0.002), ids=[info.id])


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    threads_before = threading.active_count()
    fds_before = _fds()
    started = time.monotonic()
    if args.interval is None:
        # about 2,500 messages a second in all: the stream server is one Python process
        args.interval = max(0.1, args.connections / 2500)
    server = ServerProcess(interval=args.interval)
    proxy = FaultProxy(("127.0.0.1", server.port)).start()
    rec = Recorder()
    policy = ReconnectPolicy(initial_delay=0.1, factor=2.0, max_delay=2.0, reset_after=1.0)
    pool = wspool.Pool(workers=args.workers)
    sent: dict[str, int] = {}
    faults: Counter[str] = Counter()
    problems: list[str] = []
    ping_interval = 1.0 if args.seconds < 30 else 2.0  # short runs: black holes show sooner
    try:
        conns = [
            pool.connect(
                f"{proxy.url}/c{i}",
                label=f"c{i}",
                reconnect=policy,
                ping_interval=ping_interval,
                ping_timeout=ping_interval / 2,
                **rec.callbacks(),
            )
            for i in range(args.connections)
        ]
        deadline = time.monotonic() + args.seconds
        restart_at = time.monotonic() + args.seconds / 2
        per_round = max(1, args.connections // 20)
        restarted = False
        while time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            if not restarted and time.monotonic() >= restart_at:
                restarted = True
                faults["server restart"] += 1
                port = server.port
                sent.update(server.stop())
                time.sleep(0.3)
                server = ServerProcess(port, interval=args.interval)
                continue
            _inject(proxy, rng, faults, per_round)
        # Quiet end: faults off, everyone back (black holes need ping_interval to show).
        proxy.normal(lift_black_holes=False)
        settle_for = 1.5 * ping_interval + policy.max_delay + 10.0
        settle = time.monotonic() + settle_for
        while time.monotonic() < settle:
            if all(c.state is wspool.ConnectionState.OPEN for c in conns):
                break
            time.sleep(0.05)
        not_open = [c for c in conns if c.state is not wspool.ConnectionState.OPEN]
        if not_open:
            states = Counter(c.state.value for c in not_open)
            last_errors = Counter(rec.last_error.get(c.label, "none") for c in not_open)
            problems.append(
                f"{len(not_open)} connections not open {settle_for:.0f}s after the faults "
                f"stopped: {dict(states)}; their last errors: {dict(last_errors.most_common(5))}; "
                f"proxy: {proxy.counters()}"
            )
        pool.close(timeout=30.0)
        for conn in conns:
            if not conn.wait_closed(10.0) or not conn.drain(10.0):
                problems.append(f"{conn.label} did not close")
    finally:
        pool.close(timeout=10.0)
        sent.update(server.stop())
        proxy_stopped = proxy.stop()
    if not proxy_stopped:
        problems.append("the fault proxy's thread did not stop")

    delivered = duplicates = reordered = lost = 0
    sessions: set[str] = set()
    delivered_by_session: dict[str, int] = {}
    for conn in conns:
        per_session: dict[str, list[int]] = defaultdict(list)
        for sid, seq in rec.messages[conn.label]:
            per_session[sid].append(seq)
        delivered_here = len(rec.messages[conn.label])
        delivered += delivered_here
        if delivered_here != conn.stats.messages_in:
            lost += abs(conn.stats.messages_in - delivered_here)
            problems.append(
                f"{conn.label}: parsed {conn.stats.messages_in}, delivered {delivered_here}"
            )
        for sid, seqs in per_session.items():
            sessions.add(sid)
            seen: set[int] = set()
            last = -1
            for seq in seqs:
                if seq in seen:
                    duplicates += 1
                elif seq < last:
                    reordered += 1
                elif seq > last + 1:
                    lost += seq - last - 1  # a hole: those were parsed before seq was
                seen.add(seq)
                last = max(last, seq)
            delivered_by_session[sid] = len(seqs)
    # in flight at a cut (or after the client's close frame): not promised
    gaps = sum(max(0, n - delivered_by_session.get(sid, 0)) for sid, n in sent.items())
    corrupted = rec.corrupted
    counted = (("duplicated", duplicates), ("reordered", reordered), ("lost", lost))
    for name, value in (*counted, ("corrupted", corrupted)):
        if value:
            problems.append(f"{value} messages {name}")
    problems.extend(rec.unpaired[:10])

    threads_after = threading.active_count()
    fds_after = _fds()
    wait_until = time.monotonic() + 5.0
    while (threads_after > threads_before or fds_after > fds_before) and (
        time.monotonic() < wait_until
    ):
        time.sleep(0.05)
        threads_after, fds_after = threading.active_count(), _fds()
    if threads_after > threads_before:
        names = sorted(t.name for t in threading.enumerate())
        problems.append(f"threads leaked: {threads_after - threads_before} ({names})")
    if fds_after > fds_before:
        problems.append(f"file descriptors leaked: {fds_after - fds_before}")

    reconnects = sum(conn.stats.reconnects for conn in conns)
    summary = {
        "connections": args.connections,
        "seconds": round(time.monotonic() - started, 1),
        "faults": dict(faults),
        "reconnects": reconnects,
        "sessions": len(sessions),
        "messages": delivered,
        "server_sent": sum(sent.values()),
        "gaps": gaps,
        "duplicates": duplicates,
        "reordered": reordered,
        "lost": lost,
        "corrupted": corrupted,
        "errors": dict(rec.errors.most_common()),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": f"{threads_before} -> {threads_after}",
        "fds": f"{fds_before} -> {fds_after}",
    }
    for key, value in summary.items():
        print(f"{key}: {value}")
    if reconnects == 0:
        problems.append("no reconnect happened: the faults did not reach the pool")
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}")
        return 1
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between two messages of one connection (default: 0.1, more past "
        "250 connections)",
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"seed: {args.seed}")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
