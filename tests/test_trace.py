"""The protocol trace (``wspool.protocol.trace.enableTrace``) and custom masking keys.

Every front end (``wspool.connect``, ``Pool.connect``, ``WebSocketApp``) runs against
the local test server with the trace on, the ``wspool`` logger captured by a handler
given to ``enableTrace``: request and response heads, frames both ways with opcode,
length and a bounded preview, and credentials (Authorization from a header or URL
user info, Cookie, Set-Cookie, Proxy-Authorization through the HTTP CONNECT proxy)
never shown.  The masking-key source (``get_mask_key``) is checked sans-I/O against
RFC 6455 §5.7's masked "Hello" and end to end against what the server received.

The ``wspool`` logger and the trace switch are restored after every test.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from frontends import FrontEnd, front
from helpers import wait_until
from proxies import HttpConnectProxy
from wsserver import (
    Frame,
    Opcode,
    PeerClosed,
    Request,
    Response,
    ServerConnection,
    WSServer,
    accept,
    redirect,
)

import wspool
from wspool import WebSocketConfigurationException
from wspool.protocol import trace
from wspool.protocol.client_protocol import ClientProtocol
from wspool.protocol.events import Message, Ping
from wspool.protocol.trace import REDACTED, enableTrace

__all__ = ["front"]  # the fixture, imported from frontends

WSServerFactory = Callable[..., WSServer]
OPEN = 5.0  # open_timeout: a hanging front end fails in bounded time

#: RFC 6455 §5.7: a masked text frame "Hello" with the key 37 fa 21 3d.
RFC_KEY = bytes.fromhex("37fa213d")
RFC_MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")

logger = logging.getLogger("wspool")


class Capture(logging.Handler):
    """Keeps every record it is given (thread-safe: list.append)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in list(self.records)]

    def trace(self, url: str) -> list[str]:
        """The trace lines of the connection to ``url``, without the URL prefix."""
        prefix = url + " "
        return [m[len(prefix) :] for m in self.messages() if m.startswith(prefix)]


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    """Whatever a test does to the trace and the ``wspool`` logger is undone."""
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        yield
    finally:
        enableTrace(False)
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def capture() -> Capture:
    """Tracing on, lines kept by a handler given to enableTrace."""
    handler = Capture()
    enableTrace(True, handler=handler)
    return handler


def secret_free(messages: list[str], *secrets: str) -> None:
    for secret in secrets:
        leaks = [m for m in messages if secret in m]
        assert not leaks, f"{secret!r} appears in the trace: {leaks}"


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# -------------------------------------------------------------- every front end


def test_trace_of_a_whole_connection(
    front: FrontEnd, ws_server: WSServerFactory, capture: Capture
) -> None:
    """Request head, 101 head, frames both ways (opcode, fin, length, preview), a
    long payload cut at 64 characters, the closing handshake; every line names the
    URL and goes through the wspool logger at DEBUG."""
    server = ws_server()
    url = f"{server.url}/trace?room=1"
    handle = front.open(url, compression=None, open_timeout=OPEN)
    handle.send("Hello")
    assert handle.recv() == "Hello"
    handle.send(b"\x00\x01\xff")
    assert handle.recv() == b"\x00\x01\xff"
    long_text = "a" * 64 + "b" * 136
    handle.send(long_text)
    assert handle.recv() == long_text
    handle.close()

    lines = capture.trace(url)
    host = f"127.0.0.1:{server.port}"
    for expected in (
        "> GET /trace?room=1 HTTP/1.1",
        f"> Host: {host}",
        "> Upgrade: websocket",
        "> Connection: Upgrade",
        "> Sec-WebSocket-Version: 13",
        f"> Sec-WebSocket-Key: {server.requests[-1].key}",
        "< HTTP/1.1 101 Switching Protocols",
        "< Upgrade: websocket",
        "< Connection: Upgrade",
        "> TEXT fin=1 len=5 'Hello'",
        "< TEXT fin=1 len=5 'Hello'",
        "> BINARY fin=1 len=3 b'\\x00\\x01\\xff'",
        "< BINARY fin=1 len=3 b'\\x00\\x01\\xff'",
        f"> TEXT fin=1 len=200 '{'a' * 64}'...",
        f"< TEXT fin=1 len=200 '{'a' * 64}'...",
        "> CLOSE fin=1 len=2 code=1000 reason=''",
    ):
        assert expected in lines, f"{expected!r} not in the trace:\n" + "\n".join(lines)
    # Order: the request before the response, the response before the first frame.
    assert lines.index("> GET /trace?room=1 HTTP/1.1") < lines.index(
        "< HTTP/1.1 101 Switching Protocols"
    )
    assert lines.index("< HTTP/1.1 101 Switching Protocols") < lines.index(
        "> TEXT fin=1 len=5 'Hello'"
    )
    assert "b" * 10 not in "\n".join(lines)  # the cut part is never shown
    records = [r for r in capture.records if r.getMessage().startswith(url + " ")]
    assert {(r.name, r.levelno) for r in records} == {("wspool", logging.DEBUG)}


