"""Tests of the sans-I/O opening handshake (RFC 6455 §4, RFC 7692 §5)."""

from __future__ import annotations

import base64
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from wspool.exceptions import (
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketHandshakeException,
)
from wspool.protocol.deflate import DeflateOptions, PerMessageDeflate
from wspool.protocol.handshake import (
    HandshakeRequest,
    HandshakeResponse,
    ResponseParser,
    accept_key,
    bad_status_error,
    build_request,
    generate_key,
    is_redirect,
    parse_extensions,
    validate_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 §1.3 sample key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@dataclass(frozen=True)
class StandInDeflate:
    """Test stand-in with the DeflateOptions interface (offer / accept)."""

    offer_value: str = "permessage-deflate; client_max_window_bits"

    def offer(self) -> str:
        return self.offer_value

    def accept(self, params: list[tuple[str, str | None]], *, max_size: int | None) -> Any:
        for name, _ in params:
            if name not in ("server_no_context_takeover", "client_max_window_bits"):
                raise WebSocketHandshakeException(f"unknown permessage-deflate param {name!r}")
        return ("negotiated", tuple(params), max_size)


def request(**kwargs: Any) -> HandshakeRequest:
    options: dict[str, Any] = {
        "host": "example.com",
        "port": 80,
        "resource": "/chat",
        "secure": False,
        "key": KEY,
    }
    options.update(kwargs)
    return build_request(**options)


def head(req: HandshakeRequest) -> list[str]:
    """The request's lines after the request line, without the final blank lines."""
    data = req.to_bytes()
    assert data.endswith(b"\r\n\r\n")
    return data[:-4].decode("latin-1").split("\r\n")[1:]


# ----------------------------------------------------------------------- keys


def test_accept_key_rfc6455_section_1_3_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_generate_key_is_16_random_bytes_base64_rfc6455_4_1() -> None:
    keys = {generate_key() for _ in range(8)}
    assert len(keys) == 8
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


def test_build_request_generates_a_valid_key_when_none_given() -> None:
    req = build_request(host="example.com", port=80, resource="/", secure=False)
    assert len(base64.b64decode(req.key, validate=True)) == 16
    assert req.get("sec-websocket-key") == req.key


@pytest.mark.parametrize(
    "key", ["short", "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAAAA", "é"]
)
def test_explicit_key_must_be_16_bytes_base64(key: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match="Sec-WebSocket-Key"):
        request(key=key)


# -------------------------------------------------------------------- request


def test_request_exact_bytes_ws_default_port_rfc6455_4_1() -> None:
    assert request().to_bytes() == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"\r\n"
    )


def test_request_exact_bytes_wss_default_port_everything_on() -> None:
    req = request(
        port=443,
        secure=True,
        resource="/feed?x=1&y=%20",
        subprotocols=["chat", "superchat"],
        header={"X-Trace": "abc"},
        cookie="session=1; theme=dark",
        auth=("alice", "s3cret"),
        deflate=StandInDeflate(),
    )
    assert req.to_bytes() == (
        b"GET /feed?x=1&y=%20 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: https://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Cookie: session=1; theme=dark\r\n"
        b"Authorization: Basic YWxpY2U6czNjcmV0\r\n"
        b"X-Trace: abc\r\n"
        b"\r\n"
    )
    assert req.subprotocols == ("chat", "superchat")
    assert req.extension_offer == "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize(
    ("port", "secure", "host_line", "origin_line"),
    [
        (80, False, "Host: example.com", "Origin: http://example.com"),
        (443, True, "Host: example.com", "Origin: https://example.com"),
        (443, False, "Host: example.com:443", "Origin: http://example.com:443"),
        (80, True, "Host: example.com:80", "Origin: https://example.com:80"),
        (8765, False, "Host: example.com:8765", "Origin: http://example.com:8765"),
        (8443, True, "Host: example.com:8443", "Origin: https://example.com:8443"),
    ],
)
def test_port_only_when_not_the_scheme_default(
    port: int, secure: bool, host_line: str, origin_line: str
) -> None:
    lines = head(request(port=port, secure=secure))
    assert lines[0] == host_line
    assert origin_line in lines


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("::1", 80, "[::1]"),
        ("::1", 9000, "[::1]:9000"),
        ("2001:db8::7", 443, "[2001:db8::7]:443"),
        ("[::1]", 9000, "[::1]:9000"),
        ("fe80::1%eth0", 80, "[fe80::1%25eth0]"),
        ("127.0.0.1", 8080, "127.0.0.1:8080"),
    ],
)
def test_ipv6_literal_host_in_brackets(host: str, port: int, expected: str) -> None:
    lines = head(request(host=host, port=port))
    assert lines[0] == f"Host: {expected}"
    assert f"Origin: http://{expected}" in lines


