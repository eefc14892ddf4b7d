"""Run the Autobahn testsuite's client cases against wspool (or another client) and report.

    python compliance/run.py                       # every case, client wspool
    python compliance/run.py --cases '1.*,9.1.6'   # a subset
    python compliance/run.py --client websocket-client --json out.json

Steps: install the pinned testsuite for Python 2.7 if missing, start the fuzzingserver on
127.0.0.1, run each case as an echo client, ask the server for its reports, then write
docs/compliance.md (full runs of the default client; other clients get
docs/compliance-CLIENT.md) and optionally a JSON summary.  Exit status: 0 when every
case meets the target (OK or INFORMATIONAL, close behavior too), 1 when one misses it,
2 when the harness itself could not run, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import quote

import agents
import env27
import fuzzserver
import report

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SITE_DIR = HERE / ".autobahn27"
WORKDIR = HERE / ".autobahn-run"
REQUIREMENTS = HERE / "requirements-py27.txt"
DEFAULT_CLIENT = "wspool"
DEFAULT_DOC = REPO_ROOT / "docs" / "compliance.md"
MAX_PRINTED_MISSES = 40


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python compliance/run.py",
        description="Run the Autobahn fuzzingserver's client cases and report the results.",
    )
    parser.add_argument(
        "--client",
        choices=sorted(agents.CLIENTS),
        default=DEFAULT_CLIENT,
        help="client under test (default: wspool's blocking client, from this checkout; "
        "wspool-pool: the same checkout's Pool, one connection per case; "
        'wspool-pool-inline: that Pool with deliver="dispatcher")',
    )
    parser.add_argument(
        "--cases",
        default="*",
        help="comma-separated Autobahn case patterns, e.g. '1.*,9.1.6' (default: all)",
    )
    parser.add_argument(
        "--exclude",
        default="",
        help="comma-separated case patterns to leave out, e.g. '12.*,13.*'",
    )
    parser.add_argument("--json", type=Path, help="also write a JSON summary to this file")
    parser.add_argument(
        "--doc",
        type=Path,
        help="Markdown report path (default: docs/compliance.md for a full run of "
        "wspool, docs/compliance-CLIENT.md for another client's; "
        "compliance/.autobahn-run/compliance[-CLIENT].md for a subset)",
    )
    parser.add_argument("--python27", help="Python 2.7 interpreter (default: search pyenv, PATH)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds any single socket operation of the client may block; for "
        "wspool-pool also the bound of a whole case (default: 60)",
    )
    return parser.parse_args(argv)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the Ctrl-C path so that every finally block (server shutdown) runs.
    raise KeyboardInterrupt


def run_cases(client: agents.Client, base_url: str) -> dict[str, str]:
    """Run every case the server offers; return how the client saw each one end, by case id."""
    agent = quote(client.agent)
    count = int(agents.fetch_json(client, f"{base_url}/getCaseCount"))
    print(f"{count} cases, agent {client.agent} {client.version}", flush=True)
    notes: dict[str, str] = {}
    for number in range(1, count + 1):
        info = agents.fetch_json(client, f"{base_url}/getCaseInfo?case={number}")
        case_id = str(info["id"])
        started = time.monotonic()
        outcome = agents.run_case(client, f"{base_url}/runCase?case={number}&agent={agent}")
        # getCaseStatus answers once the server has logged the case, so cases never
        # overlap and updateReports below cannot miss the last one.
        status = agents.fetch_json(client, f"{base_url}/getCaseStatus?case={number}&agent={agent}")
        elapsed = time.monotonic() - started
        detail = outcome.detail.strip().splitlines()[-1] if outcome.detail else ""
        notes[case_id] = f"{outcome.kind.value} after {outcome.messages} messages" + (
            f": {detail}" if detail else ""
        )
        if outcome.kind is agents.OutcomeKind.UNEXPECTED:
            # A traceback from inside the client is a bug worth seeing in full.
            print(f"[{number}/{count}] {case_id}: unexpected exception\n{outcome.detail}")
        print(
            f"[{number:3d}/{count}] {case_id:8s} {status['behavior']:13s} {elapsed:6.2f}s  "
            + notes[case_id],
            flush=True,
        )
    agents.wait_for_close(client, f"{base_url}/updateReports?agent={agent}")
    return notes


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Explicit, because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    try:
        with (WORKDIR / ".lock").open("w") as lock:
            try:
                # Two runs would share the report folder and the port file.
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"error: another run.py is using {WORKDIR}; wait for it", file=sys.stderr)
                return 2
            return _main(args, argv)
    except KeyboardInterrupt:
        print("interrupted; the fuzzingserver was stopped", file=sys.stderr)
        return 130


def _shutdown(client: agents.Client) -> None:
    """Release what the client holds for the run (wspool-pool: close the Pool)."""
    try:
        client.shutdown()
    except Exception as exc:  # the results are in; a failing shutdown is only reported
        print(f"warning: shutting the client down failed: {exc!r}", file=sys.stderr)


def _checkout_state() -> str:
    """The commit the tested wspool comes from, and whether the tree had local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "wspool"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes under wspool/" if dirty else "")


