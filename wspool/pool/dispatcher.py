"""The dispatcher: one thread that owns every socket, every timer and a command queue.

docs/architecture.md invariants 1, 2, 5 and 6 live here.  The loop turn is::

    select(timeout)  -> run ready reader/writer callbacks (urgent ones first)
                     -> run the tasks those queued with run_after_io (inline delivery)
                     -> run due timers
                     -> run the commands queued before this phase began

``timeout`` is 0 while commands or after-I/O tasks are pending, else the time to the
earliest live timer (``None``, i.e. block, when there is none).

Turn budget: a burst of openings (a thousand ``connect()`` calls at once) must not
make one turn last tens of milliseconds while open connections' messages wait for the
next ``select``.  A file marked *deferrable* (:meth:`Dispatcher.set_deferrable`: the
pool marks sockets that are still connecting or handshaking) has its callbacks run
after every urgent one of the turn, and only while the turn's deferrable work and
commands stay within :data:`TURN_BUDGET` (but at least a quarter of the ready
deferrable ones run: see ``_DEFERRABLE_FLOOR_SHIFT``); what is left waits for the next turn (the
selector is level-triggered, so a skipped socket is reported again; skipped commands
stay queued in order), which then polls with a zero timeout.

Other threads talk to the loop only through :meth:`Dispatcher.call_soon` (and
:meth:`Dispatcher.submit_and_wait` built on it); every other method is for the
dispatcher thread itself.  An exception from any callback, timer
or command is logged on the ``wspool`` logger with its traceback; the loop continues.

Interpreter exit: the thread is *not* a daemon, so queued work (for the pool: close
frames) runs to completion instead of being cut off mid-write.  A non-daemon thread
would keep the interpreter waiting forever, so each live dispatcher is stopped by a hook
registered with ``threading._register_atexit``: those hooks run when the main thread
ends, *before* the interpreter joins non-daemon threads (plain :mod:`atexit` hooks run
after that join, too late).  The hook gives each dispatcher :data:`EXIT_STOP_TIMEOUT`
seconds.  Where that private hook is missing, the thread falls back to being a daemon
(with a plain :mod:`atexit` stop for the work that can still run).
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import logging
import os
import selectors
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from time import monotonic
from typing import Any, Protocol, TypeVar

from wspool.exceptions import DispatcherStoppedError, WebSocketTimeoutException

__all__ = ["EXIT_STOP_TIMEOUT", "TURN_BUDGET", "Dispatcher", "DispatcherStats", "TimerHandle"]

logger = logging.getLogger("wspool")

T = TypeVar("T")

#: Seconds each live dispatcher gets to finish its queued work at interpreter exit.
EXIT_STOP_TIMEOUT = 5.0

# Compact the timer heap when more than this many cancelled entries sit in it *and*
# they outnumber the live ones; below it, lazy deletion on pop is cheaper.
_COMPACT_MIN = 64
#: Seconds of deferrable I/O callbacks and of commands one loop turn may spend before
#: leaving the rest to the next turn (at least one of each runs per turn).
TURN_BUDGET = 0.001
#: A turn runs at least a quarter of its ready deferrable callbacks whatever the
#: budget: a skipped socket is reported again by every select until it runs, and at
#: thousands of opening sockets that re-reporting (the selector's per-event Python
#: work) would cost more than the openings themselves (idle-8000 took 7 s, not 2.8 s).
_DEFERRABLE_FLOOR_SHIFT = 2

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FileLike = int | _HasFileno


def _fd_of(fileobj: FileLike) -> int:
    fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd}: the socket is probably closed")
    return fd


@dataclass(slots=True)
class DispatcherStats:
    """Counters for tests and monitoring; written by the loop (``wakeups`` by senders).

    ``turns``: loop turns run.  ``wakeups``: wake-up bytes written by other threads
    (at most one per turn, however many commands they queue).  ``errors``: callbacks,
    timers or commands that raised (each was logged).  ``deferred``: ready callbacks of
    deferrable files left to a later turn by the turn budget.
    """

    turns: int = 0
    wakeups: int = 0
    errors: int = 0
    deferred: int = 0


class TimerHandle:
    """A scheduled call; :meth:`cancel` it to stop it from running.

    ``when`` is its deadline on the :func:`time.monotonic` clock.
    """

    __slots__ = ("_args", "_cancelled", "_dispatcher", "_fn", "when")

    def __init__(
        self, dispatcher: Dispatcher, when: float, fn: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        self._dispatcher = dispatcher
        self.when = when
        self._fn: Callable[..., object] | None = fn
        self._args = args
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop the call from running; a no-op once it ran or was cancelled.

        Thread-safe: from another thread the heap bookkeeping is posted to the loop,
        and the entry is skipped when it comes up either way.
        """
        if self._cancelled or self._fn is None:
            return
        self._cancelled = True
        self._fn = None  # drop references early: the entry may sit in the heap a while
        self._args = ()
        dispatcher = self._dispatcher
        if dispatcher.in_dispatcher_thread():
            dispatcher._timer_cancelled()
        else:
            # After stop() the heap is gone with the loop: nothing to compact.
            with contextlib.suppress(DispatcherStoppedError):
                dispatcher.call_soon(dispatcher._timer_cancelled)

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "done" if self._fn is None else "pending"
        return f"<TimerHandle when={self.when:.3f} {state}>"