def test_deflated_frames_say_so(
    front: FrontEnd, ws_server: WSServerFactory, capture: Capture
) -> None:
    """A compressed frame we send shows its compressed length and the message before
    compression; the received message is shown decompressed."""
    server = ws_server()
    url = f"{server.url}/deflate"
    handle = front.open(url, open_timeout=OPEN)
    assert handle.extensions == ["permessage-deflate"]
    message = "compressible " * 200  # 2600 bytes: over the 1024-byte min_size
    handle.send(message)
    assert handle.recv() == message
    handle.close()
    sent = [line for line in capture.trace(url) if line.startswith("> TEXT")]
    assert len(sent) == 1
    match = re.fullmatch(r"> TEXT fin=1 len=(\d+) deflated '(.*)'\.\.\.", sent[0])
    assert match is not None, sent
    assert int(match.group(1)) < 200
    assert match.group(2) == message[:64]
    assert f"< TEXT fin=1 len=2600 {message[:64]!r}..." in capture.trace(url)


def test_credentials_from_url_user_info_are_redacted(
    front: FrontEnd, ws_server: WSServerFactory, capture: Capture
) -> None:
    server = ws_server()
    handle = front.open(
        f"ws://alice:url-secret@127.0.0.1:{server.port}/private",
        compression=None,
        open_timeout=OPEN,
    )
    handle.close()
    assert server.requests[-1].get("Authorization") == f"Basic {b64('alice', 'url-secret')}"
    url = f"ws://127.0.0.1:{server.port}/private"  # the label: no user info
    assert f"> Authorization: {REDACTED}" in capture.trace(url)
    messages = capture.messages()
    secret_free(messages, "url-secret", b64("alice", "url-secret"), "alice")


@pytest.mark.parametrize(
    ("options", "header_name", "sent_value"),
    [
        pytest.param({"cookie": "sid=cookie-secret"}, "Cookie", "sid=cookie-secret", id="cookie"),
        pytest.param(
            {"header": {"Cookie": "sid=cookie-secret"}},
            "Cookie",
            "sid=cookie-secret",
            id="cookie-header",
        ),
        pytest.param(
            {"header": ["authorization: Bearer token-secret"]},
            "authorization",
            "Bearer token-secret",
            id="authorization-header",
        ),
    ],
)
def test_credential_headers_are_redacted(
    front: FrontEnd,
    ws_server: WSServerFactory,
    capture: Capture,
    options: dict[str, Any],
    header_name: str,
    sent_value: str,
) -> None:
    """The header went to the server as given; the trace shows the marker (names
    matched case-insensitively)."""
    server = ws_server()
    url = f"{server.url}/creds"
    handle = front.open(url, compression=None, open_timeout=OPEN, **options)
    handle.close()
    assert server.requests[-1].get(header_name) == sent_value
    assert f"> {header_name}: {REDACTED}" in capture.trace(url)
    secret_free(capture.messages(), sent_value.split()[-1].removeprefix("sid="))