def default_doc(client: str, full_run: bool) -> Path:
    """Where the Markdown report goes without --doc: one document per client, so that
    another client's full run never overwrites docs/compliance.md (wspool's)."""
    suffix = "" if client == DEFAULT_CLIENT else f"-{client}"
    folder = REPO_ROOT / "docs" if full_run else WORKDIR
    return folder / f"compliance{suffix}.md"


#: Full runs of one front end name the other front end's document and its verdict, so
#: either page shows both results (client -> (label, the other client's doc name)).
OTHER_FRONT_END = {
    "wspool": ("The Pool's run", "compliance-wspool-pool.md"),
    "wspool-pool": ("The blocking client's run", "compliance.md"),
}


def other_runs(client: str, doc_path: Path) -> dict[str, str]:
    """The ``other_runs`` lines of ``client``'s report (only for the docs/ documents:
    the links are relative to them)."""
    other = OTHER_FRONT_END.get(client)
    if other is None or doc_path.parent != REPO_ROOT / "docs":
        return {}
    label, name = other
    verdict = report.doc_verdict(doc_path.parent / name)
    target = "" if verdict is None else f", target {verdict}"
    return {label: f"[{name}]({name}){target}"}


def _split_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    patterns = _split_patterns(args.cases)
    excluded = _split_patterns(args.exclude)
    full_run = patterns == ["*"] and not excluded
    doc_path: Path = args.doc or default_doc(args.client, full_run)
    try:
        python27 = env27.find_python27(args.python27)
        log = WORKDIR / "pip-install.log"
        print(f"Python 2.7: {python27}; testsuite in {SITE_DIR.relative_to(REPO_ROOT)}")
        if env27.ensure_installed(python27, SITE_DIR, REQUIREMENTS, log):
            print(f"installed the pinned testsuite (log: {log})")
        client = agents.load_client(args.client, args.timeout)
    except (env27.EnvironmentError27, ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # Reports of an earlier run must not leak into this one.
    shutil.rmtree(WORKDIR / "reports", ignore_errors=True)
    server = fuzzserver.FuzzingServer(python27, SITE_DIR, WORKDIR, patterns, excluded)
    # Control-channel failures: the server died, or the client cannot talk to it at all.
    harness_errors: tuple[type[BaseException], ...] = (
        fuzzserver.FuzzingServerError,
        OSError,
        *client.error_types,
    )
    checkout = _checkout_state()  # before the run: others may edit the tree meanwhile
    started = time.monotonic()
    try:
        with server:
            print(f"fuzzingserver at {server.url} (log: {server.log_path})", flush=True)
            notes = run_cases(client, server.url)
    except harness_errors as exc:
        print(f"error: the harness could not run the cases: {exc!r}", file=sys.stderr)
        return 2
    finally:
        _shutdown(client)
    wall = time.monotonic() - started

    results = report.load_results(server.outdir, client.agent)
    summary = report.summarize(results)
    metadata = {
        "Command": "`python compliance/run.py" + "".join(f" {shlex.quote(a)}" for a in argv) + "`",
        "Date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "Client": f"{client.agent} {client.version}",
        "Checkout": checkout,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "Testsuite": "autobahntestsuite 25.10.1 (autobahn 0.10.9) on Python 2.7",
        "Cases": ", ".join(patterns) + (f" except {', '.join(excluded)}" if excluded else ""),
        "Wall time": f"{wall:.0f} s for {summary.total} cases",
    }
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    title = report.TITLE + ("" if args.client == DEFAULT_CLIENT else f": {client.agent}")
    doc_path.write_text(
        report.render_markdown(
            summary, metadata, notes, title=title, other_runs=other_runs(args.client, doc_path)
        )
    )
    if args.json:
        payload = {"metadata": metadata, "summary": summary.as_json(), "client_notes": notes}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")

    counts = ", ".join(f"{name} {n}" for name, n in summary.behaviors.most_common())
    print(f"\n{summary.total} cases in {wall:.0f} s: {counts}")
    print("behaviorClose: " + ", ".join(f"{k} {v}" for k, v in summary.close_behaviors.items()))
    for case in summary.failing[:MAX_PRINTED_MISSES]:
        print(f"  MISS {case.id} {case.behavior}/{case.behavior_close}: {case.description}")
    if len(summary.failing) > MAX_PRINTED_MISSES:
        print(f"  ... and {len(summary.failing) - MAX_PRINTED_MISSES} more (see the report)")
    print(f"report: {doc_path}; per-case JSON/HTML: {server.outdir}")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
