"""Tests of the sans-I/O opening handshake (RFC 6455 §4, RFC 7692 §5): the request,
the validation of the answer and the ClientHandshake state machine.

The HTTP head parser has its tests in test_http_head.py, the header grammar in
test_headers.py."""

from __future__ import annotations

import base64
import logging
import re
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
    BODY_EXCERPT_LIMIT,
    REDIRECT_STATUSES,
    REJECTION_BODY_WAIT,
    Accepted,
    ClientHandshake,
    HandshakeRequest,
    HandshakeState,
    Redirect,
    Rejected,
    accept_key,
    bad_status_error,
    build_request,
    generate_key,
    validate_response,
)
from wspool.protocol.http import ResponseHead, ResponseHeadParser

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


# ----------------------------------------------------------------- validation

# The sample 101 answer and a frame after it, shared with the head parser's tests.
from test_http_head import FRAME, RESPONSE  # noqa: E402


def response_of(
    *headers: tuple[str, str], status: int = 101, version: str = "HTTP/1.1"
) -> ResponseHead:
    return ResponseHead(status, "Switching Protocols", version, list(headers))


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
    parser = ResponseHeadParser()
    response = parser.feed(RESPONSE)
    assert response is not None
    assert validate_response(request(), response, max_size=1024).status == 101


@pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500])
def test_non_101_raises_bad_status(status: int) -> None:
    response = ResponseHead(status, "Whatever", "HTTP/1.1", [("Location", "/x"), ("A", "b")])
    with pytest.raises(WebSocketBadStatusException) as info:
        validate_response(request(), response, max_size=None)
    assert info.value.status_code == status
    assert info.value.headers == [("Location", "/x"), ("A", "b")]
    assert info.value.resp_headers == {"location": "/x", "a": "b"}
    assert info.value.body == b""
    assert f"Handshake status {status} Whatever" in str(info.value)


def test_bad_status_error_message_and_body() -> None:
    response = ResponseHead(403, "Forbidden", "HTTP/1.1", [("Content-Length", "6")])
    error = bad_status_error(response, b"denied")
    assert isinstance(error, WebSocketHandshakeException)
    assert str(error) == "Handshake status 403 Forbidden: server refused the WebSocket upgrade"
    assert error.status_code == 403
    assert error.resp_body == b"denied"
    assert error.headers == [("Content-Length", "6")]
    no_reason = bad_status_error(ResponseHead(500, "", "HTTP/1.1", []))
    assert str(no_reason).startswith("Handshake status 500: ")


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


# ------------------------------------------------------------ ClientHandshake


def client(**kwargs: Any) -> ClientHandshake:
    """A handshake for ``request()`` whose request bytes were already taken."""
    hs = ClientHandshake(request(), max_size=None, **kwargs)
    hs.data_to_send()
    return hs


