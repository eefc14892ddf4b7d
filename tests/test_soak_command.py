"""``python -m bench.soak`` in its small form: it runs, finds no fault, says so."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import ROOT, python_env

pytestmark = pytest.mark.usefixtures("no_thread_leaks", "no_fd_leaks")


def test_soak_command_small_run_passes_and_prints_the_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--connections", "50", "--seconds", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=python_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if re.match(r"^\w+: ", line)
    )
    for key in ("reconnects", "messages", "gaps", "duplicates", "max_rss_mb", "threads", "fds"):
        assert key in summary, done.stdout
    assert int(summary["reconnects"]) > 0
    assert int(summary["messages"]) > 0
    assert summary["duplicates"] == summary["reordered"] == summary["lost"] == "0"
    assert "server restart" in summary["faults"]
    assert done.stdout.rstrip().endswith("OK"), done.stdout


def test_soak_command_fails_loudly_on_a_bad_argument() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--connections", "many"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=python_env(),
        check=False,
    )
    assert done.returncode == 2 and "--connections" in done.stderr
