"""WorkerThreads: the Pool's executor (bare-callable hot path, Executor semantics)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import CancelledError

import pytest

from wspool.pool.workers import WorkerThreads


def test_run_soon_runs_in_fifo_order_on_one_worker() -> None:
    workers = WorkerThreads(1)
    seen: list[int] = []
    for i in range(100):
        workers.run_soon(lambda i=i: seen.append(i))
    workers.shutdown(wait=True)
    assert seen == list(range(100))


def test_submit_returns_a_future_with_the_result_or_the_exception() -> None:
    workers = WorkerThreads(2)
    try:
        assert workers.submit(lambda a, b=0: a + b, 2, b=3).result(5) == 5

        def boom() -> None:
            raise ValueError("bad")

        with pytest.raises(ValueError, match="bad"):
            workers.submit(boom).result(5)
    finally:
        workers.shutdown()


def test_threads_start_on_demand_up_to_max_workers() -> None:
    workers = WorkerThreads(3, thread_name_prefix="t-pool")
    assert workers.threads == 0
    gate = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        gate.wait(5)

    for _ in range(10):
        workers.run_soon(block)
    for _ in range(3):
        assert started.acquire(timeout=5)
    assert workers.threads == 3
    names = {t.name for t in threading.enumerate() if t.name.startswith("t-pool_")}
    assert names == {"t-pool_0", "t-pool_1", "t-pool_2"}
    gate.set()
    workers.shutdown(wait=True)
    assert not any(t.name.startswith("t-pool_") for t in threading.enumerate())


def test_shutdown_runs_every_task_queued_before_it_then_refuses_new_ones() -> None:
    workers = WorkerThreads(2)
    gate = threading.Event()
    done: list[int] = []
    workers.run_soon(lambda: gate.wait(5))
    for i in range(20):
        workers.run_soon(lambda i=i: done.append(i))
    stopper = threading.Thread(target=workers.shutdown)
    stopper.start()
    gate.set()
    stopper.join(5)
    assert sorted(done) == list(range(20))
    with pytest.raises(RuntimeError, match="after shutdown"):
        workers.run_soon(lambda: None)
    with pytest.raises(RuntimeError, match="after shutdown"):
        workers.submit(lambda: None)


def test_cancel_futures_cancels_submitted_tasks_but_runs_bare_ones() -> None:
    workers = WorkerThreads(1)
    gate = threading.Event()
    ran: list[str] = []
    workers.run_soon(lambda: gate.wait(5))
    future = workers.submit(lambda: ran.append("future"))
    workers.run_soon(lambda: ran.append("bare"))  # a pool drain: carries messages
    stopper = threading.Thread(target=workers.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    stopper.join(0.2)
    gate.set()
    stopper.join(5)
    assert ran == ["bare"]
    with pytest.raises(CancelledError):
        future.result(1)


def test_an_exception_escaping_a_bare_task_is_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = WorkerThreads(1)
    after: list[bool] = []

    def boom() -> None:
        raise RuntimeError("escaped")

    with caplog.at_level(logging.ERROR, logger="wspool"):
        workers.run_soon(boom)
        workers.run_soon(lambda: after.append(True))
        workers.shutdown(wait=True)
    assert after == [True]
    assert "escaped" in caplog.text


def test_ensure_worker_starts_the_first_thread_once() -> None:
    """The pool starts one worker with its first connection (from Python 3.12 no
    thread starts at interpreter shutdown, when the last on_close still needs one)."""
    workers = WorkerThreads(3)
    try:
        assert workers.threads == 0
        workers.ensure_worker()
        workers.ensure_worker()
        assert workers.threads == 1
    finally:
        workers.shutdown(wait=True)
