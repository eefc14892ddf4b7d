"""``wspool top``, ``wspool -i`` and ``wspool demo`` through pipes (the plain,
parseable output scripts read), and ``wspool demo`` in a pseudo-terminal."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from helpers import ROOT, WAIT, python_env
from test_cli_tty import Terminal, free_port, recording_echo, ticker
from wsserver import ServerConnection, WSServer

WSServerFactory = Callable[..., WSServer]

_TOTALS = re.compile(
    r"time=\d+\.\d connections=(\d+) open=(\d+) msg_s=\d+\.\d bytes_s=\d+ "
    r"messages=(\d+) reconnects=(\d+) errors=(\d+)"
)
_COLUMNS = "label state msg_s bytes_s rtt_ms age_s reconnects queue errors url"


def wspool(
    *args: str, stdin: str | None = None, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wspool", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=python_env(),
        check=False,
    )


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str, rows: int = 30, cols: int = 120, stdout_pipe: bool = False) -> Terminal:
        term = Terminal(*args, rows=rows, cols=cols, stdout_pipe=stdout_pipe)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def snapshots(stdout: str) -> list[list[str]]:
    """The snapshots of ``wspool top`` on a pipe: lists of lines, blank line between."""
    blocks = stdout.split("\n\n")
    assert blocks[-1] == "", stdout  # every snapshot ends with a blank line
    return [block.split("\n") for block in blocks[:-1]]


def three_then_close(conn: ServerConnection) -> None:
    for i in range(3):
        conn.send_message(f"m{i}")
    conn.close(1000)


# ------------------------------------------------------------------ wspool top


def test_top_on_a_pipe_prints_parseable_snapshots_until_every_connection_ended(
    ws_server: WSServerFactory,
) -> None:
    first = ws_server(three_then_close)
    second = ws_server(three_then_close)
    result = wspool("top", first.url, second.url, "--interval", "0.1", "--sort", "label")
    assert result.returncode == 0, result.stderr
    shots = snapshots(result.stdout)
    assert shots
    for shot in shots:
        assert _TOTALS.fullmatch(shot[0]), shot[0]
        assert shot[1] == _COLUMNS
        rows = [line.split(" ") for line in shot[2:]]
        assert [row[0] for row in rows] == ["c1", "c2"]
        assert all(len(row) == 10 for row in rows)
    last = shots[-1]
    totals = _TOTALS.fullmatch(last[0])
    assert totals is not None
    assert totals.groups() == ("2", "0", "6", "0", "0")
    label, state, _, bytes_s, rtt, age, reconnects, queue, errors, url = last[2].split(" ")
    assert (label, state, rtt, reconnects, queue, errors) == ("c1", "closed", "-", "0", "0", "0")
    assert float(age) >= 0 and int(bytes_s) >= 0
    assert url == first.url.rstrip("/") + "/"
    assert result.stderr == "wspool top: 2 connections, 6 messages, 0 reconnects, 0 errors\n"


def test_top_jsonl_one_object_per_connection_per_interval(ws_server: WSServerFactory) -> None:
    server = ws_server(three_then_close)
    result = wspool("top", server.url, server.url, "--jsonl", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) % 2 == 0 and records
    assert {r["conn"] for r in records[-2:]} == {"c1", "c2"}
    assert set(records[0]) == {
        "time",
        "conn",
        "url",
        "state",
        "msg_s",
        "bytes_s",
        "rtt",
        "age",
        "reconnects",
        "queue_depth",
        "messages_in",
        "bytes_in",
        "errors",
    }
    for record in records[-2:]:
        assert record["state"] == "closed"
        assert record["messages_in"] == 3
        assert record["bytes_in"] > 0


def test_top_counts_errors_and_exits_1(ws_server: WSServerFactory) -> None:
    url = f"ws://127.0.0.1:{free_port()}/feed"
    result = wspool("top", url, "--interval", "0.1", "-n", "50")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("wspool: c1")]
    assert len(errors) == 1 and "refused" in errors[0]
    last = snapshots(result.stdout)[-1]
    assert last[2].split(" ")[1:2] == ["closed"]
    assert last[2].split(" ")[8] == "1"


def test_top_iterations_and_sort_by_rate(ws_server: WSServerFactory) -> None:
    fast = ws_server(ticker(None, 0.01))
    idle = ws_server(ticker(1, 5.0))
    result = wspool("top", idle.url, fast.url, "--interval", "0.2", "-n", "3")
    assert result.returncode == 0, result.stderr
    shots = snapshots(result.stdout)
    assert len(shots) == 3
    # Sorted by msg/s (the default), largest first: the fast feed's c2 on top.
    assert shots[-1][2].startswith("c2 open ")


@pytest.mark.parametrize(
    "args",
    [
        ["top"],
        ["top", "ws://127.0.0.1:1/", "--sort", "nope"],
        ["top", "ws://127.0.0.1:1/", "--interval", "0"],
        ["top", "http://example.test/"],
        ["-i", "ws://127.0.0.1:1/", "ws://127.0.0.1:2/"],
        ["-i", "ws://127.0.0.1:1/", "--jsonl"],
        ["demo", "--connections", "0"],
        ["demo", "--seconds", "-1"],
    ],
)
def test_view_usage_errors_exit_2(args: list[str]) -> None:
    result = wspool(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("wspool", "usage"))
    assert "error" in result.stderr and "Traceback" not in result.stderr


def test_help_of_every_mode() -> None:
    """Each mode's --help names its modes, keys and formats (docs/cli.md has the rest).

    Through the child only: importing wspool.cli here would add an attribute to the
    wspool package that tests/test_public_api.py does not expect.
    """
    for args, words in (
        ([], ["wspool top", "wspool demo", "interactive", "/close", "exit status"]),
        (["top"], ["usage: wspool top", "--sort", "keys", "reverse", "--jsonl", "exit status"]),
        (["demo"], ["usage: wspool demo", "--connections", "--seconds", "--max-age"]),
    ):
        result = wspool(*args, "--help")
        assert result.returncode == 0, result.stderr
        for word in words:
            assert word in result.stdout, (args, word)


# ------------------------------------------------------------------ wspool -i


def test_interactive_through_pipes(ws_server: WSServerFactory) -> None:
    closes: list[tuple[int | None, bytes]] = []
    server = ws_server(recording_echo(closes))
    result = wspool("-i", server.url, stdin="hello\n/ping p\n/binary 0102\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("* connected to ws://127.0.0.1:")
    # Sent and received lines interleave as they happen; each side keeps its order.
    assert [line for line in lines if line.startswith("> ")] == [
        "> hello",
        "> [ping] p",
        "> [binary] 0102",
    ]
    assert lines[-1] == "* closed 1000"
    assert [line for line in lines if line.startswith("< ")] == [
        "< hello",
        "< [pong] p",
        "< [binary] 0102",
    ]
    assert closes == [(1000, b"")]  # end of input: a closing handshake


def test_interactive_refused_exits_1() -> None:
    result = wspool("-i", f"ws://127.0.0.1:{free_port()}/")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "refused" in result.stderr


# ------------------------------------------------------------------ wspool demo


_SUMMARY = re.compile(
    r"wspool demo: (\d+) messages in \d+\.\d s \(\d+ msg/s\) from (\d+) connections, "
    r"(\d+) reconnects, (\d+) errors\n"
)


def readme_demo_commands() -> list[str]:
    """The ``wspool demo`` lines of README.md's sh blocks."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    return [
        line for block in blocks for line in block.splitlines() if line.startswith("wspool demo")
    ]


