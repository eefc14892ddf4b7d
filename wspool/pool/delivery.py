"""Per-connection ordered hand-off from the dispatcher to a worker pool, with backpressure.

docs/architecture.md invariants 3 and 4.  The dispatcher thread :meth:`~DeliveryQueue.put`\\ s
decoded events; a *drain task* on the executor calls ``deliver(item)`` for each, in
order.  At most one drain task per queue exists at any time (the ``scheduled`` flag),
so one connection's callbacks never overlap while different connections' run in
parallel.  A drain swaps out the whole pending batch under the lock (many items per
executor task, tiny lock holds) and delivers at most ``batch_limit`` items before it
re-submits itself to the back of the executor's queue, so one busy connection cannot
starve the others on a small pool.

No lost wake-up: a put and the end of a drain both decide under the lock.  Either the
put's item is in the pending batch when the drain looks (the drain delivers it), or the
drain already cleared ``scheduled`` (the put submits a new drain).

Backpressure: undelivered items (and, if set, bytes) count from ``put`` until
``deliver`` returns.  Reaching ``high_water`` calls ``on_pause()`` once, on the
dispatcher thread inside ``put``; falling to ``low_water`` calls ``on_resume()`` once,
on the worker thread running the drain.  The pool forwards ``on_resume`` to the
dispatcher with ``call_soon``.  Both run under the queue's lock, so they strictly
alternate (a resume never overtakes the pause it ends): keep them short, and never wait
for the dispatcher in ``on_resume`` (the dispatcher may be waiting for the lock in
``put``).

A shut-down executor: ``put`` never raises into the dispatcher for it, and nothing is
dropped silently.  The queue becomes *stalled*: the error is logged once on the
``wspool`` logger with the number of undelivered items, :attr:`~DeliveryQueue.stalled`
holds it, items stay queued (and counted, so backpressure still pauses the socket), and
:meth:`~DeliveryQueue.join` returns ``False`` at once.  Delivering on the dispatcher
thread instead would break invariant 3.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
)
from wspool.pool.workers import DispatcherExecutor, WorkerThreads

__all__ = ["DEFAULT_BATCH_LIMIT", "DeliveryQueue"]

logger = logging.getLogger("wspool")

#: Items one drain task delivers before it yields the worker to other queues.
DEFAULT_BATCH_LIMIT = 256


class DeliveryQueue:
    """Ordered delivery of one connection's items on an executor, one drain at a time.

    ``deliver(item)`` runs on a worker.  Its exceptions go to ``on_error(exc, item)``
    and delivery goes on with the next item; an exception from ``on_error`` is logged.
    ``on_close()`` (optional) runs on a worker after :meth:`close` once every item was
    delivered: it is always the last call the queue makes.
    """

    # Slots: one instance per connection, so no per-instance dict (memory per idle
    # connection is a benchmark target).
    __slots__ = (
        "_batch",
        "_batch_limit",
        "_batch_sizes",
        "_closed",
        "_deliver",
        "_executor",
        "_finished",
        "_high",
        "_high_bytes",
        "_idle",
        "_in_bytes",
        "_in_items",
        "_lock",
        "_low",
        "_low_bytes",
        "_on_close",
        "_on_error",
        "_on_pause",
        "_on_resume",
        "_out_bytes",
        "_out_items",
        "_paused",
        "_pending",
        "_pending_sizes",
        "_pos",
        "_run_soon",
        "_scheduled",
        "_stalled",
        "_track_bytes",
        "_waiters",
    )

    def __init__(
        self,
        executor: Executor,
        deliver: Callable[[Any], None],
        *,
        high_water: int,
        low_water: int,
        high_water_bytes: int | None = None,
        low_water_bytes: int | None = None,
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
        on_error: Callable[[BaseException, Any], None],
        on_close: Callable[[], None] | None = None,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
    ) -> None:
        if not 0 <= low_water < high_water:
            raise WebSocketConfigurationException(
                f"need 0 <= low_water < high_water, got low_water={low_water} and "
                f"high_water={high_water}"
            )
        if high_water_bytes is None:
            if low_water_bytes is not None:
                raise WebSocketConfigurationException(
                    "low_water_bytes without high_water_bytes: set both, or neither to "
                    "count items only"
                )
        else:
            if low_water_bytes is None:
                low_water_bytes = high_water_bytes // 2
            if not 0 <= low_water_bytes < high_water_bytes:
                raise WebSocketConfigurationException(
                    f"need 0 <= low_water_bytes < high_water_bytes, got "
                    f"low_water_bytes={low_water_bytes} and high_water_bytes={high_water_bytes}"
                )
        if batch_limit < 1:
            raise WebSocketConfigurationException(f"batch_limit must be >= 1, got {batch_limit}")
        self._executor = executor
        # The pool's own executors take a bare callable (no Future per hand-off).
        self._run_soon = (
            executor.run_soon if isinstance(executor, WorkerThreads | DispatcherExecutor) else None
        )
        self._deliver = deliver
        self._high = high_water
        self._low = low_water
        self._track_bytes = high_water_bytes is not None
        self._high_bytes = high_water_bytes or 0
        self._low_bytes = low_water_bytes or 0
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._on_error = on_error
        self._on_close = on_close
        self._batch_limit = batch_limit

        # _lock guards _pending/_pending_sizes, _scheduled, _paused, _closed and
        # _finished; it is held to append, swap or flip a flag, never while delivering.
        # Reentrant so that on_pause/on_resume (called under it) may read the queue.
        self._lock = threading.RLock()
        # Made by the first join(): most queues are never joined, and a Condition
        # (its waiter deque above all) is ~0.8 KiB per connection.
        self._idle: threading.Condition | None = None
        self._pending: list[Any] = []
        self._pending_sizes: list[int] = []  # parallel to _pending when bytes are tracked
        self._scheduled = False
        self._paused = False
        self._closed = False
        self._finished = False  # on_close ran (or there was none to run) after close()
        self._stalled: BaseException | None = None
        self._waiters = 0
        # Counters: _in_* only grow under the lock (put side); _out_* only grow in the
        # drain, which is single by the scheduled-flag invariant.  Undelivered = in - out.
        self._in_items = 0
        self._in_bytes = 0
        self._out_items = 0
        self._out_bytes = 0
        # The batch the current drain is delivering (owned by the drain, kept across
        # its re-submissions), and the index of its next item.
        self._batch: list[Any] = []
        self._batch_sizes: list[int] = []
        self._pos = 0

    # -- state --------------------------------------------------------------------------

    @property
    def qsize(self) -> int:
        """Items put and not yet delivered (the one being delivered included)."""
        return self._in_items - self._out_items

    @property
    def queued_bytes(self) -> int:
        """Bytes of the undelivered items (0 unless byte water marks are set)."""
        return self._in_bytes - self._out_bytes

    @property
    def paused(self) -> bool:
        """True between an ``on_pause`` and the following ``on_resume``."""
        return self._paused

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stalled(self) -> BaseException | None:
        """The executor's error if it refused a drain task (it was shut down), else None."""
        return self._stalled

    # -- producer side (dispatcher thread) ----------------------------------------------

    def put(self, item: Any, size: int = 0) -> None:
        """Queue one item; ``size`` counts toward the byte water marks.

        Raises :class:`~wspool.exceptions.WebSocketConnectionClosedException` after
        :meth:`close`.
        """
        with self._lock:
            if self._closed:
                raise self._closed_error(1)
            self._pending.append(item)
            self._in_items += 1
            if self._track_bytes:
                self._pending_sizes.append(size)
                self._in_bytes += size
            self._after_put_locked()

    def put_many(self, items: Sequence[Any], total_size: int) -> None:
        """Queue a batch (e.g. the events of one socket read), in order.

        ``total_size`` counts toward the byte marks until the batch's last item is
        delivered.
        """
        count = len(items)
        if not count:
            return
        with self._lock:
            if self._closed:
                raise self._closed_error(count)
            self._pending.extend(items)
            self._in_items += count
            if self._track_bytes:
                sizes = self._pending_sizes
                sizes.extend([0] * (count - 1))
                sizes.append(total_size)
                self._in_bytes += total_size
            self._after_put_locked()

    def _after_put_locked(self) -> None:
        if not self._paused and (
            self._in_items - self._out_items >= self._high
            or (self._track_bytes and self._in_bytes - self._out_bytes >= self._high_bytes)
        ):
            self._paused = True
            self._call_flow(self._on_pause, "on_pause")
        if not self._scheduled and self._stalled is None:
            self._scheduled = True
            self._submit_locked()

    def close(self) -> None:
        """Accept no more items; those queued are still delivered, then ``on_close``.

        Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._scheduled:
                return  # the running drain finds _closed when it empties the queue
            if self._on_close is None:
                self._finished = True
                self._notify_locked()
            elif self._stalled is None:
                self._scheduled = True
                self._submit_locked()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item queued so far was delivered (and ``on_close`` ran, if
        :meth:`close` was called); True if so, False after ``timeout`` or when stalled.

        Never call it from this queue's own ``deliver`` (it would wait for itself).
        """
        with self._lock:
            target = self._in_items
            need_close = self._closed

            def done() -> bool:
                return self._stalled is not None or (
                    self._out_items >= target and (self._finished or not need_close)
                )

            self._waiters += 1
            try:
                if self._idle is None:
                    self._idle = threading.Condition(self._lock)
                self._idle.wait_for(done, timeout)
            finally:
                self._waiters -= 1
            return self._stalled is None and done()

    def _notify_locked(self) -> None:
        if self._idle is not None:
            self._idle.notify_all()

    # -- consumer side (one worker at a time) -------------------------------------------

    def _submit_locked(self) -> None:
        run_soon = self._run_soon
        if run_soon is not None:
            try:
                run_soon(self._drain)
            except RuntimeError as exc:  # shut down
                self._stall_locked(exc)
            return
        try:
            future = self._executor.submit(self._drain)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            self._stall_locked(exc)
            return
        future.add_done_callback(self._check_cancelled)

    def _check_cancelled(self, future: Future[None]) -> None:
        # an executor shut down with cancel_futures=True drops our queued drain
        if future.cancelled():
            with self._lock:
                self._stall_locked(RuntimeError("the executor cancelled the drain task"))

    def _stall_locked(self, exc: BaseException) -> None:
        if self._stalled is None:
            self._stalled = exc
            logger.error(
                "delivery stalled: the executor refused the drain task (%s); %d queued "
                "items stay undelivered and later puts are kept too. Keep the executor "
                "running until the pool is closed",
                exc,
                self._in_items - self._out_items,
            )
        self._notify_locked()

    def _drain(self) -> None:
        """Deliver up to ``batch_limit`` items in order, then re-submit or finish."""
        deliver = self._deliver
        track_bytes = self._track_bytes
        batch = self._batch
        sizes = self._batch_sizes
        pos = self._pos
        budget = self._batch_limit
        while True:
            if pos >= len(batch):
                batch.clear()
                sizes.clear()
                pos = 0
                with self._lock:
                    empty = not self._pending
                    if empty:
                        self._batch, self._batch_sizes, self._pos = batch, sizes, 0
                        if not self._closed or self._finished:
                            self._scheduled = False
                            if self._waiters:
                                self._notify_locked()
                            return
                    else:
                        # swap: the drain owns the batch, put appends to a fresh list
                        batch, self._pending = self._pending, batch
                        if track_bytes:
                            sizes, self._pending_sizes = self._pending_sizes, sizes
                if empty:
                    # closed and empty: no put can add anything any more
                    self._finish()
                    return
            if not budget:
                self._batch, self._batch_sizes, self._pos = batch, sizes, pos
                with self._lock:
                    if self._waiters:
                        self._notify_locked()
                    self._submit_locked()  # stays scheduled: this task hands over
                return
            if not track_bytes and not self._paused:
                # Fast path (no byte marks, not paused): a run of items in a plain loop,
                # the counter bumped once per run.  qsize may read up to one run high
                # meanwhile; a pause set by the dispatcher during the run is handled
                # by the per-item path from the next run on.
                stop = min(len(batch), pos + budget)
                for item in batch[pos:stop]:
                    try:
                        deliver(item)
                    except BaseException as exc:
                        self._report(exc, item)
                budget -= stop - pos
                self._out_items += stop - pos
                pos = stop
                continue
            budget -= 1
            item = batch[pos]
            try:
                deliver(item)
            except BaseException as exc:
                self._report(exc, item)
            if track_bytes:
                self._out_bytes += sizes[pos]
            pos += 1
            self._out_items += 1
            if self._paused and self._in_items - self._out_items <= self._low:
                self._maybe_resume()

    def _maybe_resume(self) -> None:
        with self._lock:
            if (
                self._paused
                and self._in_items - self._out_items <= self._low
                and (not self._track_bytes or self._in_bytes - self._out_bytes <= self._low_bytes)
            ):
                self._paused = False
                self._call_flow(self._on_resume, "on_resume")

    def _finish(self) -> None:
        # outside the lock: on_close is user code; puts fail (closed) meanwhile
        on_close = self._on_close
        if on_close is not None:
            try:
                on_close()
            except BaseException as exc:
                self._report(exc, None)
        with self._lock:
            self._finished = True
            self._scheduled = False
            self._notify_locked()

    def _report(self, exc: BaseException, item: Any) -> None:
        try:
            self._on_error(exc, item)
        except Exception:
            logger.exception("delivery on_error handler raised while reporting %r", exc)

    def _call_flow(self, fn: Callable[[], None], name: str) -> None:
        try:
            fn()
        except Exception:
            logger.exception("delivery %s callback raised; backpressure state kept", name)

    def _closed_error(self, count: int) -> WebSocketConnectionClosedException:
        return WebSocketConnectionClosedException(
            f"delivery queue is closed: {count} item(s) not queued. Put events before "
            "close() (the close event last)"
        )

    def __repr__(self) -> str:
        state = "stalled" if self._stalled else "closed" if self._closed else "open"
        paused = " paused" if self._paused else ""
        return f"<DeliveryQueue {state}{paused} qsize={self.qsize}>"
