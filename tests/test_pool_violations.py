"""The Pool fails a connection on a protocol violation as strictly as the blocking client.

When valid messages and a violation arrive in the same read, the callbacks of those
messages run first and whatever they send leaves before the close frame with the
violation's code (RFC 6455 §7.1.7); close_timeout bounds the wait, so a stuck callback
cannot keep a broken connection open.  The server here records what it receives; the
client echoes from on_message.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from helpers import CallbackRecorder
from wsserver import (
    Opcode,
    PeerClosed,
    ServerConnection,
    WSServer,
    encode_frame,
    parse_close_payload,
)

import wspool
from wspool.pool import Connection, Pool

WSServerFactory = Callable[..., WSServer]

#: What a violation handler saw: the messages before the client's close frame, its
#: code, and whether the client then closed TCP (``None``: it never sent a close frame).
Seen = tuple[list[bytes], int | None, bool]


class Violation(NamedTuple):
    frame: bytes
    code: int
    error: type[wspool.WebSocketProtocolException]


VIOLATIONS = {
    "reserved opcode": Violation(encode_frame(0x3, b"x"), 1002, wspool.WebSocketProtocolException),
    "invalid UTF-8": Violation(
        encode_frame(Opcode.TEXT, b"ok \xff\xfe"), 1007, wspool.WebSocketPayloadException
    ),
    "fragmented ping": Violation(
        encode_frame(Opcode.PING, b"p", fin=False), 1002, wspool.WebSocketProtocolException
    ),
    "masked frame": Violation(
        encode_frame(Opcode.TEXT, b"masked", mask=True), 1002, wspool.WebSocketProtocolException
    ),
    "RSV2 bit": Violation(
        encode_frame(Opcode.TEXT, b"rsv", rsv2=True), 1002, wspool.WebSocketProtocolException
    ),
}


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(workers=4) as p:
        yield p


def _texts(count: int, size: int = 0) -> list[bytes]:
    return [f"m{i}:".encode() + b"x" * size for i in range(count)]


def _violating_handler(
    messages: list[bytes],
    violation: bytes,
    seen: queue.Queue[Seen],
    *,
    read_after: float = 0.0,
    hang_up: bool = False,
) -> Callable[[ServerConnection], None]:
    """Send ``messages`` and ``violation`` in one write, then record every text
    message up to the client's close frame (``read_after``: wait that long first, so
    the client's echoes pile up in its socket; ``hang_up``: close TCP at once)."""

    def handler(conn: ServerConnection) -> None:
        conn.send_raw(b"".join(encode_frame(Opcode.TEXT, m) for m in messages) + violation)
        if hang_up:
            conn.close_tcp()
            seen.put(([], None, True))
            return
        if read_after:
            time.sleep(read_after)
        got: list[bytes] = []
        try:
            while True:
                opcode, data = conn.recv_message(timeout=10)
                if opcode == Opcode.CLOSE:
                    code, _ = parse_close_payload(data)
                    seen.put((got, code, conn.wait_closed(5)))
                    return
                got.append(data)
        except PeerClosed:
            seen.put((got, None, True))

    return handler


def _echo(conn: Connection, message: Any) -> None:
    conn.send(message)


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_echoes_leave_before_the_close_frame(
    pool: Pool, ws_server: WSServerFactory, name: str
) -> None:
    violation = VIOLATIONS[name]
    messages = _texts(20)
    seen: queue.Queue[Seen] = queue.Queue()
    server = ws_server(_violating_handler(messages, violation.frame, seen), compression=False)
    rec = CallbackRecorder()
    start = time.monotonic()
    # A long close_timeout: the close frame must follow the last callback, not the timer.
    conn = pool.connect(server.url, close_timeout=30, **rec.callbacks(on_message=_echo))
    got, code, tcp_closed = seen.get(timeout=10)
    assert time.monotonic() - start < 5, "the failure waited for the timer, not the callbacks"
    assert got == messages, "every echo must reach the server before the close frame"
    assert code == violation.code
    assert tcp_closed, "the client must drop the connection after its close frame"
    rec.wait_closed()
    assert conn.wait_closed(5)
    assert rec.names() == ["open"] + ["message"] * len(messages) + ["error", "close"]
    (error,) = rec.errors()
    assert type(error) is violation.error
    assert error.close_code == violation.code
    assert error.url == conn.url  # names the connection, as the blocking client does
    close = rec.of("close")[0]
    assert close.args[0] == violation.code


