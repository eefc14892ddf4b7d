"""Tests of the shared HTTP/1.1 response-head parser (RFC 9112 §2-§5, RFC 9110 §15.2)."""

from __future__ import annotations

import pytest

from wspool.exceptions import (
    WebSocketHandshakeException,
    WebSocketProxyException,
)
from wspool.protocol.http import (
    DEFAULT_MAX_HEADER_BYTES,
    ResponseHead,
    ResponseHeadParser,
)

ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3 sample

# ------------------------------------------------------------------ one head

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
    parser = ResponseHeadParser()
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
    parser = ResponseHeadParser()
    data = RESPONSE + FRAME
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    complete_at = len(RESPONSE) - 1
    assert all(result is None for result in results[:complete_at])
    assert results[complete_at] == ResponseHeadParser().feed(RESPONSE)
    assert all(result is results[complete_at] for result in results[complete_at:])
    assert parser.leftover == FRAME


def test_get_and_get_all_are_case_insensitive() -> None:
    response = ResponseHeadParser().feed(RESPONSE)
    assert response is not None
    assert response.get("UPGRADE") == "websocket"
    assert response.get_all("X-CUSTOM") == ["padded value", "second"]
    assert response.get("x-Custom") == "padded value, second"
    assert response.get("Missing") is None
    assert response.get_all("Missing") == []


def test_bare_lf_line_endings_tolerated_rfc7230_3_5() -> None:
    response = ResponseHeadParser().feed(b"HTTP/1.1 101 OK\nUpgrade: websocket\r\nA: b\n\nrest")
    assert response is not None
    assert response.headers == [("Upgrade", "websocket"), ("A", "b")]


def test_leftover_after_lf_only_terminator() -> None:
    parser = ResponseHeadParser()
    assert parser.feed(b"HTTP/1.1 200 OK\n\n{}") is not None
    assert parser.leftover == b"{}"


@pytest.mark.parametrize(
    ("line", "reason"),
    [(b"HTTP/1.1 101", ""), (b"HTTP/1.1 101 ", ""), (b"HTTP/1.0 404 Not  Found", "Not  Found")],
)
def test_status_line_reason_may_be_empty(line: bytes, reason: str) -> None:
    response = ResponseHeadParser().feed(line + b"\r\n\r\n")
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
        ResponseHeadParser().feed(line + b"\r\n\r\n")


@pytest.mark.parametrize("data", [b"\x15\x03\x01\x00\x02", b"SSH-2.0-OpenSSH", b"http/1.1 101"])
def test_non_http_peer_fails_fast_without_a_newline(data: bytes) -> None:
    with pytest.raises(WebSocketHandshakeException, match="does not start with an HTTP status"):
        ResponseHeadParser().feed(data)


def test_non_http_prefix_detected_byte_by_byte() -> None:
    parser = ResponseHeadParser()
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
        ResponseHeadParser().feed(
            b"HTTP/1.1 101 Switching Protocols\r\nA: b\r\n" + line + b"\r\n\r\n"
        )


def test_header_byte_limit_exact_fits_and_one_more_fails() -> None:
    status = b"HTTP/1.1 101 OK\r\n"
    pad = b"X: " + b"a" * (64 - len(status) - 2 - 5) + b"\r\n"
    block = status + pad + b"\r\n"
    assert len(block) == 64
    parser = ResponseHeadParser(max_header_bytes=64)
    assert parser.feed(block + b"leftover does not count" * 10) is not None
    with pytest.raises(WebSocketHandshakeException, match="response headers exceed 63 bytes"):
        ResponseHeadParser(max_header_bytes=63).feed(block)


def test_header_byte_limit_default_message() -> None:
    parser = ResponseHeadParser()
    parser.feed(b"HTTP/1.1 101 OK\r\n")
    with pytest.raises(WebSocketHandshakeException, match="response headers exceed 65536 bytes"):
        parser.feed(b"X: " + b"a" * 70000 + b"\r\n")


def test_header_byte_limit_applies_to_an_endless_line() -> None:
    parser = ResponseHeadParser(max_header_bytes=1000)
    parser.feed(b"HTTP/1.1 101 OK\r\nX: ")
    with pytest.raises(WebSocketHandshakeException, match="exceed 1000 bytes"):
        for _ in range(200):
            parser.feed(b"aaaaaaaa")


def test_header_count_limit() -> None:
    fields = b"".join(b"H%d: v\r\n" % i for i in range(5))
    response = ResponseHeadParser(max_headers=5).feed(b"HTTP/1.1 101 OK\r\n" + fields + b"\r\n")
    assert response is not None
    assert len(response.headers) == 5
    with pytest.raises(WebSocketHandshakeException, match="more than 4 header fields"):
        ResponseHeadParser(max_headers=4).feed(b"HTTP/1.1 101 OK\r\n" + fields + b"\r\n")


def test_end_of_stream_before_complete_head() -> None:
    parser = ResponseHeadParser()
    parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web")
    with pytest.raises(WebSocketHandshakeException, match="received 46 bytes"):
        parser.feed(b"")


def test_data_after_completion_goes_to_leftover() -> None:
    parser = ResponseHeadParser()
    response = parser.feed(RESPONSE + b"\x81")
    assert parser.feed(b"\x05hello") is response
    assert parser.feed(b"") is response
    assert parser.leftover == FRAME


