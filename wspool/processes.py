"""wspool.ProcessPool: connections sharded over child processes, one Pool in each.

The parent checks options, assigns each connection to a process slot by rendezvous
hashing, and supervises: one thread (the supervisor) starts every child, is the only
reader of the children's pipes and the only one that reaps them, restarts a child
that died and re-creates its connections there.  A child runs a :class:`wspool.Pool`
and a command loop in its main thread; it exits when the parent goes away (pipe end
of file, ``PR_SET_PDEATHSIG`` on Linux, or a change of parent pid).  docs/scaleout.md
describes the guarantees.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait as wait_any
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Unpack

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketTimeoutException,
)
from wspool.opening import Opening
from wspool.options import PoolKeywords, pool_options
from wspool.pool import Connection, Pool
from wspool.pool.pool import DELIVERY_MODES
from wspool.protocol.frames import encode_close_payload
from wspool.transport.url import parse_url

__all__ = ["ProcessPool", "RemoteConnection", "rendezvous"]

logger = logging.getLogger("wspool")

#: A key function: ``key(url, label)`` -> the text or bytes that is hashed.
KeyFunction = Callable[[str, Any], "str | bytes"]

_START_METHODS = ("spawn", "forkserver")


def rendezvous(key: str | bytes, slots: int) -> int:
    """The slot (``0 .. slots - 1``) that ``key`` belongs to, by rendezvous hashing.

    Each slot scores the key with BLAKE2b (the same on every machine and run, unlike
    ``hash()``); the highest score wins.  Going from ``n`` to ``n + 1`` slots moves
    only the keys the new slot wins, about ``1 / (n + 1)`` of them.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, not {slots!r}")
    data = key.encode() if isinstance(key, str) else bytes(key)
    best, best_score = 0, b""
    for index in range(slots):
        score = hashlib.blake2b(data, digest_size=16, salt=index.to_bytes(16, "big")).digest()
        if score > best_score:
            best, best_score = index, score
    return best


class _ChildLost(Exception):
    """The child process died (or is being restarted) before it answered."""


class _RemoteError(Exception):
    """The child answered a command with an error (its text)."""


# ----------------------------------------------------------------------- child side


@dataclass(frozen=True)
class _ChildConfig:
    index: int
    name: str
    workers: int
    initializer: Callable[..., object] | None
    initargs: tuple[Any, ...]
    deliver: str = "workers"


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent thread ends."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # only in children, on Linux: keeps `import wspool` lean

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
            logger.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) is not available", exc_info=True)