def test_set_cookie_in_the_response_is_redacted(
    front: FrontEnd, ws_server: WSServerFactory, capture: Capture
) -> None:
    def handshake(request: Request) -> Response:
        return accept(
            request,
            compression=False,
            headers=[("Set-Cookie", "sid=resp-secret; HttpOnly"), ("X-Visible", "shown")],
        )

    server = ws_server(handshake=handshake)
    url = f"{server.url}/set-cookie"
    handle = front.open(url, open_timeout=OPEN)
    assert handle.headers["set-cookie"] == "sid=resp-secret; HttpOnly"
    handle.close()
    lines = capture.trace(url)
    assert f"< Set-Cookie: {REDACTED}" in lines
    assert "< X-Visible: shown" in lines
    secret_free(capture.messages(), "resp-secret")


def test_proxy_connect_is_traced_with_proxy_authorization_redacted(
    front: FrontEnd, ws_server: WSServerFactory, capture: Capture
) -> None:
    server = ws_server()
    with HttpConnectProxy(auth=("proxyuser", "proxy-secret")) as proxy:
        url = f"{server.url}/via"
        handle = front.open(
            url,
            http_proxy_host="127.0.0.1",
            http_proxy_port=proxy.port,
            http_proxy_auth=("proxyuser", "proxy-secret"),
            proxy_type="http",
            compression=None,
            open_timeout=OPEN,
        )
        handle.send("through")
        assert handle.recv() == "through"
        handle.close()
        assert proxy.requests[-1].credentials == ("proxyuser", "proxy-secret")
    via = f"(HTTP proxy 127.0.0.1:{proxy.port})"
    lines = capture.trace(url)
    for expected in (
        f"> {via} CONNECT 127.0.0.1:{server.port} HTTP/1.1",
        f"> {via} Host: 127.0.0.1:{server.port}",
        f"> {via} Proxy-Authorization: {REDACTED}",
        f"< {via} HTTP/1.1 200 Connection established",
        "> GET /via HTTP/1.1",
        "< HTTP/1.1 101 Switching Protocols",
        "> TEXT fin=1 len=7 'through'",
    ):
        assert expected in lines, f"{expected!r} not in the trace:\n" + "\n".join(lines)
    assert lines.index(f"< {via} HTTP/1.1 200 Connection established") < lines.index(
        "> GET /via HTTP/1.1"
    )
    secret_free(capture.messages(), "proxy-secret", b64("proxyuser", "proxy-secret"))


def test_no_trace_lines_when_off(front: FrontEnd, ws_server: WSServerFactory) -> None:
    """A handler at DEBUG on the wspool logger, but no enableTrace (or after
    enableTrace(False)): the state-change debug lines appear, trace lines do not."""
    enableTrace(True)
    enableTrace(False)
    handler = Capture()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    server = ws_server()
    url = f"{server.url}/quiet"
    handle = front.open(url, compression=None, open_timeout=OPEN)
    handle.send("Hello")
    assert handle.recv() == "Hello"
    handle.close()
    assert not trace.is_tracing()
    assert handler.messages(), "the wspool logger logged nothing at all: is it wired?"
    traced = [m for m in handler.trace(url) if m[:1] in "<>!"]
    assert traced == []


# ----------------------------------------------------------------- the switch


def test_enable_twice_does_not_duplicate_lines(ws_server: WSServerFactory) -> None:
    handler = Capture()
    enableTrace(True, handler=handler)
    enableTrace(True, handler=handler)
    assert logger.handlers.count(handler) == 1
    server = ws_server()
    url = f"{server.url}/twice"
    with wspool.connect(url, compression=None) as ws:
        ws.send("once")
        assert ws.recv() == "once"
    assert capture_count(handler, url, "> TEXT fin=1 len=4 'once'") == 1
    assert capture_count(handler, url, "> GET /twice HTTP/1.1") == 1


def capture_count(handler: Capture, url: str, line: str) -> int:
    return handler.trace(url).count(line)


def test_enable_again_replaces_the_handler_it_added() -> None:
    before = list(logger.handlers)
    enableTrace(True)
    enableTrace(True)
    added = [h for h in logger.handlers if h not in before]
    assert len(added) == 1
    assert type(added[0]) is logging.StreamHandler
    assert added[0].formatter is None
    second = Capture()
    enableTrace(True, handler=second)
    assert [h for h in logger.handlers if h not in before] == [second]