def test_origin_given_and_suppressed() -> None:
    assert "Origin: https://app.example" in head(request(origin="https://app.example"))
    lines = head(request(suppress_origin=True, origin="https://app.example"))
    assert not [line for line in lines if line.lower().startswith("origin:")]


def test_header_forms_are_equivalent() -> None:
    as_dict = request(header={"X-A": "1", "X-B": "two words"})
    as_lines = request(header=["X-A: 1", "X-B:two words"])
    as_pairs = request(header=[("X-A", "1"), ("X-B", "two words")])
    assert as_dict.to_bytes() == as_lines.to_bytes() == as_pairs.to_bytes()
    assert head(as_dict)[-2:] == ["X-A: 1", "X-B: two words"]


def test_header_dict_none_value_is_skipped_like_websocket_client() -> None:
    assert head(request(header={"X-A": None, "X-B": "b"}))[-1] == "X-B: b"
    assert not any(line.startswith("X-A") for line in head(request(header={"X-A": None})))


def test_header_list_keeps_repeated_names_in_order() -> None:
    lines = head(request(header=["X-A: 1", "X-A: 2"]))
    assert lines[-2:] == ["X-A: 1", "X-A: 2"]


def test_user_header_replaces_generated_in_place_case_insensitive() -> None:
    lines = head(request(header={"host": "proxy.internal", "ORIGIN": "null", "X-A": "1"}))
    assert lines[0] == "host: proxy.internal"
    assert "ORIGIN: null" in lines
    assert lines[-1] == "X-A: 1"
    assert sum(line.lower().startswith(("host:", "origin:")) for line in lines) == 2


def test_host_header_option_and_header_precedence() -> None:
    assert head(request(host_header="virtual.example"))[0] == "Host: virtual.example"
    # Origin still derives from the URL's host, as in websocket-client.
    assert "Origin: http://example.com" in head(request(host_header="virtual.example"))
    lines = head(request(host_header="virtual.example", header={"Host": "from-header"}))
    assert lines[0] == "Host: from-header"


def test_cookie_option_and_user_cookie_header() -> None:
    assert "Cookie: a=1" in head(request(cookie="a=1"))
    lines = head(request(cookie="a=1", header=["Cookie: b=2"]))
    assert "Cookie: b=2" in lines
    assert "Cookie: a=1" not in lines


def test_basic_auth_from_url_userinfo_rfc7617() -> None:
    lines = head(request(auth=("Aladdin", "open sesame")))
    assert "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==" in lines
    utf8 = head(request(auth=("jürgen", "pä:ss")))
    token = base64.b64encode("jürgen:pä:ss".encode()).decode()
    assert f"Authorization: Basic {token}" in utf8


def test_user_authorization_header_wins_over_auth() -> None:
    lines = head(request(auth=("u", "p"), header={"Authorization": "Bearer t0k"}))
    assert "Authorization: Bearer t0k" in lines
    assert not [line for line in lines if "Basic" in line]


def test_basic_auth_user_with_colon_rejected_rfc7617_2() -> None:
    with pytest.raises(WebSocketConfigurationException, match="may not contain ':'"):
        request(auth=("a:b", "p"))


