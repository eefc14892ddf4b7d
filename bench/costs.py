"""What one fan-in message costs the Pool, stage by stage, in CPU microseconds.

    python -m bench.costs [--messages 200000] [--per-read 8] [--connections 1000]
                          [--count 2000] [--no-end-to-end] [--json]

Each stage of the fan-in path is timed alone, on one thread, in a loop (so no thread
hand-off and no GIL contention is in these numbers):

``parse``     ``ClientProtocol.receive_data`` on reads of ``per-read`` 128-byte text
              frames: frame decode, UTF-8 decode, the Message events;
``queue``     ``DeliveryQueue.put_many`` of those events and the drain that takes them
              (the hand-off's bookkeeping, without the thread switch);
``wrapper``   ``Connection._deliver``: from the drain to the user's ``on_message``;
``callback``  the fan-in driver's own ``on_message`` (count, compare).

Then, unless ``--no-end-to-end``, the fan-in scenario itself runs (``fanin-1000`` sizes by
default) for ``wspool-pool`` (worker delivery), ``wspool-pool-inline`` (dispatcher
delivery) and ``picows``, each in a fresh process against the bench's feed server,
and the report sets the sum of the stages against each one's wall-clock cost per
message.  What the stages do not account for in ``wspool-pool-inline`` is the socket
work (select, recv, the dispatcher's loop); what ``wspool-pool`` adds on top of
``wspool-pool-inline`` is the thread hand-off (worker wake-ups, the GIL passing back and
forth).  Run it on a quiet machine: the end-to-end rows move with load, the stage rows
much less.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import wspool
from bench.feed import frame, json_message
from wspool.pool.delivery import DeliveryQueue
from wspool.pool.workers import DispatcherExecutor
from wspool.protocol.client_protocol import ClientProtocol
from wspool.protocol.events import Message


def _per_message(run: Callable[[], int], messages: int) -> float:
    """Microseconds of thread CPU per message: best of three runs of ``run``."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        done = run()
        best = min(best, (time.thread_time() - started) / done)
    assert done >= messages // 2
    return best * 1e6


def _read(per_read: int) -> bytes:
    return b"".join(frame(0x1, json_message(i)) for i in range(per_read))


def parse_cost(messages: int, per_read: int) -> float:
    data = _read(per_read)
    protocol = ClientProtocol()
    reads = messages // per_read

    def run() -> int:
        receive = protocol.receive_data
        count = 0
        for _ in range(reads):
            count += len(receive(data))
        return count

    return _per_message(run, messages)


class _Turns:
    """Stands in for the dispatcher: what the queue hands over, run when asked."""

    def __init__(self) -> None:
        self.tasks: list[Callable[[], object]] = []

    def run_after_io(self, fn: Callable[[], object]) -> None:
        self.tasks.append(fn)

    def run(self) -> None:
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task()


def queue_cost(messages: int, per_read: int) -> float:
    events = ClientProtocol().receive_data(_read(per_read))
    turns = _Turns()
    queue = DeliveryQueue(
        DispatcherExecutor(turns),  # type: ignore[arg-type]
        lambda item: None,
        high_water=10_000,
        low_water=5_000,
        on_pause=lambda: None,
        on_resume=lambda: None,
        on_error=lambda exc, item: None,
    )
    reads = messages // per_read
    size = len(_read(per_read))

    def run() -> int:
        put_many = queue.put_many
        for _ in range(reads):
            put_many(events, size)
            turns.run()
        return reads * per_read

    return _per_message(run, messages)


def _fanin_callback(per_connection: int) -> Callable[[Any, str], None]:
    # The same work as bench/drivers/wspool_pool.py's fan-in on_message.
    def on_message(conn: Any, message: str) -> None:
        counter = conn.label
        counter[0] += 1
        if counter[0] == per_connection:
            pass

    return on_message


def wrapper_and_callback_cost(messages: int) -> tuple[float, float]:
    """(``Connection._deliver`` without the callback, the callback alone)."""
    item = Message(1, json_message(1).decode())
    on_message = _fanin_callback(10**12)
    with wspool.Pool(workers=1, name="bench-costs") as pool:
        # Never opened (nobody listens on port 9): only its delivery method is used.
        conn = pool.connect(
            "ws://127.0.0.1:9/", label=[0], on_message=on_message, on_error=lambda c, e: None
        )

        def deliver() -> int:
            call = conn._deliver
            for _ in range(messages):
                call(item)
            return messages

        def callback() -> int:
            for _ in range(messages):
                on_message(conn, item.data)  # type: ignore[arg-type]
            return messages

        total = _per_message(deliver, messages)
        alone = _per_message(callback, messages)
        conn.abort()
    return max(0.0, total - alone), alone


def end_to_end(connections: int, count: int) -> dict[str, Any]:
    from bench import run as bench_run

    scenario = next(s for s in bench_run.SCENARIOS if s.name == "fanin-1000")
    scenario = dataclasses.replace(
        scenario, params={"connections": connections, "count": count}, quick={}
    )
    rows: dict[str, Any] = {}
    for library in ("wspool-pool", "wspool-pool-inline", "picows"):
        row = bench_run.run_one(scenario, library, quick=False, timeout=300)
        result = row.get("result") or {}
        if row["status"] != "ok":
            rows[library] = {"status": row["status"], "reason": row.get("reason", "")}
            continue
        rate = result["messages"] / result["seconds"]
        rows[library] = {"msg_per_s": rate, "us_per_message": 1e6 / rate}
    return rows


def measure(messages: int, per_read: int, e2e: tuple[int, int] | None) -> dict[str, Any]:
    wrapper, callback = wrapper_and_callback_cost(messages)
    stages = {
        "parse": parse_cost(messages, per_read),
        "queue": queue_cost(messages, per_read),
        "wrapper": wrapper,
        "callback": callback,
    }
    report: dict[str, Any] = {
        "params": {"messages": messages, "per_read": per_read},
        "stages_us": stages,
        "stages_total_us": sum(stages.values()),
    }
    if e2e is not None:
        report["params"].update({"connections": e2e[0], "count": e2e[1]})
        report["end_to_end"] = end_to_end(*e2e)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"bench.costs {json.dumps(report['params'])}", "", "CPU per message, one thread:"]
    for name, value in report["stages_us"].items():
        lines.append(f"  {name:10} {value:6.2f} us")
    total = report["stages_total_us"]
    lines.append(f"  {'sum':10} {total:6.2f} us  (at most {1e6 / total:,.0f} msg/s on one core)")
    rows = report.get("end_to_end")
    if rows:
        lines += ["", "fan-in, wall clock per message:"]
        for library, row in rows.items():
            if "us_per_message" not in row:
                lines.append(f"  {library:20} {row['status']}: {row['reason']}")
                continue
            cost = row["us_per_message"]
            lines.append(
                f"  {library:20} {cost:6.2f} us  ({row['msg_per_s']:,.0f} msg/s)"
                + (f"; {cost - total:+.2f} us beyond the stages" if library != "picows" else "")
            )
        pool, inline = rows.get("wspool-pool", {}), rows.get("wspool-pool-inline", {})
        if "us_per_message" in pool and "us_per_message" in inline:
            hop = pool["us_per_message"] - inline["us_per_message"]
            lines.append(f"  the worker hand-off: {hop:+.2f} us per message (pool - inline)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=summary)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--per-read", type=int, default=8, help="messages per socket read")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--count", type=int, default=2000, help="messages per connection")
    parser.add_argument("--no-end-to-end", action="store_true", help="the stages only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    e2e = None if args.no_end_to_end else (args.connections, args.count)
    report = measure(args.messages, args.per_read, e2e)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
