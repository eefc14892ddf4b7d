"""Tests of wspool.pool.delivery: ordered per-connection hand-off with backpressure.

docs/architecture.md invariants 3 (one drain per connection, in order, connections in parallel)
and 4 (pause at high water, resume at low water).  Real executors and threads; the
test thread plays the dispatcher.  No sleeps: overlaps are detected with events.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import wait_until

from wspool.exceptions import WebSocketConfigurationException, WebSocketConnectionClosedException
from wspool.pool.delivery import DeliveryQueue

WAIT = 10.0  # bound for things that must happen; never reached when they do


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    ex = ThreadPoolExecutor(max_workers=8)
    yield ex
    ex.shutdown(wait=True)


def _raise(exc: BaseException, item: Any) -> None:
    raise AssertionError(f"unexpected delivery error on {item!r}") from exc


def make_queue(
    executor: ThreadPoolExecutor,
    deliver: Callable[[Any], None],
    *,
    high_water: int = 1_000_000,
    low_water: int = 0,
    on_pause: Callable[[], None] = lambda: None,
    on_resume: Callable[[], None] = lambda: None,
    on_error: Callable[[BaseException, Any], None] = _raise,
    **kwargs: Any,
) -> DeliveryQueue:
    return DeliveryQueue(
        executor,
        deliver,
        high_water=high_water,
        low_water=low_water,
        on_pause=on_pause,
        on_resume=on_resume,
        on_error=on_error,
        **kwargs,
    )


def test_order_per_queue_with_100_queues_on_8_workers(executor: ThreadPoolExecutor) -> None:
    """Invariant 3: each connection's items arrive in put order, all of them."""
    received: list[list[int]] = [[] for _ in range(100)]
    queues = [make_queue(executor, received[q].append) for q in range(100)]
    for i in range(0, 1000, 10):
        for q, queue in enumerate(queues):
            if q % 2:
                queue.put_many(list(range(i, i + 10)), 10)
            else:
                for j in range(i, i + 10):
                    queue.put(j)
    for queue in queues:
        assert queue.join(WAIT)
    expected = list(range(1000))
    assert all(r == expected for r in received)
    assert all(queue.qsize == 0 for queue in queues)


def test_at_most_one_drain_per_queue(executor: ThreadPoolExecutor) -> None:
    """Invariant 3: a queue's deliver calls never overlap, even with idle workers."""
    active = [0, 0]
    overlaps: list[int] = []
    threads_seen: list[set[int]] = [set(), set()]
    lock = threading.Lock()

    def deliver_for(q: int) -> Callable[[Any], None]:
        def deliver(item: Any) -> None:
            with lock:
                active[q] += 1
                if active[q] > 1:
                    overlaps.append(q)
            threads_seen[q].add(threading.get_ident())
            # release the GIL: idle workers get every chance to run a second drain now
            time.sleep(0)
            with lock:
                active[q] -= 1

        return deliver

    queues = [make_queue(executor, deliver_for(q), batch_limit=7) for q in range(2)]
    for i in range(3000):
        for queue in queues:
            queue.put(i)
    for queue in queues:
        assert queue.join(WAIT)
    assert overlaps == []
    # the re-submissions did move the drain across workers: the check had teeth
    assert max(len(s) for s in threads_seen) > 1


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the tasks submitted to it."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_puts_during_a_drain_submit_no_second_drain() -> None:
    """Invariant 3: while a drain runs, puts join it instead of submitting another."""
    executor = CountingExecutor(max_workers=4)
    try:
        entered, release = threading.Event(), threading.Event()
        delivered: list[int] = []

        def deliver(item: int) -> None:
            if item == 0:
                entered.set()
                assert release.wait(WAIT)
            delivered.append(item)

        q = make_queue(executor, deliver)
        q.put(0)
        assert entered.wait(WAIT)
        for i in range(1, 100):
            q.put(i)
        q.put_many(list(range(100, 200)), 0)
        assert executor.submitted == 1  # three idle workers, still one drain
        release.set()
        assert q.join(WAIT)
        assert delivered == list(range(200))
    finally:
        executor.shutdown(wait=True)


