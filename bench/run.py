"""Run the benchmark suite: every scenario, every library, one table.

    python -m bench                         # the whole suite, three runs of each
    python -m bench --quick                 # every scenario at a tenth of the counts
    python -m bench --scenarios fanin-1000 --libs wspool-pool,picows --runs 5

Each (scenario, library) pair runs ``--runs`` times (3 by default), each run in a fresh
driver process against a fresh feed server process (``bench/feed.py``), so memory,
threads and crashes stay apart.  The runs of one scenario are interleaved (every
library's first run, then every library's second...) so that slow drift of the machine
falls on all libraries alike.  The server's own counts are read after every run: a run
whose counts don't add up (a lost message, a dropped connection) refuses the whole row,
never reported.  A row shows each metric's median and min-max over its runs; ratios
compare medians with ``wspool-pool``'s, and the worst-case ratio puts the library's
median against ``wspool-pool``'s worst run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = [
    "wspool-pool",
    "wspool-pool-inline",
    "wspool-blocking",
    "websocket-client",
    "websockets-asyncio",
    "websockets-sync",
    "aiohttp",
    "picows",
]
#: The row every ratio and every target is about: the Pool with its default (worker)
#: delivery.  ``wspool-pool-inline`` (callbacks on the dispatcher) is a row of its own.
REFERENCE = "wspool-pool"
#: Runs of each (scenario, library) pair unless --runs says otherwise.
RUNS = 3
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
    ratio: bool = True  # False for a count whose ratio means nothing


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
        # Steady state: percentiles of the messages sent 1.5 s or more after the last
        # connection opened (the "go" goes out once all are open).
        {"connections": 200, "count": 500, "rate": 50, "settle": 1.5},
        (
            Metric("steady p50 µs", lambda r, p: r["p50_us"], "{:,.0f}", False),
            Metric("steady p99 µs", lambda r, p: r["p99_us"], "{:,.0f}", False),
            Metric("steady p99.9 µs", lambda r, p: r["p999_us"], "{:,.0f}", False),
        ),
        quick={"count": 150},
    ),
    Scenario(
        "latency-ramp",
        "latency",
        # Ramp-up: each connection's paced feed starts at its handshake while the others
        # are still opening; percentiles of the messages sent before the last opened.
        {"connections": 1000, "count": 40, "rate": 10, "settle": 1.5, "start": "open"},
        (
            Metric("open s", lambda r, p: r["open_seconds"], "{:.2f}", False),
            Metric("ramp p50 µs", lambda r, p: r["ramp_p50_us"], "{:,.0f}", False),
            Metric("ramp p99 µs", lambda r, p: r["ramp_p99_us"], "{:,.0f}", False),
            Metric("ramp p99.9 µs", lambda r, p: r["ramp_p999_us"], "{:,.0f}", False),
            Metric("ramp msgs", lambda r, p: r["ramp_messages"], "{:,.0f}", True, ratio=False),
        ),
        quick={"connections": 300, "count": 20},
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
    for package in ("wspool", "websocket-client", "websockets", "aiohttp", "picows", "wsaccel"):
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


# -- several runs ----------------------------------------------------------------------
def run_order(libraries: list[str], runs: int) -> list[tuple[int, str]]:
    """(run index, library) in the order they run: interleaved, every library's first
    run before any second run, so drift over the minutes of a scenario falls on all."""
    return [(index, library) for index in range(runs) for library in libraries]


def settled(runs: list[Result]) -> bool:
    """True once a library's row can't become valid: a run was not ok (one refused
    run refuses the row, and an unsupported scenario stays unsupported)."""
    return bool(runs) and runs[-1]["status"] != "ok"


def summarize(metric: Metric, values: list[float | None]) -> dict[str, Any]:
    """Median, min, max and the worst run of one metric over the runs (all None when
    a run has no value: a median of what was measured would hide the gap)."""
    if not values or any(v is None for v in values):
        return {"median": None, "min": None, "max": None, "worst": None, "runs": values}
    known = [float(v) for v in values if v is not None]
    return {
        "median": statistics.median(known),
        "min": min(known),
        "max": max(known),
        "worst": min(known) if metric.higher_is_better else max(known),
        "runs": known,
    }


def aggregate(scenario: Scenario, library: str, runs: list[Result], planned: int) -> Result:
    """One table row from a library's runs of a scenario (the runs are kept in it).

    A run that was refused, failed or unsupported gives the row its status and
    reason; the runner stops running a library once that happened (:func:`settled`).
    A peer that hit the deadline keeps its best rate until then as ``partial_rate``:
    an upper bound of its speed for the ratio targets."""
    row: Result = {
        "library": library,
        "params": runs[0]["params"] if runs else {},
        "runs": runs,
        "planned_runs": planned,
    }
    partial = [r["partial_rate"] for r in runs if "partial_rate" in r]
    if partial:
        row["partial_rate"] = max(partial)
    bad = next(((i, r) for i, r in enumerate(runs) if r["status"] != "ok"), None)
    if bad is not None:
        index, run = bad
        row["status"] = run["status"]
        row["reason"] = str(run["reason"])
        if run["status"] != "unsupported" and planned > 1:
            row["reason"] = f"run {index + 1} of {planned}: {row['reason']}"
        return row
    if not runs:
        row.update(status="failed", reason="no run")
        return row
    row["status"] = "ok"
    row["metrics"] = {
        m.title: summarize(m, [run["metrics"][m.title] for run in runs]) for m in scenario.metrics
    }
    return row


# -- reporting -------------------------------------------------------------------------
TABLE_NOTE = (
    "Each cell: the median of the runs, then their min-max.  ratio = the library's "
    "median / wspool-pool's median; worst = the library's median / wspool-pool's worst "
    "run (its slowest, or its highest time), so wspool is judged by its bad run."
)


def _ratio_cell(metric: Metric, row: Result, reference: Result | None) -> str:
    if not metric.ratio or reference is None:
        return ""
    value = row["metrics"][metric.title]["median"]
    ref = reference["metrics"][metric.title]
    if value is None or not ref["median"]:
        return ""
    cell = f"{value / ref['median']:.2f}x"
    if row is not reference and len(ref["runs"]) > 1 and ref["worst"]:
        cell += f" (worst {value / ref['worst']:.2f}x)"
    return cell


def format_table(scenario: Scenario, rows: list[Result]) -> str:
    reference = next((r for r in rows if r["library"] == REFERENCE and r["status"] == "ok"), None)
    header = ["library", "runs"]
    for metric in scenario.metrics:
        header += [metric.title, "min-max"] + (["ratio"] if metric.ratio else [])
    lines = [
        f"### {scenario.name}  {json.dumps(rows[0]['params'] if rows else {}, default=str)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["library"], str(len(row["runs"]))]
        if row["status"] != "ok":
            cells.append(f"{row['status']}: {str(row['reason'])[:140]}")
            cells += [""] * (len(header) - 3)
        else:
            for metric in scenario.metrics:
                summary = row["metrics"][metric.title]
                if summary["median"] is None:
                    cells += ["-", "-"]
                else:
                    cells.append(metric.fmt.format(summary["median"]))
                    low, high = (metric.fmt.format(summary[k]) for k in ("min", "max"))
                    cells.append(low if low == high else f"{low}-{high}")
                if metric.ratio:
                    cells.append(_ratio_cell(metric, row, reference))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Target:
    """One performance target of issue 12: wspool-pool's number, or its ratio to a
    peer measured in the same run, checked on the median and on the worst run."""

    text: str
    scenario: str
    metric: str
    compare: str  # "min" (at least), "max" (at most) or "eq" (exactly)
    bound: float | Callable[[dict[str, Any]], float]  # a number, or from the row's params
    peer: str | None = None  # when set: wspool-pool's number / the peer's median


def _idle_threads(params: dict[str, Any]) -> float:
    """The main thread, the dispatcher and the workers (8 unless the run set them)."""
    return 2 + int(params.get("workers", 8))


def _fanin_targets(scenario: str, label: str) -> list[Target]:
    return [
        Target(f"{label} >= 0.5x picows", scenario, "msg/s", "min", 0.5, "picows"),
        Target(
            f"{label} >= 4x websockets-asyncio",
            scenario,
            "msg/s",
            "min",
            4,
            "websockets-asyncio",
        ),
        Target(f"{label} >= 2.5x aiohttp", scenario, "msg/s", "min", 2.5, "aiohttp"),
    ]


TARGETS = [
    Target("latency steady p50 <= 3x picows", "latency", "steady p50 µs", "max", 3, "picows"),
    Target("latency steady p99 <= 3x picows", "latency", "steady p99 µs", "max", 3, "picows"),
    *_fanin_targets("fanin-1000", "fan-in 1,000 x 2,000"),
    *_fanin_targets("fanin-10", "fan-in 10 x 20,000"),
    Target("8,000 idle: open time <= 0.7x picows", "idle-8000", "open s", "max", 0.7, "picows"),
    Target("8,000 idle: KiB/conn <= 0.25x picows", "idle-8000", "KiB/conn", "max", 0.25, "picows"),
    Target(
        "8,000 idle: threads = main + 1 dispatcher + workers",
        "idle-8000",
        "threads",
        "eq",
        _idle_threads,
    ),
    Target("1 MiB masked send >= 500 MB/s (Pool)", "send-1MiB", "MB/s", "min", 500),
]


def _row(record: dict[str, Any], scenario: str, library: str) -> Result | None:
    return next((r for r in record["scenarios"][scenario] if r["library"] == library), None)


def _meets(value: float, compare: str, bound: float) -> bool:
    if compare == "min":
        return value >= bound
    if compare == "max":
        return value <= bound
    return value == bound


def _shown(value: float, ratio: bool) -> str:
    if ratio:
        return f"{value:.2f}x"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _judge(target: Target, record: dict[str, Any]) -> str:
    """The line of one target whose scenario ran."""
    mine = _row(record, target.scenario, REFERENCE)
    if mine is None:
        return f"  ----  {target.text}: not measured ({REFERENCE}: not in --libs)"
    summary = mine["metrics"][target.metric] if mine["status"] == "ok" else None
    if summary is None or summary["median"] is None:
        why = f"{mine['status']}: {str(mine.get('reason', 'no value'))[:100]}"
        return f"  MISS  {target.text}: no valid {REFERENCE} measurement ({why})"
    bound = target.bound(mine["params"]) if callable(target.bound) else target.bound
    median, worst, note = summary["median"], summary["worst"], ""
    if target.compare == "eq":  # the run farthest from the bound is the worst
        worst = max(summary["runs"], key=lambda v: abs(v - bound))
    if target.peer is not None:
        peer = _row(record, target.scenario, target.peer)
        versus = None
        if peer is not None and peer["status"] == "ok":
            versus = peer["metrics"][target.metric]["median"]
        elif peer is not None and "partial_rate" in peer and target.compare == "min":
            # A peer that ran out of time: its rate until the deadline bounds it.
            versus, note = peer["partial_rate"], " (at least: the peer hit the deadline)"
        if not versus:
            why = "not in --libs" if peer is None else f"{peer['status']}"
            return f"  ----  {target.text}: not measured ({target.peer}: {why})"
        median, worst = median / versus, worst / versus
    results = [_meets(v, target.compare, bound) for v in (median, worst)]
    words = ["met" if ok else "missed" for ok in results]
    ratio = target.peer is not None
    return (
        f"  {'met ' if all(results) else 'MISS'}  {target.text}: median "
        f"{_shown(median, ratio)} {words[0]}; worst run {_shown(worst, ratio)} {words[1]}{note}"
    )


def check_targets(record: dict[str, Any]) -> list[str]:
    """One line per target whose scenario ran, judged on the median and on the worst
    run; a target whose peer has no valid row is "not measured", never met."""
    lines = [_judge(t, record) for t in TARGETS if t.scenario in record["scenarios"]]
    mine = [
        (name, row)
        for name, rows in record["scenarios"].items()
        for row in rows
        if row["library"] == REFERENCE
    ]
    if mine:
        lost = [name for name, row in mine if row["status"] in ("refused", "failed")]
        lines.append(
            f"  {'MISS' if lost else 'met '}  no lost message, no dropped connection "
            f"({REFERENCE}): "
            + (f"refused or failed in {', '.join(lost)}" if lost else "every run's counts add up")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated")
    parser.add_argument(
        "--scenarios", default="", help="comma-separated names or prefixes (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, same scenarios")
    parser.add_argument(
        "--runs", type=int, default=RUNS, help=f"runs of each pair (default {RUNS})"
    )
    parser.add_argument("--timeout", type=float, help="seconds per driver run (default 300)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="output")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:22} {scenario.kind:11} {scenario.params}")
        return 0
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}")
    libraries = [lib for lib in args.libs.split(",") if lib]
    unknown = set(libraries) - set(LIBRARIES) - set(EXTRA_LIBRARIES)
    if unknown:
        parser.error(
            f"unknown libraries {sorted(unknown)}; choose from {LIBRARIES + EXTRA_LIBRARIES}"
        )
    wanted = [s for s in args.scenarios.split(",") if s]
    chosen = [s for s in SCENARIOS if not wanted or any(s.name.startswith(w) for w in wanted)]
    if not chosen:
        parser.error(f"no scenario matches {wanted}; see --list")
    record: dict[str, Any] = {
        "machine": machine_details(),
        "quick": args.quick,
        "runs": args.runs,
        "scenarios": {},
    }
    tables = []
    print(TABLE_NOTE + "\n", flush=True)
    for scenario in chosen:
        runs: dict[str, list[Result]] = {library: [] for library in libraries}
        for index, library in run_order(libraries, args.runs):
            if settled(runs[library]):
                continue  # refused, failed or unsupported: more runs can't change the row
            print(
                f"... {scenario.name} / {library} (run {index + 1} of {args.runs})",
                file=sys.stderr,
                flush=True,
            )
            runs[library].append(run_one(scenario, library, args.quick, args.timeout))
        rows = [aggregate(scenario, lib, runs[lib], args.runs) for lib in libraries]
        record["scenarios"][scenario.name] = rows
        table = format_table(scenario, rows)
        tables.append(table)
        print(table + "\n", flush=True)
    targets = check_targets(record)
    if targets:
        caveat = " (--quick: smaller counts than the targets assume; judge a full run)"
        print(f"Targets (issue 12){caveat if args.quick else ''}:\n" + "\n".join(targets))
    record["targets"] = targets
    Path(args.json).write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"JSON record: {args.json}", file=sys.stderr)
    refused = sum(r["status"] == "refused" for rows in record["scenarios"].values() for r in rows)
    return 1 if refused else 0