def test_the_readme_demo_command_runs_through_pipes() -> None:
    """README's command-line section shows `wspool demo ...` (also in docs/cli.md):
    run as written, it prints nothing on stdout and one summary line on stderr."""
    commands = readme_demo_commands()
    assert commands, "README.md shows no wspool demo command"
    assert all(command in (ROOT / "docs" / "cli.md").read_text() for command in commands)
    for command in commands:
        result = wspool(*shlex.split(command)[1:], timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        match = _SUMMARY.fullmatch(result.stderr)
        assert match is not None, result.stderr
        messages, connections, reconnects, errors = map(int, match.groups())
        assert messages > 0 and (reconnects, errors) == (0, 0)
        assert str(connections) in command


def test_demo_max_age_rotates_and_reconnects() -> None:
    result = wspool("demo", "--connections", "3", "--seconds", "0.9", "--max-age", "0.2")
    assert result.returncode == 0, result.stderr
    match = _SUMMARY.fullmatch(result.stderr)
    assert match is not None, result.stderr
    messages, connections, reconnects, errors = map(int, match.groups())
    assert messages > 0 and connections == 3 and reconnects >= 1 and errors == 0


def test_demo_in_a_terminal_shows_top_and_quits_on_q(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal("demo", "--connections", "12", "--seconds", "60", "--interval", "0.2", rows=10)
    term.wait_for(
        lambda s: s.alt is not None and "12/12 open" in s.lines[0] and " 0 msgs" not in s.lines[0],
        "12 open connections receiving",
    )
    assert "... 5 more rows (showing 7 of 12)" in term.screen.lines[-1]
    term.type("q")
    assert term.finish() == 0, term.raw
    assert term.screen.alt is None
    assert any(
        re.fullmatch(r"wspool demo: \d+ messages in .* from 12 connections, .*", line)
        for line in term.screen.lines
    ), term.screen.text()


def test_demo_status_line_when_only_stderr_is_a_terminal(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal("demo", "--connections", "5", "--seconds", "0.6", stdout_pipe=True)
    assert term.finish() == 0, term.raw
    assert "wspool demo: " in term.raw and "/5 up" in term.raw  # the status line was drawn
    # ... and erased: the summary is the one line left on the screen.
    left = [line for line in term.screen.lines if line]
    assert len(left) == 1 and _SUMMARY.fullmatch(left[0] + "\n"), term.screen.text()
    assert "from 5 connections" in left[0]


def readme_feed_commands() -> list[str]:
    """The README block that runs the demo feed on its own, then wspool against it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        lines = block.splitlines()
        if lines and lines[0].startswith("python -m wspool.demofeed"):
            return lines
    raise AssertionError("README.md has no block starting the demo feed")


def test_the_readme_commands_against_the_demo_feed_run() -> None:
    """Each line as written, with the feed started as the README starts it (on a free
    port instead of 8765)."""
    lines = readme_feed_commands()
    port = free_port()
    feed_args = shlex.split(lines[0].rstrip(" &").replace("8765", str(port)))
    feed = subprocess.Popen(
        [sys.executable, *feed_args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=python_env(),
    )
    try:
        assert feed.stdout is not None
        assert "demo feed at" in feed.stdout.readline()
        outputs = []
        for line in lines[1:]:
            args = shlex.split(line.replace("8765", str(port)))
            assert args[0] == "wspool"
            result = wspool(*args[1:])
            assert result.returncode == 0, (line, result.stderr)
            outputs.append(result.stdout)
    finally:
        feed.terminate()
        feed.wait(WAIT)
    ticks, echo, table = outputs
    assert len(ticks.splitlines()) == 3 and all(
        line.startswith("c1 ") for line in ticks.splitlines()
    )
    events = [json.loads(line) for line in echo.splitlines()]
    assert [e["type"] for e in events] == ["open", "text", "close"]
    assert events[1]["data"] == "hello"
    assert len(snapshots(table)) == 2