@pytest.mark.parametrize(
    "name", ["Upgrade", "connection", "Sec-WebSocket-Key", "SEC-WEBSOCKET-VERSION"]
)
@pytest.mark.parametrize("form", ["dict", "line", "pair"])
def test_reserved_headers_cannot_be_overridden(name: str, form: str) -> None:
    header: Any = {
        "dict": {name: "x"},
        "line": [f"{name}: x"],
        "pair": [(name, "x")],
    }[form]
    with pytest.raises(WebSocketConfigurationException, match=name):
        request(header=header)


@pytest.mark.parametrize(
    "header",
    [
        {"X-A": "1\r\nX-Injected: 1"},
        ["X-A: 1\r\nX-Injected: 1"],
        [("X-A", "1\nX")],
        [("X-A", "1\rX")],
        [("X-A", "nul\x00")],
        [("X-A", "bell\x07")],
    ],
)
def test_header_value_injection_rejected(header: Any) -> None:
    with pytest.raises(WebSocketConfigurationException, match="header injection"):
        request(header=header)


@pytest.mark.parametrize("name", ["X A", "X-A\r\nEvil", "", "X:A", "X\x00", "X-Ä", "(x)"])
def test_header_name_must_be_token(name: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match="header name"):
        request(header=[(name, "v")])


@pytest.mark.parametrize(
    "option",
    [
        {"origin": "http://a\r\nX: y"},
        {"cookie": "a=1\r\nX: y"},
        {"host_header": "h\nX: y"},
        {"deflate": StandInDeflate("permessage-deflate\r\nX: y")},
    ],
)
def test_injection_through_options_rejected(option: dict[str, Any]) -> None:
    with pytest.raises(WebSocketConfigurationException, match="header injection"):
        request(**option)


@pytest.mark.parametrize(
    "resource", ["/a\r\nX: y", "/a b", "/nul\x00", "/é", "", "chat", "http://x/"]
)
def test_bad_resource_rejected(resource: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match="resource"):
        request(resource=resource)


@pytest.mark.parametrize("host", ["", "exa mple.com", "a\r\nb", "bücher.example"])
def test_bad_host_rejected(host: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match="host"):
        request(host=host)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_bad_port_rejected(port: int) -> None:
    with pytest.raises(WebSocketConfigurationException, match="port"):
        request(port=port)


def test_header_values_must_be_latin1() -> None:
    with pytest.raises(WebSocketConfigurationException, match="latin-1"):
        request(header={"X-A": "snow \u2603"})
    assert b"X-A: caf\xe9\r\n" in request(header={"X-A": "café"}).to_bytes()


@pytest.mark.parametrize("header", [["no colon here"], [("a", "b", "c")], "X-A: 1", [42]])
def test_malformed_header_option_rejected(header: Any) -> None:
    with pytest.raises(WebSocketConfigurationException):
        request(header=header)


@pytest.mark.parametrize(
    ("subprotocols", "match"),
    [
        (["chat", "chat"], "twice"),
        (["has space"], "token"),
        (["a,b"], "token"),
        ([""], "token"),
        ("chat", "list"),
    ],
)
def test_bad_subprotocols_rejected_rfc6455_4_1_item_10(subprotocols: Any, match: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match=match):
        request(subprotocols=subprotocols)


def test_empty_subprotocols_sends_no_header() -> None:
    req = request(subprotocols=[])
    assert req.get("Sec-WebSocket-Protocol") is None
    assert req.subprotocols == ()


def test_subprotocols_through_user_header_are_recorded_as_offered() -> None:
    req = request(header={"Sec-WebSocket-Protocol": "v1, v2"})
    assert req.subprotocols == ("v1", "v2")
    with pytest.raises(WebSocketConfigurationException, match="subprotocols"):
        request(subprotocols=["v1"], header={"Sec-WebSocket-Protocol": "v2"})


def test_extensions_header_conflicts_with_deflate_option() -> None:
    with pytest.raises(WebSocketConfigurationException, match="Sec-WebSocket-Extensions"):
        request(deflate=StandInDeflate(), header={"Sec-WebSocket-Extensions": "x-foo"})
    assert request(header={"Sec-WebSocket-Extensions": "x-foo"}).extension_offer == "x-foo"


# --------------------------------------------------------------------- parser

RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"X-Custom:   padded value \t\r\n"
    b"x-custom: second\r\n"
    b"\r\n"
)
FRAME = b"\x81\x05hello"


def test_parse_response_in_one_chunk_with_leftover_frame() -> None:
    parser = ResponseParser()
    response = parser.feed(RESPONSE + FRAME)
    assert response is not None
    assert (response.http_version, response.status, response.reason) == (
        "HTTP/1.1",
        101,
        "Switching Protocols",
    )
    assert response.headers == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("X-Custom", "padded value"),
        ("x-custom", "second"),
    ]
    assert parser.leftover == FRAME
    assert parser.response is response


def test_parse_response_byte_by_byte_matches_one_chunk() -> None:
    parser = ResponseParser()
    data = RESPONSE + FRAME
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    complete_at = len(RESPONSE) - 1
    assert all(result is None for result in results[:complete_at])
    assert results[complete_at] == ResponseParser().feed(RESPONSE)
    assert all(result is results[complete_at] for result in results[complete_at:])
    assert parser.leftover == FRAME


def test_get_and_get_all_are_case_insensitive() -> None:
    response = ResponseParser().feed(RESPONSE)
    assert response is not None
    assert response.get("UPGRADE") == "websocket"
    assert response.get_all("X-CUSTOM") == ["padded value", "second"]
    assert response.get("x-Custom") == "padded value, second"
    assert response.get("Missing") is None
    assert response.get_all("Missing") == []


def test_bare_lf_line_endings_tolerated_rfc7230_3_5() -> None:
    response = ResponseParser().feed(b"HTTP/1.1 101 OK\nUpgrade: websocket\r\nA: b\n\nrest")
    assert response is not None
    assert response.headers == [("Upgrade", "websocket"), ("A", "b")]


def test_leftover_after_lf_only_terminator() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\n\n{}") is not None
    assert parser.leftover == b"{}"


@pytest.mark.parametrize(
    ("line", "reason"),
    [(b"HTTP/1.1 101", ""), (b"HTTP/1.1 101 ", ""), (b"HTTP/1.0 404 Not  Found", "Not  Found")],
)
def test_status_line_reason_may_be_empty(line: bytes, reason: str) -> None:
    response = ResponseParser().feed(line + b"\r\n\r\n")
    assert response is not None
    assert response.reason == reason


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/2 101 Switching Protocols",
        b"HTTP/2.0 101 Switching Protocols",
        b"HTTP/1.2 101 Switching Protocols",
        b"HTTP/1.1 1010 Switching",
        b"HTTP/1.1 10 Switching",
        b"HTTP/1.1  101 Switching",
        b"HTTP/1.1 abc Switching",
        b"HTTP/1.1",
        b"HTTP/1.1 101 Bad\x00Reason",
    ],
)
def test_malformed_status_line_rejected(line: bytes) -> None:
    with pytest.raises(WebSocketHandshakeException, match=r"status line|HTTP version"):
        ResponseParser().feed(line + b"\r\n\r\n")


@pytest.mark.parametrize("data", [b"\x15\x03\x01\x00\x02", b"SSH-2.0-OpenSSH", b"http/1.1 101"])
def test_non_http_peer_fails_fast_without_a_newline(data: bytes) -> None:
    with pytest.raises(WebSocketHandshakeException, match="does not start with an HTTP status"):
        ResponseParser().feed(data)


def test_non_http_prefix_detected_byte_by_byte() -> None:
    parser = ResponseParser()
    assert parser.feed(b"H") is None
    assert parser.feed(b"T") is None
    with pytest.raises(WebSocketHandshakeException, match="does not start"):
        parser.feed(b"X")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"Upgrade : websocket", "no space before the colon"),
        (b"No colon", "expected 'name: value'"),
        (b": empty name", "expected 'name: value'"),
        (b"Bad(Name): x", "expected 'name: value'"),
        (b" folded continuation", "obsolete line folding"),
        (b"\tfolded continuation", "obsolete line folding"),
        (b"X-A: nul\x00", "control character"),
        (b"X-A: bare\rcr", "bare CR"),
    ],
)
def test_malformed_header_line_rejected(line: bytes, match: str) -> None:
    with pytest.raises(WebSocketHandshakeException, match=match):
        ResponseParser().feed(b"HTTP/1.1 101 Switching Protocols\r\nA: b\r\n" + line + b"\r\n\r\n")


