"""Run the benchmark suite: every scenario, every library, one table.

    python -m bench                         # the whole suite (about 15 minutes)
    python -m bench --quick                 # every scenario at a tenth of the counts
    python -m bench --scenarios fanin-1000 --libs wspool-pool,picows

Each (scenario, library) pair runs in a fresh driver process against a fresh feed
server process (``bench/feed.py``), so memory, threads and crashes stay apart.  The
server's own counts are read after every run: a row whose counts don't add up (a lost
message, a dropped connection) is refused, never reported.  Ratios compare each
library with ``wspool-pool`` measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = [
    "wspool-pool",
    "wspool-blocking",
    "websocket-client",
    "websockets-asyncio",
    "websockets-sync",
    "picows",
]
REFERENCE = "wspool-pool"
#: Accepted by --libs, not run by default: wspool.ProcessPool (fan-in only).
EXTRA_LIBRARIES = ["wspool-processes"]
MiB = 1024 * 1024

Result = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Metric:
    """One column: where it comes from in a result, how it prints, which way is better."""

    title: str
    value: Callable[[Result, dict[str, Any]], float | None]
    fmt: str
    higher_is_better: bool


def _rate(result: Result, params: dict[str, Any]) -> float:
    return float(result["messages"]) / float(result["seconds"])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


IDLE_METRICS = (
    Metric("open s", lambda r, p: r["open_seconds"], "{:.2f}", False),
    Metric("KiB/conn", lambda r, p: r["rss_kib_per_connection"], "{:.1f}", False),
    Metric("threads", lambda r, p: r["threads"], "{:.0f}", False),
)
THROUGHPUT = Metric("msg/s", _rate, "{:,.0f}", True)
MEDIAN_MS = Metric("ms/msg (median)", lambda r, p: _median(r["ms"]), "{:,.1f}", False)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # the driver function
    params: dict[str, Any]
    metrics: tuple[Metric, ...]
    quick: dict[str, Any] = dataclasses.field(default_factory=dict)
    timeout: float = 300.0

    def expected_messages(self, params: dict[str, Any]) -> int:
        """Messages the server must send or receive for the counts to add up."""
        if self.kind in ("fanin", "latency"):
            return int(params["connections"] * params["count"])
        if self.kind == "sending":
            return int(params["threads"] * params["per_thread"])
        if self.kind == "idle":
            return 0
        return int(params["count"])


def _sending_rate(result: Result, params: dict[str, Any]) -> float:
    return float(result["confirmed"]) / float(result["seconds"])


SCENARIOS = [
    Scenario(
        "fanin-10",
        "fanin",
        {"connections": 10, "count": 20_000},
        (THROUGHPUT,),
        quick={"count": 2_000},
    ),
    Scenario(
        "fanin-1000",
        "fanin",
        {"connections": 1000, "count": 2_000},
        (THROUGHPUT,),
        quick={"count": 200},
    ),
    Scenario(
        "fanin-1000-deflate",
        "fanin",
        {"connections": 1000, "count": 2_000, "deflate": True},
        (THROUGHPUT,),
        quick={"count": 200},
    ),
    Scenario(
        "latency",
        "latency",
        {"connections": 200, "count": 500, "rate": 50},
        (
            Metric("p50 µs", lambda r, p: r["p50_us"], "{:,.0f}", False),
            Metric("p99 µs", lambda r, p: r["p99_us"], "{:,.0f}", False),
            Metric("p99.9 µs", lambda r, p: r["p999_us"], "{:,.0f}", False),
        ),
        quick={"count": 100},
    ),
    Scenario(
        "idle-1000",
        "idle",
        {"connections": 1000},
        IDLE_METRICS,
    ),
    Scenario(
        "idle-8000",
        "idle",
        {"connections": 8000},
        IDLE_METRICS,
        quick={"connections": 2000},
    ),
    Scenario(
        "recv-1MiB-text",
        "recv_large",
        {"size": MiB, "type": "text", "count": 20},
        (MEDIAN_MS,),
        quick={"count": 5},
    ),
    Scenario(
        "recv-1MiB-binary",
        "recv_large",
        {"size": MiB, "type": "binary", "count": 20},
        (MEDIAN_MS,),
        quick={"count": 5},
    ),
    Scenario(
        "recv-16MiB-text",
        "recv_large",
        {"size": 16 * MiB, "type": "text", "count": 5},
        (MEDIAN_MS,),
        quick={"count": 2},
    ),
    Scenario(
        "recv-16MiB-binary",
        "recv_large",
        {"size": 16 * MiB, "type": "binary", "count": 5},
        (MEDIAN_MS,),
        quick={"count": 2},
    ),
    Scenario(
        "fragments-4MiB-64B",
        "fragments",
        {"size": 4 * MiB, "frag": 64, "count": 3},
        (MEDIAN_MS,),
        quick={"count": 1},
    ),
    Scenario(
        "send-1MiB",
        "send_large",
        {"size": MiB, "count": 200},
        (
            Metric(
                "MB/s",
                lambda r, p: p["size"] * r["messages"] / r["seconds"] / 1e6,
                "{:,.0f}",
                True,
            ),
        ),
        quick={"count": 20},
    ),
    Scenario(
        "sending-8x100",
        "sending",
        {"connections": 100, "threads": 8, "per_thread": 25_000},
        (Metric("msg/s", _sending_rate, "{:,.0f}", True),),
        quick={"per_thread": 2_500},
    ),
]


# -- running ---------------------------------------------------------------------------
class FeedServer:
    """The feed server child process, with its stdin/stdout control lines."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.feed", "--port", "0"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"feed server did not start: {line!r}")
        self.base = f"ws://127.0.0.1:{int(line.split()[1])}"

    def command(self, line: str) -> dict[str, int]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def run_driver(library: str, kind: str, params: dict[str, Any], timeout: float) -> Result:
    """One driver process; its RESULT line, or an error result."""
    command = [sys.executable, "-m", "bench.drivers", library, kind, json.dumps(params)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            return {"error": f"did not finish within {timeout:.0f} s"}
        return json.loads(line[7:])  # type: ignore[no-any-return]
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"driver exited {done.returncode} without a result: {' | '.join(tail)}"}


