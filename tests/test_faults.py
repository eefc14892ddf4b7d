"""Faults between the Pool and its server, injected by ``faultproxy.FaultProxy``.

Every connection streams ``"<cid>:<sid>:<seq>"`` messages from ``stream_handler``; a
new session (``sid``) starts at seq 0 on every (re)connection, so a gap is explained
by a session change and nothing else.  What is promised, and checked by
:meth:`Tracker.check`: within a session the client delivers a prefix of what the
server sent, exactly once and in order (seq 0, 1, 2, ...), sessions never interleave,
every message parsed (``stats.messages_in``) reached ``on_message``, and callbacks stay
paired (``on_open``, then ``on_close``, then ``on_reconnect`` + ``on_open`` ...).

``WSPOOL_LONG_FAULTS=1`` stretches the refused phase to the 30 s the issue asks for.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import WSServerFactory
from faultproxy import FaultProxy, Mode, StreamStats, stream_handler
from helpers import TESTS, CallbackRecorder, python_env, wait_until
from proxies import EchoServer

import wspool
from wspool import ReconnectPolicy
from wspool.exceptions import WebSocketException, WebSocketTimeoutException

LONG = os.environ.get("WSPOOL_LONG_FAULTS") == "1"

pytestmark = pytest.mark.usefixtures("no_thread_leaks", "no_fd_leaks")


# ------------------------------------------------------------------ the proxy itself


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    """The fault proxy in front of a plain TCP echo server."""
    with EchoServer() as echo:
        fault = FaultProxy(("127.0.0.1", echo.port)).start()
        yield fault
        assert fault.stop(), "the fault proxy's thread did not stop"


def _read(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    """Up to ``n`` bytes, fewer if the peer closes or ``timeout`` passes."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError):
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
    return data


