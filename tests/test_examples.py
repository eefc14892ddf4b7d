"""The examples run end to end: each one as a subprocess, in its demo mode, briefly.

Every demo checks its own outcome (order, loss, reconnects, clean closes) and says
so in its exit status and last line; these tests hold them to it and look for the
lines a reader of the README would expect.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from helpers import ROOT, python_env, run_python
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer

from wspool.demofeed import DemoFeed

EXAMPLES = ROOT / "examples"
WSServerFactory = Callable[..., WSServer]
#: The checkout's wspool, installed or not, and not tests/: the examples run against
#: the embedded demo feed (wspool.demofeed), as they must for a reader who installed
#: wspool.
CHECKOUT_ONLY = (ROOT,)


def run_example(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_python(EXAMPLES / name, *args, timeout=timeout, pythonpath=CHECKOUT_ONLY)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def found(pattern: str, text: str) -> str:
    """The first group of ``pattern`` in ``text``; fails the test when it is absent."""
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return match[1]


def _default_sigint() -> None:
    # A shell running tests in the background starts children with SIGINT ignored;
    # the Ctrl-C test needs Python's KeyboardInterrupt in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --------------------------------------------------------------------- fanin_demo


def test_fanin_demo_every_tick_arrives_in_order() -> None:
    """RFC 6455 §6.2: messages of one connection arrive in order; the pool keeps that
    order into the callbacks, and the server's close reason confirms the count."""
    result = run_example("fanin_demo.py", "--seconds", "1", "--connections", "20")
    assert_ok(result)
    out = result.stdout
    assert "20/20 opened, 20 closed cleanly" in out
    assert re.search(r"out of order\s+0\n", out)
    assert re.search(r"lost\s+0\n", out)
    assert re.search(r"errors\s+0\n", out)
    received = found(r"messages\s+([\d,]+) received", out)
    sent = found(r"server sent\s+([\d,]+)", out)
    assert int(received.replace(",", "")) == int(sent.replace(",", "")) > 0
    assert re.search(r"open\s+\d+/20 \|\s+[\d,]+ msg/s \| total", out), "no status line"
    assert re.search(r"threads\s+([2-9]) pool threads", out), "more threads than 1 + workers"
    assert out.rstrip().endswith("result: OK")


def test_fanin_demo_with_permessage_deflate() -> None:
    """RFC 7692: the same check with every tick compressed."""
    result = run_example(
        "fanin_demo.py", "--deflate", "--seconds", "0.5", "--connections", "5", "--rate", "50"
    )
    assert_ok(result)
    assert "5/5 opened, 5 closed cleanly" in result.stdout
    assert result.stdout.rstrip().endswith("result: OK")


