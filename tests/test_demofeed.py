"""wspool.demofeed: the embedded demo feed the examples run against.

Driven by wspool's own clients (the blocking ``wspool.connect`` and the ``Pool``) for
what a user sees, and by raw sockets where a client must misbehave (a bad handshake,
an unmasked frame).  Every wait is bounded and only limits how long a broken build
hangs.
"""

from __future__ import annotations

import gc
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ROOT, CallbackRecorder, python_env, run_python, wait_until

import wspool
from wspool.demofeed import DemoFeed


@pytest.fixture
def feed() -> Iterator[DemoFeed]:
    with DemoFeed(rate=50, seed=1) as running:
        yield running
    assert not running.running


def ticks(ws: wspool.WebSocket, n: int) -> list[dict[str, Any]]:
    """The next ``n`` ticker messages of ``ws`` (acks and pongs skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < n:
        message = ws.recv()
        if isinstance(message, str) and message.startswith('{"type":"ticker"'):
            found.append(json.loads(message))
    return found


def raw_request(feed: DemoFeed, request: bytes) -> bytes:
    """Send ``request`` on a plain socket and return all the feed answers."""
    with socket.create_connection(("127.0.0.1", feed.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
)


# ------------------------------------------------------------------ the ticker


def test_subscribe_then_ticks_with_one_sequence_per_symbol(feed: DemoFeed) -> None:
    with wspool.connect(feed.url + "/ticker", timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "ticker", "symbols": ["ETH-USD"]}))
        assert json.loads(ws.recv()) == {
            "type": "subscribed",
            "channel": "ticker",
            "symbols": ["ETH-USD"],
        }
        got = ticks(ws, 5)
    assert {t["symbol"] for t in got} == {"ETH-USD"}
    seqs = [t["seq"] for t in got]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert all(t["price"] > 0 and t["size"] > 0 for t in got)
    assert all(abs(t["ts"] - time.time()) < 60 for t in got)


def test_two_pool_connections_see_the_same_symbol_seq_messages(feed: DemoFeed) -> None:
    """The feed makes each tick once: two subscribers get the same (symbol, seq, price)."""
    rec = CallbackRecorder()

    def subscribe(conn: wspool.Connection) -> None:
        conn.send_json({"op": "subscribe", "channel": "ticker", "symbols": ["BTC-USD"]})

    with wspool.Pool(workers=2) as pool:
        for label in ("a", "b"):
            pool.connect(feed.url + "/ticker", label=label, **rec.callbacks(on_open=subscribe))
        rec.wait_messages(15, label="a")
        rec.wait_messages(15, label="b")
    seen = {}
    for label in ("a", "b"):
        items = [json.loads(m) for m in rec.messages(label)]
        seen[label] = {(t["symbol"], t["seq"]): t["price"] for t in items if t["type"] == "ticker"}
        seqs = sorted(seq for _, seq in seen[label])
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"{label}: gaps"
    common = seen["a"].keys() & seen["b"].keys()
    assert len(common) >= 5
    assert all(seen["a"][key] == seen["b"][key] for key in common)
    assert feed.stats()["subscribe_requests"] == 2


def test_any_text_subscribes_to_every_symbol_and_unsubscribe_stops_one() -> None:
    with (
        DemoFeed(rate=100, symbols=("AAA", "BBB")) as feed,
        wspool.connect(feed.url + "/", timeout=10) as ws,
    ):
        ws.send("go")
        assert json.loads(ws.recv())["symbols"] == ["AAA", "BBB"]
        assert {t["symbol"] for t in ticks(ws, 20)} == {"AAA", "BBB"}
        assert wait_until(lambda: feed.stats()["subscriptions"] == 2)
        ws.send('{"op": "unsubscribe", "symbols": ["AAA"]}')
        while ws.recv() != '{"type":"unsubscribed","channel":"ticker","symbols":["AAA"]}':
            pass
        assert {t["symbol"] for t in ticks(ws, 10)} == {"BBB"}
        assert feed.stats()["subscriptions"] == 1


@pytest.mark.parametrize(
    ("request_text", "error"),
    [
        ('{"op": "subscribe", "symbols": ["NOPE"]}', "unknown symbols ['NOPE']"),
        ('{"op": "subscribe", "channel": "trades"}', "unknown channel 'trades'"),
        ('{"op": "frobnicate"}', "unknown op 'frobnicate'"),
        ('{"op": "subscribe", "symbols": "BTC-USD"}', "symbols must be a list of strings"),
    ],
)
def test_bad_subscriptions_get_an_error_message(
    feed: DemoFeed, request_text: str, error: str
) -> None:
    with wspool.connect(feed.url + "/ticker", timeout=10) as ws:
        ws.send(request_text)
        reply = json.loads(ws.recv())
        assert reply["type"] == "error"
        assert error in reply["message"]
        ws.send("ping")  # still usable
        assert ws.recv() == "pong"
    assert feed.stats()["subscriptions"] == 0


@pytest.mark.parametrize("path", ["/ticker", "/health"])
def test_text_ping_gets_text_pong(feed: DemoFeed, path: str) -> None:
    with wspool.connect(feed.url + path, timeout=10) as ws:
        ws.send("ping")
        replies = [ws.recv()]
        while replies[-1] != "pong" and len(replies) < 5:  # /health beats may come first
            replies.append(ws.recv())
        assert replies[-1] == "pong", replies


def test_health_beats() -> None:
    with DemoFeed() as feed, wspool.connect(feed.url + "/health?rate=50", timeout=10) as ws:
        beats = [json.loads(ws.recv()) for _ in range(3)]
    assert [b["status"] for b in beats] == ["ok"] * 3
    assert beats[0]["uptime"] <= beats[1]["uptime"] <= beats[2]["uptime"]


# ------------------------------------------------------------------ echo


def test_echo_returns_every_data_message(feed: DemoFeed) -> None:
    big = "é" * 300_000
    with wspool.connect(feed.url + "/echo", timeout=10, max_size=None) as ws:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send(b"\x00\xff" * 10)
        assert ws.recv() == b"\x00\xff" * 10
        ws.send(big)
        assert ws.recv() == big
        ws.send("ping")  # echoed, not answered: /echo has no application protocol
        assert ws.recv() == "ping"
        ws.ping(b"are you there")
        assert ws.recv_data(control_frame=True) == (wspool.ABNF.OPCODE_PONG, b"are you there")
        frame = wspool.ABNF.create_frame("frag", wspool.ABNF.OPCODE_TEXT, fin=0)
        ws.send_frame(frame)
        ws.send_frame(wspool.ABNF.create_frame("mented", wspool.ABNF.OPCODE_CONT, fin=1))
        assert ws.recv() == "fragmented"
    assert ws.close_status == 1000


# ------------------------------------------------------------------ permessage-deflate


def test_permessage_deflate_both_ways(feed: DemoFeed) -> None:
    """RFC 7692: agreed when offered, with server_no_context_takeover; the client's
    compressed messages (over min_size, fragmented too) are inflated and echoed."""
    options = wspool.DeflateOptions(min_size=0)
    big = "market data " * 20_000
    with wspool.connect(feed.url + "/echo", compression=options, timeout=10) as ws:
        agreed = ws.headers["sec-websocket-extensions"]
        assert agreed == "permessage-deflate; server_no_context_takeover"
        for message in ("small", big, b"\x01" * 5000):
            ws.send(message)
            assert ws.recv() == message
    with wspool.connect(feed.url + "/ticker", timeout=10) as ws:
        ws.send("go")
        assert json.loads(ws.recv())["type"] == "subscribed"
        assert len(ticks(ws, 6)) == 6


def test_a_smaller_server_window_is_honoured(feed: DemoFeed) -> None:
    options = wspool.DeflateOptions(server_max_window_bits=10)
    with wspool.connect(feed.url + "/echo", compression=options, timeout=10) as ws:
        assert ws.headers["sec-websocket-extensions"].endswith("; server_max_window_bits=10")
        ws.send("x" * 100_000)
        assert ws.recv() == "x" * 100_000


def test_compression_false_declines_the_offer() -> None:
    with DemoFeed(compression=False) as feed, wspool.connect(feed.url + "/echo") as ws:
        assert not ws.extensions
        ws.send("plain")
        assert ws.recv() == "plain"


def test_a_compressed_frame_without_deflate_agreed_is_a_violation(feed: DemoFeed) -> None:
    rsv1_text = b"\xc1\x82abcd" + bytes(b ^ k for b, k in zip(b"hi", b"ab", strict=True))
    assert _violation_close(feed, rsv1_text)[0] == 1002


# ------------------------------------------------------------------ rotation, silence


def test_max_session_age_closes_with_1001_rotating() -> None:
    age = 0.3
    with DemoFeed(max_session_age=age) as feed:
        rec = CallbackRecorder()
        with wspool.Pool(workers=2) as pool:
            started = time.monotonic()
            pool.connect(feed.url + "/ticker", label="r", **rec.callbacks())
            rec.wait_closed(label="r")
            elapsed = time.monotonic() - started
        assert rec.of("close", "r")[0].args == (1001, "rotating")
        assert elapsed >= age  # never before its age
        assert feed.stats()["rotations"] == 1
        # A query parameter overrides the constructor for one connection.
        with wspool.connect(feed.url + "/echo?max_age=0.2", timeout=10) as ws:
            with pytest.raises(wspool.WebSocketConnectionClosedException):
                while True:
                    ws.recv()
            assert ws.close_status == 1001


def test_rotation_with_reconnect_continues_the_global_sequence() -> None:
    """After a 1001 the pool reconnects; on_open resubscribes and the symbol's seq goes
    on where it was (no reset per connection)."""
    rec = CallbackRecorder()

    def subscribe(conn: wspool.Connection) -> None:
        conn.send_json({"op": "subscribe", "symbols": ["SOL-USD"]})

    with (
        DemoFeed(rate=100, max_session_age=0.3) as feed,
        wspool.Pool(workers=2) as pool,
    ):
        policy = wspool.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
        pool.connect(feed.url + "/ticker", reconnect=policy, **rec.callbacks(on_open=subscribe))
        rec.wait_open(3)  # two rotations
    items = [json.loads(m) for m in rec.messages()]
    seqs = [t["seq"] for t in items if t["type"] == "ticker"]
    assert len(seqs) >= 3
    assert seqs == sorted(seqs)  # each session goes on from the last: no reset
    assert len(set(seqs)) == len(seqs)


def test_silent_phase_sends_no_data_but_answers_pings() -> None:
    with DemoFeed(rate=200) as feed:
        url = feed.url + "/ticker?silent_after=0.2"  # silent_for 0: for good
        with wspool.connect(url, timeout=10) as ws:
            ws.send("go")
            assert ticks(ws, 1)
            # Drain until the silence: nothing comes within a generous wait.
            ws.settimeout(1.0)
            with pytest.raises(wspool.WebSocketTimeoutException):
                while True:
                    ws.recv()
            ws.settimeout(10)
            ws.send("ping")  # data: not answered while silent
            ws.ping(b"still there?")
            assert ws.recv_data(control_frame=True) == (wspool.ABNF.OPCODE_PONG, b"still there?")
        assert feed.stats()["messages_dropped"] > 0


def test_a_silent_phase_ends() -> None:
    """silent_after=0, silent_for=0.5: the ticks made meanwhile were dropped, so the
    first one that arrives has seq > 1, and the stream goes on after it."""
    with DemoFeed(rate=100, silent_after=0, silent_for=0.5) as feed:
        with wspool.connect(feed.url + "/ticker", timeout=10) as ws:
            ws.send("go")  # the "subscribed" reply is dropped too: it is data
            got = ticks(ws, 6)
        first_per_symbol = {t["symbol"]: t["seq"] for t in reversed(got)}
        assert min(first_per_symbol.values()) > 1
        assert feed.stats()["messages_dropped"] > 0


def test_pool_keepalive_pings_are_answered_while_silent() -> None:
    rec = CallbackRecorder()
    with DemoFeed(silent_after=0) as feed, wspool.Pool(workers=2) as pool:
        conn = pool.connect(
            feed.url + "/ticker",
            ping_interval=0.25,
            ping_timeout=0.2,
            **rec.callbacks("open", "message", "error", "close", "pong"),
        )
        rec.wait_open()
        conn.send("go")
        rec.wait_for(lambda: rec.count("pong") >= 2)
        assert rec.count("message") == 0
        assert rec.errors() == []


# ------------------------------------------------------------------ TLS


def test_wss_with_a_private_ca(
    tls_server_ctx: ssl.SSLContext, ca_file: str, tls_client_ctx: ssl.SSLContext
) -> None:
    with DemoFeed(ssl_context=tls_server_ctx) as feed:
        assert feed.url.startswith("wss://localhost:")
        with wspool.connect(feed.url + "/echo", sslopt={"ca_certs": ca_file}, timeout=10) as ws:
            ws.send("secure")
            assert ws.recv() == "secure"
        rec = CallbackRecorder()
        with wspool.Pool(workers=2) as pool:
            pool.connect(
                feed.url + "/ticker",
                sslopt={"context": tls_client_ctx},
                **rec.callbacks(on_open=lambda c: c.send("go")),
            )
            rec.wait_messages(5)
        with pytest.raises(wspool.WebSocketTLSException, match="certificate verify failed"):
            wspool.connect(feed.url + "/echo", timeout=10)  # the system store lacks the CA
        assert wait_until(lambda: feed.stats()["tls_failures"] == 1)
        assert feed.stats()["connections_opened"] == 2


# ------------------------------------------------------------------ many connections


def test_close_with_300_open_connections_sends_each_a_close_frame(
    no_fd_leaks: None, no_thread_leaks: None
) -> None:
    n = 300
    rec = CallbackRecorder(timeout=20)
    feed = DemoFeed(rate=5).start()
    try:
        with wspool.Pool(workers=4) as pool:
            for i in range(n):
                pool.connect(
                    feed.url + "/ticker", label=i, **rec.callbacks(on_open=lambda c: c.send("go"))
                )
            rec.wait_open(n)
            rec.wait_for(lambda: len(rec.labels() & set(range(n))) == n)
            assert wait_until(lambda: feed.stats()["subscriptions"] == 3 * n)
            rec.wait_for(
                lambda: all(rec.count("message", i) >= 2 for i in range(n))
            )  # an ack and a tick each
            assert feed.stats()["connections_open"] == n
            feed.close()
            assert not feed.running
            rec.wait_closed(n)
        closes = {c.args for c in rec.of("close")}
        assert closes == {(1001, "feed closing")}
        assert rec.errors() == []
        stats = feed.stats()
        assert stats["connections_open"] == 0
        assert stats["connections_opened"] == n
        assert stats["subscriptions"] == 0
    finally:
        feed.close()


# ------------------------------------------------------------------ clients that stall


def _open_raw(feed: DemoFeed, path: str) -> socket.socket:
    """A raw socket past a 101 answer (no extensions offered)."""
    sock = socket.create_connection(("127.0.0.1", feed.port), timeout=10)
    sock.sendall(UPGRADE.format(path=path, version=13).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


def _masked_zeros(opcode: int, n: int) -> bytes:
    """A masked client frame of ``n`` zero bytes (the masked payload is the key repeated)."""
    key = b"\x01\x02\x03\x04"
    if n < 126:
        size = bytes([0x80 | n])
    elif n < 65536:
        size = b"\xfe" + n.to_bytes(2, "big")
    else:
        size = b"\xff" + n.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + size + key + (key * (n // 4 + 1))[:n]


def test_a_client_that_stops_reading_costs_bounded_memory(feed: DemoFeed) -> None:
    """Echo replies to a client that never reads pile up only to MAX_BUFFERED; past
    that they are dropped (counted), and the feed keeps serving others."""
    chunk = _masked_zeros(0x2, 1 << 20)
    with _open_raw(feed, "/echo") as sock:
        sock.settimeout(5)
        sent = 0
        while feed.stats()["messages_dropped"] == 0 and sent < 64:
            try:
                sock.sendall(chunk)
            except TimeoutError:
                break  # the feed stopped reading? it must not: fail below
            sent += 1
        assert wait_until(lambda: feed.stats()["messages_dropped"] > 0), f"{sent} MiB sent"
        with wspool.connect(feed.url + "/echo", timeout=10) as ws:
            ws.send("others are still served")
            assert ws.recv() == "others are still served"


def test_closed_connections_are_freed_at_once(feed: DemoFeed) -> None:
    """Pending timers (handshake, rotation, close) hold connections weakly: a feed that
    rotates thousands of sessions does not keep the closed ones for seconds."""
    from wspool import demofeed

    def live() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, demofeed._Conn))

    for _ in range(20):
        with wspool.connect(feed.url + "/ticker?max_age=60", timeout=10) as ws:
            ws.send("go")
            ws.recv()
    assert wait_until(lambda: feed.stats()["connections_open"] == 0)
    assert wait_until(lambda: live() == 0), f"{live()} closed connections still alive"


def test_close_gives_up_on_a_client_that_never_answers() -> None:
    feed = DemoFeed().start()
    with _open_raw(feed, "/echo") as sock:
        feed.close(timeout=0.2)  # returns although the client sends no close reply
        assert not feed.running
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data[:1] == b"\x88"  # our close frame, then the feed hung up
        assert int.from_bytes(data[2:4], "big") == 1001


# ------------------------------------------------------------------ bad clients


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ticker HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),  # not an upgrade
        (b"POST /ticker HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"\xff\xfe garbage\r\n\r\n", b"400"),
        (UPGRADE.format(path="/ticker", version=13).replace("Host", "X-Host").encode(), b"400"),
        (UPGRADE.format(path="/ticker?rate=-1", version=13).encode(), b"400"),
        (UPGRADE.format(path="/ticker?max_age=soon", version=13).encode(), b"400"),
        (UPGRADE.format(path="/ticker?color=red", version=13).encode(), b"400"),
        (UPGRADE.format(path="/ticker", version=8).encode(), b"426"),
        (UPGRADE.format(path="/quotes", version=13).encode(), b"404"),
        (UPGRADE.format(path="/ticker", version=13).replace("dGhl", "!!").encode(), b"400"),
    ],
)
def test_a_bad_request_gets_an_http_error_and_a_close(
    feed: DemoFeed, request_bytes: bytes, status: bytes
) -> None:
    answer = raw_request(feed, request_bytes)  # returns once the feed closed the socket
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    if status == b"426":
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer
    assert feed.stats()["bad_requests"] == 1
    assert feed.stats()["connections_opened"] == 0


def test_a_bad_query_is_a_400_for_wspool(feed: DemoFeed) -> None:
    with pytest.raises(wspool.WebSocketBadStatusException) as caught:
        wspool.connect(feed.url + "/ticker?rate=0", timeout=10)
    assert caught.value.status_code == 400


def _violation_close(feed: DemoFeed, frame: bytes) -> tuple[int, bytes]:
    request = UPGRADE.format(path="/echo", version=13).encode()
    answer = raw_request(feed, request + frame)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert rest[0] == 0x88, rest  # a close frame, then the feed hung up
    return int.from_bytes(rest[2:4], "big"), rest[4 : 2 + rest[1]]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # not masked
        (b"\xa1\x82abcd" + bytes(b ^ k for b, k in zip(b"hi", b"ab", strict=True)), 1002),  # RSV2
        (b"\x83\x80abcd", 1002),  # reserved opcode
        (b"\x09\x80abcd", 1002),  # a fragmented ping
        (b"\x80\x80abcd", 1002),  # a continuation with nothing to continue
        (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),  # invalid UTF-8
        (b"\x88\x82\x00\x00\x00\x00\x03\xed", 1002),  # close code 1005 may not be sent
    ],
)
def test_protocol_violations_close_with_the_right_code(
    feed: DemoFeed, frame: bytes, code: int
) -> None:
    assert _violation_close(feed, frame)[0] == code


def test_a_client_close_is_answered_with_the_same_code(feed: DemoFeed) -> None:
    masked_close = b"\x88\x82\x00\x00\x00\x00" + (4001).to_bytes(2, "big")
    assert _violation_close(feed, masked_close) == (4001, b"")


# ------------------------------------------------------------------ API and command line


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "0.0.0.0"},
        {"host": "example.org"},
        {"rate": 0},
        {"rate": float("nan")},
        {"symbols": ()},
        {"symbols": "BTC-USD"},
        {"symbols": ("A", "A")},
        {"max_session_age": 0},
        {"silent_for": -1},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DemoFeed(**kwargs)


def test_url_needs_a_port_and_start_happens_once() -> None:
    feed = DemoFeed()
    with pytest.raises(RuntimeError, match="start"):
        _ = feed.url
    feed.close()  # before start: nothing to do
    with feed:
        assert feed.url == f"ws://127.0.0.1:{feed.port}"
        with pytest.raises(RuntimeError, match="already started"):
            feed.start()
    feed.close()  # twice: nothing more to do
    assert not feed.running
    assert not any(t.name.startswith("wspool-demofeed") for t in threading.enumerate())


def test_import_wspool_does_not_import_the_demo_feed() -> None:
    result = run_python(
        "import sys, wspool; print('wspool.demofeed' in sys.modules)",
        timeout=30,
        pythonpath=(ROOT,),
    )
    assert result.stdout.strip() == "False", result.stderr


def test_python_m_wspool_demofeed_runs_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wspool.demofeed", "--port", "0", "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=python_env(pythonpath=(ROOT,)),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("demo feed at ws://127.0.0.1:"), line
        url = line.split()[-1]
        with wspool.connect(url + "/ticker", timeout=10) as ws:
            ws.send("go")
            assert json.loads(ws.recv())["type"] == "subscribed"
            proc.send_signal(signal.SIGINT)
            with pytest.raises(wspool.WebSocketConnectionClosedException):
                while True:
                    ws.recv()
            assert ws.close_status == 1001
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "demo feed closed: 1 connections" in out
    assert "Traceback" not in err
