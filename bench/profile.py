"""Profile one driver run with py-spy and print where the time goes, per function.

    python -m bench.profile wspool-pool fanin-1000 [--quick] [--top 25] [--native]

The driver runs in its own process under ``py-spy record`` (sampling every thread,
idle samples dropped) against a fresh feed server, exactly as in ``python -m bench``.
Printed: the share of samples each function is at the top of the stack (self) and
anywhere in it (inclusive), per thread.  Requires ``py-spy`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import ROOT, SCENARIOS, FeedServer


def summarize(raw: Path, top: int, thread: str = "") -> str:
    """Self and inclusive sample shares from py-spy's collapsed-stack output."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        if thread not in frames[0]:
            continue
        total += count
        threads[frames[0]] += count
        names = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if " (" in f else f for f in frames]
        self_counts[names[-1]] += count
        for name in set(names[1:]):
            inclusive[name] += count
    lines = [f"{total} samples", "", "threads:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in threads.most_common()]
    lines += ["", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_counts.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("scenario")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--native", action="store_true", help="include C frames")
    parser.add_argument("--thread", default="", help="only threads whose name contains this")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not installed: pip install -e '.[bench]'")
    scenario = next((s for s in SCENARIOS if s.name == args.scenario), None)
    if scenario is None:
        parser.error(f"no scenario {args.scenario!r}; see python -m bench --list")
    params = dict(scenario.params)
    if args.quick:
        params.update(scenario.quick)
    server = FeedServer()
    params["base"] = server.base
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        command = [
            "py-spy",
            "record",
            "--format",
            "raw",
            "--threads",
            "--rate",
            str(args.rate),
            "-o",
            str(raw),
            *(["--native"] if args.native else []),
            "--",
            sys.executable,
            "-m",
            "bench.drivers",
            args.library,
            scenario.kind,
            json.dumps(params),
        ]
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        finally:
            server.close()
        print(next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")), done.stderr))
        if not raw.exists():
            print(done.stderr, file=sys.stderr)
            return 1
        print(summarize(raw, args.top, args.thread))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