def test_different_queues_deliver_in_parallel(executor: ThreadPoolExecutor) -> None:
    """Invariant 3: two connections' callbacks run at the same time."""
    a_in, b_in = threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def deliver_a(item: Any) -> None:
        a_in.set()
        results["a saw b"] = b_in.wait(WAIT)

    def deliver_b(item: Any) -> None:
        b_in.set()
        results["b saw a"] = a_in.wait(WAIT)

    qa, qb = make_queue(executor, deliver_a), make_queue(executor, deliver_b)
    qa.put("a")
    qb.put("b")
    assert qa.join(WAIT) and qb.join(WAIT)
    assert results == {"a saw b": True, "b saw a": True}


def test_pause_and_resume_once_per_crossing(executor: ThreadPoolExecutor) -> None:
    """Invariant 4: on_pause on the putting thread at high water, on_resume once at low."""
    gate = threading.Semaphore(0)
    calls: list[tuple[str, bool]] = []
    main = threading.get_ident()
    resumed = threading.Event()
    delivered: list[int] = []

    def deliver(item: int) -> None:
        assert gate.acquire(timeout=WAIT)
        delivered.append(item)

    def on_pause() -> None:
        calls.append(("pause", threading.get_ident() == main))

    def on_resume() -> None:
        calls.append(("resume", threading.get_ident() == main))
        resumed.set()

    q = make_queue(
        executor, deliver, high_water=10, low_water=3, on_pause=on_pause, on_resume=on_resume
    )
    for round_ in range(2):
        resumed.clear()
        for i in range(25):
            q.put(i)
            assert q.paused == (i >= 9)  # the 10th undelivered item reaches high water
        assert calls == [("pause", True), ("resume", False)] * round_ + [("pause", True)]
        for _ in range(25):
            gate.release()
        assert resumed.wait(WAIT)
        assert q.join(WAIT)
        assert not q.paused
    assert calls == [("pause", True), ("resume", False)] * 2
    assert len(delivered) == 50


def test_resume_waits_for_the_low_water_mark(executor: ThreadPoolExecutor) -> None:
    gate = threading.Semaphore(0)
    sizes_at_resume: list[int] = []
    delivered = threading.Semaphore(0)
    q: DeliveryQueue

    def deliver(item: int) -> None:
        assert gate.acquire(timeout=WAIT)
        delivered.release()

    q = make_queue(
        executor,
        deliver,
        high_water=5,
        low_water=2,
        on_resume=lambda: sizes_at_resume.append(q.qsize),
    )
    for i in range(8):
        q.put(i)
    for _ in range(5):  # 8 -> 3 undelivered: still above low water
        gate.release()
        assert delivered.acquire(timeout=WAIT)
    assert q.paused and sizes_at_resume == []
    gate.release()  # 2 undelivered: resume
    assert delivered.acquire(timeout=WAIT)
    for _ in range(2):
        gate.release()
    assert q.join(WAIT)
    assert sizes_at_resume == [2]