def test_disable_removes_the_handler_and_restores_the_level() -> None:
    logger.setLevel(logging.WARNING)
    handler = Capture()
    enableTrace(True, handler=handler)
    assert handler in logger.handlers
    assert logger.level == logging.DEBUG
    assert trace.is_tracing()
    enableTrace(False)
    assert handler not in logger.handlers
    assert logger.level == logging.WARNING
    assert not trace.is_tracing()
    enableTrace(False)  # off twice is harmless
    assert logger.level == logging.WARNING


def test_disable_keeps_a_handler_that_was_there_before() -> None:
    mine = Capture()
    logger.addHandler(mine)
    enableTrace(True, handler=mine)
    enableTrace(False)
    assert mine in logger.handlers


@pytest.mark.parametrize(
    ("level", "number"),
    [("DEBUG", logging.DEBUG), ("info", logging.INFO), (logging.WARNING, logging.WARNING), (5, 5)],
)
def test_level_names_and_numbers(level: str | int, number: int) -> None:
    enableTrace(True, handler=Capture(), level=level)
    assert logger.level == number


def test_unknown_level_is_refused() -> None:
    with pytest.raises(WebSocketConfigurationException, match="'LOUD' is not a logging level"):
        enableTrace(True, handler=Capture(), level="LOUD")
    assert not trace.is_tracing()


def test_a_level_above_debug_hides_the_trace() -> None:
    handler = Capture()
    enableTrace(True, handler=handler, level="INFO")
    proto = ClientProtocol(label="ws://example/")
    proto.send_message("quiet")
    assert handler.messages() == []


def test_default_handler_writes_plain_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    enableTrace(True)  # a StreamHandler on the (captured) sys.stderr of this moment
    proto = ClientProtocol(label="ws://example/plain")
    proto.send_message("hi")
    assert capsys.readouterr().err == "ws://example/plain > TEXT fin=1 len=2 'hi'\n"


# ------------------------------------------------------------ sans-I/O details


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, len(payload))) + payload


def test_preview_is_bounded() -> None:
    assert trace.preview("abc") == "'abc'"
    assert trace.preview("x" * 64) == repr("x" * 64)
    assert trace.preview("x" * 65) == repr("x" * 64) + "..."
    assert trace.preview(b"\x00" * 100) == repr(b"\x00" * 64) + "..."
    assert trace.preview(memoryview(b"abc")) == "b'abc'"
    assert trace.preview(bytearray(b"abc")) == "b'abc'"


@pytest.mark.parametrize(
    "name", ["Authorization", "proxy-authorization", "COOKIE", "Set-Cookie", "set-cookie"]
)
def test_credential_header_values_are_replaced(name: str) -> None:
    assert trace.redact_header(name, "secret") == REDACTED


def test_other_header_values_are_kept_and_location_loses_user_info() -> None:
    assert trace.redact_header("Host", "example.com") == "example.com"
    assert (
        trace.redact_header("Location", "wss://bob:pw@example.com/next?a=b")
        == f"wss://{REDACTED}@example.com/next?a=b"
    )
    assert trace.redact_header("Location", "/relative") == "/relative"


def test_redirect_location_user_info_is_masked(
    ws_server: WSServerFactory, capture: Capture
) -> None:
    target = ws_server()
    origin = ws_server(
        handshake=lambda request: redirect(f"ws://bob:loc-secret@127.0.0.1:{target.port}/to")
    )
    with wspool.connect(f"{origin.url}/from", compression=None) as ws:
        ws.send("after redirect")
        assert ws.recv() == "after redirect"
    lines = capture.trace(f"{origin.url}/from")
    assert "< HTTP/1.1 302 Found" in lines
    assert f"< Location: ws://{REDACTED}@127.0.0.1:{target.port}/to" in lines
    assert "> GET /to HTTP/1.1" in capture.trace(f"{target.url}/to")
    secret_free(capture.messages(), "loc-secret")


def test_received_control_frames_and_auto_replies_in_order(capture: Capture) -> None:
    """The received ping is traced before the pong the core queued for it, the close
    frame before the close reply."""
    proto = ClientProtocol(label="ws://example/ctl")
    events = proto.receive_data(
        server_frame(0x1, b"before")
        + server_frame(0x9, b"are you there")
        + server_frame(0x8, b"\x03\xe8bye")
    )
    assert events[:2] == [Message(1, "before"), Ping(b"are you there")]
    assert capture.trace("ws://example/ctl") == [
        "< TEXT fin=1 len=6 'before'",
        "< PING fin=1 len=13 b'are you there'",
        "< CLOSE fin=1 len=5 code=1000 reason='bye'",
        "> PONG fin=1 len=13 (auto) b'are you there'",
        "> CLOSE fin=1 len=2 (reply) code=1000 reason=''",
    ]
    proto.receive_data(b"")
    assert capture.trace("ws://example/ctl")[-1] == "< end of stream (clean)"