def test_proxy_keeps_byte_order_while_modes_change(echo_proxy: FaultProxy) -> None:
    modes = [Mode(delay=0.01), Mode(split=True), Mode(), Mode(delay=0.002, split=True)]
    with socket.create_connection(("127.0.0.1", echo_proxy.port)) as sock:
        assert wait_until(lambda: echo_proxy.links())
        sent = b""
        for i in range(40):
            chunk = b"%05d|" % i
            sock.sendall(chunk)
            sent += chunk
            if i % 5 == 0:
                echo_proxy.set_mode(modes[(i // 5) % len(modes)])
        assert _read(sock, len(sent)) == sent
    assert wait_until(lambda: echo_proxy.counters()["closed"] == 1)
    assert echo_proxy.counters()["accepted"] == 1


def test_proxy_black_hole_cut_reset_and_refusal(echo_proxy: FaultProxy) -> None:
    address = ("127.0.0.1", echo_proxy.port)
    with socket.create_connection(address) as sock:
        assert wait_until(lambda: echo_proxy.links())
        echo_proxy.set_mode(Mode(blackhole=frozenset({"down"})))
        sock.sendall(b"lost")
        assert _read(sock, 1, timeout=0.3) == b""  # nothing, and still connected
        echo_proxy.normal()
        sock.sendall(b"back")
        assert _read(sock, 4) == b"back"
        echo_proxy.cut(after=3)
        sock.sendall(b"0123456789")
        assert _read(sock, 10) == b"012"  # then the end of the stream
    with socket.create_connection(address) as sock:
        assert wait_until(lambda: echo_proxy.links())
        echo_proxy.reset()
        sock.settimeout(5.0)
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    echo_proxy.refuse("close")
    with socket.create_connection(address) as sock:
        assert _read(sock, 1) == b""
    echo_proxy.refuse("unlisten")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address).close()
    echo_proxy.accept_again()
    with socket.create_connection(address) as sock:
        sock.sendall(b"again")
        assert _read(sock, 5) == b"again"
    counters = echo_proxy.counters()
    assert (counters["accepted"], counters["refused"], counters["upstream_failed"]) == (3, 1, 0)


# ------------------------------------------------------------------ through the Pool


class Tracker:
    """Per-connection log of callbacks with their times, and the stream checks."""

    def __init__(self) -> None:
        self.rec = CallbackRecorder(timeout=20.0)
        self._lock = threading.Lock()
        self.events: dict[str, list[tuple[str, float, Any]]] = defaultdict(list)
        self.messages: dict[str, list[str]] = defaultdict(list)
        self.outside_session: list[tuple[str, str]] = []  # messages with no open session
        self._open: dict[str, bool] = defaultdict(bool)

    def _event(self, name: str, conn: Any, arg: Any = None) -> None:
        with self._lock:
            self.events[conn.label].append((name, time.monotonic(), arg))
            if name == "open":
                self._open[conn.label] = True
            elif name == "close":
                self._open[conn.label] = False

    def _message(self, conn: Any, message: str) -> None:
        with self._lock:
            if not self._open[conn.label]:
                self.outside_session.append((conn.label, message))
            self.messages[conn.label].append(message)
        self.rec.record("message", conn, message)

    def callbacks(self) -> dict[str, Any]:
        return {
            **self.rec.callbacks(
                on_open=lambda c: self._event("open", c),
                on_close=lambda c, code, reason: self._event("close", c, code),
                on_error=lambda c, e: self._event("error", c, e),
                on_reconnect=lambda c: self._event("reconnect", c),
            ),
            "on_message": self._message,
        }

    def opens(self, label: str) -> int:
        return self.rec.count("open", label)

    def sessions(self, label: str) -> list[tuple[str, list[int]]]:
        """(sid, seqs) blocks of ``label``'s messages, in arrival order."""
        with self._lock:
            messages = list(self.messages[label])
        blocks: list[tuple[str, list[int]]] = []
        for message in messages:
            cid, sid, seq = message.split(":")
            assert cid == label, f"{label} got {message!r}, another connection's message"
            if not blocks or blocks[-1][0] != sid:
                blocks.append((sid, []))
            blocks[-1][1].append(int(seq))
        return blocks

    def wait_sessions(self, label: str, n: int, timeout: float = 20.0) -> None:
        """Wait until ``label`` received messages of ``n`` sessions."""
        self.rec.wait_for(lambda: len(self.sessions(label)) >= n, timeout)

    def errors_between_sessions(self, label: str) -> list[tuple[float, BaseException]]:
        """Errors reported while not open: one per failed attempt."""
        out, is_open = [], False
        with self._lock:
            events = list(self.events[label])
        for name, at, arg in events:
            if name == "open":
                is_open = True
            elif name == "close":
                is_open = False
            elif name == "error" and not is_open:
                out.append((at, arg))
        return out

    def reconnect_gaps(self, label: str) -> list[float]:
        """Seconds from each on_close to the next on_open."""
        gaps, closed_at = [], None
        with self._lock:
            events = list(self.events[label])
        for name, at, _ in events:
            if name == "close":
                closed_at = at
            elif name == "open" and closed_at is not None:
                gaps.append(at - closed_at)
                closed_at = None
        return gaps

    def check(self, conns: list[wspool.Connection]) -> None:
        """The stream and pairing promises (module docstring), for every connection."""
        assert not self.outside_session, self.outside_session[:5]
        for conn in conns:
            label = conn.label
            seen: set[str] = set()
            for sid, seqs in self.sessions(label):
                assert sid not in seen, f"{label}: session {sid} resumed after another"
                seen.add(sid)
                assert seqs == list(range(len(seqs))), (
                    f"{label} session {sid}: not 0..n in order: {_first_fault(seqs)}"
                )
            assert len(seen) <= self.opens(label)
            names = [n for n in self.rec.names(label) if n in ("open", "close", "reconnect")]
            expected = ["open"]
            while len(expected) < len(names) - 1:
                expected += ["close", "reconnect", "open"]
            expected.append("close")
            assert names == expected, f"{label}: callbacks not paired: {names}"
            assert len(self.messages[label]) == conn.stats.messages_in, (
                f"{label}: parsed {conn.stats.messages_in}, delivered {len(self.messages[label])}"
            )


def _first_fault(seqs: list[int]) -> str:
    for i, seq in enumerate(seqs):
        if seq != i:
            return f"position {i} holds {seq} (around: {seqs[max(0, i - 3) : i + 3]})"
    return "?"


@pytest.fixture
def stream(ws_server: WSServerFactory) -> tuple[Any, StreamStats]:
    stats = StreamStats()
    server = ws_server(stream_handler(stats, interval=0.05, burst=2), compression=True)
    return server, stats


@pytest.fixture
def proxy(stream: tuple[Any, StreamStats]) -> Iterator[FaultProxy]:
    server, _ = stream
    fault = FaultProxy(("127.0.0.1", server.port)).start()
    yield fault
    assert fault.stop(), "the fault proxy's thread did not stop"


def _open_all(
    pool: wspool.Pool, proxy: FaultProxy, tracker: Tracker, n: int, **options: Any
) -> list[wspool.Connection]:
    conns = [
        pool.connect(f"{proxy.url}/c{i}", label=f"c{i}", **tracker.callbacks(), **options)
        for i in range(n)
    ]
    for conn in conns:
        tracker.wait_sessions(conn.label, 1)
    return conns


def _link_ids(proxy: FaultProxy, label: str) -> list[int]:
    return [info.id for info in proxy.links(path=f"/{label}")]


def _close(pool: wspool.Pool, tracker: Tracker, conns: list[wspool.Connection]) -> None:
    pool.close(timeout=10.0)
    for conn in conns:
        assert conn.wait_closed(10.0), f"{conn.label} did not close"
        assert conn.drain(10.0)


def test_cuts_and_resets_reconnect_with_jitter_and_lose_nothing_parsed(
    proxy: FaultProxy,
) -> None:
    tracker = Tracker()
    policy = ReconnectPolicy(initial_delay=0.2, factor=2.0, max_delay=1.0, reset_after=0.3)
    rng = random.Random(1234)
    pool = wspool.Pool(workers=4)
    conns = _open_all(pool, proxy, tracker, 80, reconnect=policy)
    # a third of the links slow (held chunks), a third in 1-byte segments
    for i, conn in enumerate(conns):
        if i % 3:
            mode = Mode(delay=0.003) if i % 3 == 1 else Mode(split=True)
            proxy.set_mode(mode, ids=_link_ids(proxy, conn.label))
    for round_ in range(3):
        time.sleep(0.4)  # past reset_after: every loss starts the backoff afresh
        for conn in conns:
            ids = _link_ids(proxy, conn.label)
            assert ids, f"{conn.label} has no open link in round {round_}"
            if round_ == 1:
                proxy.reset(ids=ids)
            else:
                proxy.cut(after=rng.randint(1, 40), ids=ids)  # mid-frame, most often
        for conn in conns:
            tracker.wait_sessions(conn.label, round_ + 2)
    _close(pool, tracker, conns)
    tracker.check(conns)
    gaps = [g for conn in conns for g in tracker.reconnect_gaps(conn.label)]
    assert len(gaps) == 3 * len(conns)
    assert max(gaps) <= policy.max_delay + 0.5, sorted(gaps)[-5:]
    # full jitter: the delays are spread, not one value for everyone
    assert len({round(g, 3) for g in gaps}) > len(gaps) // 2, sorted(gaps)
    assert min(gaps) < policy.initial_delay / 2 < max(gaps)


def test_refused_phase_reports_every_attempt_and_comes_back_without_restart(
    proxy: FaultProxy,
) -> None:
    phase = 30.0 if LONG else 3.0
    tracker = Tracker()
    policy = ReconnectPolicy(initial_delay=0.1, factor=2.0, max_delay=0.8, reset_after=0.3)
    pool = wspool.Pool(workers=4)
    conns = _open_all(pool, proxy, tracker, 30, reconnect=policy)
    time.sleep(0.4)
    proxy.refuse("close")  # accept, then close at once
    proxy.reset()
    time.sleep(phase / 2)
    proxy.refuse("unlisten")  # connects now get ECONNREFUSED
    refused_by_closing = proxy.counters()["refused"]
    time.sleep(phase / 2)
    proxy.normal()
    for conn in conns:
        tracker.wait_sessions(conn.label, 2, timeout=policy.max_delay + 10)
    _close(pool, tracker, conns)
    tracker.check(conns)
    closed_attempts = 0
    for conn in conns:
        failures = tracker.errors_between_sessions(conn.label)
        assert len(failures) >= 2, f"{conn.label}: {failures}"
        for _, error in failures:
            assert isinstance(error, ConnectionRefusedError | WebSocketException), repr(error)
            closed_attempts += not isinstance(error, ConnectionRefusedError)
        assert any(isinstance(e, ConnectionRefusedError) for _, e in failures), failures
        # backoff: attempt k waits at most initial * factor**k (capped), plus slack
        times = [at for at, _ in failures]
        for k, (a, b) in enumerate(itertools.pairwise(times), start=1):
            cap = min(policy.max_delay, policy.initial_delay * policy.factor**k)
            assert b - a <= cap + 0.5, f"{conn.label}: attempt {k} waited {b - a:.3f}s > {cap}"
    # every connection the proxy accepted and closed was one failed attempt, reported
    assert refused_by_closing >= len(conns)
    assert closed_attempts == refused_by_closing
    assert proxy.counters()["refused"] == refused_by_closing


def test_black_hole_is_detected_by_keepalive_and_replaced(proxy: FaultProxy) -> None:
    interval, timeout = 1.0, 0.5
    tracker = Tracker()
    policy = ReconnectPolicy(initial_delay=0.05, factor=2.0, max_delay=0.5)
    pool = wspool.Pool(workers=4)
    conns = _open_all(
        pool, proxy, tracker, 24, reconnect=policy, ping_interval=interval, ping_timeout=timeout
    )
    holes = {0: {"up"}, 1: {"down"}, 2: {"up", "down"}}
    holed = [conn for i, conn in enumerate(conns) if i % 4 in holes]
    started = time.monotonic()
    for i, conn in enumerate(conns):
        if i % 4 in holes:
            mode = Mode(blackhole=frozenset(holes[i % 4]))
            proxy.set_mode(mode, ids=_link_ids(proxy, conn.label))
    for conn in holed:
        tracker.wait_sessions(conn.label, 2)
    _close(pool, tracker, conns)
    tracker.check(conns)
    for conn in conns:
        closes = [(at, arg) for name, at, arg in tracker.events[conn.label] if name == "close"]
        if conn not in holed:
            assert len(closes) == 1, f"{conn.label} was not black-holed but reconnected"
            continue
        detected = closes[0][0] - started
        assert detected <= interval + timeout + 0.5, f"{conn.label}: lost after {detected:.2f}s"
        errors = [arg for name, _, arg in tracker.events[conn.label] if name == "error"]
        assert isinstance(errors[0], WebSocketTimeoutException), errors


class ServerProcess:
    """The stream server in a process of its own, so it can be SIGKILLed."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "faultproxy.py"), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("port "), line
        self.port = int(line.split()[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.kill()


def test_server_killed_hard_and_restarted_on_the_same_port_all_reconnect() -> None:
    server = ServerProcess()
    tracker = Tracker()
    policy = ReconnectPolicy(initial_delay=0.1, factor=2.0, max_delay=0.5)
    try:
        with FaultProxy(("127.0.0.1", server.port)) as proxy:
            pool = wspool.Pool(workers=4)
            conns = _open_all(pool, proxy, tracker, 60, reconnect=policy)
            time.sleep(0.5)  # under load
            server.kill()
            for conn in conns:
                tracker.rec.wait_closed(label=conn.label)
            time.sleep(0.5)  # refused upstream meanwhile: failed attempts
            server = ServerProcess(server.port)
            for conn in conns:
                tracker.wait_sessions(conn.label, 2)
            assert wait_until(
                lambda: all(len(tracker.sessions(c.label)[-1][1]) >= 4 for c in conns)
            )
            _close(pool, tracker, conns)
    finally:
        server.stop()
    tracker.check(conns)
    assert proxy.counters()["upstream_failed"] > 0
    for conn in conns:
        assert tracker.opens(conn.label) == 2
        failures = tracker.errors_between_sessions(conn.label)
        assert all(isinstance(e, OSError | WebSocketException) for _, e in failures), failures
