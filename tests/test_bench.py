"""The benchmark harness itself: the feed server, a driver run and the count checks.

Numbers are never asserted here (performance lives in ``python -m bench``); these tests
make sure the suite measures what it claims and refuses rows whose counts don't add up.
"""

from __future__ import annotations

import dataclasses
import json
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


def test_targets_are_checked_against_the_record_with_ratios_in_the_same_run() -> None:
    def row(library: str, **metrics: float) -> dict[str, object]:
        return {"library": library, "status": "ok", "metrics": metrics}

    record = {
        "scenarios": {
            "fanin-1000": [
                row("wspool-pool", **{"msg/s": 700_000.0}),
                row("websockets-asyncio", **{"msg/s": 250_000.0}),  # 2.8x: a miss
                row("picows", **{"msg/s": 1_400_000.0}),  # exactly 50 %
                {"library": "websocket-client", "status": "refused", "partial_rate": 10_000.0},
            ],
            "latency": [row("wspool-pool", **{"p50 µs": 90.0, "p99 µs": 3500.0})],
        }
    }
    lines = "\n".join(bench_run.check_targets(record))
    assert "met   fan-in at 1,000 connections >= 600,000 msg/s: 700,000" in lines
    assert "MISS  >= 3.5x websockets asyncio: 2.8" in lines
    assert "met   >= 45% of picows: 0.5" in lines
    assert "met   >= 40x websocket-client: 70 (at least" in lines
    assert "met   latency p50 <= 150 us: 90" in lines
    assert "MISS  latency p99 <= 3 ms: 3,500" in lines
    assert "idle" not in lines  # scenarios that did not run are not judged
