"""The benchmark harness itself: the feed server, a driver run and the count checks.

Numbers are never asserted here (performance lives in ``python -m bench``); these tests
make sure the suite measures what it claims and refuses rows whose counts don't add up.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import wspool  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.feed import json_message, large_text  # noqa: E402


def scenario(name: str) -> bench_run.Scenario:
    return next(s for s in bench_run.SCENARIOS if s.name == name)


def test_feed_messages_are_128_byte_json_and_large_text_is_utf8() -> None:
    for seq in (0, 7, 10**12):
        message = json_message(seq)
        assert len(message) == 128
        assert json.loads(message)["i"] == seq
    stamped = json.loads(json_message(123456789, "ts"))
    assert stamped["ts"] == 123456789
    for size in (1, 1000, 65536, 1 << 20):
        text = large_text(size)
        assert len(text) == size
        assert "é" in text.decode("utf-8") or size < 100


@pytest.fixture
def feed() -> object:
    server = bench_run.FeedServer()
    yield server
    server.close()


def test_feed_server_fanin_is_received_by_wspool_and_counted(feed: bench_run.FeedServer) -> None:
    received: list[str] = []
    with wspool.connect(f"{feed.base}/feed?count=50", compression=None, timeout=5) as ws:
        ws.send("go")
        received = [ws.recv() for _ in range(50)]
    assert all(isinstance(m, str) and len(m) == 128 for m in received)
    assert [json.loads(m)["i"] for m in received] == list(range(50))
    stats = feed.command("stats")
    assert stats["upgraded"] == 1 and stats["sent_messages"] == 50


def test_feed_server_deflate_stream_decodes_in_order(feed: bench_run.FeedServer) -> None:
    with wspool.connect(f"{feed.base}/feed?count=30&deflate=1", timeout=5) as ws:
        assert "permessage-deflate" in ws.headers.get("sec-websocket-extensions", "")
        ws.send("go")
        assert [json.loads(ws.recv())["i"] for _ in range(30)] == list(range(30))


def test_feed_server_sink_counts_messages_and_answers_sync(feed: bench_run.FeedServer) -> None:
    with wspool.connect(f"{feed.base}/sink", compression=None, timeout=5) as ws:
        for _ in range(10):
            ws.send("x" * 128)
        ws.send(b"\x00" * (300 * 1024))  # discarded as it arrives, still counted
        ws.send("sync")
        assert ws.recv() == "count:11"
    assert feed.command("stats")["received_messages"] == 11


def test_feed_server_fragments_reassemble_to_the_requested_size(feed: bench_run.FeedServer) -> None:
    with wspool.connect(f"{feed.base}/frag?size=5000&frag=64", compression=None, timeout=5) as ws:
        ws.send("go")
        message = ws.recv()
    assert isinstance(message, str) and len(message.encode()) == 5000


def test_a_driver_run_reports_counts_that_add_up() -> None:
    fanin = dataclasses.replace(
        scenario("fanin-10"), params={"connections": 3, "count": 40}, quick={}
    )
    row = bench_run.run_one(fanin, "wspool-pool", quick=False, timeout=60)
    assert row["status"] == "ok", row
    assert row["result"]["messages"] == 120
    assert row["server"]["sent_messages"] == 120
    assert row["metrics"]["msg/s"] > 0


def test_rows_whose_counts_do_not_add_up_are_refused() -> None:
    fanin = scenario("fanin-10")
    params = {"connections": 10, "count": 100}
    server = {"upgraded": 10, "sent_messages": 1000, "received_messages": 0}
    good = {"opened": 10, "messages": 1000, "seconds": 1.0, "errors": 0}
    assert bench_run.check_counts(fanin, params, good, server) is None
    lost = {**good, "messages": 999}
    assert "received 999/1000" in str(bench_run.check_counts(fanin, params, lost, server))
    dropped = {**good, "opened": 9}
    assert "9/10 connections" in str(bench_run.check_counts(fanin, params, dropped, server))
    short_server = {**server, "sent_messages": 900}
    assert "server sent 900/1000" in str(bench_run.check_counts(fanin, params, good, short_server))
    sending = scenario("sending-8x100")
    params = {"connections": 100, "threads": 8, "per_thread": 10}
    server = {"upgraded": 100, "sent_messages": 0, "received_messages": 79}
    result = {"opened": 100, "sent": 80, "confirmed": 79, "seconds": 1.0}
    assert "confirmed 79" in str(bench_run.check_counts(sending, params, result, server))


def test_a_driver_failure_is_reported_not_hidden() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = {"base": f"ws://127.0.0.1:{port}", "connections": 1, "count": 1}
    result = bench_run.run_driver("wspool-pool", "fanin", params, timeout=60)
    assert "Connection refused" in result["error"] or "refused" in result["error"].lower()


def _peer(module: str) -> None:
    """Skip a peer's test where its package is absent, except in the bench CI step.

    The README's suite installs ``.[test,compat]`` only; ``.ci/run`` then installs the
    ``bench`` extra and reruns this file with ``WSPOOL_BENCH_PEERS=required``, where a
    missing peer fails instead of skipping.
    """
    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("WSPOOL_BENCH_PEERS") == "required":
        pytest.fail(f"{module} is missing: install the bench extra (pip install -e '.[bench]')")
    pytest.skip(f"{module} is not installed (the bench extra); .ci/run's bench step runs this")


def test_the_aiohttp_peer_runs_fanin_and_ramp_up_latency_with_counts_that_add_up() -> None:
    _peer("aiohttp")
    fanin = dataclasses.replace(
        scenario("fanin-10"), params={"connections": 3, "count": 40}, quick={}
    )
    row = bench_run.run_one(fanin, "aiohttp", quick=False, timeout=60)
    assert row["status"] == "ok", row
    assert row["server"]["sent_messages"] == row["result"]["messages"] == 120
    ramp = dataclasses.replace(
        scenario("latency-ramp"),
        params={"connections": 3, "count": 5, "rate": 100, "settle": 0, "start": "open"},
        quick={},
    )
    row = bench_run.run_one(ramp, "aiohttp", quick=False, timeout=60)
    assert row["status"] == "ok", row
    result = row["result"]
    assert result["messages"] == 15
    # With no settle window every sample is either ramp-up or steady state.
    assert result["ramp_messages"] + result["steady_messages"] == 15
    assert result["p50_us"] is None or result["p50_us"] > 0


def test_the_inline_row_runs_on_pool_deliver_dispatcher() -> None:
    fanin = dataclasses.replace(
        scenario("fanin-10"), params={"connections": 2, "count": 20}, quick={}
    )
    row = bench_run.run_one(fanin, "wspool-pool-inline", quick=False, timeout=60)
    assert row["status"] == "ok", row
    assert row["server"]["sent_messages"] == row["result"]["messages"] == 40
    assert "wspool-pool-inline" in bench_run.LIBRARIES
    assert bench_run.REFERENCE == "wspool-pool"  # the inline row is never the reference


def test_paced_feed_with_start_open_sends_without_a_go(feed: bench_run.FeedServer) -> None:
    url = f"{feed.base}/paced?rate=200&count=3&start=open"
    with wspool.connect(url, compression=None, timeout=5) as ws:
        stamps = [json.loads(ws.recv())["ts"] for _ in range(3)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert feed.command("stats")["sent_messages"] == 3


def test_latency_report_splits_ramp_up_from_steady_state() -> None:
    from bench.drivers._common import latency_report

    opened = 10_000_000_000  # the last connection opened at t = 10 s
    ramp = [(opened - 1 - i, 5_000_000) for i in range(10)]  # sent before: 5 ms each
    settling = [(opened + 500_000_000, 99_000_000)]  # inside the settle window: neither
    steady = [(opened + 2_000_000_000 + i, (i + 1) * 1000) for i in range(100)]  # 1..100 µs
    report = latency_report(ramp + settling + steady, opened, {"settle": 1.5})
    assert report["ramp_messages"] == 10 and report["steady_messages"] == 100
    assert report["ramp_p50_us"] == report["ramp_max_us"] == 5000.0
    assert report["p50_us"] == 51.0 and report["max_us"] == 100.0
    assert report["p99_us"] == 100.0  # nearest rank: the 99th of 100 is index 99
    empty = latency_report([], opened, {})
    assert empty["steady_messages"] == 0 and empty["p50_us"] is None


def test_runs_are_interleaved_across_libraries() -> None:
    assert bench_run.run_order(["a", "b", "c"], 2) == [
        (0, "a"),
        (0, "b"),
        (0, "c"),
        (1, "a"),
        (1, "b"),
        (1, "c"),
    ]


def _run(title: str, value: float | None, status: str = "ok", **extra: object) -> dict[str, object]:
    """A run row as run_one makes it (only what aggregation reads)."""
    run: dict[str, object] = {"status": status, "params": {"connections": 10}, **extra}
    if status == "ok":
        run["metrics"] = {title: value}
    else:
        run["reason"] = "counts don't add up: received 9/10 messages"
    return run


def test_rows_report_median_and_range_and_the_worst_run_by_direction() -> None:
    fanin = scenario("fanin-10")
    runs = [_run("msg/s", v) for v in (300.0, 100.0, 200.0)]
    row = bench_run.aggregate(fanin, "wspool-pool", runs, 3)
    summary = row["metrics"]["msg/s"]
    assert row["status"] == "ok" and len(row["runs"]) == 3
    assert (summary["median"], summary["min"], summary["max"]) == (200.0, 100.0, 300.0)
    assert summary["worst"] == 100.0  # msg/s: the slowest run
    latency = scenario("latency")
    runs = [
        {"status": "ok", "params": {}, "metrics": {m.title: v for m in latency.metrics}}
        for v in (90.0, 70.0, 80.0)
    ]
    row = bench_run.aggregate(latency, "wspool-pool", runs, 3)
    assert row["metrics"]["steady p99 µs"]["worst"] == 90.0  # a time: the highest
    assert (
        bench_run.aggregate(fanin, "x", [_run("msg/s", v) for v in (1.0, 3.0)], 2)["metrics"][
            "msg/s"
        ]["median"]
        == 2.0
    )
    gap = bench_run.aggregate(fanin, "x", [_run("msg/s", 5.0), _run("msg/s", None)], 2)
    assert gap["metrics"]["msg/s"]["median"] is None  # no median over a missing value


def test_a_refused_run_refuses_the_row_and_ends_that_librarys_runs() -> None:
    fanin = scenario("fanin-10")
    good = _run("msg/s", 100.0)
    refused = _run("msg/s", None, status="refused", partial_rate=40.0)
    assert not bench_run.settled([good])
    assert bench_run.settled([good, refused])
    assert bench_run.settled([_run("msg/s", None, status="unsupported")])
    row = bench_run.aggregate(fanin, "websocket-client", [good, refused], 3)
    assert row["status"] == "refused" and "metrics" not in row
    assert row["reason"].startswith("run 2 of 3: counts don't add up")
    assert row["partial_rate"] == 40.0
    table = bench_run.format_table(fanin, [row])
    assert "refused: run 2 of 3" in table and "100" not in table.split("\n")[-1]


def test_the_table_shows_median_range_and_ratios_to_the_reference() -> None:
    fanin = scenario("fanin-10")
    ref = bench_run.aggregate(
        fanin, "wspool-pool", [_run("msg/s", v) for v in (1000.0, 800.0, 1200.0)], 3
    )
    peer = bench_run.aggregate(
        fanin, "picows", [_run("msg/s", v) for v in (2000.0, 2000.0, 2100.0)], 3
    )
    lines = bench_run.format_table(fanin, [ref, peer]).splitlines()
    assert lines[-2] == "| wspool-pool | 3 | 1,000 | 800-1,200 | 1.00x |"
    # ratio from the medians; worst: the peer's median against the reference's worst run
    assert lines[-1] == "| picows | 3 | 2,000 | 2,000-2,100 | 2.00x (worst 2.50x) |"


def _record(**scenarios: list[dict[str, object]]) -> dict[str, object]:
    return {"scenarios": scenarios}


def _rows(name: str, **libraries: tuple[float, ...]) -> list[dict[str, object]]:
    """Aggregated rows of scenario ``name`` whose metrics all take the given runs."""
    sc = scenario(name)
    rows = []
    for library, values in libraries.items():
        runs = [
            {"status": "ok", "params": {}, "metrics": {m.title: v for m in sc.metrics}}
            for v in values
        ]
        rows.append(bench_run.aggregate(sc, library.replace("_", "-"), runs, len(values)))
    return rows


def test_targets_are_judged_on_the_median_and_on_the_worst_run() -> None:
    fanin = _rows(
        "fanin-1000",
        wspool_pool=(600.0, 450.0, 650.0),  # median 600, worst run 450
        picows=(1000.0, 1100.0, 900.0),  # median 1000: 0.6x, worst 0.45x
        websockets_asyncio=(100.0, 100.0, 100.0),  # 6x, worst 4.5x
    )
    fanin.append(
        bench_run.aggregate(
            scenario("fanin-1000"),
            "aiohttp",
            [_run("msg/s", None, status="refused", partial_rate=150.0)],
            3,
        )
    )
    latency = _rows("latency", wspool_pool=(200.0, 210.0, 250.0), picows=(80.0, 70.0, 90.0))
    idle = _rows("idle-8000", wspool_pool=(10.0, 10.0, 10.0))
    record = _record(**{"fanin-1000": fanin, "latency": latency, "idle-8000": idle})
    lines = "\n".join(bench_run.check_targets(record))
    assert (
        "MISS  fan-in 1,000 x 2,000 >= 0.5x picows: median 0.60x met; worst run 0.45x missed"
        in lines
    )
    assert "met   fan-in 1,000 x 2,000 >= 4x websockets-asyncio: median 6.00x met; " in lines
    # A peer that hit the deadline: its rate so far bounds it (600 / 150 = 4x, 450 / 150 = 3x).
    aiohttp = "fan-in 1,000 x 2,000 >= 2.5x aiohttp: median 4.00x met; worst run 3.00x met"
    assert f"met   {aiohttp} (at least: the peer hit the deadline)" in lines
    # latency: 210 / 80 = 2.6x on the median, 250 / 80 = 3.1x on the worst run
    assert (
        "MISS  latency steady p50 <= 3x picows: median 2.62x met; worst run 3.12x missed" in lines
    )
    # A peer that did not run is not measured, never met.
    assert (
        "----  8,000 idle: open time <= 0.7x picows: not measured (picows: not in --libs)" in lines
    )
    assert "met   8,000 idle: threads = main + 1 dispatcher + workers: median 10 met" in lines
    assert "fan-in 10 x" not in lines and "send" not in lines  # scenarios that did not run
    assert "met   no lost message, no dropped connection" in lines
    fanin[0] = bench_run.aggregate(
        scenario("fanin-1000"), "wspool-pool", [_run("msg/s", None, status="refused")], 3
    )
    lines = "\n".join(bench_run.check_targets(record))
    assert "MISS  fan-in 1,000 x 2,000 >= 0.5x picows: no valid wspool-pool measurement" in lines
    assert (
        "MISS  no lost message, no dropped connection (wspool-pool): refused or failed in" in lines
    )


@pytest.mark.parametrize("deliver", ["workers", "dispatcher"])
def test_the_stage_breakdown_covers_every_message_and_adds_up(
    feed: bench_run.FeedServer, deliver: str
) -> None:
    from bench import stages

    params = {
        "base": feed.base,
        "connections": 4,
        "rate": 200,
        "count": 30,
        "settle": 0,
        "workers": 2,
        "deliver": deliver,
        "start": "open",
    }
    report = stages.measure(params)
    assert report["complete"] and report["errors"] == 0
    # every message is either ramp-up or steady with settle=0
    assert report["steady"]["messages"] + report["ramp"]["messages"] == 120
    part = report["steady"] if report["steady"]["messages"] else report["ramp"]
    assert list(part["stages"]) == [f"{a}>{b}" for a, b in stages.STAGES]
    assert all(row["p50_us"] >= 0 for row in part["stages"].values())
    assert part["total"]["p50_us"] > 0
    text = stages.render(report)
    assert "sent>select" in text and "queued>drain" in text
    # the hooks are gone afterwards: the Pool's methods are its own again
    from wspool.pool.session import Session

    assert Session._on_readable.__qualname__ == "Session._on_readable"


def test_the_cost_breakdown_times_each_stage_of_a_fanin_message() -> None:
    from bench import costs

    report = costs.measure(2_000, 8, None)
    stages = report["stages_us"]
    assert list(stages) == ["parse", "queue", "wrapper", "callback"]
    assert all(value >= 0 for value in stages.values()) and stages["parse"] > 0
    assert report["stages_total_us"] == pytest.approx(sum(stages.values()))
    assert "msg/s on one core" in costs.render(report)


def test_the_cost_breakdown_parse_stage_really_parses() -> None:
    from bench import costs
    from wspool.protocol.client_protocol import ClientProtocol

    events = ClientProtocol().receive_data(costs._read(8))
    assert [type(e).__name__ for e in events] == ["Message"] * 8
    assert all(len(e.data) == 128 for e in events)  # type: ignore[attr-defined]