def test_frame_events_are_traced_per_frame(capture: Capture) -> None:
    proto = ClientProtocol(label="ws://example/frames", frame_events=True)
    proto.receive_data(server_frame(0x1, b"Hel", fin=False) + server_frame(0x0, b"lo"))
    assert capture.trace("ws://example/frames") == [
        "< TEXT fin=0 len=3 b'Hel'",
        "< CONT fin=1 len=2 b'lo'",
    ]


def test_sent_fragments_are_traced_per_frame(capture: Capture) -> None:
    proto = ClientProtocol(label="ws://example/out")
    proto.send_message(b"abcdefgh", fragment_size=3)
    proto.send_fragment("first", fin=False)
    proto.send_fragment("last", fin=True)
    assert capture.trace("ws://example/out") == [
        "> BINARY fin=0 len=3 b'abc'",
        "> CONT fin=0 len=3 b'def'",
        "> CONT fin=1 len=2 b'gh'",
        "> TEXT fin=0 len=5 b'first'",
        "> CONT fin=1 len=4 b'last'",
    ]


def test_protocol_error_and_failing_close_are_traced(capture: Capture) -> None:
    proto = ClientProtocol(label="ws://example/bad")
    proto.receive_data(bytes((0x83, 0)))  # reserved opcode 3
    lines = capture.trace("ws://example/bad")
    assert lines[0].startswith("! protocol error: reserved opcode 0x3")
    assert lines[1].startswith("> CLOSE fin=1 len=") and "(failing) code=1002" in lines[1]


def test_a_multibyte_text_length_is_in_bytes(capture: Capture) -> None:
    proto = ClientProtocol(label="ws://example/utf8")
    proto.send_message("é€")
    proto.receive_data(server_frame(0x1, "é€".encode()))
    assert capture.trace("ws://example/utf8") == [
        "> TEXT fin=1 len=5 'é€'",
        "< TEXT fin=1 len=5 'é€'",
    ]


# --------------------------------------------------------------- masking keys


def key_of(frame: bytes) -> bytes:
    """The masking key of one client frame with a 7-bit length."""
    assert frame[1] & 0x80 and frame[1] & 0x7F < 126
    return frame[2:6]


def test_rfc_6455_masked_hello() -> None:
    calls: list[int] = []

    def source(length: int) -> bytes:
        calls.append(length)
        return RFC_KEY

    proto = ClientProtocol(mask_key_source=source)
    assert proto.send_message("Hello") == RFC_MASKED_HELLO
    assert calls == [4]


def test_a_str_key_is_latin_1_encoded() -> None:
    proto = ClientProtocol(mask_key_source=lambda _n: RFC_KEY.decode("latin-1"))  # type: ignore[arg-type, return-value]
    assert proto.send_message("Hello") == RFC_MASKED_HELLO


def test_the_source_can_be_set_later_and_unset() -> None:
    proto = ClientProtocol()
    proto.mask_key_source = lambda _n: RFC_KEY
    assert proto.send_message("Hello") == RFC_MASKED_HELLO
    proto.mask_key_source = None
    keys = {key_of(proto.send_message("Hello")) for _ in range(8)}
    assert len(keys) == 8  # fresh random keys again


