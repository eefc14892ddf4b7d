"""wspool.ProcessPool: connections in child processes (spawn), supervised by the parent.

The callbacks below run in the children (they import this module by name: pytest puts
tests/ on sys.path and spawn passes sys.path on).  They report through files named by
the connection's label, since a child's memory is out of the test's reach.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

import wspool
from wspool.demofeed import DemoFeed
from wspool.processes import rendezvous

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WAIT = 15.0


# ------------------------------------------------------- callbacks (run in children)


def open_and_go(conn: wspool.Connection) -> None:
    """Record the child's pid, then ask the ticker for ticks."""
    with open(str(conn.label), "a") as log:
        log.write(f"open {os.getpid()}\n")
    conn.send("go")


def record_close(conn: wspool.Connection, code: int | None, reason: str | None) -> None:
    with open(str(conn.label), "a") as log:
        log.write(f"close {os.getpid()} {code}\n")


def record_thread(conn: wspool.Connection) -> None:
    """on_open: the name of the thread it runs on, in the child."""
    import threading

    with open(str(conn.label), "a") as log:
        log.write(f"thread {threading.current_thread().name}\n")


def mark_started(path: str) -> None:
    """initializer: runs first in each child."""
    with open(path, "a") as log:
        log.write(f"init {os.getpid()}\n")