def _child_main(conn: Pipe, config: _ChildConfig) -> None:
    """A child process: one Pool, commands from the parent's pipe until it closes."""
    _die_with_parent()
    parent = os.getppid()
    stop = threading.Event()
    close_timeout = [2.0]
    # Ctrl-C reaches the whole process group: the parent handles it and closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The handler only sets a flag: it may interrupt the main thread inside a lock
    # (Event.set takes one), so it must take none itself; the loop polls the flag.
    terminated = [False]

    def on_sigterm(signum: int, frame: object) -> None:
        terminated[0] = True

    signal.signal(signal.SIGTERM, on_sigterm)

    def watchdog() -> None:
        # The portable half of "exit with the parent": a new parent pid means ours died
        # (the pipe's end of file, below, usually says so first).
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def sender() -> None:
        # Every message to the parent goes through this thread, so neither the command
        # loop nor the pool's dispatcher (done callbacks) ever blocks on the pipe.
        while (message := outbox.get()) is not None:
            try:
                conn.send(message)
            except (OSError, ValueError):
                stop.set()
                return

    threading.Thread(target=watchdog, name=f"{config.name}-watchdog", daemon=True).start()
    send_thread = threading.Thread(target=sender, name=f"{config.name}-sender", daemon=True)
    send_thread.start()
    if config.initializer is not None:
        config.initializer(*config.initargs)

    pool = Pool(
        workers=config.workers, name=f"{config.name}-p{config.index}", deliver=config.deliver
    )
    connections: dict[int, Connection] = {}
    lock = threading.Lock()

    def ended(cid: int) -> Callable[[Connection], None]:
        def done(connection: Connection) -> None:
            with lock:
                if connections.get(cid) is connection:
                    del connections[cid]
            outbox.put(("ended", cid))

        return done

    def create(cid: int, url: str, label: object, blob: bytes) -> None:
        with lock:
            if cid in connections:  # a replay crossed the original command
                return
        options = pickle.loads(blob)
        connection = pool.connect(url, label=label, **options)
        with lock:
            connections[cid] = connection
        connection.add_done_callback(ended(cid))

    def handle(kind: str, args: tuple[Any, ...]) -> Any:
        if kind == "connect":
            create(*args)
            return None
        if kind == "connect_many":
            failures = []
            for item in args[0]:
                try:
                    create(*item)
                except Exception as exc:
                    where = parse_url(item[1]).redacted  # never log credentials
                    logger.error(
                        "re-creating %s in process %d failed: %s", where, config.index, exc
                    )
                    failures.append(item[0])
                    outbox.put(("ended", item[0]))
            return failures
        if kind == "close":
            with lock:
                connection = connections.get(args[0])
            if connection is not None:
                connection.close(*args[1:])
            return connection is not None
        if kind == "stats":
            return pool.stats()
        if kind == "conn_stats":
            with lock:
                connection = connections.get(args[0])
            return None if connection is None else connection.stats_dict()
        raise ValueError(f"unknown command {kind!r}")

    outbox.put(("ready", os.getpid()))
    try:
        while not stop.is_set() and not terminated[0]:
            try:
                if not conn.poll(0.25):
                    continue
                kind, request, *args = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if kind == "shutdown":
                close_timeout[0] = args[0]
                break
            try:
                outbox.put(("reply", request, True, handle(kind, tuple(args))))
            except Exception as exc:
                outbox.put(("reply", request, False, f"{type(exc).__name__}: {exc}"))
    finally:
        outbox.put(("bye",))
        # The pool's close runs aside, bounded: a callback stuck for ever must not keep
        # this process alive (no orphans).
        closer = threading.Thread(target=pool.close, args=(close_timeout[0],), daemon=True)
        closer.start()
        closer.join(close_timeout[0] + 2.0)
        outbox.put(None)
        send_thread.join(1.0)
        logging.shutdown()
        os._exit(0)


# ---------------------------------------------------------------------- parent side


@dataclass(eq=False)
class _Spec:
    """What re-creates one connection in a (new) child."""

    cid: int
    url: str
    label: object
    blob: bytes
    handle: RemoteConnection


@dataclass(eq=False)
class _Slot:
    index: int
    process: BaseProcess | None = None
    reader: Pipe | None = None  # read by the supervisor only
    conn: Pipe | None = None  # written under send_lock, while ready is set
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)
    pending: dict[int, Future[Any]] = field(default_factory=dict)
    specs: dict[int, _Spec] = field(default_factory=dict)
    # Closed by the user, waiting for the child to report the end.
    closing: dict[int, RemoteConnection] = field(default_factory=dict)
    # The child said it is exiting: the ends it reports next are its own shutdown's,
    # not connections ending for good.
    bye: bool = False
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff: float = 0.0
    restart_due: float | None = None