def test_large_echoes_are_written_whole_before_the_close_frame(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    # 4 MiB of echoes while the server does not read yet: the client's socket does not
    # take everything at once, and the session keeps it until the close frame is out.
    messages = _texts(16, size=256 * 1024)
    seen: queue.Queue[Seen] = queue.Queue()
    bad_opcode = VIOLATIONS["reserved opcode"].frame
    server = ws_server(
        _violating_handler(messages, bad_opcode, seen, read_after=0.5), compression=False
    )
    rec = CallbackRecorder()
    conn = pool.connect(server.url, **rec.callbacks(on_message=_echo))
    got, code, tcp_closed = seen.get(timeout=15)
    assert len(got) == len(messages) and got == messages
    assert (code, tcp_closed) == (1002, True)
    assert conn.wait_closed(5)
    assert [type(e) for e in rec.errors()] == [wspool.WebSocketProtocolException]


def test_a_stuck_callback_does_not_keep_the_connection_open(
    pool: Pool, ws_server: WSServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    close_timeout = 0.5
    release = threading.Event()
    seen: queue.Queue[tuple[int | None, float]] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        frames = encode_frame(Opcode.TEXT, b"first") + encode_frame(Opcode.TEXT, b"second")
        conn.send_raw(frames + VIOLATIONS["reserved opcode"].frame)
        start = time.monotonic()
        opcode, data = conn.recv_message(timeout=10)
        assert opcode == Opcode.CLOSE, "nothing may come before the close frame"
        code, _ = parse_close_payload(data)
        assert conn.wait_closed(5)
        seen.put((code, time.monotonic() - start))

    def stuck(conn: Connection, message: Any) -> None:
        release.wait(10)  # far past close_timeout

    server = ws_server(handler, compression=False)
    rec = CallbackRecorder()
    with caplog.at_level(logging.WARNING, logger="wspool"):
        conn = pool.connect(
            server.url, close_timeout=close_timeout, **rec.callbacks(on_message=stuck)
        )
        try:
            code, elapsed = seen.get(timeout=10)
        finally:
            release.set()
    assert code == 1002
    assert elapsed < close_timeout + 1.0, f"dropped after {elapsed:.2f}s"
    assert elapsed >= close_timeout - 0.05, "the callbacks were not waited for"
    assert any(f"close_timeout={close_timeout}s" in r.getMessage() for r in caplog.records)
    # Once the callback returns, the rest is delivered in order, the violation reported.
    rec.wait_closed()
    assert conn.wait_closed(5)
    assert rec.names() == ["open", "message", "message", "error", "close"]
    assert [type(e) for e in rec.errors()] == [wspool.WebSocketProtocolException]
    assert rec.of("close")[0].args[0] == 1002


def test_peer_hanging_up_while_callbacks_run_still_reports_the_violation(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    seen: queue.Queue[Seen] = queue.Queue()
    bad_utf8 = VIOLATIONS["invalid UTF-8"].frame
    server = ws_server(
        _violating_handler(_texts(3), bad_utf8, seen, hang_up=True),
        compression=False,
        check_errors=False,
    )
    rec = CallbackRecorder()

    def slow_echo(conn: Connection, message: Any) -> None:
        time.sleep(0.1)  # the server's FIN arrives while the callbacks still run
        # The connection may already be gone: the peer hung up.
        with contextlib.suppress(wspool.WebSocketConnectionClosedException):
            conn.send(message)

    conn = pool.connect(server.url, **rec.callbacks(on_message=slow_echo))
    seen.get(timeout=10)
    rec.wait_closed()
    assert conn.wait_closed(5)
    assert rec.count("message") == 3
    (error,) = rec.errors()
    assert type(error) is wspool.WebSocketPayloadException, error
    assert rec.of("close")[0].args[0] == 1007


def test_violation_read_while_backpressure_pauses_reading(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """The violation arrives behind more messages than max_queue: reading pauses and
    resumes as the slow callbacks catch up, but once the violation was read nothing
    more is read and no keepalive runs; every echo still leaves before the close."""
    violation = VIOLATIONS["reserved opcode"]
    messages = _texts(40)
    seen: queue.Queue[Seen] = queue.Queue()
    server = ws_server(_violating_handler(messages, violation.frame, seen), compression=False)
    rec = CallbackRecorder()

    def slow_echo(conn: Connection, message: Any) -> None:
        time.sleep(0.01)
        conn.send(message)

    conn = pool.connect(
        server.url,
        close_timeout=30,
        max_queue=4,
        ping_interval=0.2,
        ping_timeout=0.1,
        **rec.callbacks(on_message=slow_echo),
    )
    got, code, _tcp_closed = seen.get(timeout=15)
    assert got == messages
    assert code == violation.code
    assert conn.wait_closed(5)
    (error,) = rec.errors()
    assert type(error) is violation.error
