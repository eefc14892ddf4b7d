"""Helpers shared by the test modules: fd counting, bounded waits, a thread runner,
a recorder of pool callbacks and a runner of Python subprocesses.

``conftest.py`` puts this directory on ``sys.path``, so tests ``import helpers`` (or
``from helpers import ...``).  The leak-check fixtures built on these helpers,
``no_thread_leaks`` and ``no_fd_leaks``, live in ``conftest.py``.

Every wait here is bounded: the bound only limits how long a broken build hangs, it is
never a timing assertion.  Waits either return a bool for the test to assert on
(:func:`wait_until`) or fail the test themselves with what they saw
(:class:`CallbackRecorder`).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

#: Default bound of every wait: far longer than anything takes when things work.
WAIT = 10.0

_FD_DIR = "/proc/self/fd"

__all__ = [
    "ROOT",
    "TESTS",
    "WAIT",
    "Call",
    "CallbackRecorder",
    "ThreadRun",
    "can_list_fds",
    "fd_targets",
    "open_fds",
    "python_env",
    "run_in_thread",
    "run_python",
    "tls_server_context",
    "wait_locked",
    "wait_until",
]


# ------------------------------------------------------------------ file descriptors


def can_list_fds() -> bool:
    """Whether this platform lists the process's file descriptors (``/proc/self/fd``)."""
    return os.path.isdir(_FD_DIR)


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir(_FD_DIR))


def fd_targets() -> set[str]:
    """Every open descriptor as ``"<fd>:<target>"`` (``"7:socket:[1234]"``).

    Comparing these sets, not counts, finds a new descriptor even when an unrelated one
    (another test's garbage, say) was closed meanwhile.
    """
    targets = set()
    for fd in os.listdir(_FD_DIR):
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            targets.add(f"{fd}:{os.readlink(f'{_FD_DIR}/{fd}')}")
    return targets


# ------------------------------------------------------------------ waiting


def wait_until(
    predicate: Callable[[], object],
    timeout: float = WAIT,
    *,
    condition: threading.Condition | None = None,
    interval: float = 0.005,
) -> bool:
    """Wait until ``predicate()`` is true; False if ``timeout`` seconds passed first.

    With ``condition``, block on it instead of polling: the predicate is checked with
    the condition held, each time a thread notifies it.  Without, poll every
    ``interval`` seconds.
    """
    if condition is not None:
        with condition:
            return bool(condition.wait_for(predicate, timeout))
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_locked(lock: Any, timeout: float = WAIT) -> bool:
    """Wait until another thread holds ``lock`` (and a moment more, so it has got from
    taking the lock into the blocking call it guards)."""
    if not wait_until(lock.locked, timeout):
        return False
    time.sleep(0.02)
    return True


class ThreadRun:
    """A call running in a daemon thread of its own (see :func:`run_in_thread`)."""

    def __init__(self, fn: Callable[[], Any], name: str | None = None) -> None:
        self._fn = fn
        self._what = name or repr(fn)
        self._value: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the test
            self._error = exc

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def outcome(self, timeout: float = WAIT, message: str | None = None) -> Any:
        """Join the thread (failing the test if it is still running after ``timeout``)
        and return what the call returned, or the exception it raised, as a value."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), message or f"{self._what} did not return"
        return self._value if self._error is None else self._error

    def result(self, timeout: float = WAIT, message: str | None = None) -> Any:
        """Like :meth:`outcome`, but an exception the call raised is raised here."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), message or f"{self._what} did not return"
        if self._error is not None:
            raise self._error
        return self._value


def run_in_thread(fn: Callable[[], Any], name: str | None = None) -> ThreadRun:
    """Start ``fn()`` in a daemon thread (called ``name``, which also names the call in
    the failure when it does not return); ``.outcome()``/``.result()`` join it."""
    return ThreadRun(fn, name)


# ------------------------------------------------------------------ pool callbacks


class Call(NamedTuple):
    """One recorded callback: its short name (``"open"``, ``"message"``, ...), the
    connection's label, the arguments after the connection, and the thread it ran on."""

    name: str
    label: Any
    args: tuple[Any, ...]
    thread: threading.Thread


_ANY = object()  # the count of a callback over every label