def test_byte_water_marks(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    calls: list[str] = []

    def deliver(item: Any) -> None:
        assert gate.wait(WAIT)

    q = make_queue(
        executor,
        deliver,
        high_water=1000,
        low_water=10,
        high_water_bytes=1000,
        low_water_bytes=100,
        on_pause=lambda: calls.append("pause"),
        on_resume=lambda: calls.append("resume"),
    )
    q.put("a", 600)
    assert not q.paused
    q.put_many(["b", "c"], 500)  # 1100 bytes queued
    assert q.paused and q.queued_bytes == 1100
    gate.set()
    assert q.join(WAIT)
    # join() returns once the items are delivered; the worker may still be about to
    # call on_resume for the last one (it counts the item delivered first).
    assert wait_until(lambda: calls == ["pause", "resume"]), calls
    assert q.queued_bytes == 0


def test_deliver_exception_reaches_on_error_and_delivery_continues(
    executor: ThreadPoolExecutor,
) -> None:
    delivered: list[int] = []
    errors: list[tuple[str, int]] = []

    def deliver(item: int) -> None:
        if item % 3 == 0:
            raise ValueError(f"bad {item}")
        delivered.append(item)

    q = make_queue(executor, deliver, on_error=lambda e, i: errors.append((str(e), i)))
    for i in range(10):
        q.put(i)
    assert q.join(WAIT)
    assert delivered == [1, 2, 4, 5, 7, 8]
    assert errors == [("bad 0", 0), ("bad 3", 3), ("bad 6", 6), ("bad 9", 9)]


def test_on_error_exception_is_logged_and_swallowed(
    executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[int] = []

    def deliver(item: int) -> None:
        if item == 0:
            raise ValueError("deliver boom")
        delivered.append(item)

    def on_error(exc: BaseException, item: Any) -> None:
        raise RuntimeError("on_error boom")

    q = make_queue(executor, deliver, on_error=on_error)
    with caplog.at_level(logging.ERROR, logger="wspool"):
        q.put_many([0, 1, 2], 0)
        assert q.join(WAIT)
    assert delivered == [1, 2]
    assert any(
        r.name == "wspool" and r.exc_info and "on_error boom" in str(r.exc_info[1])
        for r in caplog.records
    )


def test_fairness_two_busy_queues_interleave_on_one_worker() -> None:
    """One busy connection cannot starve another on a one-worker pool."""
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        order: list[str] = []
        gate = threading.Event()
        executor.submit(gate.wait, WAIT)  # hold the only worker while both queues fill
        qa = make_queue(executor, lambda item: order.append("a"), batch_limit=50)
        qb = make_queue(executor, lambda item: order.append("b"), batch_limit=50)
        for _ in range(500):
            qa.put(None)
            qb.put(None)
        gate.set()
        assert qa.join(WAIT) and qb.join(WAIT)
        assert order.count("a") == order.count("b") == 500
        runs = [len(list(group)) for _, group in itertools.groupby(order)]
        assert max(runs) <= 50
        assert len(runs) >= 19  # 1000 items in runs of at most 50
    finally:
        executor.shutdown(wait=True)


def test_close_delivers_pending_items_then_on_close_last(executor: ThreadPoolExecutor) -> None:
    events: list[object] = []
    gate = threading.Event()

    def deliver(item: int) -> None:
        assert gate.wait(WAIT)
        events.append(item)

    q = make_queue(executor, deliver, on_close=lambda: events.append("closed"))
    for i in range(5):
        q.put(i)
    q.close()
    with pytest.raises(WebSocketConnectionClosedException):
        q.put(99)
    assert not q.join(0.001)  # still blocked: not everything delivered yet
    gate.set()
    assert q.join(WAIT)
    assert events == [0, 1, 2, 3, 4, "closed"]
    q.close()  # idempotent
    assert events[-1] == "closed" and events.count("closed") == 1


def test_close_on_an_idle_queue_runs_on_close_on_a_worker(executor: ThreadPoolExecutor) -> None:
    threads: list[int] = []
    q = make_queue(executor, lambda item: None, on_close=lambda: threads.append(1))
    q.close()
    assert q.join(WAIT)
    assert threads == [1]


def test_a_shut_down_executor_stalls_the_queue_loudly(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is lost silently: put does not raise, the items stay counted, join fails."""
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown(wait=True)
    delivered: list[int] = []
    paused: list[bool] = []
    q = make_queue(
        executor, delivered.append, high_water=3, low_water=1, on_pause=lambda: paused.append(True)
    )
    with caplog.at_level(logging.ERROR, logger="wspool"):
        for i in range(5):
            q.put(i)  # must not raise into the dispatcher
    assert isinstance(q.stalled, RuntimeError)
    assert q.qsize == 5 and delivered == []
    assert paused == [True]  # backpressure still stops the socket
    assert q.join(WAIT) is False
    stall_logs = [r for r in caplog.records if r.name == "wspool" and "stalled" in r.message]
    assert len(stall_logs) == 1  # once, not once per put


def test_cancelled_drain_stalls_the_queue() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    executor.submit(gate.wait, WAIT)
    q = make_queue(executor, lambda item: None)
    q.put(1)  # its drain waits behind the blocker
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    executor.shutdown(wait=True)
    assert q.stalled is not None
    assert q.join(WAIT) is False


def test_invalid_water_marks_are_refused(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(WebSocketConfigurationException, match="low_water < high_water"):
        make_queue(executor, print, high_water=5, low_water=5)
    with pytest.raises(WebSocketConfigurationException, match="high_water_bytes"):
        make_queue(executor, print, high_water=5, low_water=1, low_water_bytes=10)


def test_put_racing_the_end_of_a_drain_is_never_lost(executor: ThreadPoolExecutor) -> None:
    """No lost wake-up: a put as a drain finds the queue empty still gets delivered."""
    got = threading.Semaphore(0)
    q = make_queue(executor, lambda item: got.release())
    for i in range(20_000):
        q.put(i)
        # wait for each item: the drain ends after almost every put, racing the next
        assert got.acquire(timeout=WAIT), f"item {i} was never delivered"
    assert q.join(WAIT)
