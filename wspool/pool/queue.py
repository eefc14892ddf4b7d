"""Per-connection ordered hand-off from the dispatcher to the worker pool.

Invariant (DESIGN.md 3): a queue has at most one drain task on the executor at any
time, so one connection's callbacks run one at a time and in order while different
connections run in parallel.  A drain takes everything queued so far in one swap
(many items per executor task) and delivers at most ``_BATCH`` before it resubmits
itself, so one busy connection cannot starve the others on a small pool.

Backpressure (invariant 4): ``on_pause`` fires (on the dispatcher thread, inside
``put``) when the queue crosses its high-water mark, ``on_resume`` (on a worker
thread: forward it to the dispatcher) once a drain brings it under the low-water mark.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any, Final

__all__ = ["DeliveryQueue"]

logger = logging.getLogger("wspool")

_BATCH: Final = 256


class DeliveryQueue:
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
    ) -> None:
        self._executor = executor
        self._deliver = deliver
        self._high = high_water
        self._low = low_water
        self._high_bytes = high_water_bytes
        self._low_bytes = low_water_bytes if low_water_bytes is not None else 0
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._on_error = on_error
        # _lock guards _items, _bytes, _scheduled, _paused, _closed; it is held only to
        # append or swap, never while delivering.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._in_flight = 0  # items taken by the running drain, not yet delivered
        self._scheduled = False
        self._paused = False
        self._closed = False

    @property
    def qsize(self) -> int:
        return len(self._items) + self._in_flight

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def paused(self) -> bool:
        return self._paused

    def put(self, item: Any, size: int = 0) -> None:
        self.put_many((item,), size)

    def put_many(self, items: Iterable[Any], total_size: int) -> None:
        """Queue ``items`` (dispatcher thread); ``total_size`` counts toward the byte mark."""
        pause = False
        with self._lock:
            if self._closed:
                logger.error("delivery queue closed: %d events dropped", len(list(items)))
                return
            batch = list(items)
            if not batch:
                return
            per = total_size // len(batch) if total_size else 0
            self._items.extend((item, per) for item in batch)
            self._bytes += per * len(batch)
            if not self._paused and self._over_high():
                self._paused = pause = True
            submit = not self._scheduled
            self._scheduled = True
        if pause:
            self._on_pause()
        if submit:
            self._submit()

    def _over_high(self) -> bool:
        if len(self._items) + self._in_flight >= self._high:
            return True
        return self._high_bytes is not None and self._bytes >= self._high_bytes

    def _under_low(self) -> bool:
        return len(self._items) + self._in_flight <= self._low and self._bytes <= self._low_bytes

    def _submit(self) -> None:
        try:
            self._executor.submit(self._drain)
        except RuntimeError:
            # The executor was shut down: deliver here rather than lose the events.
            logger.warning("worker pool is shut down; delivering on the calling thread")
            self._drain()

    def _drain(self) -> None:
        """Deliver in order; exactly one of these runs per queue at a time."""
        with self._lock:
            batch = [self._items.popleft() for _ in range(min(_BATCH, len(self._items)))]
            self._in_flight = len(batch)
        deliver = self._deliver
        for item, size in batch:
            try:
                deliver(item)
            except Exception as exc:
                try:
                    self._on_error(exc, item)
                except Exception:
                    logger.exception("error handler failed")
            with self._lock:
                self._in_flight -= 1
                self._bytes -= size
        resume = False
        with self._lock:
            if self._paused and self._under_low():
                self._paused = False
                resume = True
            more = bool(self._items)
            if not more:
                self._scheduled = False
                self._idle.notify_all()
        if resume:
            try:
                self._on_resume()
            except Exception:
                logger.exception("resume handler failed")
        if more:
            self._submit()

    def close(self) -> None:
        """Accept no more items; what is queued is still delivered."""
        with self._lock:
            self._closed = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was delivered."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._scheduled, timeout)