def test_header_byte_limit_exact_fits_and_one_more_fails() -> None:
    status = b"HTTP/1.1 101 OK\r\n"
    pad = b"X: " + b"a" * (64 - len(status) - 2 - 5) + b"\r\n"
    block = status + pad + b"\r\n"
    assert len(block) == 64
    parser = ResponseParser(max_header_bytes=64)
    assert parser.feed(block + b"leftover does not count" * 10) is not None
    with pytest.raises(WebSocketHandshakeException, match="response headers exceed 63 bytes"):
        ResponseParser(max_header_bytes=63).feed(block)


def test_header_byte_limit_default_message() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 101 OK\r\n")
    with pytest.raises(WebSocketHandshakeException, match="response headers exceed 65536 bytes"):
        parser.feed(b"X: " + b"a" * 70000 + b"\r\n")


def test_header_byte_limit_applies_to_an_endless_line() -> None:
    parser = ResponseParser(max_header_bytes=1000)
    parser.feed(b"HTTP/1.1 101 OK\r\nX: ")
    with pytest.raises(WebSocketHandshakeException, match="exceed 1000 bytes"):
        for _ in range(200):
            parser.feed(b"aaaaaaaa")


def test_header_count_limit() -> None:
    fields = b"".join(b"H%d: v\r\n" % i for i in range(5))
    response = ResponseParser(max_headers=5).feed(b"HTTP/1.1 101 OK\r\n" + fields + b"\r\n")
    assert response is not None
    assert len(response.headers) == 5
    with pytest.raises(WebSocketHandshakeException, match="more than 4 header fields"):
        ResponseParser(max_headers=4).feed(b"HTTP/1.1 101 OK\r\n" + fields + b"\r\n")


def test_end_of_stream_before_complete_head() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web")
    with pytest.raises(WebSocketHandshakeException, match="received 46 bytes"):
        parser.feed(b"")


def test_data_after_completion_goes_to_leftover() -> None:
    parser = ResponseParser()
    response = parser.feed(RESPONSE + b"\x81")
    assert parser.feed(b"\x05hello") is response
    assert parser.feed(b"") is response
    assert parser.leftover == FRAME


# ----------------------------------------------------------------- validation


def response_of(
    *headers: tuple[str, str], status: int = 101, version: str = "HTTP/1.1"
) -> HandshakeResponse:
    return HandshakeResponse(status, "Switching Protocols", version, list(headers))


GOOD = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT))


def without(name: str) -> tuple[tuple[str, str], ...]:
    return tuple(pair for pair in GOOD if pair[0] != name)


def test_valid_response_rfc6455_4_1() -> None:
    response = response_of(*GOOD, ("Server", "test"))
    result = validate_response(request(), response, max_size=None)
    assert result.status == 101
    assert result.subprotocol is None
    assert result.extensions == []
    assert result.deflate is None
    assert result.headers == response.headers


def test_validate_parsed_response_end_to_end() -> None:
    parser = ResponseParser()
    response = parser.feed(RESPONSE)
    assert response is not None
    assert validate_response(request(), response, max_size=1024).status == 101


@pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500])
def test_non_101_raises_bad_status(status: int) -> None:
    response = HandshakeResponse(status, "Whatever", "HTTP/1.1", [("Location", "/x"), ("A", "b")])
    with pytest.raises(WebSocketBadStatusException) as info:
        validate_response(request(), response, max_size=None)
    assert info.value.status_code == status
    assert info.value.headers == [("Location", "/x"), ("A", "b")]
    assert info.value.resp_headers == {"location": "/x", "a": "b"}
    assert info.value.body == b""
    assert f"Handshake status {status} Whatever" in str(info.value)


