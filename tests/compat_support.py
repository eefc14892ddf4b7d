"""Shared pieces of the websocket-client compatibility tests (``test_websocket_client_compat.py``
and ``test_compat_*.py``): the fixture that resets websocket-client's global settings,
the server scripts the documented snippets talk to, an accumulator of what snippets
print, a Unix-socket relay to the test server, and a runner for snippets that need a
process of their own (rel installs a SIGINT handler and keeps global state).

A test module uses the fixture with ``from compat_support import websocket_client_state``
(pytest finds fixtures among a module's names).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from helpers import ROOT, WAIT, can_list_fds, python_env, run_in_thread, wait_until
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer, echo_handler

import wspool as websocket
import wspool.app

__all__ = [
    "CLOSE_REASON",
    "GREETING",
    "Child",
    "Output",
    "UnixRelay",
    "WSServerFactory",
    "close_after_first_message",
    "close_at_once",
    "feed",
    "greet_then_echo",
    "record_masks",
    "run_app",
    "standin_rel",
    "websocket_client_state",
]

WSServerFactory = Callable[..., WSServer]

#: What the test server says first, as ws://echo.websocket.events does (the docs'
#: short-lived examples read it before sending).
GREETING = "echo.websocket.events sponsored by Lob.com"
#: The reason of :func:`close_after_first_message`'s close frame.
CLOSE_REASON = "server says bye"


@pytest.fixture(autouse=True)
def websocket_client_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """websocket-client's settings are process-wide (the trace, the default timeout)
    and its WebSocketApps here run on wspool's shared pool: after each test the trace
    is off, the default timeout is None again, and the shared pool is closed.

    Every test runs under the thread leak check, and the fd leak check where the
    platform lists descriptors.  They and the server factory are set up first, so all
    this is undone before the servers stop and the leak checks look.
    """
    request.getfixturevalue("no_thread_leaks")
    if can_list_fds():
        request.getfixturevalue("no_fd_leaks")
    request.getfixturevalue("ws_server")
    try:
        yield
    finally:
        websocket.enableTrace(False)
        websocket.setdefaulttimeout(None)
        # Made on first use by the snippets' WebSocketApps; closing it stops its
        # dispatcher and worker threads (the next test gets a new one).
        wspool.app.shared_pool().close()


# --------------------------------------------------------------------- server scripts


def greet_then_echo(conn: ServerConnection) -> None:
    """Say :data:`GREETING`, then echo (answering the client's close)."""
    conn.send_message(GREETING)
    echo_handler(conn)


def feed(*messages: str, close: int | None = 1000) -> Callable[[ServerConnection], None]:
    """Send ``messages``, then close with ``close`` (server-initiated closing
    handshake), or echo until the client closes when ``close`` is None."""

    def handler(conn: ServerConnection) -> None:
        for message in messages:
            conn.send_message(message)
        if close is None:
            echo_handler(conn)
            return
        with contextlib.suppress(PeerClosed, TimeoutError):
            conn.close(close, timeout=WAIT)

    return handler


def close_after_first_message(conn: ServerConnection) -> None:
    """Read one message, then close with a custom code (4000-4999: private use) and
    :data:`CLOSE_REASON`."""
    conn.recv_message()
    conn.close(4000, CLOSE_REASON)


def record_masks(keys: list[bytes]) -> Callable[[ServerConnection], None]:
    """A server that keeps each client frame's masking key in ``keys`` and echoes data
    frames as they came (use it without compression: payloads are echoed as they are)."""

    def handler(conn: ServerConnection) -> None:
        while True:
            try:
                frame = conn.recv_frame()
            except PeerClosed:
                return
            keys.append(frame.mask_key)
            if frame.opcode == Opcode.CLOSE:
                conn.send_close(1000)
                return
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                conn.send_message(frame.payload, opcode=frame.opcode)

    return handler


def close_at_once(conn: ServerConnection) -> None:
    """Close (1000) as soon as the connection is open: a snippet's run_forever ends."""
    with contextlib.suppress(PeerClosed, TimeoutError):
        conn.close(1000, timeout=WAIT)


# --------------------------------------------------------------------- in-process runs


class Output:
    """What the snippets printed (stdout and stderr as pytest's capsys captured them),
    accumulated, so a test can wait for a line printed by a callback on another thread."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._out = ""
        self._err = ""

    def _read(self) -> None:
        captured = self._capsys.readouterr()
        self._out += captured.out
        self._err += captured.err

    @property
    def out(self) -> str:
        self._read()
        return self._out

    @property
    def err(self) -> str:
        self._read()
        return self._err

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        if not wait_until(lambda: text in self.out, timeout, interval=0.01):
            raise AssertionError(f"{text!r} was not printed; stdout so far:\n{self._out}")


def run_app(app: Any, timeout: float = WAIT, **options: Any) -> Any:
    """``app.run_forever(**options)`` as the snippets call it, but in a thread joined
    within ``timeout`` (a hanging run fails the test instead of hanging it)."""
    return run_in_thread(lambda: app.run_forever(**options), name="run_forever").result(
        timeout, message=f"run_forever({options}) did not return within {timeout}s"
    )


# --------------------------------------------------------------------- Unix socket relay


class UnixRelay:
    """A Unix socket at ``path`` whose connections are relayed, byte for byte, to a TCP
    ``target`` (the test server): the docs' "Using Unix Domain Sockets" example needs a
    WebSocket server on a Unix socket, and the test server only listens on TCP.

    One thread accepts and relays (a selectors loop); ``stop()`` closes everything.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._dir = tempfile.TemporaryDirectory(prefix="wsu")  # short: sun_path is ~108 bytes
        self.path = os.path.join(self._dir.name, "ws.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(4)
        self._wake_r, self._wake_w = socket.socketpair()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self.relayed = 0
        self._thread = threading.Thread(target=self._loop, name="unix-relay", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(WAIT)
        for sock in [*self._pairs, self._listener, self._wake_r, self._wake_w]:
            sock.close()
        self._pairs.clear()
        self._dir.cleanup()

    def _loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        return
                    if sock is self._listener:
                        client, _ = self._listener.accept()
                        upstream = socket.create_connection(self._target, timeout=WAIT)
                        upstream.settimeout(None)
                        self._pairs[client], self._pairs[upstream] = upstream, client
                        sel.register(client, selectors.EVENT_READ)
                        sel.register(upstream, selectors.EVENT_READ)
                        continue
                    assert isinstance(sock, socket.socket)
                    self._forward(sel, sock)

    def _forward(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        peer = self._pairs[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            self.relayed += len(data)
            with contextlib.suppress(OSError):
                peer.sendall(data)
            return
        # One side ended: pass the end on and stop watching this side.
        sel.unregister(sock)
        with contextlib.suppress(OSError):
            peer.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------- subprocess runs

#: A stand-in for rel with the shape websocket-client's examples use: ``read(sock, cb,
#: *args)`` (dropped when ``cb`` returns a falsy value), ``timeout(delay, cb, *args)``
#: (again when ``cb`` returns a true value), ``signal(sig, cb, *args)``, ``abort()``
#: and ``dispatch()`` (returns on abort, or once nothing is registered).
_STANDIN_REL = '''
"""Stand-in for rel (tests only): read/write/timeout/signal/abort/dispatch on selectors."""
import heapq
import itertools
import selectors
import signal as _signal
import threading
import time

_selector = selectors.DefaultSelector()
_timers = []
_order = itertools.count()
_signals = {}
_lock = threading.Lock()
_aborted = False
_running = False


class _Registration:
    def __init__(self, sock, events, cb, args):
        self.sock, self.cb, self.args, self.active = sock, cb, args, True
        _selector.register(sock, events, self)

    def pending(self):
        return self.active

    def delete(self):
        if self.active:
            self.active = False
            _selector.unregister(self.sock)


def read(sock, cb, *args):
    return _Registration(sock, selectors.EVENT_READ, cb, args)


def write(sock, cb, *args):
    return _Registration(sock, selectors.EVENT_WRITE, cb, args)


def timeout(delay, cb, *args):
    with _lock:
        heapq.heappush(_timers, (time.monotonic() + (delay or 0), next(_order), delay, cb, args))


def signal(sig, cb, *args):
    _signals[sig] = (cb, args)
    _signal.signal(sig, lambda signum, frame: cb(*args))


def abort():
    global _aborted
    _aborted = True


def is_running():
    return _running


def dispatch():
    global _aborted, _running
    _running = True
    try:
        while not _aborted and (_selector.get_map() or _timers or _signals):
            now = time.monotonic()
            with _lock:
                due = []
                while _timers and _timers[0][0] <= now:
                    due.append(heapq.heappop(_timers))
            for _, _, delay, cb, args in due:
                if cb(*args):
                    timeout(delay, cb, *args)
            if not _selector.get_map():
                time.sleep(0.01)
                continue
            for key, _ in _selector.select(0.01):
                registration = key.data
                if registration.active and not registration.cb(*registration.args):
                    registration.delete()
    finally:
        _running = False
        _aborted = False
'''


@pytest.fixture
def standin_rel(tmp_path: Path) -> Path:
    """A directory holding the stand-in ``rel`` module; put it first on the child's
    ``sys.path`` and the snippet's ``import rel`` gets it."""
    directory = tmp_path / "standin"
    directory.mkdir()
    (directory / "rel.py").write_text(_STANDIN_REL.lstrip())
    return directory


def _default_sigint() -> None:
    # A shell running the tests in the background starts children with SIGINT
    # ignored; the snippets need it delivered (to rel's handler or Python's default).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A snippet running in a Python subprocess, its output collected as it comes.

    ``wait_for(text)`` waits until stdout shows ``text``; ``interrupt()`` sends SIGINT
    (Ctrl-C) and waits for the exit.  Leaving the ``with`` block kills a child that is
    still running.
    """

    def __init__(self, code: str, *args: str, pythonpath: tuple[Path | str, ...]) -> None:
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._err: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=python_env(pythonpath=pythonpath),
            preexec_fn=_default_sigint,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line)
                self._cond.notify_all()
        stream.close()

    @property
    def out(self) -> str:
        with self._cond:
            return "".join(self._out)

    @property
    def err(self) -> str:
        with self._cond:
            return "".join(self._err)

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        def seen() -> bool:
            return text in "".join(self._out) or self.proc.poll() is not None

        wait_until(seen, timeout, condition=self._cond)
        assert text in self.out, (
            f"{text!r} not printed (exit {self.proc.poll()}); stdout:\n{self.out}\n"
            f"stderr:\n{self.err[-3000:]}"
        )

    def interrupt(self, timeout: float = WAIT) -> int:
        """Ctrl-C, then the exit status (the child is killed if it does not exit)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"still running {timeout}s after Ctrl-C; stdout:\n{self.out}\n"
                f"stderr:\n{self.err[-3000:]}"
            ) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(WAIT)