def test_fanin_demo_ctrl_c_closes_every_feed_cleanly() -> None:
    """Ctrl-C ends the run with a closing handshake on every feed (RFC 6455 §7.1.2),
    a summary and exit status 130."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "fanin_demo.py"), "--seconds", "60", "--connections", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=python_env(pythonpath=CHECKOUT_ONLY),
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("open   10/10" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"the demo ended early: {lines}"
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    assert "10/10 opened, 10 closed cleanly" in out
    assert "result: interrupted" in out
    assert "Traceback" not in err


def test_fanin_demo_rejects_bad_arguments() -> None:
    result = run_example("fanin_demo.py", "--connections", "0")
    assert result.returncode == 2
    assert "must be positive" in result.stderr


# --------------------------------------------------------------------- market_data_fanin


def test_market_data_demo_rotates_without_gaps_and_replaces_a_silent_stream() -> None:
    """The demo feed cuts every session after 1.5 s (1001): max_age rotation with dedupe
    keeps every stream without a gap; the stream whose sessions go quiet is replaced by
    stale_after and on_gap reports the ticks it missed.  The demo checks itself."""
    result = run_example("market_data_fanin.py", "--seconds", "2")
    assert_ok(result)
    out = result.stdout
    assert out.rstrip().endswith("demo: OK")
    assert "[SOL-USD] went silent: replacing its session" in out
    assert re.search(r"\[SOL-USD\] gap: expected \d+, got \d+", out)
    for symbol in ("BTC-USD", "ETH-USD", "ADA-USD"):
        # symbol ticks vwap last rotations stale reconnects dupes gaps
        row = re.search(
            rf"^{re.escape(symbol)}\s+([1-9]\d*)\s+\S+\s+\S+\s+([1-9]\d*)\s+0\s+0\s+\d+\s+0$",
            out,
            re.M,
        )
        assert row, (symbol, out)


def test_market_data_without_rotation_still_checks_itself() -> None:
    result = run_example("market_data_fanin.py", "--seconds", "1", "--no-rotation")
    assert_ok(result)
    assert result.stdout.rstrip().endswith("demo: OK")
    assert re.search(r"^BTC-USD\s+[1-9]\d*\s+\S+\s+\S+\s+0\s", result.stdout, re.M)


def test_market_data_url_mode_subscribes_each_symbol_on_its_own_stream(
    ws_server: WSServerFactory,
) -> None:
    """With --url URL SYMBOLS the script opens one stream per symbol, subscribes on
    each, aggregates the ticks and closes cleanly."""
    requests: list[str] = []
    lock = threading.Lock()

    def venue(conn: ServerConnection) -> None:
        seq = 0
        while True:
            try:
                opcode, data = conn.recv_message()
            except PeerClosed:
                return
            if opcode == Opcode.CLOSE:
                conn.send_close(1000)
                return
            request = json.loads(data)
            with lock:
                requests.append(request["symbols"][0])
            for _ in range(3):
                seq += 1
                tick = {"type": "ticker", "symbol": request["symbols"][0], "seq": seq}
                conn.send_message(json.dumps({**tick, "price": 10.5, "size": 2}))

    server = ws_server(venue)
    result = run_example(
        "market_data_fanin.py",
        "--url",
        f"{server.url}/ws",
        "AAA",
        "BBB",
        "--seconds",
        "0.5",
        "--stale-after",
        "60",  # the venue sends three ticks only
    )
    assert_ok(result)
    assert "2 streams" in result.stdout
    assert re.search(r"^AAA\s+3\s+10\.50\s+10\.50\s+0\s+0\s+0\s+0\s+0$", result.stdout, re.M)
    with lock:
        assert sorted(requests) == ["AAA", "BBB"]


def test_market_data_rejects_bad_arguments() -> None:
    result = run_example("market_data_fanin.py", "AAA")
    assert result.returncode == 2
    assert "symbols need --url" in result.stderr


# --------------------------------------------------------------------- endpoint_monitor


def test_endpoint_monitor_demo_shows_a_bounced_server_reconnect() -> None:
    result = run_example(
        "endpoint_monitor.py", "--seconds", "2", "--every", "0.5", "--ping-interval", "0.2"
    )
    assert_ok(result)
    out = result.stdout
    assert "** stopping the server on port" in out
    assert "** starting it again on port" in out
    port = found(r"stopping the server on port (\d+)", out)
    rows = re.findall(rf"^ws://127\.0\.0\.1:{port}/health\?rate=5\s+(\w+)\s.*$", out, re.MULTILINE)
    assert "reconnecting" in rows, "the bounced endpoint never showed as reconnecting"
    assert rows[-1] == "open"
    assert out.rstrip().endswith("demo: OK")


def test_endpoint_monitor_watches_given_urls(ws_server: WSServerFactory) -> None:
    """RFC 6455 §5.5.2/§5.5.3: the keepalive ping's pong gives each endpoint an RTT."""
    server = ws_server()
    url = f"{server.url}/a"
    result = run_example(
        "endpoint_monitor.py", url, "--seconds", "1", "--every", "0.5", "--ping-interval", "0.2"
    )
    assert_ok(result)
    rows = re.findall(rf"^{re.escape(url)}\s+(\w+)\s+([\d.]+ ms|-)", result.stdout, re.MULTILINE)
    assert rows, result.stdout
    assert rows[-1][0] == "open"
    assert rows[-1][1].endswith(" ms"), "no ping round trip measured"


# --------------------------------------------------------------------- embedded_library


def test_embedded_library_feed_client() -> None:
    result = run_example("embedded_library.py", "--seconds", "1")
    assert_ok(result)
    out = result.stdout
    assert "pool threads before the first subscribe: 0" in out
    assert "closed; pool threads left: 0" in out
    assert "a MSFT callback raised; the others still run" in result.stderr
    assert "ValueError: a user bug" in result.stderr
    assert "demo: OK" in out
    assert "at exit: the server received close codes [1000]" in out


def test_embedded_library_exits_cleanly_without_close() -> None:
    """A forgotten close(): the interpreter still exits, and the pool's exit hook
    closes the connection with a closing handshake (code 1000, RFC 6455 §7.1.2)."""
    result = run_example("embedded_library.py", "--forget-close", "--seconds", "0.5", timeout=30)
    assert_ok(result)
    assert "closed;" not in result.stdout
    assert "demo: OK" in result.stdout
    assert "at exit: the server received close codes [1000]" in result.stdout


def test_embedded_library_against_a_given_url() -> None:
    """--url: the same library code against a feed the example did not start."""
    with DemoFeed(rate=100, symbols=("AAPL", "MSFT", "NVDA")) as feed:
        result = run_example(
            "embedded_library.py", "--url", f"{feed.url}/ticker", "--seconds", "0.5"
        )
        assert_ok(result)
        assert "demo: OK" in result.stdout
        assert feed.close_codes() == {1000: 1}
        assert feed.stats()["subscribe_requests"] >= 1


# --------------------------------------------------------------------- echo_demo (blocking)


def test_echo_demo_runs_the_blocking_client_against_the_demo_feed() -> None:
    result = run_example("echo_demo.py")
    assert_ok(result)
    out = result.stdout
    assert "text   -> 'hello, wspool'" in out
    assert "binary -> b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07'" in out
    assert "intact: True" in out
    assert "ping   -> PONG b'are you there'" in out
    assert "closed cleanly: close status 1000" in out
    assert len(re.findall(r"^tick   -> BTC-USD #\d+ ", out, re.MULTILINE)) == 3
    assert out.rstrip().endswith("demo: OK")