class RemoteConnection:
    """The parent's handle on a connection that lives in a child process.

    ``url`` is the URL without credentials, ``label`` the label given to
    :meth:`ProcessPool.connect`, ``process`` the index of the process slot that holds
    it (it stays the same across restarts of that process).  Sending happens in the
    child, from the callbacks.
    """

    def __init__(self, owner: ProcessPool, cid: int, url: str, label: object, process: int) -> None:
        self._owner = owner
        self._cid = cid
        self.url = url
        self.label = label
        self.process = process
        self._ended = threading.Event()

    @property
    def closed(self) -> bool:
        """``True`` once the connection has ended for good."""
        return self._ended.is_set()

    def close(self, status: int = 1000, reason: str = "") -> None:
        """Close with a closing handshake (in the child); returns once the child has
        the command.  It is not re-created by later restarts."""
        encode_close_payload(status, reason)  # invalid arguments raise here, in the caller
        self._owner._close_connection(self, status, reason)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection has ended for good in its child."""
        return self._ended.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """The connection's ``stats_dict()``, fetched from its child, plus ``process``.

        Raises :class:`WebSocketConnectionClosedException` once it has ended."""
        return self._owner._connection_stats(self)

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label is not None else ""
        state = "closed" if self.closed else f"process {self.process}"
        return f"<wspool.RemoteConnection {self.url}{label} {state}>"


class ProcessPool:
    """Spreads connections over ``processes`` child processes, one :class:`Pool` each.

    :meth:`connect` takes the options of :meth:`Pool.connect`, checked here in the
    caller's thread; callbacks (and any other callable option) must be importable
    top-level functions, since they are pickled by reference and run in the child that
    owns the connection.  A connection's process is chosen by rendezvous hashing of
    its URL, or of ``key(url, label)``.  A child that dies is restarted and its
    connections are opened again there (a new ``on_open``; the dead child's
    connections get no ``on_close``).  ``workers`` is each child's worker count and
    ``deliver`` where its callbacks run (``"workers"``, or ``"dispatcher"``: see :class:`Pool`);
    ``initializer(*initargs)`` runs first in every child (logging setup, say);
    ``timeout`` bounds each wait for a child's answer (or for a restart).
    """

    def __init__(
        self,
        processes: int = 2,
        *,
        workers: int = 8,
        start_method: str = "spawn",
        key: KeyFunction | None = None,
        name: str = "wspool",
        initializer: Callable[..., object] | None = None,
        initargs: Sequence[Any] = (),
        timeout: float = 10.0,
        deliver: str = "workers",
    ) -> None:
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
            raise WebSocketConfigurationException(f"processes must be >= 1, not {processes!r}")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise WebSocketConfigurationException(f"workers must be >= 1, not {workers!r}")
        if deliver not in DELIVERY_MODES:
            raise WebSocketConfigurationException(
                f"deliver must be 'workers' or 'dispatcher' (see Pool), not {deliver!r}"
            )
        if start_method not in _START_METHODS:
            raise WebSocketConfigurationException(
                f"start_method={start_method!r} is not supported: use 'spawn' or "
                "'forkserver' (a forked child would inherit the parent's threads)"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise WebSocketConfigurationException(f"timeout must be > 0 seconds, not {timeout!r}")
        if key is not None and not callable(key):
            raise WebSocketConfigurationException(f"key must be callable, not {key!r}")
        _check_picklable("initializer", initializer)
        _check_picklable("initargs", tuple(initargs))
        config = _ChildConfig(0, name, workers, initializer, tuple(initargs), deliver)
        # Any: typeshed's BaseContext lacks Process (the concrete contexts have it).
        self._context: Any = multiprocessing.get_context(start_method)
        self._config = config
        self._key = key
        self._timeout = timeout
        self._slots = [_Slot(index) for index in range(processes)]
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._closing = False
        self._closed = False
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._started = threading.Event()
        # The supervisor starts every child: on Linux, PR_SET_PDEATHSIG fires when the
        # *thread* that started a child ends, so that thread must live as long as the
        # pool (a caller's short-lived thread would take the children with it).
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"{name}-supervisor", daemon=True
        )
        self._supervisor.start()
        self._started.wait()
        _live.add(self)
        _register_exit_hook()

    @property
    def processes(self) -> int:
        """The number of process slots."""
        return len(self._slots)

    @property
    def pids(self) -> list[int | None]:
        """The pid of each slot's current child (``None`` while it is restarted)."""
        return [slot.pid if slot.process is not None else None for slot in self._slots]

    @property
    def connections(self) -> list[RemoteConnection]:
        """The connections not yet ended for good."""
        with self._lock:
            return [spec.handle for slot in self._slots for spec in slot.specs.values()]

    def process_for(self, url: str, label: object = None) -> int:
        """The slot :meth:`connect` gives a connection to ``url`` with ``label``."""
        key = url if self._key is None else self._key(url, label)
        return rendezvous(key, len(self._slots))

    def connect(
        self, url: str, *, label: object = None, **options: Unpack[PoolKeywords]
    ) -> RemoteConnection:
        """Check the options, hand the connection to its child and return its handle.

        The same options and checks as :meth:`Pool.connect`; besides, every option
        value and the label must pickle (callbacks by reference: top-level functions
        of an importable module), else :class:`WebSocketConfigurationException` names
        it.  Blocks until the child has created the connection (while a child is
        restarted, up to ``timeout`` for it to come back).
        """
        if self._closing:
            raise WebSocketConfigurationException("this process pool is closed: create a new one")
        checked = pool_options(url, options)
        Opening(checked.connect).check_request()
        for name, value in options.items():
            _check_picklable(name, value)
        _check_picklable("label", label)
        blob = pickle.dumps(dict(options))
        index = self.process_for(url, label)
        slot = self._slots[index]
        cid = next(self._ids)
        handle = RemoteConnection(self, cid, checked.connect.url.redacted, label, index)
        with self._lock:
            slot.specs[cid] = _Spec(cid, url, label, blob, handle)
        try:
            self._request(slot, "connect", cid, url, label, blob)
        except _ChildLost:
            pass  # its restart re-creates it from the spec
        except _RemoteError as exc:
            self._forget(slot, cid)
            raise WebSocketConfigurationException(
                f"process {index} could not create the connection to {handle.url}: {exc}"
            ) from None
        except WebSocketTimeoutException:
            logger.warning("process %d is slow to take %s; it stays queued", index, handle.url)
        return handle

    def stats(self) -> dict[str, Any]:
        """The children's :meth:`Pool.stats` merged: totals summed, ``per_connection``
        concatenated (each entry with its ``process``), and ``processes``: per slot its
        ``pid``, ``alive`` and ``restarts``."""
        totals: dict[str, Any] = {}
        per: list[dict[str, Any]] = []
        processes = []
        for slot in self._slots:
            alive = False
            try:
                child = self._request(slot, "stats", wait=False)
                alive = True
            except (_ChildLost, _RemoteError, WebSocketException):
                child = None
            processes.append(
                {"process": slot.index, "pid": slot.pid, "alive": alive, "restarts": slot.restarts}
            )
            if child is None:
                continue
            for key, value in child.items():
                if key == "per_connection":
                    for entry in value:
                        entry["process"] = slot.index
                        per.append(entry)
                elif isinstance(value, int | float):
                    totals[key] = totals.get(key, 0) + value
        totals["per_connection"] = per
        totals["processes"] = processes
        return totals

    def run_forever(self) -> bool:
        """Block until every connection has ended for good; Ctrl-C closes them all
        (the children ignore SIGINT: the parent closes them).

        Returns ``True`` when interrupted by Ctrl-C, ``False`` when the connections
        ended on their own.
        """
        try:
            with self._lock:
                while any(slot.specs for slot in self._slots):
                    self._lock.wait(0.2)  # short waits keep Ctrl-C responsive
        except KeyboardInterrupt:
            logger.info("interrupted: closing %d processes", len(self._slots))
            self.close()
            return True
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection with a closing handshake (each child closes its
        Pool), wait for the children to exit and stop the supervisor.  A child still
        running ``timeout + 3`` seconds later is terminated, then killed."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        for slot in self._slots:
            slot.ready.clear()
            # Bounded: a sender stuck on the pipe of a child that stopped reading must
            # not hang close(); that child is terminated below instead.
            if not slot.send_lock.acquire(timeout=1.0):
                continue
            try:
                if slot.conn is not None:
                    with contextlib.suppress(OSError, ValueError):
                        slot.conn.send(("shutdown", 0, timeout))
            finally:
                slot.send_lock.release()
        # The supervisor reaps the children (one reaper: two waitpid callers race).
        deadline = time.monotonic() + timeout + 3.0
        if not self._wait_children(deadline):
            for slot in self._slots:
                if slot.process is not None:
                    logger.warning("process %d did not exit: terminating it", slot.index)
                    with contextlib.suppress(Exception):
                        slot.process.terminate()
            if not self._wait_children(time.monotonic() + 2.0):
                for slot in self._slots:
                    if slot.process is not None:
                        with contextlib.suppress(Exception):
                            slot.process.kill()
                self._wait_children(time.monotonic() + 5.0)
        self._stopping = True
        self._wake()
        self._supervisor.join(5.0)
        with self._lock:
            for slot in self._slots:
                for spec in slot.specs.values():
                    spec.handle._ended.set()
                slot.specs.clear()
            self._closed = True
            self._lock.notify_all()
        self._wake_r.close()
        self._wake_w.close()
        _live.discard(self)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        count = len(self.connections)
        return f"<wspool.ProcessPool {len(self._slots)} processes, {count} connections>"

    # ------------------------------------------------------------ requests

    def _request(self, slot: _Slot, kind: str, *args: Any, wait: bool = True) -> Any:
        """Send one command to the slot's child and wait for its reply."""
        deadline = time.monotonic() + self._timeout
        while True:
            if self._closing:
                raise WebSocketConfigurationException("this process pool is closed")
            if not slot.ready.is_set():
                if not wait:
                    raise _ChildLost()
                if not slot.ready.wait(max(0.0, deadline - time.monotonic())):
                    raise WebSocketTimeoutException(
                        f"process {slot.index} did not come back within {self._timeout}s"
                    )
            with slot.send_lock:
                if not slot.ready.is_set() or slot.conn is None:
                    continue  # lost meanwhile: wait for the restart
                request = next(self._ids)
                future: Future[Any] = Future()
                # Registered before sending: the reply may come before send() returns.
                slot.pending[request] = future
                try:
                    slot.conn.send((kind, request, *args))
                except (OSError, ValueError):
                    slot.pending.pop(request, None)
                    raise _ChildLost() from None
            try:
                return future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                slot.pending.pop(request, None)
                raise WebSocketTimeoutException(
                    f"process {slot.index} did not answer {kind!r} within {self._timeout}s"
                ) from None

    def _forget(self, slot: _Slot, cid: int) -> None:
        with self._lock:
            spec = slot.specs.pop(cid, None)
            handle = spec.handle if spec is not None else slot.closing.pop(cid, None)
            if handle is not None:
                handle._ended.set()
            self._lock.notify_all()

    def _close_connection(self, handle: RemoteConnection, status: int, reason: str) -> None:
        slot = self._slots[handle.process]
        with self._lock:
            if slot.specs.pop(handle._cid, None) is None:
                return
            # No longer replayed; it ends for good when the child reports it.
            slot.closing[handle._cid] = handle
            self._lock.notify_all()
        try:
            found = self._request(slot, "close", handle._cid, status, reason, wait=False)
        except (_ChildLost, _RemoteError, WebSocketException):
            found = False  # the child is gone, and the connection with it
        if not found:
            self._forget(slot, handle._cid)

    def _connection_stats(self, handle: RemoteConnection) -> dict[str, Any]:
        slot = self._slots[handle.process]
        if handle.closed:
            raise WebSocketConnectionClosedException(url=handle.url)
        try:
            data = self._request(slot, "conn_stats", handle._cid)
        except (_ChildLost, _RemoteError):
            data = None
        if data is None:
            raise WebSocketConnectionClosedException(
                f"the connection is not in process {slot.index} (ended, or being re-created)",
                url=handle.url,
            )
        data["process"] = slot.index
        return dict(data)

    # ----------------------------------------------------------- supervisor

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _wait_children(self, deadline: float) -> bool:
        with self._lock:
            while any(slot.process is not None for slot in self._slots):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.2))
        return True

    def _supervise(self) -> None:
        try:
            for slot in self._slots:
                self._start(slot)
        finally:
            self._started.set()
        while not self._stopping:
            try:
                self._supervise_once()
            except Exception:
                # Never let the supervisor die: the children's lifeline is this thread.
                logger.exception("the process pool's supervisor failed; going on")
                time.sleep(0.1)

    def _supervise_once(self) -> None:
        waitables: list[Any] = [self._wake_r]
        due: list[float] = []
        for slot in self._slots:
            if slot.reader is not None:
                waitables.append(slot.reader)
            if slot.process is not None:
                waitables.append(slot.process.sentinel)
            if slot.restart_due is not None:
                due.append(slot.restart_due)
        timeout = None if not due else max(0.0, min(due) - time.monotonic())
        ready = wait_any(waitables, timeout)
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        for slot in self._slots:
            if slot.reader is not None and slot.reader in ready:
                self._read(slot)
        for slot in self._slots:
            if slot.process is not None and slot.process.sentinel in ready:
                self._lost(slot)
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_due is not None and now >= slot.restart_due:
                slot.restart_due = None
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        """Start the slot's child (supervisor thread only) and re-create its connections."""
        parent_end, child_end = self._context.Pipe()
        config = _ChildConfig(
            slot.index,
            self._config.name,
            self._config.workers,
            self._config.initializer,
            self._config.initargs,
            self._config.deliver,
        )
        process = self._context.Process(
            target=_child_main,
            args=(child_end, config),
            name=f"{self._config.name}-process-{slot.index}",
        )
        with self._lock:
            # Under the lock: close() either sees this child or none is started.
            if self._closing:
                parent_end.close()
                child_end.close()
                return
            try:
                process.start()
            except Exception:
                logger.exception("starting process %d failed; retrying", slot.index)
                parent_end.close()
                child_end.close()
                slot.restart_due = time.monotonic() + 1.0
                return
            child_end.close()  # ours: its end of file must mean the child is gone
            slot.process, slot.reader, slot.pid = process, parent_end, process.pid
            slot.started_at = time.monotonic()
            slot.bye = False
            items = [(s.cid, s.url, s.label, s.blob) for s in slot.specs.values()]
        # Commands queue in the pipe while the child starts.  A re-created slot stays
        # not ready until its connect_many is sent, so later commands come after it.
        slot.send_lock.acquire()
        slot.conn = parent_end
        if not items:
            slot.ready.set()
            slot.send_lock.release()
            return
        # A big connect_many may fill the pipe before the child reads it: send it from a
        # thread so that the supervisor keeps reading every child.  The thread releases
        # the lock taken here (a plain Lock may be released by another thread).
        threading.Thread(
            target=self._replay,
            args=(slot, parent_end, items),
            daemon=True,
            name=f"{self._config.name}-replay-{slot.index}",
        ).start()

    def _replay(self, slot: _Slot, conn: Pipe, items: list[tuple[int, str, object, bytes]]) -> None:
        try:
            request = next(self._ids)
            future: Future[Any] = Future()
            slot.pending[request] = future
            future.add_done_callback(lambda f: self._replayed(slot, f))
            with contextlib.suppress(OSError, ValueError):
                conn.send(("connect_many", request, items))
            with self._lock:
                gone = [item[0] for item in items if item[0] not in slot.specs]
            # Closed while the child restarted: created again by the replay, closed now.
            for cid in gone:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("close", 0, cid, 1000, ""))
        finally:
            slot.ready.set()
            slot.send_lock.release()

    def _replayed(self, slot: _Slot, future: Future[Any]) -> None:
        if future.exception() is None:
            logger.info("process %d: %d connections re-created", slot.index, len(slot.specs))

    def _read(self, slot: _Slot) -> None:
        reader = slot.reader
        assert reader is not None
        try:
            while reader.poll(0):
                self._message(slot, reader.recv())
        except (EOFError, OSError):
            slot.reader = None  # the child is gone; its sentinel says so too

    def _message(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "reply":
            _, request, ok, value = message
            future = slot.pending.pop(request, None)
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(_RemoteError(value))
        elif kind == "ended":
            if not slot.bye:
                self._forget(slot, message[1])
        elif kind == "bye":
            slot.bye = True
        elif kind == "ready":
            logger.debug("process %d (pid %d) is up", slot.index, message[1])

    def _lost(self, slot: _Slot) -> None:
        """The slot's child exited: fail its pending commands, schedule its restart."""
        if slot.reader is not None:
            self._read(slot)  # replies it sent before it died
        process = slot.process
        assert process is not None
        process.join(0)
        with slot.send_lock:
            slot.ready.clear()
            if slot.conn is not None:
                slot.conn.close()
            slot.conn = slot.reader = None
        for request in list(slot.pending):
            future = slot.pending.pop(request, None)
            if future is not None:
                future.set_exception(_ChildLost())
        with self._lock:
            slot.process = None
            for handle in slot.closing.values():
                handle._ended.set()  # closed by the user, and gone with the child
            slot.closing.clear()
            self._lock.notify_all()
            if self._closing:
                return
            lived = time.monotonic() - slot.started_at
            # A child that keeps dying young is restarted less and less often.
            slot.backoff = 0.0 if lived > 10.0 else min(5.0, max(0.1, slot.backoff * 2))
            slot.restart_due = time.monotonic() + slot.backoff
            slot.restarts += 1
            count = len(slot.specs)
        logger.warning(
            "process %d (pid %s) exited with %s; restarting it with its %d connections",
            slot.index,
            slot.pid,
            process.exitcode,
            count,
        )


def _check_picklable(name: str, value: object) -> None:
    try:
        pickle.dumps(value)
    except Exception as exc:
        # A callable is shown (its name is the point); other values by type only, since
        # a repr could carry a credential (an sslopt password, say).
        shown = repr(value) if callable(value) else f"<{type(value).__name__}>"
        raise WebSocketConfigurationException(
            f"{name}={shown} cannot be sent to a child process ({exc}): callbacks must "
            "be top-level functions of an importable module (pickled by reference), "
            "other values must pickle"
        ) from None


_live: weakref.WeakSet[ProcessPool] = weakref.WeakSet()
_hook_registered = False


def _close_all() -> None:
    for pool in list(_live):
        try:
            pool.close(timeout=2.0)
        except Exception:
            logger.exception("closing %r at exit failed", pool)


def _register_exit_hook() -> None:
    """Close live process pools at exit; registered after multiprocessing's own hook
    (which joins children), so it runs first."""
    global _hook_registered
    if not _hook_registered:
        _hook_registered = True
        atexit.register(_close_all)