def test_response_head_defaults_and_equality() -> None:
    assert ResponseHead(200, "OK", "HTTP/1.1").headers == []
    assert ResponseHead(200, "OK", "HTTP/1.1", [("A", "b")]) == ResponseHead(
        200, "OK", "HTTP/1.1", [("A", "b")]
    )


def test_default_limit_is_64_kib() -> None:
    assert DEFAULT_MAX_HEADER_BYTES == 65536
    parser = ResponseHeadParser()
    assert parser.max_header_bytes == DEFAULT_MAX_HEADER_BYTES


# ------------------------------------------------------- subject and error type

PROXY_SUBJECT = "the HTTP proxy 127.0.0.1:3128's CONNECT reply"


def proxy_parser(**kwargs: int) -> ResponseHeadParser:
    return ResponseHeadParser(subject=PROXY_SUBJECT, error_type=WebSocketProxyException, **kwargs)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "does not start with an HTTP status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/3.0 200 OK\r\n\r\n", "unsupported HTTP version"),
        (b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "bare CR"),
        (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "obsolete line folding"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "expected 'name: value'"),
        (b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n", "control character"),
        (b"HTTP/1.1 200 OK\r\n" + b"H: v\r\n" * 3 + b"\r\n", "more than 2 header fields"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200, "response headers exceed 100 bytes"),
    ],
)
def test_every_error_has_the_error_type_and_names_the_subject(data: bytes, match: str) -> None:
    with pytest.raises(WebSocketProxyException, match=match) as info:
        proxy_parser(max_headers=2, max_header_bytes=100).feed(data)
    assert PROXY_SUBJECT in str(info.value)
    assert not isinstance(info.value, WebSocketHandshakeException)


def test_end_of_stream_error_has_the_error_type_and_names_the_subject() -> None:
    parser = proxy_parser()
    assert parser.feed(b"HTTP/1.1 200") is None
    with pytest.raises(WebSocketProxyException, match="closed the connection") as info:
        parser.feed(b"")
    assert PROXY_SUBJECT in str(info.value)
    assert "received 12 bytes" in str(info.value)


def test_default_subject_is_the_handshake_response() -> None:
    with pytest.raises(WebSocketHandshakeException, match="in handshake response"):
        ResponseHeadParser().feed(b"HTTP/1.1 20 OK\r\n\r\n")


# ----------------------------------------------------------- interim 1xx heads


@pytest.mark.parametrize("interim", [100, 102, 103, 199])
def test_informational_heads_skipped_rfc9110_15_2(interim: int) -> None:
    parser = ResponseHeadParser(skip_informational=True)
    data = (
        b"HTTP/1.1 %d Interim\r\nLink: </style.css>; rel=preload\r\n\r\n" % interim
        + b"HTTP/1.1 403 Forbidden\r\nX: final\r\n\r\nbody"
    )
    response = parser.feed(data)
    assert response == ResponseHead(403, "Forbidden", "HTTP/1.1", [("X", "final")])
    assert parser.leftover == b"body"


def test_several_informational_heads_byte_by_byte() -> None:
    parser = ResponseHeadParser(skip_informational=True)
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\nLink: </a>\n\n"
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    )
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    final = len(data) - 3
    assert all(result is None for result in results[:final])
    assert results[final] == ResponseHead(
        101, "Switching Protocols", "HTTP/1.1", [("Upgrade", "websocket")]
    )
    assert parser.leftover == b"\x81\x00"


def test_101_is_never_skipped_it_is_the_upgrade_answer() -> None:
    parser = ResponseHeadParser(skip_informational=True)
    response = parser.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    assert response is not None
    assert response.status == 101
    assert parser.leftover == b"HTTP/1.1 200 OK\r\n\r\n"


def test_informational_heads_returned_without_the_option() -> None:
    parser = ResponseHeadParser()
    response = parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    assert response is not None
    assert response.status == 100
    assert parser.leftover == b"HTTP/1.1 200 OK\r\n\r\n"


def test_head_after_an_interim_one_is_checked_like_the_first() -> None:
    parser = ResponseHeadParser(skip_informational=True)
    with pytest.raises(WebSocketHandshakeException, match="does not start with an HTTP status"):
        parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n<html>")
    with pytest.raises(WebSocketHandshakeException, match="obsolete line folding"):
        ResponseHeadParser(skip_informational=True).feed(
            b"HTTP/1.1 100 Continue\r\n folded\r\n\r\n"
        )


def test_interim_heads_count_against_the_byte_limit() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"  # 25 bytes
    parser = ResponseHeadParser(skip_informational=True, max_header_bytes=100)
    assert parser.feed(interim * 3) is None
    with pytest.raises(WebSocketHandshakeException, match="exceed 100 bytes"):
        parser.feed(interim * 2)


def test_header_count_limit_is_per_head() -> None:
    fields = b"".join(b"H%d: v\r\n" % i for i in range(3))
    parser = ResponseHeadParser(skip_informational=True, max_headers=3)
    response = parser.feed(
        b"HTTP/1.1 103 Early Hints\r\n" + fields + b"\r\nHTTP/1.1 200 OK\r\n" + fields + b"\r\n"
    )
    assert response is not None
    assert len(response.headers) == 3


def test_end_of_stream_after_an_interim_head() -> None:
    parser = ResponseHeadParser(skip_informational=True)
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    with pytest.raises(WebSocketHandshakeException, match="received 25 bytes"):
        parser.feed(b"")