class _Key:
    """The data of one selector key: the fd's reader and writer callbacks."""

    __slots__ = ("deferrable", "reader", "writer")

    def __init__(self) -> None:
        self.reader: Callable[[], object] | None = None
        self.writer: Callable[[], object] | None = None
        self.deferrable = False


class _State:
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Dispatcher:
    """One selector loop on one thread: socket readiness, timers and queued commands.

    The thread starts on :meth:`start` or on the first :meth:`call_soon`;
    :meth:`stop` ends it for good (a stopped dispatcher cannot be restarted).
    """

    def __init__(
        self,
        *,
        name: str = "wspool-dispatcher",
        selector_factory: Callable[[], selectors.BaseSelector] = selectors.DefaultSelector,
    ) -> None:
        self.name = name
        self.stats = DispatcherStats()
        self._selector_factory = selector_factory
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._state = _State.NEW
        # guards _state transitions, _wake_pending and the "no command after the final
        # drain" rule: call_soon appends under it, the loop closes the queue under it
        self._lock = threading.Lock()
        self._commands: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._read_buffer: memoryview | None = None
        self._wake_pending = False
        # Set by a turn that left deferrable callbacks for later: poll, don't block.
        self._again = False
        # run_after_io tasks (loop thread only, so no lock): this turn's, run after its
        # I/O callbacks, before timers and commands; not subject to the turn budget.
        self._after_io: deque[Callable[[], object]] = deque()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = 0
        self._cancelled_timers = 0  # cancelled entries still in the heap
        self._stopped = threading.Event()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread; a no-op if it runs already.

        Raises :class:`DispatcherStoppedError` after :meth:`stop`.
        """
        with self._lock:
            if self._state == _State.RUNNING:
                return
            if self._state != _State.NEW:
                raise DispatcherStoppedError(
                    f"dispatcher {self.name!r} was stopped and cannot be restarted; "
                    "create a new one"
                )
            self._selector = self._selector_factory()
            try:
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                key = _Key()
                key.reader = self._read_wakeup
                self._selector.register(self._wake_r.fileno(), _READ, key)
            except BaseException:
                self._close_resources()
                raise
            daemon = not _register_exit_hook(self)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=daemon)
            self._state = _State.RUNNING
            try:
                self._thread.start()
            except BaseException:
                self._state = _State.STOPPED
                self._thread = None
                self._close_resources()
                raise
            self._ident = self._thread.ident

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop: run the commands already queued, close the selector, join.

        Thread-safe and idempotent.  Commands queued later raise
        :class:`DispatcherStoppedError`.  Timers not yet due are dropped, and sockets
        registered with the loop are left open (their owners close them).  Called from
        the dispatcher thread itself, it only asks the loop to end after this turn.
        Raises :class:`~wspool.exceptions.WebSocketTimeoutException` if the thread is
        still busy (a callback is blocking it) after ``timeout`` seconds.
        """
        with self._lock:
            if self._state == _State.NEW:
                self._state = _State.STOPPED
                self._stopped.set()
                return
            if self._state == _State.RUNNING:
                self._state = _State.STOPPING
                self._send_wakeup_locked()
        if self.in_dispatcher_thread():
            return
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise WebSocketTimeoutException(
                f"dispatcher {self.name!r} did not stop within {timeout} s: a callback, "
                "timer or command on its thread is blocking; keep dispatcher work "
                "non-blocking (run blocking work on another thread)"
            )

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop` is called."""
        return self._state == _State.RUNNING

    def in_dispatcher_thread(self) -> bool:
        """True when called on this dispatcher's loop thread."""
        return threading.get_ident() == self._ident

    # -- commands (thread-safe) ---------------------------------------------------------

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue ``fn(*args)`` to run on the dispatcher thread, in call order.

        Thread-safe.  From another thread it writes at most one wake-up byte per loop
        turn; from the dispatcher thread none (the loop polls instead of blocking while
        commands are pending).  Starts the thread on first use.  Raises
        :class:`DispatcherStoppedError` once :meth:`stop` was called.
        """
        if threading.get_ident() == self._ident:
            # on the loop thread (even during the final drain) the command still runs:
            # the loop drains until the queue is empty before it ends
            self._commands.append((fn, args))
            return
        if self._state == _State.NEW:
            self.start()
        with self._lock:
            if self._state != _State.RUNNING:
                raise self._stopped_error()
            self._commands.append((fn, args))
            if self._wake_pending:
                return
            self._send_wakeup_locked()

    def run_after_io(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` in this turn, right after its I/O callbacks (before timers and
        commands); from another thread it is a :meth:`call_soon`.

        For work that the reads of a turn produce and that must not queue behind a
        burst of commands: the inline delivery's drain tasks.  Tasks queued while this
        phase runs (a drain re-queueing itself) wait for the next turn.
        """
        if threading.get_ident() == self._ident:
            self._after_io.append(fn)
        else:
            self.call_soon(fn)

    def read_buffer(self, size: int) -> memoryview:
        """A scratch buffer of at least ``size`` bytes for reads on the loop thread.

        One per dispatcher, reused by every socket's read (the loop reads one socket
        at a time); callers copy out what they keep.
        """
        buf = self._read_buffer
        if buf is None or len(buf) < size:
            buf = self._read_buffer = memoryview(bytearray(size))
        return buf

    def submit_and_wait(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the dispatcher thread and return its result or raise its error.

        For tests and synchronous calls from other threads; on the dispatcher thread it
        calls ``fn`` directly.  Raises
        :class:`~wspool.exceptions.WebSocketTimeoutException` if ``fn`` has not finished
        after ``timeout`` seconds (it may still run later).
        """
        if self.in_dispatcher_thread():
            return fn(*args)
        pending = Future[T]()

        def run() -> None:
            if not pending.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args)
            except BaseException as exc:
                pending.set_exception(exc)
            else:
                pending.set_result(result)

        self.call_soon(run)
        try:
            return pending.result(timeout)
        except TimeoutError:
            if pending.done():
                raise  # fn itself raised a TimeoutError
            raise WebSocketTimeoutException(
                f"{getattr(fn, '__qualname__', fn)!r} did not finish on dispatcher "
                f"{self.name!r} within {timeout} s: the loop is busy or the call blocks"
            ) from None

    # -- timers (dispatcher thread only) ------------------------------------------------

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` on the loop after ``delay`` seconds.  Dispatcher thread only."""
        return self.call_at(monotonic() + delay, fn, *args)

    def call_at(self, when: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` on the loop at ``when`` (:func:`time.monotonic` clock).

        Dispatcher thread only.  Timers due at the same time run in scheduling order.
        """
        self._check_thread("call_at")
        handle = TimerHandle(self, when, fn, args)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, handle))
        return handle

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        heap = self._timers
        if self._cancelled_timers > _COMPACT_MIN and self._cancelled_timers * 2 > len(heap):
            heap[:] = [entry for entry in heap if not entry[2]._cancelled]
            heapq.heapify(heap)
            self._cancelled_timers = 0

    @property
    def timer_count(self) -> int:
        """Entries in the timer heap, cancelled ones not yet removed included."""
        return len(self._timers)

    # -- readiness (dispatcher thread only) ---------------------------------------------

    def add_reader(self, fileobj: FileLike, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is readable (replaces a previous one)."""
        self._set_callback(fileobj, callback, _READ)

    def add_writer(self, fileobj: FileLike, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is writable (replaces a previous one)."""
        self._set_callback(fileobj, callback, _WRITE)

    def remove_reader(self, fileobj: FileLike) -> bool:
        """Stop watching ``fileobj`` for reading; returns whether a reader was set."""
        return self._set_callback(fileobj, None, _READ)

    def remove_writer(self, fileobj: FileLike) -> bool:
        """Stop watching ``fileobj`` for writing; returns whether a writer was set."""
        return self._set_callback(fileobj, None, _WRITE)

    def set_deferrable(self, fileobj: FileLike, deferrable: bool) -> None:
        """Mark a registered file's callbacks as work that may wait for a later turn
        when this turn is over budget (module docstring); no-op for an unregistered one."""
        self._check_thread("set_deferrable")
        selector = self._selector
        assert selector is not None
        with contextlib.suppress(KeyError):
            selector.get_key(_fd_of(fileobj)).data.deferrable = deferrable

    def _set_callback(
        self, fileobj: FileLike, callback: Callable[[], object] | None, event: int
    ) -> bool:
        self._check_thread("add_reader/add_writer/remove_reader/remove_writer")
        selector = self._selector
        assert selector is not None
        fd = _fd_of(fileobj)
        try:
            key = selector.get_key(fd)
        except KeyError:
            if callback is None:
                return False
            data = _Key()
            if event == _READ:
                data.reader = callback
            else:
                data.writer = callback
            selector.register(fd, event, data)
            return True
        data = key.data
        had = (data.reader if event == _READ else data.writer) is not None
        if event == _READ:
            data.reader = callback
        else:
            data.writer = callback
        mask = (_READ if data.reader is not None else 0) | (
            _WRITE if data.writer is not None else 0
        )
        if mask == 0:
            selector.unregister(fd)
        elif mask != key.events:
            selector.modify(fd, mask, data)
        return had

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        commands = self._commands
        timers = self._timers
        stats = self.stats
        heappop = heapq.heappop
        budget = TURN_BUDGET
        after_io = self._after_io
        try:
            while self._state == _State.RUNNING:
                stats.turns += 1
                # timeout: 0 with commands pending, else up to the first live timer
                if commands or after_io:
                    timeout: float | None = 0.0
                else:
                    while timers and timers[0][2]._cancelled:
                        heappop(timers)
                        self._cancelled_timers -= 1
                    if timers:
                        timeout = timers[0][0] - monotonic()
                        if timeout < 0.0:
                            timeout = 0.0
                    else:
                        timeout = None
                if self._again:
                    timeout = 0.0
                    self._again = False
                later: list[tuple[_Key, int]] | None = None
                for key, mask in selector.select(timeout):
                    data = key.data
                    if data.deferrable:
                        if later is None:
                            later = []
                        later.append((data, mask))
                        continue
                    self._run_ready(data, mask)
                if later is not None:
                    # the urgent callbacks ran; now the deferrable ones, within budget
                    end = monotonic() + budget
                    floor = len(later) >> _DEFERRABLE_FLOOR_SHIFT
                    for index, (data, mask) in enumerate(later):
                        if index > floor and monotonic() > end:
                            self._again = True  # the rest are reported again next turn
                            stats.deferred += len(later) - index
                            break
                        self._run_ready(data, mask)
                pending = len(after_io)
                while pending:
                    pending -= 1
                    task = after_io.popleft()
                    try:
                        task()
                    except Exception:
                        self._log_error("after-I/O task", task)
                if timers:
                    self._run_timers(heappop)
                # only the commands queued before this phase (one that re-queues itself
                # must not starve I/O and timers), and only within the turn budget (a
                # burst of a thousand connection starts is spread over turns, so open
                # sockets are read between its slices); order is kept either way
                pending = len(commands)
                if pending:
                    end = monotonic() + budget
                    while pending:
                        pending -= 1
                        fn, args = commands.popleft()
                        try:
                            fn(*args)
                        except Exception:
                            self._log_error("command", fn)
                        if monotonic() > end:
                            break
        except BaseException:
            logger.critical("dispatcher %r crashed; it stops now", self.name, exc_info=True)
            raise
        finally:
            self._shutdown()

    def _run_ready(self, data: _Key, mask: int) -> None:
        # re-read the callbacks: an earlier one this turn may have removed them
        if mask & _READ and data.reader is not None:
            try:
                data.reader()
            except Exception:
                self._log_error("reader callback", data.reader)
        if mask & _WRITE and data.writer is not None:
            try:
                data.writer()
            except Exception:
                self._log_error("writer callback", data.writer)

    def _run_timers(self, heappop: Callable[[list[tuple[float, int, TimerHandle]]], Any]) -> None:
        timers = self._timers
        now = monotonic()
        # timers scheduled by the timers run now wait for the next turn, even if due
        seq_limit = self._timer_seq
        while timers and timers[0][0] <= now and timers[0][1] <= seq_limit:
            handle = heappop(timers)[2]
            fn = handle._fn
            if fn is None:  # cancelled
                self._cancelled_timers -= 1
                continue
            args = handle._args
            handle._fn = None
            handle._args = ()
            try:
                fn(*args)
            except Exception:
                self._log_error("timer", fn)

    def _read_wakeup(self) -> None:
        wake_r = self._wake_r
        assert wake_r is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            wake_r.recv(64)
        # cleared after the byte is consumed and before this turn's commands run: a
        # command queued after this line sends a fresh byte, one queued before it runs
        # in this turn's command phase
        with self._lock:
            self._wake_pending = False

    def _send_wakeup_locked(self) -> None:
        # caller holds self._lock
        self._wake_pending = True
        self.stats.wakeups += 1
        wake_w = self._wake_w
        if wake_w is None:
            return
        try:
            wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full of unread wake-ups: the loop will wake anyway
        except OSError:
            pass  # closed by a concurrent shutdown, which runs the queue itself

    def _shutdown(self) -> None:
        # final drain: after _state is STOPPED (under the lock) no command can be queued,
        # so everything accepted before runs; commands may still queue more from here
        with self._lock:
            self._state = _State.STOPPED
        commands = self._commands
        after_io = self._after_io
        while commands or after_io:
            while after_io:
                task = after_io.popleft()
                try:
                    task()
                except Exception:
                    self._log_error("after-I/O task", task)
            if commands:
                fn, args = commands.popleft()
                try:
                    fn(*args)
                except Exception:
                    self._log_error("command", fn)
        for _, _, handle in self._timers:
            handle._fn = None
            handle._args = ()
        self._timers.clear()
        self._cancelled_timers = 0
        with self._lock:
            self._close_resources()
        _live.discard(self)
        # thread idents are reused once a thread ends: forget ours
        self._ident = None
        self._stopped.set()

    def _close_resources(self) -> None:
        if self._selector is not None:
            self._selector.close()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    # -- helpers ---------------------------------------------------------------------------

    def _check_thread(self, what: str) -> None:
        if threading.get_ident() != self._ident:
            raise RuntimeError(
                f"{what} must be called on the dispatcher thread of {self.name!r}; from "
                "other threads use call_soon() or submit_and_wait()"
            )

    def _stopped_error(self) -> DispatcherStoppedError:
        return DispatcherStoppedError(
            f"dispatcher {self.name!r} is stopped; the call was not queued. Create a new "
            "dispatcher (or pool) to run more work"
        )

    def _log_error(self, what: str, fn: object) -> None:
        self.stats.errors += 1
        logger.error(
            "dispatcher %r: %s %r raised; the loop continues", self.name, what, fn, exc_info=True
        )

    def __repr__(self) -> str:
        return f"<Dispatcher {self.name!r} {self._state}>"


# -- interpreter exit --------------------------------------------------------------------

_live: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_state: list[bool | None] = [None]  # None: not registered yet; else True/False


def _register_exit_hook(dispatcher: Dispatcher) -> bool:
    """Track ``dispatcher`` for the exit hook; False: the thread must be a daemon."""
    with _hook_lock:
        if _hook_state[0] is None:
            register = getattr(threading, "_register_atexit", None)
            if register is None:
                atexit.register(_stop_all)
                _hook_state[0] = False
            else:
                try:
                    register(_stop_all)
                except RuntimeError:  # the interpreter is already shutting down
                    return False
                _hook_state[0] = True
        _live.add(dispatcher)
        return bool(_hook_state[0])


def _stop_all() -> None:
    if os.getpid() != _hook_pid:
        return  # a forked child: the dispatcher threads did not come along
    for dispatcher in list(_live):
        try:
            dispatcher.stop(EXIT_STOP_TIMEOUT)
        except Exception:
            logger.error("dispatcher %r did not stop at exit", dispatcher.name, exc_info=True)


_hook_pid = os.getpid()