def refusal(status: int, reason: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def rejected(event: object) -> WebSocketBadStatusException:
    assert isinstance(event, Rejected)
    return event.error


def test_policy_constants() -> None:
    assert BODY_EXCERPT_LIMIT == 4096
    assert REJECTION_BODY_WAIT == 1.0
    assert frozenset({301, 302, 303, 307, 308}) == REDIRECT_STATUSES


def test_data_to_send_gives_the_request_once_rfc6455_4_1() -> None:
    req = request()
    hs = ClientHandshake(req, max_size=None)
    assert hs.request is req
    assert hs.state is HandshakeState.CONNECTING
    assert hs.data_to_send() == req.to_bytes()
    assert hs.data_to_send() == b""
    hs.receive_data(RESPONSE)
    assert hs.data_to_send() == b""


def test_accepted_with_leftover_frames_rfc6455_4_2_2() -> None:
    hs = client()
    event = hs.receive_data(RESPONSE + FRAME + FRAME)
    assert isinstance(event, Accepted)
    assert event.leftover == FRAME + FRAME
    assert event.result.status == 101
    assert event.result.subprotocol is None
    assert ("x-custom", "second") in event.result.headers
    assert hs.state is HandshakeState.ACCEPTED
    assert hs.response is not None
    assert hs.response.status == 101


def test_accepted_negotiates_subprotocol_and_deflate_rfc6455_4_1_rfc7692_5() -> None:
    req = request(subprotocols=["chat", "superchat"], deflate=DeflateOptions())
    hs = ClientHandshake(req, max_size=1 << 16)
    answer = RESPONSE[:-2] + (
        b"Sec-WebSocket-Protocol: superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
    )
    event = hs.receive_data(answer)
    assert isinstance(event, Accepted)
    assert event.result.subprotocol == "superchat"
    assert event.result.extensions == ["permessage-deflate"]
    assert isinstance(event.result.deflate, PerMessageDeflate)
    assert event.result.deflate.max_size == 1 << 16
    assert event.leftover == b""


def test_accepted_response_split_byte_by_byte() -> None:
    hs = client()
    data = RESPONSE
    events = [hs.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert all(event is None for event in events[:-1])
    assert hs.state is HandshakeState.ACCEPTED
    last = events[-1]
    assert isinstance(last, Accepted)
    assert last.leftover == b""


def test_interim_1xx_skipped_before_101_rfc9110_15_2() -> None:
    hs = client()
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n" + RESPONSE + FRAME
    )
    event = None
    position = 0
    while event is None:  # in 7-byte chunks: heads and their ends straddle reads
        event = hs.receive_data(data[position : position + 7])
        position += 7
    assert isinstance(event, Accepted)
    assert hs.response is not None
    assert hs.response.status == 101
    assert event.leftover + data[position:] == FRAME


def test_interim_1xx_skipped_before_a_refusal_rfc9110_15_2() -> None:
    hs = client()
    event = hs.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\n" + refusal(403, "Forbidden", "Content-Length: 2") + b"no"
    )
    assert rejected(event).status_code == 403
    assert rejected(event).resp_body == b"no"


@pytest.mark.parametrize("status", sorted(REDIRECT_STATUSES))
@pytest.mark.parametrize("location", ["wss://other.example:8443/ws?x=1", "/elsewhere", "next"])
def test_redirect_at_once_without_reading_the_body(status: int, location: str) -> None:
    """RFC 6455 §4.1: the client may follow 3xx redirects; the body is not awaited."""
    hs = client()
    head = refusal(status, "Moved", f"Location: {location}", "Content-Length: 100")
    event = hs.receive_data(head + b"<html>")
    assert isinstance(event, Redirect)
    assert event.status == status
    assert event.location == location
    assert event.response.get("Content-Length") == "100"
    assert hs.state is HandshakeState.REDIRECTED
    with pytest.raises(RuntimeError, match="'redirected'"):
        hs.receive_data(b"rest of the body")


def test_redirect_split_byte_by_byte() -> None:
    hs = client()
    data = refusal(307, "Temporary Redirect", "Location: /b")
    events = [hs.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert all(event is None for event in events[:-1])
    assert events[-1] == Redirect(
        307, "/b", ResponseHead(307, "Temporary Redirect", "HTTP/1.1", [("Location", "/b")])
    )


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (302, ["Content-Length: 4"]),
        (301, ["Location: ", "Content-Length: 4"]),
        (300, ["Location: /choice", "Content-Length: 4"]),
        (200, ["Location: /ok", "Content-Length: 4"]),
    ],
)
def test_no_usable_redirect_is_a_rejection_with_body(status: int, headers: list[str]) -> None:
    hs = client()
    assert hs.receive_data(refusal(status, "X", *headers)) is None
    assert hs.state is HandshakeState.READING_BODY
    error = rejected(hs.receive_data(b"body"))
    assert error.status_code == status
    assert error.resp_body == b"body"
    assert hs.state is HandshakeState.REJECTED


def test_rejected_with_content_length_body_in_one_chunk() -> None:
    hs = client()
    head = refusal(403, "Forbidden", "Content-Length: 6", "X-Reason: policy")
    event = hs.receive_data(head + b"denied")
    assert hs.state is HandshakeState.REJECTED
    error = rejected(event)
    assert isinstance(error, WebSocketHandshakeException)
    assert str(error) == "Handshake status 403 Forbidden: server refused the WebSocket upgrade"
    assert error.status_code == 403
    assert error.resp_body == b"denied"
    assert error.headers == [("Content-Length", "6"), ("X-Reason", "policy")]
    assert error.resp_headers["x-reason"] == "policy"


def test_rejected_body_split_across_chunks() -> None:
    hs = client()
    assert hs.receive_data(refusal(500, "Internal Server Error", "Content-Length: 10")) is None
    assert hs.state is HandshakeState.READING_BODY
    assert hs.receive_data(b"0123") is None
    assert hs.receive_data(b"456") is None
    error = rejected(hs.receive_data(b"789 and the next response"))
    assert error.resp_body == b"0123456789"