def check_counts(
    scenario: Scenario, params: dict[str, Any], result: Result, server: dict[str, int]
) -> str | None:
    """Why the counts don't add up, or None when they do."""
    kind = scenario.kind
    expected = scenario.expected_messages(params)
    problems = []
    if result.get("errors"):
        problems.append(f"{result['errors']} connection errors")
    if "connections" in params:
        opened = result.get("opened", params["connections"])
        if opened != params["connections"]:
            problems.append(f"{opened}/{params['connections']} connections opened")
        if server["upgraded"] != params["connections"]:
            problems.append(f"server upgraded {server['upgraded']}/{params['connections']}")
    if kind in ("fanin", "latency", "recv_large", "fragments"):
        if result.get("messages") != expected:
            problems.append(f"received {result.get('messages')}/{expected} messages")
        if server["sent_messages"] != expected:
            problems.append(f"server sent {server['sent_messages']}/{expected}")
    elif kind == "send_large":
        if result.get("messages") != expected or server["received_messages"] != expected:
            problems.append(
                f"server received {server['received_messages']}/{expected} messages"
                f" (driver saw {result.get('messages')})"
            )
    elif kind == "sending":
        sent, confirmed = result.get("sent"), result.get("confirmed")
        if not sent == confirmed == expected == server["received_messages"]:
            problems.append(
                f"sent {sent}, confirmed {confirmed}, server received "
                f"{server['received_messages']}, expected {expected}"
            )
    return "; ".join(problems) or None