def events(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def feed() -> Iterator[DemoFeed]:
    with DemoFeed(rate=20) as server:
        yield server


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[wspool.ProcessPool]:
    with wspool.ProcessPool(2, workers=2) as pool:
        yield pool


@pytest.fixture
def ppool(shared_pool: wspool.ProcessPool) -> Iterator[wspool.ProcessPool]:
    """The module's pool, left without connections by each test (even a failed one)."""
    yield shared_pool
    left = shared_pool.connections
    for handle in left:
        handle.close()
    for handle in left:
        handle.wait_closed(WAIT)


def balanced_urls(feed: DemoFeed, per_slot: int = 3, slots: int = 2) -> list[str]:
    """Distinct ticker URLs, ``per_slot`` of them hashing to each slot (the feed's port
    changes from run to run, and with it where a URL goes)."""
    chosen: dict[int, list[str]] = {slot: [] for slot in range(slots)}
    for i in range(1000):
        url = f"{feed.url}/ticker?id={i}"
        bucket = chosen[rendezvous(url, slots)]
        if len(bucket) < per_slot:
            bucket.append(url)
        if all(len(b) == per_slot for b in chosen.values()):
            break
    return [url for slot in range(slots) for url in chosen[slot]]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return fields[0] != "Z"


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


# ----------------------------------------------------------------- assignment


def test_rendezvous_is_deterministic_balanced_and_moves_few_keys() -> None:
    keys = [f"wss://feed.example/{i}" for i in range(2000)]
    four = [rendezvous(k, 4) for k in keys]
    assert four == [rendezvous(k.encode(), 4) for k in keys]  # str and bytes agree
    for slot in range(4):
        assert 400 < four.count(slot) < 600  # 500 expected
    five = [rendezvous(k, 5) for k in keys]
    moved = [(a, b) for a, b in zip(four, five, strict=True) if a != b]
    # Only keys the new slot wins move, about a fifth of them.
    assert all(b == 4 for _, b in moved)
    assert 300 < len(moved) < 500
    assert {rendezvous(k, 1) for k in keys} == {0}
    with pytest.raises(ValueError):
        rendezvous("x", 0)


# --------------------------------------------------------------------- checks


def test_options_are_checked_in_the_caller_like_pool_connect(
    ppool: wspool.ProcessPool, feed: DemoFeed
) -> None:
    url = feed.url + "/ticker"
    with wspool.Pool(workers=1) as plain:
        for bad in ({"ping_timeout": 5}, {"max_queue": -1}, {"no_such_option": 1}):
            with pytest.raises(wspool.WebSocketConfigurationException) as expected:
                plain.connect(url, **bad)  # type: ignore[arg-type]
            with pytest.raises(wspool.WebSocketConfigurationException) as got:
                ppool.connect(url, **bad)  # type: ignore[arg-type]
            assert str(got.value) == str(expected.value)
    assert ppool.stats()["connections"] == 0


def test_a_callback_that_does_not_pickle_is_refused_by_name(
    ppool: wspool.ProcessPool, feed: DemoFeed
) -> None:
    def nested(conn: wspool.Connection, message: object) -> None:
        pass

    for callback in (nested, lambda conn, message: None):
        with pytest.raises(
            wspool.WebSocketConfigurationException, match=r"^on_message=.*top-level"
        ):
            ppool.connect(feed.url + "/ticker", on_message=callback)
    with pytest.raises(wspool.WebSocketConfigurationException, match=r"^label="):
        ppool.connect(feed.url + "/ticker", label=lambda: None)
    # A value that does not pickle is named by type: its repr could hold a secret.
    context = ssl.create_default_context()
    with pytest.raises(wspool.WebSocketConfigurationException, match=r"^sslopt=<dict>") as err:
        ppool.connect(feed.url + "/ticker", sslopt={"context": context, "password": "s3cret"})
    assert "s3cret" not in str(err.value)
    assert ppool.connections == []


def test_a_callback_the_child_cannot_import_raises_in_the_caller(
    ppool: wspool.ProcessPool, feed: DemoFeed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The children started with the sys.path of that time: this module is not on it.
    (tmp_path / "parent_only_callbacks.py").write_text("def on_open(conn):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import parent_only_callbacks  # type: ignore[import-not-found]

    with pytest.raises(wspool.WebSocketConfigurationException, match="parent_only_callbacks"):
        ppool.connect(feed.url + "/ticker", on_open=parent_only_callbacks.on_open)
    assert ppool.connections == []
    assert ppool.stats()["connections"] == 0


def test_constructor_arguments_are_checked() -> None:
    bad_arguments = (
        {"processes": 0},
        {"workers": 0},
        {"start_method": "fork"},
        {"key": 3},
        {"timeout": 0},
        {"deliver": "inline"},
    )
    for bad in bad_arguments:
        with pytest.raises(wspool.WebSocketConfigurationException):
            wspool.ProcessPool(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ behaviour


def test_connections_spread_over_children_and_callbacks_run_there(
    ppool: wspool.ProcessPool, feed: DemoFeed, tmp_path: Path
) -> None:
    urls = balanced_urls(feed)
    handles = [
        ppool.connect(url, label=str(tmp_path / f"c{i}"), on_open=open_and_go)
        for i, url in enumerate(urls)
    ]
    assert [h.process for h in handles] == [rendezvous(url, 2) for url in urls]
    assert [h.process for h in handles] == [0, 0, 0, 1, 1, 1]
    pids = ppool.pids
    assert os.getpid() not in pids and None not in pids and len(set(pids)) == 2
    for handle in handles:
        path = Path(str(handle.label))
        assert wait_until(lambda p=path: events(p), timeout=WAIT)
        assert events(path) == [["open", str(pids[handle.process])]]
    # Ticks flow only after on_open's "go": every connection got some.
    assert wait_until(lambda: all(h.stats()["messages_in"] > 2 for h in handles), timeout=WAIT)
    totals = ppool.stats()
    assert totals["connections"] == totals["open"] == 6
    per = totals["per_connection"]
    assert sorted((e["label"], e["process"]) for e in per) == sorted(
        (h.label, h.process) for h in handles
    )
    assert totals["messages_in"] == sum(e["messages_in"] for e in per) > 0
    assert [p["process"] for p in totals["processes"]] == [0, 1]
    one = handles[0].stats()
    assert one["state"] == "open" and one["process"] == handles[0].process
    with pytest.raises(wspool.WebSocketConfigurationException):
        handles[0].close(999)  # not a valid close code: raised here, nothing sent
    assert not handles[0].closed
    for handle in handles:
        handle.close()
    for handle in handles:
        assert handle.wait_closed(WAIT)
        assert handle.closed
        with pytest.raises(wspool.WebSocketConnectionClosedException):
            handle.stats()
    assert ppool.connections == []
    assert ppool.stats()["connections"] == 0


def test_a_killed_child_is_restarted_and_its_connections_come_back(
    ppool: wspool.ProcessPool, feed: DemoFeed, tmp_path: Path
) -> None:
    urls = balanced_urls(feed)
    handles = [
        ppool.connect(url, label=str(tmp_path / f"k{i}"), on_open=open_and_go)
        for i, url in enumerate(urls)
    ]
    assert wait_until(lambda: ppool.stats()["open"] == 6, timeout=WAIT)
    victim = handles[0].process
    old_pid = ppool.pids[victim]
    assert old_pid is not None
    restarts = ppool.stats()["processes"][victim]["restarts"]
    os.kill(old_pid, signal.SIGKILL)
    assert wait_until(lambda: ppool.pids[victim] not in (None, old_pid), timeout=WAIT)
    new_pid = ppool.pids[victim]
    moved = [h for h in handles if h.process == victim]
    # Each of the dead child's connections: a new on_open in the new child, no on_close.
    for handle in moved:
        path = Path(str(handle.label))
        assert wait_until(lambda p=path: len(events(p)) == 2, timeout=WAIT)
        assert events(path) == [["open", str(old_pid)], ["open", str(new_pid)]]
    assert wait_until(lambda: all(h.stats()["messages_in"] > 2 for h in moved), timeout=WAIT)
    totals = ppool.stats()
    assert totals["open"] == 6
    assert totals["processes"][victim]["restarts"] == restarts + 1
    assert not any(h.closed for h in handles)
    for handle in handles:
        handle.close()
    assert all(h.wait_closed(WAIT) for h in handles)


def test_close_closes_every_connection_with_a_handshake(feed: DemoFeed, tmp_path: Path) -> None:
    pool = wspool.ProcessPool(2, workers=1)
    children = [pid for pid in pool.pids if pid is not None]
    labels = [tmp_path / f"h{i}" for i in range(4)]
    for i, label in enumerate(labels):
        pool.connect(
            f"{feed.url}/ticker?id={i}",
            label=str(label),
            on_open=open_and_go,
            on_close=record_close,
        )
    assert wait_until(lambda: pool.stats()["open"] == 4, timeout=WAIT)
    pool.close()
    for label in labels:
        kinds = events(label)
        assert [k[0] for k in kinds] == ["open", "close"]
        assert kinds[1][2] == "1000"  # the server answered our close frame
    assert all(not _alive(pid) for pid in children)
    assert pool.connections == []
    with pytest.raises(wspool.WebSocketConfigurationException, match="closed"):
        pool.connect(feed.url)
    pool.close()  # idempotent


def test_forkserver_children_and_the_initializer_work(feed: DemoFeed, tmp_path: Path) -> None:
    label = tmp_path / "fs"
    init = tmp_path / "init"
    with wspool.ProcessPool(
        1, workers=1, start_method="forkserver", initializer=mark_started, initargs=[str(init)]
    ) as pool:
        pool.connect(
            f"{feed.url}/ticker", label=str(label), on_open=open_and_go, on_close=record_close
        )
        assert wait_until(lambda: pool.stats()["messages_in"] > 2, timeout=WAIT)
        pid = pool.pids[0]
    assert events(label) == [["open", str(pid)], ["close", str(pid), "1000"]]
    assert events(init) == [["init", str(pid)]]


def test_run_forever_returns_when_the_connections_end_and_key_places_them(
    feed: DemoFeed,
) -> None:
    with wspool.ProcessPool(2, workers=1, key=lambda url, label: f"{label}") as pool:
        # The feed closes these after half a second; without reconnect they end.
        handles = [
            pool.connect(f"{feed.url}/ticker?max_age=0.5&id={i}", label=label)
            for i, label in enumerate(["BTC", "BTC", "ETH"])
        ]
        assert [h.process for h in handles] == [rendezvous(k, 2) for k in ("BTC", "BTC", "ETH")]
        assert pool.process_for("ws://elsewhere/", "BTC") == handles[0].process
        assert pool.run_forever() is False
        assert all(h.closed for h in handles)
        assert pool.connections == []


# ----------------------------------------------------------- the parent's death

SCRIPT = """
import sys, threading, time
import wspool

def announce(pids):
    # Print the pids once the main thread is inside run_forever, so that the test's
    # SIGINT cannot land before it.
    main = threading.main_thread().ident
    while True:
        frame = sys._current_frames().get(main)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if "run_forever" in names:
            break
        time.sleep(0.01)
    print(" ".join(str(pid) for pid in pids), flush=True)

def on_close(conn, code, reason):
    with open(conn.label, "a") as log:
        log.write(f"{code}\\n")

if __name__ == "__main__":
    pool = wspool.ProcessPool(2, workers=1)
    for i in range(4):
        pool.connect(f"{sys.argv[1]}/ticker?id={i}", label=f"{sys.argv[2]}{i}",
                     on_close=on_close)
    while pool.stats()["open"] < 4:
        time.sleep(0.05)
    threading.Thread(target=announce, args=(pool.pids,), daemon=True).start()
    print("interrupted", pool.run_forever(), flush=True)
"""


def _start_script(tmp_path: Path, feed: DemoFeed) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), feed.url, str(tmp_path / "conn")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our Ctrl-C stays ours
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    pids = [int(p) for p in line.split()]
    assert len(pids) == 2, line
    return proc, pids


def test_children_exit_when_the_parent_is_sigkilled(feed: DemoFeed, tmp_path: Path) -> None:
    proc, pids = _start_script(tmp_path, feed)
    try:
        descendants = _children_of(proc.pid)  # the children, and spawn's resource tracker
        assert set(pids) <= descendants
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(WAIT)
        assert wait_until(lambda: not any(_alive(p) for p in descendants), timeout=WAIT), [
            p for p in descendants if _alive(p)
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_ctrl_c_closes_every_connection_and_the_children(feed: DemoFeed, tmp_path: Path) -> None:
    proc, pids = _start_script(tmp_path, feed)
    try:
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=WAIT)
        assert out.strip() == "interrupted True"
        assert proc.returncode == 0
        assert wait_until(lambda: not any(_alive(p) for p in pids), timeout=WAIT)
        for i in range(4):
            assert (tmp_path / f"conn{i}").read_text() == "1000\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_children_deliver_on_their_dispatcher_when_asked(feed: DemoFeed, tmp_path: Path) -> None:
    with wspool.ProcessPool(processes=1, workers=1, deliver="dispatcher", name="pp-inline") as pool:
        path = tmp_path / "thread"
        handle = pool.connect(feed.url + "/ticker", label=str(path), on_open=record_thread)
        assert wait_until(lambda: events(path), timeout=WAIT)
        assert events(path) == [["thread", "pp-inline-p0-dispatcher"]]
        handle.close()
        assert handle.wait_closed(WAIT)
