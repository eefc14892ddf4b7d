"""The ``wspool`` command line (wspool/cli/, plain mode), run as ``python -m wspool`` in a child
process through pipes, against the local test server: output lines, --jsonl, options
reaching the server, exit statuses, Ctrl-C and TLS."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ROOT, WAIT, python_env
from proxies import HttpConnectProxy, SocksProxy
from wsserver import Request, Response, ServerConnection, WSServer, accept

WSServerFactory = Callable[..., WSServer]


def wspool(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wspool ARGS`` from the checkout and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "wspool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=python_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def three_then_close(conn: ServerConnection) -> None:
    conn.send_message("hello")
    conn.send_message("two\nlines")
    conn.send_message(b"\x00\x01\xfe\xff")
    conn.close(1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_plain_lines_one_per_message(ws_server: WSServerFactory) -> None:
    server = ws_server(three_then_close)
    result = wspool(server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 hello", "c1 two\\nlines", "c1 0001feff"]
    assert result.stderr == ""


def test_labels_follow_the_order_of_the_urls(ws_server: WSServerFactory) -> None:
    first = ws_server(three_then_close)
    second = ws_server(three_then_close)
    result = wspool(first.url, second.url, "--binary", "base64")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("c1 ")) == sorted(
        ["c1 hello", "c1 two\\nlines", "c1 AAH+/w=="]
    )
    assert len([line for line in lines if line.startswith("c2 ")]) == 3


def test_urls_from_a_file_with_comments(ws_server: WSServerFactory, tmp_path: Path) -> None:
    server = ws_server(three_then_close)
    path = tmp_path / "urls.txt"
    path.write_text(f"# feeds\n\n{server.url}\n", encoding="utf-8")
    result = wspool("-f", str(path), "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 hello"]


def test_jsonl_messages_and_events(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        conn.send_message('{"a": [1, 2]}')
        conn.send_message(b"\x01\x02")
        conn.close(1000, "bye")

    server = ws_server(handler)
    result = wspool(server.url, "--jsonl", "--json", "--binary", "base64")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    url = server.url.rstrip("/") + "/"
    assert records == [
        {"conn": "c1", "url": url, "type": "open", "subprotocol": None},
        {"conn": "c1", "url": url, "type": "text", "data": '{"a": [1, 2]}', "json": {"a": [1, 2]}},
        {"conn": "c1", "url": url, "type": "binary", "data": "AQI="},
        {"conn": "c1", "url": url, "type": "close", "code": 1000, "reason": "bye"},
    ]


def test_json_pretty_prints_json_text_only(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        conn.send_message('{"a":1}')
        conn.send_message("not json")
        conn.close(1000)

    result = wspool(ws_server(handler).url, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'c1 {\n  "a": 1\n}\nc1 not json\n'


def test_send_reaches_the_server_and_count_exits(ws_server: WSServerFactory) -> None:
    received: list[str] = []

    def handler(conn: ServerConnection) -> None:
        for _ in range(2):
            received.append(conn.recv_message().text)
        for i in range(5):
            conn.send_message(f"m{i}")
        # Answer the client's closing handshake once --count is reached.
        message = conn.recv_message()
        assert message.opcode == 0x8
        conn.send_close(1000)
        conn.close_tcp()

    server = ws_server(handler)
    result = wspool(server.url, "--send", "sub a", "--send", "sub b", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 m0", "c1 m1"]
    assert received == ["sub a", "sub b"]


def test_header_subprotocol_origin_reach_the_server(ws_server: WSServerFactory) -> None:
    def handshake(request: Request) -> Response:
        return accept(request, subprotocol="chat")

    server = ws_server(three_then_close, handshake=handshake)
    result = wspool(
        server.url,
        "--header",
        "X-Token: abc 123",
        "-H",
        "X-Other:two",
        "--subprotocol",
        "chat",
        "--subprotocol",
        "superchat",
        "--origin",
        "https://example.test",
        "--no-compression",
        "--jsonl",
        "--count",
        "1",
    )
    assert result.returncode == 0, result.stderr
    request = server.requests[0]
    assert request.get("X-Token") == "abc 123"
    assert request.get("X-Other") == "two"
    assert request.subprotocols == ["chat", "superchat"]
    assert request.get("Origin") == "https://example.test"
    assert request.get("Sec-WebSocket-Extensions") is None
    assert json.loads(result.stdout.splitlines()[0])["subprotocol"] == "chat"


def test_refused_port_exits_1_with_one_line(ws_server: WSServerFactory) -> None:
    url = f"ws://127.0.0.1:{free_port()}/feed"
    result = wspool(url)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wspool: c1 {url}: ")
    assert "refused" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_credentials_in_the_url_are_not_printed() -> None:
    result = wspool(f"ws://user:s3cret@127.0.0.1:{free_port()}/")
    assert result.returncode == 1
    assert "s3cret" not in result.stderr
    assert result.stderr.startswith("wspool: c1 ws://")


@pytest.mark.parametrize(
    "args",
    [
        ["http://example.test/"],
        ["ws://exa mple.test/"],
        ["ws://127.0.0.1:1/", "--header", "no colon"],
        ["ws://127.0.0.1:1/", "--proxy", "ftp://proxy.test:21"],
        ["ws://127.0.0.1:1/", "--max-size", "-1"],
        ["ws://127.0.0.1:1/", "--count", "zero"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = wspool(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("wspool: error: ")
    assert "Traceback" not in result.stderr


def test_ctrl_c_closes_with_a_handshake_and_prints_a_summary(ws_server: WSServerFactory) -> None:
    closes: list[int | None] = []

    def handler(conn: ServerConnection) -> None:
        conn.send_message("tick")
        message = conn.recv_message(timeout=WAIT)  # the client's close frame
        if message.opcode == 0x8:
            closes.append(int.from_bytes(message.data[:2], "big"))
            conn.send_close(1000)
        conn.close_tcp()

    server = ws_server(handler)
    child = subprocess.Popen(
        [sys.executable, "-m", "wspool", server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=python_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "c1 tick\n"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, stderr
    assert stderr.strip() == "wspool: interrupted: 1 messages, 0 reconnects, 0 errors"
    assert stdout == ""
    assert closes == [1000]


def test_tls_with_ca_file(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    server = ws_server(three_then_close, ssl_context=tls_server_ctx)
    url = server.url.replace("127.0.0.1", "localhost")
    assert url.startswith("wss://")
    result = wspool(url, "--ca-file", ca_file, "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 hello"]
    # Without the CA the certificate is refused: one error line, exit 1.
    refused = wspool(url)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"wspool: c1 {url}")
    assert "Traceback" not in refused.stderr
    # --insecure skips the verification.
    insecure = wspool(url, "--insecure", "--count", "1")
    assert insecure.returncode == 0, insecure.stderr
    assert insecure.stdout.splitlines() == ["c1 hello"]


def test_http_proxy_with_credentials(ws_server: WSServerFactory) -> None:
    server = ws_server(three_then_close)
    with HttpConnectProxy(auth=("pu", "p s")) as proxy:
        proxy_url = f"http://pu:p%20s@{proxy.host}:{proxy.port}"
        result = wspool(server.url, "--proxy", proxy_url, "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 hello"]
    assert [r.target for r in proxy.requests] == [f"127.0.0.1:{server.port}"]


def test_socks5_proxy(ws_server: WSServerFactory) -> None:
    server = ws_server(three_then_close)
    with SocksProxy() as proxy:
        result = wspool(server.url, "--proxy", proxy.url, "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["c1 hello"]
    assert len(proxy.requests) == 1


def test_dropped_connection_exits_1(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        conn.send_message("x")
        conn.abort()

    result = wspool(ws_server(handler).url)
    assert result.returncode == 1
    assert result.stdout == "c1 x\n"
    assert result.stderr.count("\n") == 1
    assert "without a closing handshake" in result.stderr


def test_reconnect_after_a_drop(ws_server: WSServerFactory) -> None:
    def handler(conn: ServerConnection) -> None:
        conn.send_message(f"open {len(conn.server.connections)}")
        if len(conn.server.connections) == 1:
            conn.abort()
        else:
            conn.recv_message()  # the client's close once --count is reached
            conn.send_close(1000)
            conn.close_tcp()

    result = wspool(ws_server(handler).url, "--reconnect", "--jsonl", "--count", "2")
    assert result.returncode == 0, result.stderr
    types = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert types[:2] == ["open", "text"]
    assert "reconnect" in types
    assert types.count("text") == 2


def test_a_closed_output_pipe_ends_quietly(ws_server: WSServerFactory) -> None:
    """`wspool URL | head -1`: once the reader is gone the command closes its
    connections and exits 0, with no "Exception ignored ... BrokenPipeError"."""

    def stream(conn: ServerConnection) -> None:
        for i in range(2000):
            conn.send_message(f"tick {i}")
        if conn.recv_message(timeout=WAIT).opcode == 0x8:  # the client's close frame
            conn.send_close(1000)

    server = ws_server(stream)
    child = subprocess.Popen(
        [sys.executable, "-m", "wspool", server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=python_env(),
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline() == b"c1 tick 0\n"
        child.stdout.close()  # what head does after its line
        stderr = child.stderr.read().decode()
        child.wait(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "BrokenPipeError" not in stderr and "Exception ignored" not in stderr, stderr
    assert child.returncode == 0, stderr