def test_echo_demo_against_a_given_url(ws_server: WSServerFactory) -> None:
    server = ws_server()  # tests/wsserver.py's echo handler
    result = run_example("echo_demo.py", "--url", server.url)
    assert_ok(result)
    assert "closed cleanly: close status 1000" in result.stdout
    assert "tick" not in result.stdout


# --------------------------------------------------------------------- tls_private_ca


def test_tls_private_ca_demo_trusts_only_its_ca() -> None:
    result = run_example("tls_private_ca.py")
    assert_ok(result)
    out = result.stdout
    assert re.search(r"^with the CA: connected to wss://localhost:\d+/echo", out, re.MULTILINE)
    assert len(re.findall(r"^pool over wss: ETH-USD #\d+", out, re.MULTILINE)) == 3
    refused = found(r"\nwithout the CA: refused: (.*)\n", out)
    assert "certificate verify failed" in refused
    assert out.rstrip().endswith("demo: OK")


def test_tls_private_ca_against_a_given_url(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    server = ws_server(ssl_context=tls_server_ctx)
    url = server.url.replace("127.0.0.1", "localhost")
    result = run_example("tls_private_ca.py", "--url", url, "--ca", ca_file)
    assert_ok(result)
    assert f"with the CA: connected to {url}" in result.stdout


# --------------------------------------------------------------------- sharded_processes


def _load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sharded_processes_demo_merges_the_shards() -> None:
    result = run_example(
        "sharded_processes.py", "--connections", "40", "--processes", "2", "--seconds", "1.5"
    )
    assert_ok(result)
    out = result.stdout
    totals = re.search(
        r"^total: 2/2 shards, 40 connections, (\d+) opens, ([\d,]+) messages, "
        r"(\d+) reconnects, 0 errors$",
        out,
        re.MULTILINE,
    )
    assert totals is not None, out
    opens, messages, reconnects = (int(g.replace(",", "")) for g in totals.groups())
    assert opens >= 40 and messages > 0
    assert reconnects >= 1, "the feed rotates sessions every second"
    pids = re.findall(r"^\s+[01]\s+(\d+)\s", out, re.MULTILINE)
    assert len(set(pids)) == 2, "two shards, two processes"
    assert out.rstrip().endswith("demo: OK")


def test_sharded_processes_with_given_urls() -> None:
    with DemoFeed(rate=20) as feed:
        urls = [f"{feed.url}/ticker?id={i}" for i in range(10)]
        result = run_example("sharded_processes.py", *urls, "--seconds", "1", "--processes", "2")
        assert_ok(result)
        assert re.search(r"^total: (\d)/\1 shards, 10 connections, 10 opens, ", result.stdout, re.M)
        assert feed.stats()["connections_opened"] == 10


def test_rendezvous_hashing_is_stable_and_moves_little() -> None:
    """The same URL goes to the same shard in every process (hashlib, not the salted
    hash()); adding a shard moves only the URLs the new shard wins."""
    shards = _load_example("sharded_processes")
    urls = [f"wss://feed{i}.example/ws" for i in range(300)]
    here = [shards.shard_of(url, 4) for url in urls]
    elsewhere = run_python(
        "import sys; sys.path.insert(0, 'examples'); from sharded_processes import shard_of; "
        f"print([shard_of(u, 4) for u in {urls!r}])",
        timeout=30,
        pythonpath=CHECKOUT_ONLY,
    )
    assert elsewhere.stdout.strip() == str(here), elsewhere.stderr
    assert set(here) == {0, 1, 2, 3}
    after = [shards.shard_of(url, 5) for url in urls]
    moved = [(a, b) for a, b in zip(here, after, strict=True) if a != b]
    assert moved and all(b == 4 for _, b in moved)
    assert len(moved) < len(urls) / 2
    assert [len(part) for part in shards.split(urls, 4)] == [here.count(i) for i in range(4)]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_says_how_to_run_it(name: str) -> None:
    """Each example opens with a docstring that gives its command line."""
    tree = ast.parse((EXAMPLES / name).read_text(encoding="utf-8"))
    assert f"python examples/{name}" in (ast.get_docstring(tree) or "")


def test_the_readme_lists_every_example_with_a_tested_command() -> None:
    """README.md's Examples table: one row per example with its command, and each
    command is one these tests run (with shorter options)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| \[(\w+\.py)\]\(examples/\1\) \|.*\| `python examples/(\w+\.py)` \|$",
        readme,
        re.MULTILINE,
    )
    assert [a for a, b in rows if a != b] == []
    assert {a for a, _ in rows} == {p.name for p in EXAMPLES.glob("*.py")}
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [a for a, _ in rows if not re.search(rf'run_example\(\s*"{a}"', source)]
    assert untested == []
