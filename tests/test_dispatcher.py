"""Tests of wspool.pool.dispatcher: the one thread that owns sockets, timers and commands.

docs/architecture.md invariants 1, 2 and 5: real threads and real socketpairs (loopback only), no
mocks, no timing assertions (deadlines only bound how long a broken build hangs).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import open_fds, run_python

from wspool.exceptions import DispatcherStoppedError, WebSocketTimeoutException
from wspool.pool.dispatcher import Dispatcher, TimerHandle

WAIT = 10.0  # upper bound for events that must happen; never reached when things work


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    d = Dispatcher(name="test-dispatcher")
    d.start()
    yield d
    d.stop(WAIT)


# -- commands ------------------------------------------------------------------------------


def test_call_soon_runs_in_order_on_the_dispatcher_thread(dispatcher: Dispatcher) -> None:
    seen: list[tuple[int, bool]] = []
    for i in range(100):
        dispatcher.call_soon(lambda i=i: seen.append((i, dispatcher.in_dispatcher_thread())))
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert seen == [(i, True) for i in range(100)]
    assert not dispatcher.in_dispatcher_thread()


def test_call_soon_starts_the_thread_on_first_use() -> None:
    d = Dispatcher()
    try:
        assert not d.running
        assert d.submit_and_wait(lambda x: x * 2, 21, timeout=WAIT) == 42
        assert d.running
    finally:
        d.stop(WAIT)


def test_call_soon_from_8_threads_runs_every_call_exactly_once(dispatcher: Dispatcher) -> None:
    per_thread = 10_000
    counts = [0] * 8  # only touched on the dispatcher thread
    last = [-1] * 8
    out_of_order: list[tuple[int, int]] = []

    def hit(t: int, i: int) -> None:
        counts[t] += 1
        if i != last[t] + 1:
            out_of_order.append((t, i))
        last[t] = i

    start = threading.Barrier(8)

    def producer(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            dispatcher.call_soon(hit, t, i)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert counts == [per_thread] * 8
    assert out_of_order == []  # each thread's calls run in its own call order


def test_wakeup_bytes_are_coalesced_to_one_per_loop_turn(dispatcher: Dispatcher) -> None:
    """Invariant 2: at most one wake-up byte per loop turn, however many commands."""
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    gate = threading.Event()
    ran: list[int] = []
    # block the loop so that every call below is queued while one byte is pending
    dispatcher.call_soon(gate.wait, WAIT)
    before = dispatcher.stats.wakeups
    for i in range(1000):
        dispatcher.call_soon(ran.append, i)
    queued_wakeups = dispatcher.stats.wakeups - before
    gate.set()
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert ran == list(range(1000))
    assert queued_wakeups <= 1
    stats = dispatcher.stats
    # every byte needs the flag cleared in between, which happens once per turn at most
    assert stats.wakeups <= stats.turns + 1


def test_wakeups_stay_bounded_under_concurrent_call_soon(dispatcher: Dispatcher) -> None:
    before_turns, before_wakeups = dispatcher.stats.turns, dispatcher.stats.wakeups

    def producer() -> None:
        for _ in range(5_000):
            dispatcher.call_soon(int)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    wakeups = dispatcher.stats.wakeups - before_wakeups
    turns = dispatcher.stats.turns - before_turns
    assert wakeups <= turns + 1
    assert wakeups < 20_000


def test_call_soon_on_the_dispatcher_thread_writes_no_wakeup(dispatcher: Dispatcher) -> None:
    ran: list[int] = []

    def schedule() -> int:
        before = dispatcher.stats.wakeups
        for i in range(50):
            dispatcher.call_soon(ran.append, i)
        return dispatcher.stats.wakeups - before

    assert dispatcher.submit_and_wait(schedule, timeout=WAIT) == 0
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert ran == list(range(50))


def test_submit_and_wait_raises_the_callables_exception(dispatcher: Dispatcher) -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        dispatcher.submit_and_wait(boom, timeout=WAIT)


def test_submit_and_wait_times_out_with_a_websocket_timeout(dispatcher: Dispatcher) -> None:
    gate = threading.Event()
    dispatcher.call_soon(gate.wait, WAIT)
    try:
        with pytest.raises(WebSocketTimeoutException):
            dispatcher.submit_and_wait(lambda: None, timeout=0.01)
    finally:
        gate.set()


def test_command_exception_is_logged_and_the_loop_survives(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise ValueError("command boom")

    with caplog.at_level(logging.ERROR, logger="wspool"):
        dispatcher.call_soon(boom)
        assert dispatcher.submit_and_wait(lambda: "alive", timeout=WAIT) == "alive"
    records = [r for r in caplog.records if r.exc_info and "command boom" in str(r.exc_info[1])]
    assert len(records) == 1
    assert records[0].name == "wspool"
    assert dispatcher.stats.errors == 1


# -- timers ----------------------------------------------------------------------------------


def test_timers_fire_in_deadline_order_and_cancelled_ones_do_not(
    dispatcher: Dispatcher,
) -> None:
    """Invariant 5: one heap of timers; the selector timeout is the next deadline."""
    fired: list[str] = []
    done = threading.Event()

    def schedule() -> None:
        # deadlines relative to one base, so the order is fixed whatever the clock does
        base = dispatcher_now() + 0.02
        dispatcher.call_at(base + 0.03, fired.append, "c")
        dispatcher.call_at(base + 0.01, fired.append, "a")
        dispatcher.call_at(base + 0.02, fired.append, "b")
        dispatcher.call_at(base + 0.02, fired.append, "b2")  # same deadline: FIFO
        dispatcher.call_at(base + 0.015, fired.append, "x").cancel()
        dispatcher.call_at(base + 0.04, done.set)

    dispatcher.call_soon(schedule)
    assert done.wait(WAIT)
    assert fired == ["a", "b", "b2", "c"]


def dispatcher_now() -> float:
    from time import monotonic

    return monotonic()


def test_timer_cancelled_from_another_thread_does_not_fire(dispatcher: Dispatcher) -> None:
    fired: list[int] = []
    handle = dispatcher.submit_and_wait(
        lambda: dispatcher.call_later(0.05, fired.append, 1), timeout=WAIT
    )
    assert isinstance(handle, TimerHandle)
    handle.cancel()
    assert handle.cancelled
    done = threading.Event()
    dispatcher.call_soon(lambda: dispatcher.call_later(0.1, done.set))
    assert done.wait(WAIT)
    assert fired == []


def test_cancelled_timers_do_not_pile_up(dispatcher: Dispatcher) -> None:
    def churn() -> int:
        keep = dispatcher.call_later(3600, lambda: None)
        for _ in range(10_000):
            dispatcher.call_later(3600, lambda: None).cancel()
        size = dispatcher.timer_count
        keep.cancel()
        return size

    assert dispatcher.submit_and_wait(churn, timeout=WAIT) <= 200


def test_timer_exception_is_logged_and_later_timers_run(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("timer boom")

    def schedule() -> None:
        dispatcher.call_later(0, boom)
        dispatcher.call_later(0.001, done.set)

    with caplog.at_level(logging.ERROR, logger="wspool"):
        dispatcher.call_soon(schedule)
        assert done.wait(WAIT)
    assert any(r.exc_info and "timer boom" in str(r.exc_info[1]) for r in caplog.records)


def test_call_later_off_the_dispatcher_thread_is_refused(dispatcher: Dispatcher) -> None:
    with pytest.raises(RuntimeError, match="dispatcher thread"):
        dispatcher.call_later(1, lambda: None)


# -- readers and writers -------------------------------------------------------------------


def test_reader_and_writer_on_a_socketpair(dispatcher: Dispatcher) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    received = bytearray()
    got_all = threading.Event()
    writable = threading.Event()

    def on_readable() -> None:
        received.extend(b.recv(65536))
        if len(received) >= 5:
            dispatcher.remove_reader(b)
            got_all.set()

    def on_writable() -> None:
        a.send(b"hello")
        dispatcher.remove_writer(a)  # one shot: the pool toggles write interest like this
        writable.set()

    try:
        dispatcher.submit_and_wait(dispatcher.add_reader, b, on_readable, timeout=WAIT)
        dispatcher.submit_and_wait(dispatcher.add_writer, a, on_writable, timeout=WAIT)
        assert writable.wait(WAIT)
        assert got_all.wait(WAIT)
        assert bytes(received) == b"hello"
    finally:
        a.close()
        b.close()


def test_one_key_per_fd_holds_both_callbacks(dispatcher: Dispatcher) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    events: list[str] = []
    both = threading.Event()

    def on_read() -> None:
        a.recv(100)
        events.append("r")
        dispatcher.remove_reader(a)
        if "w" in events:
            both.set()

    def on_write() -> None:
        events.append("w")
        dispatcher.remove_writer(a.fileno())  # an fd works as well as the socket
        if "r" in events:
            both.set()

    def setup() -> tuple[bool, bool]:
        dispatcher.add_reader(a, on_read)
        dispatcher.add_writer(a, on_write)
        return (dispatcher.remove_reader(b), True)

    try:
        assert dispatcher.submit_and_wait(setup, timeout=WAIT) == (False, True)
        b.send(b"x")
        assert both.wait(WAIT)
        assert sorted(events) == ["r", "w"]
        # both removed: the fd is no longer registered at all
        assert dispatcher.submit_and_wait(dispatcher.remove_reader, a, timeout=WAIT) is False
    finally:
        a.close()
        b.close()


def test_reader_exception_is_logged_and_the_loop_survives(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)

    def bad_reader() -> None:
        a.recv(100)
        dispatcher.remove_reader(a)
        raise OSError("reader boom")

    try:
        with caplog.at_level(logging.ERROR, logger="wspool"):
            dispatcher.submit_and_wait(dispatcher.add_reader, a, bad_reader, timeout=WAIT)
            b.send(b"x")
            # the loop keeps serving commands after the failing reader
            ok = False
            for _ in range(1000):
                if dispatcher.stats.errors:
                    ok = True
                    break
                dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
            assert ok
            assert dispatcher.submit_and_wait(lambda: 7, timeout=WAIT) == 7
        assert any(r.exc_info and "reader boom" in str(r.exc_info[1]) for r in caplog.records)
    finally:
        a.close()
        b.close()


# -- stop --------------------------------------------------------------------------------


def test_stop_runs_pending_commands_joins_and_closes_fds() -> None:
    before = open_fds()
    d = Dispatcher(name="stop-test")
    d.start()
    assert open_fds() > before  # selector and wake-up pair exist while running
    gate = threading.Event()
    ran: list[int] = []
    d.call_soon(gate.wait, WAIT)
    for i in range(10):
        d.call_soon(ran.append, i)
    threading.Timer(0, gate.set).start()  # releases the loop while stop() waits
    d.stop(WAIT)
    assert ran == list(range(10))
    assert not any(t.name == "stop-test" for t in threading.enumerate())
    assert open_fds() == before
    d.stop(WAIT)  # idempotent
    with pytest.raises(DispatcherStoppedError):
        d.call_soon(ran.append, 99)
    with pytest.raises(DispatcherStoppedError):
        d.start()


def test_stop_from_a_command_on_the_dispatcher_thread() -> None:
    d = Dispatcher()
    ran: list[str] = []
    gate = threading.Event()
    d.call_soon(gate.wait, WAIT)  # hold the loop so both commands below are queued
    d.call_soon(d.stop)
    d.call_soon(ran.append, "after stop")  # queued before the loop ended: still runs
    gate.set()
    d._stopped.wait(WAIT)
    assert ran == ["after stop"]
    d.stop(WAIT)
    assert not d.running


def test_stop_before_start_is_a_no_op() -> None:
    d = Dispatcher()
    d.stop()
    with pytest.raises(DispatcherStoppedError):
        d.call_soon(print)


def test_interpreter_exit_stops_a_live_dispatcher() -> None:
    """No stop(), no join: the exit hook runs queued work and the process exits 0."""
    proc = run_python(
        """
        import socket, sys
        from wspool.pool.dispatcher import Dispatcher

        d = Dispatcher(name="exit-test")
        a, b = socket.socketpair()

        def later():
            d.call_later(3600, print, "never")  # a pending timer must not hold exit
            d.add_reader(a, lambda: None)       # nor a registered socket

        d.call_soon(later)
        d.call_soon(lambda: print("queued work ran", flush=True))
        print("main done", flush=True)
        """,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "queued work ran" in proc.stdout
    assert "never" not in proc.stdout
    assert proc.stderr == ""


def test_read_buffer_is_one_reusable_buffer_that_grows_on_demand() -> None:
    dispatcher = Dispatcher()
    small = dispatcher.read_buffer(1024)
    assert len(small) >= 1024
    assert dispatcher.read_buffer(512) is small  # reused, never shrunk
    big = dispatcher.read_buffer(4096)
    assert len(big) >= 4096 and big is not small
    assert dispatcher.read_buffer(4096) is big


def test_sessions_sharing_the_read_buffer_keep_their_own_bytes(ws_server: Any) -> None:
    """Every read lands in the dispatcher's one buffer: what a session keeps must be a
    copy, or a later read on another socket would rewrite its messages."""
    import wspool

    server = ws_server()
    got: dict[int, list[str]] = {i: [] for i in range(20)}
    done = threading.Event()
    lock = threading.Lock()

    def on_message(conn: wspool.Connection, message: str) -> None:
        with lock:
            got[conn.label].append(message)
            if all(len(v) == 30 for v in got.values()):
                done.set()

    def on_open(conn: wspool.Connection) -> None:
        for n in range(30):
            conn.send(f"{conn.label}:{n}:" + "x" * (n * 97))

    with wspool.Pool(workers=2) as pool:
        for i in range(20):
            pool.connect(server.url, label=i, on_open=on_open, on_message=on_message)
        assert done.wait(20)
    for i, messages in got.items():
        assert messages == [f"{i}:{n}:" + "x" * (n * 97) for n in range(30)]


# -- the turn budget (module docstring of wspool/pool/dispatcher.py) ------------------------


def test_urgent_readers_run_before_deferrable_ones_and_the_rest_wait_a_turn(
    dispatcher: Dispatcher,
) -> None:
    pairs = [socket.socketpair() for _ in range(40)]
    seen: list[tuple[int, int]] = []  # (pair index, loop turn)
    done = threading.Event()
    urgent = 39

    def reader(index: int) -> None:
        pairs[index][0].recv(16)
        seen.append((index, dispatcher.stats.turns))
        if index != urgent:
            # 0.3 ms of deferrable work each: 39 of them overrun a 1 ms turn budget
            deadline = time.monotonic() + 0.0003
            while time.monotonic() < deadline:
                pass
        if len(seen) == len(pairs):
            done.set()

    def register() -> None:
        for index, (a, _) in enumerate(pairs):
            dispatcher.add_reader(a, lambda index=index: reader(index))
            dispatcher.set_deferrable(a, index != urgent)

    try:
        dispatcher.submit_and_wait(register, timeout=WAIT)
        # every socket readable before the next select: one turn sees them all
        dispatcher.submit_and_wait(lambda: [b.send(b"x") for _, b in pairs], timeout=WAIT)
        assert done.wait(WAIT)
        assert sorted(index for index, _ in seen) == list(range(40))  # none lost
        assert seen[0][0] == urgent  # the open socket's read went first
        turns = {turn for _, turn in seen}
        assert len(turns) > 1 and dispatcher.stats.deferred > 0  # spread over turns
    finally:
        for a, b in pairs:
            dispatcher.submit_and_wait(lambda a=a: dispatcher.remove_reader(a), timeout=WAIT)
            a.close()
            b.close()


def test_a_burst_of_commands_is_spread_over_turns_in_order(dispatcher: Dispatcher) -> None:
    seen: list[tuple[int, int]] = []

    def slow(i: int) -> None:
        deadline = time.monotonic() + 0.0002
        while time.monotonic() < deadline:
            pass
        seen.append((i, dispatcher.stats.turns))

    gate = threading.Event()
    dispatcher.call_soon(gate.wait, WAIT)  # hold the loop while the burst is queued
    for i in range(50):
        dispatcher.call_soon(slow, i)
    gate.set()
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert [i for i, _ in seen] == list(range(50))
    assert len({turn for _, turn in seen}) > 1  # 10 ms of commands: not one turn


def test_run_after_io_runs_before_queued_commands(dispatcher: Dispatcher) -> None:
    order: list[str] = []

    def from_the_loop() -> None:
        for i in range(3):
            dispatcher.call_soon(order.append, f"command {i}")
        dispatcher.run_after_io(lambda: order.append("after-io"))

    dispatcher.submit_and_wait(from_the_loop, timeout=WAIT)
    dispatcher.submit_and_wait(lambda: None, timeout=WAIT)
    assert order == ["after-io", "command 0", "command 1", "command 2"]