def test_bad_status_error_message_and_body() -> None:
    response = HandshakeResponse(403, "Forbidden", "HTTP/1.1", [("Content-Length", "6")])
    error = bad_status_error(response, b"denied")
    assert isinstance(error, WebSocketHandshakeException)
    assert str(error) == "Handshake status 403 Forbidden: server refused the WebSocket upgrade"
    assert error.status_code == 403
    assert error.resp_body == b"denied"
    assert error.headers == [("Content-Length", "6")]
    no_reason = bad_status_error(HandshakeResponse(500, "", "HTTP/1.1", []))
    assert str(no_reason).startswith("Handshake status 500: ")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (301, [("Location", "ws://a/")], True),
        (302, [("location", "/b")], True),
        (303, [("Location", "/c")], True),
        (307, [("Location", "/d")], True),
        (308, [("Location", "/e")], True),
        (302, [], False),
        (302, [("Location", "")], False),
        (300, [("Location", "/f")], False),
        (304, [("Location", "/g")], False),
        (200, [("Location", "/h")], False),
        (101, [("Location", "/i")], False),
    ],
)
def test_is_redirect(status: int, headers: list[tuple[str, str]], expected: bool) -> None:
    assert is_redirect(HandshakeResponse(status, "", "HTTP/1.1", headers)) is expected


def test_101_over_http_1_0_rejected() -> None:
    with pytest.raises(WebSocketHandshakeException, match=r"HTTP/1\.0"):
        validate_response(request(), response_of(*GOOD, version="HTTP/1.0"), max_size=None)


@pytest.mark.parametrize("value", [None, "websocket2", "h2c", "websocket, h2c", ""])
def test_bad_upgrade_header_rfc6455_4_1_item_2(value: str | None) -> None:
    headers = without("Upgrade") + ((("Upgrade", value),) if value is not None else ())
    with pytest.raises(WebSocketHandshakeException, match=f"Upgrade header.*{value!r}"):
        validate_response(request(), response_of(*headers), max_size=None)


def test_upgrade_is_case_insensitive() -> None:
    headers = (*without("Upgrade"), ("UPGRADE", "WebSocket"))
    assert validate_response(request(), response_of(*headers), max_size=None).status == 101


@pytest.mark.parametrize("value", [None, "keep-alive", "Upgrader", "", "close"])
def test_bad_connection_header_rfc6455_4_1_item_3(value: str | None) -> None:
    headers = without("Connection") + ((("Connection", value),) if value is not None else ())
    with pytest.raises(WebSocketHandshakeException, match=f"Connection header.*{value!r}"):
        validate_response(request(), response_of(*headers), max_size=None)


@pytest.mark.parametrize(
    "connection",
    [
        [("Connection", "keep-alive, Upgrade")],
        [("connection", "upgrade")],
        [("Connection", "keep-alive"), ("Connection", " UPGRADE ")],
    ],
)
def test_connection_token_list(connection: list[tuple[str, str]]) -> None:
    headers = (*without("Connection"), *connection)
    assert validate_response(request(), response_of(*headers), max_size=None).status == 101


def test_missing_accept_rfc6455_4_1_item_4() -> None:
    with pytest.raises(WebSocketHandshakeException, match="missing Sec-WebSocket-Accept"):
        validate_response(request(), response_of(*without("Sec-WebSocket-Accept")), max_size=None)