class CallbackRecorder:
    """Records pool callbacks, thread-safely, with bounded waits instead of sleeps.

    ``pool.connect(url, label=..., **rec.callbacks())`` records ``open``, ``message``,
    ``error`` and ``close``; name more (``rec.callbacks("ping", "pong", "data",
    "reconnect")``) to record those too.  ``rec.callbacks(on_open=fn)`` records and then
    calls ``fn(conn, *args)`` on the same thread.  Every wait fails the test, showing
    the last calls, if ``timeout`` seconds pass first.
    """

    NAMES = ("open", "message", "error", "close", "ping", "pong", "data", "reconnect")
    DEFAULT = ("open", "message", "error", "close")

    def __init__(self, timeout: float = WAIT) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()  # an RLock: predicates may call the getters
        self._calls: list[Call] = []
        self._counts: Counter[tuple[str, Any]] = Counter()  # keeps waits O(1) per check

    # -- recording

    def record(self, name: str, conn: Any, *args: Any) -> None:
        """Record callback ``name`` of ``conn`` (for callbacks a test writes itself)."""
        call = Call(name, conn.label, args, threading.current_thread())
        with self._cond:
            self._calls.append(call)
            self._counts[name, _ANY] += 1
            with contextlib.suppress(TypeError):  # an unhashable label is only counted above
                self._counts[name, conn.label] += 1
            self._cond.notify_all()

    def callbacks(self, *names: str, **then: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
        """``on_<name>`` keyword arguments for ``Pool.connect`` that record each call.

        ``names`` defaults to :attr:`DEFAULT`; a callback given in ``then``
        (``on_message=fn``) is recorded too, and ``fn`` runs right after the record.
        """
        wanted = list(names or self.DEFAULT)
        for key in then:
            if not key.startswith("on_") or key[3:] not in self.NAMES:
                raise TypeError(f"not a pool callback: {key}")
            if key[3:] not in wanted:
                wanted.append(key[3:])
        unknown = [n for n in wanted if n not in self.NAMES]
        if unknown:
            raise TypeError(f"not pool callbacks: {unknown}")
        return {f"on_{name}": self._recording(name, then.get(f"on_{name}")) for name in wanted}

    def _recording(self, name: str, then: Callable[..., Any] | None) -> Callable[..., Any]:
        def callback(conn: Any, *args: Any) -> Any:
            self.record(name, conn, *args)
            return None if then is None else then(conn, *args)

        callback.__name__ = f"on_{name}"
        return callback

    # -- reading

    @property
    def calls(self) -> list[Call]:
        """A copy of every call so far, in order."""
        with self._cond:
            return list(self._calls)

    def of(self, name: str | None = None, label: Any = None) -> list[Call]:
        """The calls named ``name`` (any name: None) of connection ``label`` (any: None)."""
        with self._cond:
            return [
                c
                for c in self._calls
                if (name is None or c.name == name) and (label is None or c.label == label)
            ]

    def names(self, label: Any = None) -> list[str]:
        return [c.name for c in self.of(None, label)]

    def count(self, name: str, label: Any = None) -> int:
        with self._cond:
            try:
                return self._counts[name, _ANY if label is None else label]
            except TypeError:  # an unhashable label
                return len(self.of(name, label))

    def messages(self, label: Any = None) -> list[Any]:
        """The messages received, in order (of one connection, or of all)."""
        return [c.args[0] for c in self.of("message", label)]

    def errors(self, label: Any = None) -> list[BaseException]:
        return [c.args[0] for c in self.of("error", label)]

    def labels(self) -> set[Any]:
        with self._cond:
            return {c.label for c in self._calls}

    def threads(self, name: str | None = None, label: Any = None) -> set[threading.Thread]:
        """The threads the matching callbacks ran on."""
        return {c.thread for c in self.of(name, label)}

    # -- waiting

    def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` (re-checked after every call) is true."""
        limit = self.timeout if timeout is None else timeout
        if not wait_until(predicate, limit, condition=self._cond):
            raise AssertionError(f"timed out after {limit}s; last calls: {self.calls[-10:]}")

    def wait_open(self, n: int = 1, *, label: Any = None, timeout: float | None = None) -> None:
        """Wait for ``n`` on_open calls (of ``label``, or in all)."""
        self.wait_for(lambda: self.count("open", label) >= n, timeout)

    def wait_messages(self, n: int, *, label: Any = None, timeout: float | None = None) -> None:
        """Wait for ``n`` messages (of ``label``, or in all)."""
        self.wait_for(lambda: self.count("message", label) >= n, timeout)

    def wait_closed(self, n: int = 1, *, label: Any = None, timeout: float | None = None) -> None:
        """Wait for ``n`` on_close calls (of ``label``, or in all)."""
        self.wait_for(lambda: self.count("close", label) >= n, timeout)


# ------------------------------------------------------------------ subprocesses


def python_env(
    env: dict[str, str] | None = None, *, pythonpath: Iterable[Path | str] = (ROOT, TESTS)
) -> dict[str, str]:
    """``os.environ`` plus ``env``, with ``pythonpath`` ahead of any PYTHONPATH (so the
    checkout's wspool is imported, installed or not) and unbuffered output."""
    merged = dict(os.environ)
    merged.update(env or {})
    paths = [str(p) for p in pythonpath]
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, merged.get("PYTHONPATH")]))
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


def run_python(
    code: str | Path,
    *args: str,
    timeout: float,
    env: dict[str, str] | None = None,
    pythonpath: Sequence[Path | str] = (ROOT, TESTS),
) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (a snippet, dedented; or the script at a :class:`Path`) with
    ``args`` in a fresh interpreter, from the checkout's root, and return the finished
    process with its output as text.

    ``env`` adds to (or overrides) this process's environment.  By default the snippet
    can ``import wspool`` from the checkout and ``import wsserver`` from tests/; pass
    ``pythonpath=(ROOT,)`` to leave tests/ out (as a user running a script would).
    Exceeding ``timeout`` raises :class:`subprocess.TimeoutExpired`.
    """
    if isinstance(code, Path):
        command = [sys.executable, str(code), *args]
    else:
        command = [sys.executable, "-c", textwrap.dedent(code), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=python_env(env, pythonpath=pythonpath),
        check=False,
    )


# ------------------------------------------------------------------ TLS


def tls_server_context(ca: Any, *names: str) -> tuple[ssl.SSLContext, list[str | None]]:
    """A server context with a certificate from trustme ``ca`` for ``names``, and the
    list that collects the SNI name of every TLS handshake (None when none was sent)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    seen: list[str | None] = []

    def record(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx.sni_callback = record
    return ctx, seen