def run_one(scenario: Scenario, library: str, quick: bool, timeout: float | None) -> Result:
    params = dict(scenario.params)
    if quick:
        params.update(scenario.quick)
    server = FeedServer()
    try:
        params["base"] = server.base
        params["timeout"] = timeout or scenario.timeout
        # The driver's own deadline covers the measured phase; opening and closing a
        # thousand threads of a slow peer gets two more minutes before it is killed.
        result = run_driver(library, scenario.kind, params, (timeout or scenario.timeout) + 120)
        time.sleep(0.2)  # let closing handshakes land before reading the counts
        counts = server.command("stats")
    finally:
        server.close()
    row: Result = {"library": library, "params": params, "result": result, "server": counts}
    if "error" in result or "unsupported" in result:
        row["status"] = "unsupported" if "unsupported" in result else "failed"
        row["reason"] = result.get("unsupported") or result.get("error")
        return row
    problem = check_counts(scenario, params, result, counts)
    if problem:
        row["status"] = "refused"
        row["reason"] = f"counts don't add up: {problem}"
        if result.get("finished") is False and result.get("seconds"):
            rate = result.get("messages", 0) / result["seconds"]
            row["reason"] += f" (deadline hit; {rate:,.0f} msg/s until then)"
            row["partial_rate"] = rate  # an upper bound of its speed, for ratios
        return row
    row["status"] = "ok"
    row["metrics"] = {m.title: m.value(result, params) for m in scenario.metrics}
    return row


# -- reporting -------------------------------------------------------------------------
def machine_details() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("wspool", "websocket-client", "websockets", "picows", "wsaccel"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "packages": versions,
        "wspool_commit": commit,
    }