def test_rejected_body_byte_by_byte() -> None:
    hs = client()
    data = refusal(404, "Not Found", "Content-Length: 3") + b"abc"
    events = [hs.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert all(event is None for event in events[:-1])
    assert rejected(events[-1]).resp_body == b"abc"


def test_rejected_body_longer_than_the_limit_is_cut() -> None:
    hs = client(body_limit=10)
    assert hs.receive_data(refusal(400, "Bad Request", "Content-Length: 100") + b"01234") is None
    error = rejected(hs.receive_data(b"56789" + b"x" * 85))
    assert error.resp_body == b"0123456789"


def test_default_body_limit_is_the_excerpt_limit() -> None:
    hs = client()
    head = refusal(503, "Service Unavailable", "Content-Length: 10000")
    error = rejected(hs.receive_data(head + b"a" * 5000))
    assert error.resp_body == b"a" * BODY_EXCERPT_LIMIT


def test_rejected_body_shorter_than_content_length_then_end_of_stream() -> None:
    hs = client()
    assert hs.receive_data(refusal(403, "Forbidden", "Content-Length: 100") + b"part") is None
    error = rejected(hs.receive_data(b""))
    assert error.resp_body == b"part"
    assert hs.state is HandshakeState.REJECTED


def test_rejected_without_content_length_body_ends_at_end_of_stream() -> None:
    """RFC 9112 §6.3 item 8: without a length, the body runs until the connection closes."""
    hs = client()
    assert hs.receive_data(refusal(500, "Oops") + b"part1") is None
    assert hs.receive_data(b"part2") is None
    error = rejected(hs.receive_data(b""))
    assert error.resp_body == b"part1part2"


def test_rejected_without_content_length_stops_at_the_limit() -> None:
    hs = client(body_limit=4)
    assert rejected(hs.receive_data(refusal(500, "Oops") + b"abcdef")).resp_body == b"abcd"


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "+5", "\u00b2", "5, 6", "", "9" * 30])
def test_invalid_content_length_falls_back_to_the_limit(value: str) -> None:
    hs = client(body_limit=8)
    head = refusal(400, "Bad Request", f"Content-Length: {value}")
    assert hs.receive_data(head + b"1234") is None
    assert rejected(hs.receive_data(b"56789")).resp_body == b"12345678"


def test_repeated_identical_content_length_is_one_length_rfc9110_8_6() -> None:
    hs = client()
    head = refusal(400, "Bad Request", "Content-Length: 3", "Content-Length: 3")
    assert rejected(hs.receive_data(head + b"abcdef")).resp_body == b"abc"


def test_transfer_encoding_overrides_content_length_rfc9112_6_3() -> None:
    hs = client(body_limit=64)
    head = refusal(400, "Bad Request", "Transfer-Encoding: chunked", "Content-Length: 2")
    assert hs.receive_data(head + b"5\r\nhello\r\n") is None
    assert rejected(hs.receive_data(b"")).resp_body == b"5\r\nhello\r\n"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_are_rejected_at_once_rfc9112_6_3(status: int) -> None:
    hs = client()
    error = rejected(hs.receive_data(refusal(status, "X", "Location: /cached")))
    assert error.status_code == status
    assert error.resp_body == b""


def test_content_length_zero_and_body_limit_zero_reject_at_once() -> None:
    assert rejected(client().receive_data(refusal(401, "No", "Content-Length: 0"))).body == b""
    hs = client(body_limit=0)
    assert rejected(hs.receive_data(refusal(401, "No") + b"ignored")).body == b""


def test_body_timed_out_gives_what_arrived() -> None:
    hs = client()
    assert hs.receive_data(refusal(429, "Too Many Requests", "Content-Length: 50") + b"sl") is None
    assert hs.receive_data(b"ow") is None
    event = hs.body_timed_out()
    assert event.error.status_code == 429
    assert event.error.resp_body == b"slow"
    assert hs.state is HandshakeState.REJECTED
    with pytest.raises(RuntimeError, match="body_timed_out"):
        hs.body_timed_out()
    with pytest.raises(RuntimeError, match="'rejected'"):
        hs.receive_data(b"more")


