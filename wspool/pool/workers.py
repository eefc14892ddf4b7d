"""The Pool's own worker threads: an Executor whose hot path creates no Future.

Every message that reaches a callback first crosses from the dispatcher to a worker.
``ThreadPoolExecutor.submit`` spends a Future, a work item, a lock and a semaphore probe
on each crossing, and the worker then completes the Future under its condition; at
one message per crossing (low-rate feeds, the latency case) that bookkeeping is most of
the hand-off.  :meth:`WorkerThreads.run_soon` puts a bare callable on a C
``SimpleQueue`` instead: one call on the dispatcher, one wake-up of a worker.

:meth:`submit` still returns a Future, so the class is a drop-in ``Executor`` (name
resolution uses it, and so may users through ``Pool.executor``).

Threads start on demand, one per task until ``max_workers`` exist, and are not daemons:
:meth:`shutdown` queues one stop marker per thread behind the queued tasks, so every
task queued before it still runs (the pool's exit hook shuts down before the
interpreter joins threads).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from wspool.pool.dispatcher import Dispatcher

__all__ = ["DispatcherExecutor", "WorkerThreads"]

logger = logging.getLogger("wspool")

_P = ParamSpec("_P")
_T = TypeVar("_T")


class WorkerThreads(Executor):
    """Up to ``max_workers`` threads running callables in FIFO order."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "wspool-worker") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # _lock guards _threads and _shutdown; run_soon reads both without it: a thread
        # count read stale by one only delays starting a thread to the next task, and
        # a task racing shutdown() is either queued before the stop markers (it runs)
        # or sees _shutdown (it raises).
        self._lock = threading.Lock()
        self._shutdown = False

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    def run_soon(self, fn: Callable[[], object]) -> None:
        """Queue ``fn()`` for a worker; no result, no Future.

        ``fn`` must handle its own exceptions (one that escapes is logged).  Raises
        ``RuntimeError`` after :meth:`shutdown`, as ``Executor.submit`` does.
        """
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self._queue.put(fn)
        if len(self._threads) < self._max_workers:
            self._start_thread()

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        task = _FutureTask(fn, args, kwargs)
        self.run_soon(task)
        return task.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the tasks queued so far have run.

        ``cancel_futures=True`` cancels the queued :meth:`submit` tasks; ``run_soon``
        tasks still run (the pool's carry messages, which are never dropped).
        """
        with self._lock:
            already = self._shutdown
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            self._drop_queued()
        if not already:
            for _ in threads:
                self._queue.put(None)
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current:
                    thread.join()

    def _drop_queued(self) -> None:
        kept: list[Callable[[], object] | None] = []
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(task, _FutureTask):
                task.future.cancel()
            else:
                kept.append(task)
        for task in kept:
            self._queue.put(task)

    def ensure_worker(self) -> None:
        """Start the first thread now if none runs yet.

        The pool calls it when it gets its first connection: from Python 3.12 no
        thread can start once the interpreter is shutting down, and the pool's exit
        hook still needs a worker for the last ``on_close`` callbacks.
        """
        if not self._threads:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self._shutdown or len(self._threads) >= self._max_workers:
                return
            thread = threading.Thread(
                target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=False
            )
            self._threads.append(thread)
        try:
            thread.start()
        except RuntimeError:
            # "can't create new thread at interpreter shutdown" (3.12+): the threads
            # already running take the task; with none, the caller hears of it.
            with self._lock:
                self._threads.remove(thread)
                alone = not self._threads
            if alone:
                raise
            logger.debug("no new worker thread at interpreter shutdown: %s", self._prefix)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            task = get()
            if task is None:
                return
            try:
                task()
            except BaseException:
                logger.exception("a task on the pool's worker threads raised")
            del task  # drop the reference before blocking on the next get

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<WorkerThreads {state} threads={len(self._threads)}/{self._max_workers}>"


class _FutureTask:
    """A :meth:`WorkerThreads.submit` call: runs ``fn`` and completes its Future."""

    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future[Any] = Future()

    def __call__(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class DispatcherExecutor(Executor):
    """Runs tasks on a dispatcher's own thread: ``Pool(deliver="dispatcher")``.

    :meth:`run_soon` queues the task for the dispatcher's after-I/O phase, so it runs in
    the current loop turn, after every socket that was readable this turn has been
    read, and before the turn's commands (a burst of openings does not delay it).  The
    callbacks of one turn run back to back, outside every lock, and no thread hand-off
    (and no GIL hand-off) sits between a read and its callback.  The price is that a
    callback that blocks stalls every socket of the pool (docs/architecture.md,
    "Inline delivery").
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def run_soon(self, fn: Callable[[], object]) -> None:
        """Queue ``fn()`` on the dispatcher thread: in this turn's after-I/O phase when
        called there (the usual case: a read queued the messages), else as a command;
        ``RuntimeError`` once the dispatcher stopped."""
        self._dispatcher.run_after_io(fn)  # DispatcherStoppedError is a RuntimeError

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        task = _FutureTask(fn, args, kwargs)
        self.run_soon(task)
        return task.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: the dispatcher's own stop runs what is queued."""

    def __repr__(self) -> str:
        return f"<DispatcherExecutor on {self._dispatcher!r}>"