@pytest.mark.parametrize(
    "value", ["", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", accept_key("AAAAAAAAAAAAAAAAAAAAAA==")]
)
def test_wrong_accept_rfc6455_4_1_item_4(value: str) -> None:
    headers = (*without("Sec-WebSocket-Accept"), ("Sec-WebSocket-Accept", value))
    with pytest.raises(
        WebSocketHandshakeException, match=re.escape(f"{value!r} (expected {ACCEPT!r})")
    ):
        validate_response(request(), response_of(*headers), max_size=None)


def test_duplicate_accept_rejected() -> None:
    headers = (*GOOD, ("Sec-WebSocket-Accept", ACCEPT))
    with pytest.raises(WebSocketHandshakeException, match="2 Sec-WebSocket-Accept headers"):
        validate_response(request(), response_of(*headers), max_size=None)


def test_subprotocol_selected_rfc6455_4_1_item_6() -> None:
    response = response_of(*GOOD, ("Sec-WebSocket-Protocol", "superchat"))
    result = validate_response(request(subprotocols=["chat", "superchat"]), response, max_size=None)
    assert result.subprotocol == "superchat"


def test_subprotocol_offered_but_server_chose_none() -> None:
    result = validate_response(request(subprotocols=["chat"]), response_of(*GOOD), max_size=None)
    assert result.subprotocol is None


@pytest.mark.parametrize(
    ("offered", "answer", "match"),
    [
        (None, [("Sec-WebSocket-Protocol", "chat")], "'chat' but none was offered"),
        (["chat"], [("Sec-WebSocket-Protocol", "Chat")], "'Chat', which is not one of"),
        (["chat"], [("Sec-WebSocket-Protocol", "other")], "'other', which is not one of"),
        (["a", "b"], [("Sec-WebSocket-Protocol", "a, b")], "'a, b'.*exactly one"),
        (
            ["a", "b"],
            [("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")],
            "exactly one",
        ),
        (["a"], [("Sec-WebSocket-Protocol", "")], "exactly one"),
        (["a"], [("Sec-WebSocket-Protocol", "a,")], "exactly one"),
    ],
)
def test_bad_subprotocol_answer(
    offered: list[str] | None, answer: list[tuple[str, str]], match: str
) -> None:
    with pytest.raises(WebSocketHandshakeException, match=match):
        validate_response(request(subprotocols=offered), response_of(*GOOD, *answer), max_size=None)


def test_permessage_deflate_negotiated_rfc7692_5() -> None:
    req = request(deflate=StandInDeflate())
    answer = ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover")
    result = validate_response(req, response_of(*GOOD, answer), max_size=4096)
    assert result.extensions == ["permessage-deflate"]
    negotiated: object = result.deflate
    assert negotiated == ("negotiated", (("server_no_context_takeover", None),), 4096)


def test_deflate_offered_server_declined() -> None:
    result = validate_response(request(deflate=StandInDeflate()), response_of(*GOOD), max_size=None)
    assert result.deflate is None
    assert result.extensions == []


def test_deflate_accept_errors_propagate() -> None:
    answer = ("Sec-WebSocket-Extensions", "permessage-deflate; bogus=1")
    with pytest.raises(WebSocketHandshakeException, match="bogus"):
        validate_response(
            request(deflate=StandInDeflate()), response_of(*GOOD, answer), max_size=None
        )


@pytest.mark.parametrize(
    ("kwargs", "answers", "match"),
    [
        ({}, ["permessage-deflate"], "'permessage-deflate', which was not offered"),
        (
            {"deflate": StandInDeflate()},
            ["x-webkit-deflate-frame"],
            "'x-webkit-deflate-frame', which was not offered",
        ),
        (
            {"deflate": StandInDeflate()},
            ["permessage-deflate, permessage-deflate"],
            "more than once",
        ),
        (
            {"deflate": StandInDeflate()},
            ["permessage-deflate", "permessage-deflate"],
            "more than once",
        ),
        ({"deflate": StandInDeflate()}, ['permessage-deflate; a="b c"'], "not a token"),
        (
            {"header": {"Sec-WebSocket-Extensions": "permessage-deflate"}},
            ["permessage-deflate"],
            "offered through the header",
        ),
    ],
)
def test_bad_extension_answer(kwargs: dict[str, Any], answers: list[str], match: str) -> None:
    headers = [("Sec-WebSocket-Extensions", value) for value in answers]
    with pytest.raises(WebSocketHandshakeException, match=match):
        validate_response(request(**kwargs), response_of(*GOOD, *headers), max_size=None)


def test_extension_names_compare_case_insensitively() -> None:
    answer = ("Sec-WebSocket-Extensions", "PerMessage-Deflate")
    result = validate_response(
        request(deflate=StandInDeflate()), response_of(*GOOD, answer), max_size=None
    )
    assert result.extensions == ["PerMessage-Deflate"]
    assert result.deflate is not None


def test_extension_offered_through_header_is_accepted() -> None:
    req = request(header={"Sec-WebSocket-Extensions": "x-foo; a=1"})
    result = validate_response(
        req, response_of(*GOOD, ("Sec-WebSocket-Extensions", "x-foo")), max_size=None
    )
    assert result.extensions == ["x-foo"]
    assert result.deflate is None


def test_real_deflate_options_offer_and_negotiation_rfc7692_7_1() -> None:
    req = request(deflate=DeflateOptions())
    assert req.get("Sec-WebSocket-Extensions") == "permessage-deflate; client_max_window_bits"
    answer = (
        "Sec-WebSocket-Extensions",
        'permessage-deflate; server_no_context_takeover; client_max_window_bits="10"',
    )
    result = validate_response(req, response_of(*GOOD, answer), max_size=1 << 20)
    assert isinstance(result.deflate, PerMessageDeflate)
    assert result.deflate.client_max_window_bits == 10
    assert result.deflate.server_no_context_takeover is True
    assert result.deflate.max_size == 1 << 20


def test_real_deflate_options_reject_bad_params_rfc7692_7_1() -> None:
    answer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=16")
    with pytest.raises(WebSocketHandshakeException, match="client_max_window_bits"):
        validate_response(
            request(deflate=DeflateOptions()), response_of(*GOOD, answer), max_size=None
        )


# ----------------------------------------------------------------- extensions


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        ([" , ,"], []),
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                )
            ],
        ),
        (['a; b="10"'], [("a", [("b", "10")])]),
        (['a; b="1\\0"'], [("a", [("b", "10")])]),
        (["a ;b = 1 ; c\t,\tb"], [("a", [("b", "1"), ("c", None)]), ("b", [])]),
        (["a, b", "c;d=e"], [("a", []), ("b", []), ("c", [("d", "e")])]),
        (["a,,b,"], [("a", []), ("b", [])]),
        (["Foo; Bar=Baz"], [("Foo", [("Bar", "Baz")])]),
    ],
)
def test_parse_extensions_grammar_rfc6455_9_1(
    values: list[str], expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("; a", "expected an extension name"),
        ("a;", "expected a parameter name"),
        ("a; ;b", "expected a parameter name"),
        ("a; b=", "expected a value for parameter 'b'"),
        ("a; =1", "expected a parameter name"),
        ("a b", "unexpected 'b'"),
        ('a; b="10', "unterminated quoted-string"),
        ('a; b="10\\', "unterminated quoted-string"),
        ('a; b=""', "quoted value '' of parameter 'b' is not a token"),
        ('a; b="1 0"', "not a token"),
        ('a; b="x"y', "unexpected 'y'"),
        ("a; b=1=2", "unexpected '='"),
        ('"a"', "expected an extension name"),
        ("a/b", "unexpected '/'"),
    ],
)
def test_parse_extensions_syntax_errors(value: str, match: str) -> None:
    with pytest.raises(WebSocketHandshakeException, match=match) as info:
        parse_extensions(["ok", value])
    assert repr(value) in str(info.value)


# ------------------------------------------------------------- over a socket


def test_handshake_over_a_real_socket_on_loopback() -> None:
    """A minimal server on 127.0.0.1 answers per RFC 6455 §4.2.2 and sends one frame."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            received.append(data)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in data.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            answer = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n"
                "Sec-WebSocket-Protocol: v2\r\n\r\n"
            ).encode()
            for i in range(0, len(answer), 7):  # arrive in pieces
                conn.sendall(answer[i : i + 7])
            conn.sendall(FRAME)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        req = build_request(
            host="127.0.0.1", port=port, resource="/ws", secure=False, subprotocols=["v1", "v2"]
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(req.to_bytes())
            parser = ResponseParser()
            response = None
            while response is None:
                response = parser.feed(client.recv(5))
            leftover = parser.leftover
            while len(leftover) < len(FRAME):
                leftover += client.recv(64)
        result = validate_response(req, response, max_size=None)
        assert result.subprotocol == "v2"
        assert leftover == FRAME
        assert received == [req.to_bytes()]
    finally:
        thread.join(timeout=10)
        listener.close()