def test_body_timed_out_only_while_reading_the_body() -> None:
    hs = client()
    with pytest.raises(RuntimeError, match="only valid while reading"):
        hs.body_timed_out()
    hs.receive_data(RESPONSE)
    with pytest.raises(RuntimeError, match="'accepted'"):
        hs.body_timed_out()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x15\x03\x01\x00\x02\x02\x28", "does not start with an HTTP status line"),
        (b"HTTP/1.1 10 Switching\r\n\r\n", "malformed status line"),
        (b"HTTP/2.0 101 Switching\r\n\r\n", "unsupported HTTP version"),
        (b"HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n", "no space before the colon"),
        (b"HTTP/1.1 101 OK\r\n folded\r\n\r\n", "obsolete line folding"),
        (b"HTTP/1.1 101 OK\r\nA: b\rc\r\n\r\n", "bare CR"),
    ],
)
def test_malformed_head_fails(data: bytes, match: str) -> None:
    hs = client()
    with pytest.raises(WebSocketHandshakeException, match=match):
        hs.receive_data(data)
    assert hs.state is HandshakeState.FAILED
    with pytest.raises(RuntimeError, match="'failed'"):
        hs.receive_data(b"\r\n")


def test_oversized_head_fails() -> None:
    hs = client(max_header_bytes=200)
    assert hs.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nX: ") is None
    with pytest.raises(WebSocketHandshakeException, match="exceed 200 bytes"):
        hs.receive_data(b"a" * 300)
    assert hs.state is HandshakeState.FAILED


def test_too_many_headers_fail() -> None:
    hs = client(max_headers=2)
    with pytest.raises(WebSocketHandshakeException, match="more than 2 header fields"):
        hs.receive_data(RESPONSE)
    assert hs.state is HandshakeState.FAILED


def test_end_of_stream_before_the_head() -> None:
    hs = client()
    with pytest.raises(WebSocketHandshakeException, match="closed the connection"):
        hs.receive_data(b"")
    assert hs.state is HandshakeState.FAILED
    hs = client()
    assert hs.receive_data(RESPONSE[:40]) is None
    with pytest.raises(WebSocketHandshakeException, match="received 40 bytes"):
        hs.receive_data(b"")
    assert hs.state is HandshakeState.FAILED


def test_bad_accept_fails_rfc6455_4_1_item_4() -> None:
    hs = client()
    bad = RESPONSE.replace(ACCEPT.encode(), accept_key("AAAAAAAAAAAAAAAAAAAAAA==").encode())
    with pytest.raises(WebSocketHandshakeException, match="invalid Sec-WebSocket-Accept"):
        hs.receive_data(bad + FRAME)
    assert hs.state is HandshakeState.FAILED
    with pytest.raises(RuntimeError, match="'failed'"):
        hs.receive_data(FRAME)


def test_101_over_http_1_0_fails() -> None:
    hs = client()
    with pytest.raises(WebSocketHandshakeException, match=r"HTTP/1\.0"):
        hs.receive_data(RESPONSE.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    assert hs.state is HandshakeState.FAILED


def test_data_after_accepted_is_refused() -> None:
    hs = client()
    assert isinstance(hs.receive_data(RESPONSE), Accepted)
    with pytest.raises(RuntimeError, match="frame protocol"):
        hs.receive_data(FRAME)
    with pytest.raises(RuntimeError, match="'accepted'"):
        hs.receive_data(b"")


@pytest.mark.parametrize("limit", [-1, 1.5, True, "10"])
def test_bad_body_limit(limit: Any) -> None:
    with pytest.raises(WebSocketConfigurationException, match="body_limit"):
        ClientHandshake(request(), max_size=None, body_limit=limit)


def test_every_transition_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="wspool"):
        hs = client()
        hs.receive_data(refusal(403, "Forbidden", "Content-Length: 1") + b"x")
    messages = [r.getMessage() for r in caplog.records if r.name == "wspool"]
    assert any("connecting -> reading body" in m for m in messages)
    assert any("reading body -> rejected" in m for m in messages)
    assert all("example.com" in m for m in messages if "->" in m)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="wspool"):
        client().receive_data(RESPONSE)
        with pytest.raises(WebSocketHandshakeException):
            client().receive_data(b"garbage")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("connecting -> accepted" in m for m in messages)
    assert any("connecting -> failed" in m for m in messages)