def test_every_frame_the_core_builds_uses_the_source() -> None:
    keys = iter(bytes((i, i, i, i)) for i in range(1, 100))
    proto = ClientProtocol(mask_key_source=lambda _n: next(keys))
    frames = [
        proto.send_message("ab"),
        proto.send_ping(b"p"),
        proto.send_pong(b"q"),
        proto.send_fragment("x", fin=False),
        proto.send_fragment("y", fin=True),
    ]
    fragmented = proto.send_message(b"123456", fragment_size=3)
    frames += [fragmented[:9], fragmented[9:]]
    proto.receive_data(server_frame(0x9, b"ping"))  # the core's automatic pong
    frames.append(proto.data_to_send())
    proto.receive_data(server_frame(0x8, b"\x03\xe8"))  # the close reply
    frames.append(proto.data_to_send())
    assert [key_of(frame)[0] for frame in frames] == list(range(1, 10))
    closing = ClientProtocol(mask_key_source=lambda _n: b"\x0a" * 4)
    assert key_of(closing.send_close(1000)) == b"\x0a" * 4


@pytest.mark.parametrize(
    "returned",
    [b"abc", b"abcde", "ĀĀĀĀ", 1234, None],
    ids=["short", "long", "wide-str", "int", "none"],
)
def test_an_unusable_key_is_refused_naming_it(returned: object) -> None:
    proto = ClientProtocol(mask_key_source=lambda _n: returned, label="ws://example/keys")  # type: ignore[arg-type, return-value]
    with pytest.raises(WebSocketConfigurationException) as info:
        proto.send_message("Hello")
    assert f"get_mask_key returned {returned!r}" in str(info.value)
    assert "4 bytes" in str(info.value)
    assert info.value.url == "ws://example/keys"


def test_a_failing_source_does_not_lose_received_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The automatic pong is built while parsing: a bad key is logged and that pong
    masked with a random key; the events still come out."""
    proto = ClientProtocol(mask_key_source=lambda _n: b"bad", label="ws://example/auto")
    with caplog.at_level(logging.ERROR, logger="wspool"):
        events = proto.receive_data(server_frame(0x9, b"x") + server_frame(0x1, b"after"))
    assert events == [Ping(b"x"), Message(1, "after")]
    pong = proto.data_to_send()
    assert pong[0] == 0x8A and pong[1] == 0x81
    assert any(
        "ws://example/auto" in r.getMessage() and "get_mask_key" in r.getMessage()
        for r in caplog.records
    )


def _recording_echo(frames: list[Frame]) -> Callable[[ServerConnection], None]:
    """A handler that records every frame as received and echoes data frames."""

    def handler(conn: ServerConnection) -> None:
        while True:
            try:
                frame = conn.recv_frame()
            except PeerClosed:
                return
            frames.append(frame)
            if frame.opcode == Opcode.CLOSE:
                conn.send_close(1000)
                conn.close_tcp()
                return
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                conn.send_message(frame.payload, opcode=frame.opcode)

    return handler


@pytest.mark.parametrize("front", ["connect", "pool"], indirect=True)
def test_get_mask_key_end_to_end(front: FrontEnd, ws_server: WSServerFactory) -> None:
    """The server sees our key on every frame, the payload unmasks to what was sent.
    (WebSocketApp refuses get_mask_key.)"""
    frames: list[Frame] = []
    server = ws_server(_recording_echo(frames))
    handle = front.open(
        f"{server.url}/keys", get_mask_key=lambda _n: RFC_KEY, compression=None, open_timeout=OPEN
    )
    handle.send("Hello")
    assert handle.recv() == "Hello"
    handle.send(b"\x01\x02")
    assert handle.recv() == b"\x01\x02"
    handle.close()
    assert [(f.opcode, f.payload) for f in frames[:2]] == [
        (Opcode.TEXT, b"Hello"),
        (Opcode.BINARY, b"\x01\x02"),
    ]
    assert frames[-1].opcode == Opcode.CLOSE
    assert {f.mask_key for f in frames} == {RFC_KEY}
    assert all(f.masked for f in frames)


@pytest.mark.parametrize("front", ["connect", "pool"], indirect=True)
def test_get_mask_key_with_a_bad_result_raises_at_send(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    server = ws_server()
    handle = front.open(
        f"{server.url}/badkey", get_mask_key=lambda _n: b"abc", compression=None, open_timeout=OPEN
    )
    with pytest.raises(WebSocketConfigurationException, match=r"get_mask_key returned b'abc'"):
        handle.send("Hello")
    # Closing still works (a random key, the failure logged): the server gets the close.
    handle.close()
    assert wait_until(lambda: server.connections and server.connections[-1].close_received)
    assert server.connections[-1].close_received == (1000, b"")
