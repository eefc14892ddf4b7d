"""Tests of HttpConnectHandshake reading the proxy's reply with the shared HTTP parser
(RFC 9110 §9.3.6 CONNECT, §15.2 interim answers, RFC 9112 §2-§5 head syntax)."""

from __future__ import annotations

import pytest

from wspool.exceptions import WebSocketHandshakeException, WebSocketProxyException
from wspool.transport.proxy import HttpConnectHandshake

URL = "wss://example.com/feed"
SUBJECT = "the HTTP proxy 127.0.0.1:3128's reply to CONNECT example.com:443"


def connect(auth: tuple[str, str] | None = None) -> HttpConnectHandshake:
    return HttpConnectHandshake("example.com", 443, auth, url=URL, proxy_address="127.0.0.1:3128")


def failure(hs: HttpConnectHandshake, *chunks: bytes) -> WebSocketProxyException:
    with pytest.raises(WebSocketProxyException) as info:
        for chunk in chunks:
            hs.feed(chunk)
    assert info.value.url == URL
    assert not isinstance(info.value, WebSocketHandshakeException)
    return info.value


def test_interim_answers_before_200_are_skipped_rfc9110_15_2() -> None:
    hs = connect()
    assert hs.initial_bytes() == hs.request_bytes()
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\n\x16\x03\x01"
    )
    assert hs.receive(reply) == b""
    assert hs.done
    assert (hs.status_code, hs.reason) == (200, "Connection established")
    assert hs.headers == [("Via", "1.1 squid")]
    assert hs.leftover == b"\x16\x03\x01"


def test_interim_answer_then_200_byte_by_byte() -> None:
    hs = connect()
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    results = [hs.feed(reply[i : i + 1]) for i in range(len(reply))]
    assert results[-1] is True
    assert not any(results[:-1])
    assert hs.leftover == b""


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_opens_the_tunnel_rfc9110_9_3_6(status: int) -> None:
    hs = connect()
    assert hs.feed(b"HTTP/1.0 %d Whatever\r\n\r\n" % status) is True
    assert hs.status_code == status


def test_bare_lf_reply_rfc9112_2_2() -> None:
    hs = connect()
    assert hs.feed(b"HTTP/1.1 200 OK\nProxy-Agent: test\n\nfirst bytes") is True
    assert hs.headers == [("Proxy-Agent", "test")]
    assert hs.leftover == b"first bytes"


def test_bytes_after_the_tunnel_is_up_go_to_leftover() -> None:
    hs = connect()
    assert hs.feed(b"HTTP/1.1 200 OK\r\n\r\nab") is True
    assert hs.feed(b"cd") is True
    assert hs.feed(b"") is True
    assert hs.leftover == b"abcd"


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200\x00OK\r\n\r\n", "malformed status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nVia: a\r\n folded\r\n\r\n", "obsolete line folding"),
        (b"HTTP/1.1 200 OK\r\nVia: a\rb\r\n\r\n", "bare CR"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2OO OK\r\n\r\n", "malformed status line"),
    ],
)
def test_malformed_reply(reply: bytes, match: str) -> None:
    error = failure(connect(), reply)
    assert match in str(error)
    assert SUBJECT in str(error)


@pytest.mark.parametrize("reply", [b"\x05\x00", b"\x00\x5a\x00\x00", b"<html>"])
def test_a_peer_that_is_not_an_http_proxy_fails_fast(reply: bytes) -> None:
    """A SOCKS or web server answers something that is not 'HTTP/': no newline needed."""
    error = failure(connect(), reply)
    assert "malformed status line" in str(error)
    assert "does not start with an HTTP status line" in str(error)


def test_oversized_reply_is_bounded() -> None:
    hs = connect()
    error = failure(hs, b"HTTP/1.1 200 OK\r\nX: ", *([b"a" * 1000] * 100))
    assert "longer than" in str(error)
    assert "exceed 65536 bytes" in str(error)
    assert SUBJECT in str(error)


def test_407_without_credentials_asks_for_them() -> None:
    reply = (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
    )
    error = failure(connect(), reply)
    assert str(error) == (
        "the HTTP proxy 127.0.0.1:3128 requires authentication (407 Proxy Authentication "
        'Required) (it asks for: Basic realm="corp"); pass http_proxy_auth=(user, password)'
        f" [{URL}]"
    )


def test_407_with_credentials_after_an_interim_answer() -> None:
    hs = connect(("bob", "wrong"))
    assert b"Proxy-Authorization: Basic Ym9iOndyb25n\r\n" in hs.request_bytes()
    error = failure(hs, b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 407 Nope\r\n\r\n")
    assert "rejected the credentials of user 'bob' (407 Nope); check http_proxy_auth" in str(error)
    assert hs.status_code == 407


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", "502 Bad Gateway"),
        (b"HTTP/1.1 403 \r\n\r\n", "403"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101 Switching Protocols"),
        (b"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n", "301 Moved"),
    ],
)
def test_other_answers_refuse_the_tunnel(reply: bytes, status: str) -> None:
    error = failure(connect(), reply)
    assert f"the HTTP proxy 127.0.0.1:3128 refused the tunnel to example.com:443: {status}" in str(
        error
    )


def test_closed_before_answering() -> None:
    error = failure(connect(), b"")
    assert "closed the connection" in str(error)
    assert SUBJECT in str(error)
    error = failure(connect(), b"HTTP/1.1 200 OK\r\nVia:", b"")
    assert "received 21 bytes" in str(error)


def test_closed_after_an_interim_answer() -> None:
    error = failure(connect(), b"HTTP/1.1 100 Continue\r\n\r\n", b"")
    assert "closed the connection" in str(error)


def test_without_proxy_address_or_url() -> None:
    hs = HttpConnectHandshake("::1", 9000, None)
    with pytest.raises(
        WebSocketProxyException, match=r"the HTTP proxy's reply to CONNECT \[::1\]:9000"
    ) as info:
        hs.feed(b"HTTP/1.1 abc\r\n\r\n")
    assert info.value.url is None