def format_table(scenario: Scenario, rows: list[Result]) -> str:
    reference = next((r for r in rows if r["library"] == REFERENCE and r["status"] == "ok"), None)
    header = ["library"]
    for metric in scenario.metrics:
        header += [metric.title, "ratio"]
    lines = [
        f"### {scenario.name}  {json.dumps(rows[0]['params'] if rows else {}, default=str)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["library"]]
        if row["status"] != "ok":
            cells.append(f"{row['status']}: {str(row['reason'])[:120]}")
            cells += [""] * (len(header) - 2)
        else:
            for metric in scenario.metrics:
                value = row["metrics"][metric.title]
                cells.append("-" if value is None else metric.fmt.format(value))
                ref = reference["metrics"][metric.title] if reference else None
                cells.append(f"{value / ref:.2f}x" if value is not None and ref else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Target:
    """One performance target of issue 4, checked against a run's record."""

    text: str
    scenario: str
    metric: str
    library: str  # whose number
    compare: str  # "min" (at least) or "max" (at most)
    bound: float
    versus: str | None = None  # when set, the number is versus / library (a ratio)


TARGETS = [
    Target(
        "fan-in at 1,000 connections >= 600,000 msg/s",
        "fanin-1000",
        "msg/s",
        "wspool-pool",
        "min",
        600_000,
    ),
    Target(
        ">= 3.5x websockets asyncio",
        "fanin-1000",
        "msg/s",
        "websockets-asyncio",
        "min",
        3.5,
        versus="wspool-pool",
    ),
    Target(
        ">= 40x websocket-client",
        "fanin-1000",
        "msg/s",
        "websocket-client",
        "min",
        40,
        versus="wspool-pool",
    ),
    Target(">= 45% of picows", "fanin-1000", "msg/s", "picows", "min", 0.45, versus="wspool-pool"),
    Target("latency p50 <= 150 us", "latency", "p50 µs", "wspool-pool", "max", 150),
    Target("latency p99 <= 3 ms", "latency", "p99 µs", "wspool-pool", "max", 3000),
    Target("8,000 idle open in <= 2.5 s", "idle-8000", "open s", "wspool-pool", "max", 2.5),
    Target(
        "8,000 idle <= 12 KiB per connection", "idle-8000", "KiB/conn", "wspool-pool", "max", 12
    ),
    Target(
        "16 MiB text in <= 150 ms", "recv-16MiB-text", "ms/msg (median)", "wspool-pool", "max", 150
    ),
    Target(
        "4 MiB in 64-byte fragments in <= 1 s",
        "fragments-4MiB-64B",
        "ms/msg (median)",
        "wspool-pool",
        "max",
        1000,
    ),
    Target("1 MiB masked send >= 500 MB/s (Pool)", "send-1MiB", "MB/s", "wspool-pool", "min", 500),
    Target(
        "1 MiB masked send >= 500 MB/s (blocking)",
        "send-1MiB",
        "MB/s",
        "wspool-blocking",
        "min",
        500,
    ),
]


def _metric(record: dict[str, Any], scenario: str, library: str, metric: str) -> float | None:
    for row in record["scenarios"].get(scenario, []):
        if row["library"] == library and row["status"] == "ok":
            value = row["metrics"].get(metric)
            return None if value is None else float(value)
    return None


def _partial_rate(record: dict[str, Any], scenario: str, library: str) -> float | None:
    for row in record["scenarios"].get(scenario, []):
        if row["library"] == library and "partial_rate" in row:
            return float(row["partial_rate"])
    return None


def check_targets(record: dict[str, Any]) -> list[str]:
    """One line per target whose scenario ran: the value and whether it is met."""
    lines = []
    for target in TARGETS:
        if target.scenario not in record["scenarios"]:
            continue
        value = _metric(record, target.scenario, target.library, target.metric)
        note = ""
        if target.versus is not None:
            mine = _metric(record, target.scenario, target.versus, target.metric)
            if value is None:
                # A peer that ran out of time: its rate until the deadline bounds it.
                value = _partial_rate(record, target.scenario, target.library)
                note = " (at least: the peer hit the deadline)"
            if value is None or mine is None:
                lines.append(f"  n/a   {target.text}: no valid rows to compare")
                continue
            value = mine / value
        if value is None:
            lines.append(f"  MISS  {target.text}: no valid measurement")
            continue
        met = value >= target.bound if target.compare == "min" else value <= target.bound
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
        lines.append(f"  {'met ' if met else 'MISS'}  {target.text}: {shown}{note}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated")
    parser.add_argument(
        "--scenarios", default="", help="comma-separated names or prefixes (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, same scenarios")
    parser.add_argument("--timeout", type=float, help="seconds per driver run (default 300)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="output")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:22} {scenario.kind:11} {scenario.params}")
        return 0
    libraries = [lib for lib in args.libs.split(",") if lib]
    unknown = set(libraries) - set(LIBRARIES) - set(EXTRA_LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {LIBRARIES}")
    wanted = [s for s in args.scenarios.split(",") if s]
    chosen = [s for s in SCENARIOS if not wanted or any(s.name.startswith(w) for w in wanted)]
    if not chosen:
        parser.error(f"no scenario matches {wanted}; see --list")
    record: dict[str, Any] = {"machine": machine_details(), "quick": args.quick, "scenarios": {}}
    tables = []
    for scenario in chosen:
        rows = []
        for library in libraries:
            print(f"... {scenario.name} / {library}", file=sys.stderr, flush=True)
            rows.append(run_one(scenario, library, args.quick, args.timeout))
        record["scenarios"][scenario.name] = rows
        table = format_table(scenario, rows)
        tables.append(table)
        print(table + "\n", flush=True)
    targets = check_targets(record)
    if targets:
        caveat = " (--quick: smaller counts than the targets assume; judge a full run)"
        print(f"Targets (issue 4){caveat if args.quick else ''}:\n" + "\n".join(targets))
    record["targets"] = targets
    Path(args.json).write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"JSON record: {args.json}", file=sys.stderr)
    refused = sum(r["status"] == "refused" for rows in record["scenarios"].values() for r in rows)
    return 1 if refused else 0
