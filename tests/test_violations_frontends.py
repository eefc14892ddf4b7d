"""Every RFC 6455 frame-level violation, on every front end: the same close code sent
to the server and the same specific exception reported (raised by ``recv`` on
``wspool.connect``; given to ``on_error`` by the Pool and by ``WebSocketApp``).

The sans-I/O core's own tests (test_protocol.py) cover each rule byte by byte; these
check that the three drivers report what the core decided, over real sockets.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from conftest import WSServerFactory
from wsserver import Opcode, PeerClosed, ServerConnection, encode_frame, parse_close_payload

import wspool
from wspool import (
    WebSocketMessageTooBigException,
    WebSocketPayloadException,
    WebSocketProtocolException,
)

WAIT = 5.0
MAX_SIZE = 1000


@dataclass(frozen=True)
class Violation:
    id: str
    section: str
    frames: Callable[[], bytes]
    code: int
    error: type[WebSocketProtocolException]


def _frame(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    return encode_frame(opcode, payload, **kw)  # type: ignore[arg-type]


VIOLATIONS = [
    Violation(
        "masked",
        "5.1",
        lambda: _frame(Opcode.TEXT, b"hi", mask=True),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "rsv1-without-extension",
        "5.2",
        lambda: _frame(Opcode.TEXT, b"x", rsv1=True),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "rsv2",
        "5.2",
        lambda: _frame(Opcode.BINARY, b"x", rsv2=True),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "reserved-data-opcode", "5.2", lambda: _frame(0x3, b"x"), 1002, WebSocketProtocolException
    ),
    Violation(
        "reserved-control-opcode",
        "5.2",
        lambda: _frame(0xB, b"x"),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "fragmented-ping",
        "5.5",
        lambda: _frame(Opcode.PING, b"x", fin=False),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "ping-over-125",
        "5.5",
        lambda: _frame(Opcode.PING, b"x" * 126),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "continuation-first",
        "5.4",
        lambda: _frame(Opcode.CONTINUATION, b"x"),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "new-message-inside-fragmented",
        "5.4",
        lambda: _frame(Opcode.TEXT, b"a", fin=False) + _frame(Opcode.TEXT, b"b"),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "non-minimal-length",
        "5.2",
        lambda: _frame(Opcode.TEXT, b"x" * 5, length_bytes=2),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "64-bit-length-msb",
        "5.2",
        lambda: bytes((0x82, 127)) + struct.pack("!Q", 1 << 63),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "invalid-utf8-text",
        "8.1",
        lambda: _frame(Opcode.TEXT, b"\xce\xba\xff"),
        1007,
        WebSocketPayloadException,
    ),
    Violation(
        "close-1-byte",
        "5.5.1",
        lambda: _frame(Opcode.CLOSE, b"\x03"),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "close-code-1005",
        "7.4.1",
        lambda: _frame(Opcode.CLOSE, struct.pack("!H", 1005)),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "close-code-999",
        "7.4.2",
        lambda: _frame(Opcode.CLOSE, struct.pack("!H", 999)),
        1002,
        WebSocketProtocolException,
    ),
    Violation(
        "close-reason-not-utf8",
        "5.5.1",
        lambda: _frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff"),
        1007,
        WebSocketPayloadException,
    ),
    Violation(
        "over-max-size",
        "10.4",
        lambda: _frame(Opcode.BINARY, b"x" * (MAX_SIZE + 1)),
        1009,
        WebSocketMessageTooBigException,
    ),
]


def _violating_server(
    ws_server: WSServerFactory, violation: Violation
) -> tuple[object, queue.Queue[int | None]]:
    codes: queue.Queue[int | None] = queue.Queue()

    def handler(conn: ServerConnection) -> None:
        conn.send_raw(violation.frames())
        try:
            while True:
                frame = conn.recv_frame(WAIT)
                if frame.opcode == Opcode.CLOSE:
                    codes.put(parse_close_payload(frame.payload)[0])
                    return
        except (PeerClosed, TimeoutError):
            codes.put(None)

    return ws_server(handler, check_errors=False), codes


def _params() -> list[object]:
    return [
        pytest.param(front, v, id=f"{v.id}-{front}")
        for v in VIOLATIONS
        for front in ("connect", "pool", "app")
    ]


@pytest.mark.parametrize(("front", "violation"), _params())
def test_violation_is_reported_the_same_on_every_front_end(
    ws_server: WSServerFactory, front: str, violation: Violation
) -> None:
    server, codes = _violating_server(ws_server, violation)
    options = {"compression": None, "max_size": MAX_SIZE}
    url = server.url  # type: ignore[attr-defined]
    errors: list[BaseException] = []
    if front == "connect":
        ws = wspool.connect(url, timeout=WAIT, **options)  # type: ignore[arg-type]
        with pytest.raises(WebSocketProtocolException) as info:
            ws.recv()
        errors.append(info.value)
        ws.close()
    elif front == "pool":
        with wspool.Pool(workers=1) as pool:
            conn = pool.connect(url, on_error=lambda _c, e: errors.append(e), **options)
            assert conn.wait_closed(WAIT)
    else:
        done = threading.Event()
        with wspool.Pool(workers=1) as pool:
            app = wspool.WebSocketApp(
                url,
                on_error=lambda _a, e: errors.append(e),
                on_close=lambda *_a: done.set(),
                pool=pool,
            )
            assert app.run_forever(**options) is True
        assert done.is_set()
    assert codes.get(timeout=WAIT) == violation.code, f"RFC 6455 §{violation.section}"
    assert len(errors) == 1, errors
    error = errors[0]
    assert type(error) is violation.error, repr(error)
    assert error.close_code == violation.code
    assert url in str(error)
