"""Tests of wspool.transport: URL parsing, TLS options, proxy selection and handshakes,
and opening real sockets (127.0.0.1 only) directly, through proxies and with TLS."""

from __future__ import annotations

import gc
import socket
import ssl
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import can_list_fds, open_fds
from proxies import EchoServer, HttpConnectProxy, SocksProxy

from wspool.exceptions import (
    WebSocketAddressException,
    WebSocketConfigurationException,
    WebSocketProxyException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)
from wspool.transport import (
    HttpConnectHandshake,
    ProxyConfig,
    Socks4Handshake,
    Socks5Handshake,
    WebSocketURL,
    build_ssl_context,
    is_no_proxy_host,
    open_socket,
    parse_proxy_url,
    parse_url,
    resolve_redirect,
    select_proxy,
    server_hostname_for,
)
from wspool.transport.connect import Deadline
from wspool.transport.dial import DialPlan, DialSettings, ProxySettings

trustme = pytest.importorskip("trustme")


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server
    assert not server.errors


def roundtrip(sock: socket.socket, payload: bytes = b"hello through the tunnel") -> bytes:
    sock.sendall(payload)
    data = b""
    while len(data) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def dial(
    url: WebSocketURL | str,
    *,
    timeout: float | None = 5.0,
    proxy: ProxyConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    sockopt: Any = (),
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """open_socket along a dial plan built from these pieces (``proxy`` already chosen)."""
    target = parse_url(url) if isinstance(url, str) else url
    settings = DialSettings(
        proxy=ProxySettings(),
        sslopt=None if server_hostname is None else {"server_hostname": server_hostname},
        context=ssl_context,
        sockopt=tuple(sockopt),
        source_address=source_address,
    )
    return open_socket(DialPlan(target, proxy, settings), Deadline(timeout))


open_url = dial


# --------------------------------------------------------------------------- URLs

VALID_URLS = [
    # url, scheme, secure, host, port, resource, username, password
    ("ws://example.com", "ws", False, "example.com", 80, "/", None, None),
    ("wss://example.com", "wss", True, "example.com", 443, "/", None, None),
    (
        "WSS://Example.COM:8443/a/b?x=1&y=2",
        "wss",
        True,
        "example.com",
        8443,
        "/a/b?x=1&y=2",
        None,
        None,
    ),
    ("ws://host/path#fragment", "ws", False, "host", 80, "/path", None, None),
    ("ws://host?q=1", "ws", False, "host", 80, "/?q=1", None, None),
    ("ws://[::1]:9000/feed", "ws", False, "::1", 9000, "/feed", None, None),
    ("wss://[2001:DB8::1]", "wss", True, "2001:db8::1", 443, "/", None, None),
    ("ws://127.0.0.1:1/", "ws", False, "127.0.0.1", 1, "/", None, None),
    ("ws://user:p%40ss%3Aword@host:81/", "ws", False, "host", 81, "/", "user", "p@ss:word"),
    ("ws://only-user@host", "ws", False, "host", 80, "/", "only-user", None),
    ("ws://host:/x", "ws", False, "host", 80, "/x", None, None),
    ("ws://host/caf\u00e9", "ws", False, "host", 80, "/caf%C3%A9", None, None),
    ("ws://b\u00fccher.example/", "ws", False, "xn--bcher-kva.example", 80, "/", None, None),
]


@pytest.mark.parametrize(
    ("url", "scheme", "secure", "host", "port", "resource", "username", "password"),
    VALID_URLS,
)
def test_parse_url_valid_rfc6455_section3(
    url: str,
    scheme: str,
    secure: bool,
    host: str,
    port: int,
    resource: str,
    username: str | None,
    password: str | None,
) -> None:
    """RFC 6455 §3: ws/wss, default ports 80/443, resource = path + query, no fragment."""
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.secure, parsed.host, parsed.port) == (scheme, secure, host, port)
    assert parsed.resource == resource
    assert (parsed.username, parsed.password) == (username, password)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "example.com/feed",
        "ws://",
        "ws://:80/",
        "ws://host:0/",
        "ws://host:65536/",
        "ws://host:http/",
        "ws://host:-1/",
        "ws://[::1/",
        "ws://[not-ipv6]/",
        "ws://[::1]junk/",
        "ws://ho st/",
        "ws://host/a b",
        "ws://host/\r\nX-Injected: 1",
        "ws://host\t/",
        "ws://exa<mple.com/",
    ],
)
def test_parse_url_invalid(url: str) -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        parse_url(url)
    assert isinstance(info.value, ValueError)


def test_parse_url_redacted_hides_credentials() -> None:
    parsed = parse_url("wss://alice:s3cret@example.com:8443/feed?x=1")
    assert parsed.redacted == "wss://example.com:8443/feed?x=1"
    assert "s3cret" not in repr(parsed)
    assert "s3cret" not in str(parsed)
    assert parse_url("ws://[::1]:80/").redacted == "ws://[::1]/"
    assert parse_url("ws://[::1]:81/").authority == "[::1]:81"


def test_parse_url_error_message_masks_credentials() -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        parse_url("ws://alice:s3cret@host:99999/")
    assert "s3cret" not in str(info.value)


# --------------------------------------------------------------------------- TLS options


def test_default_context_verifies_certificates_and_host_names() -> None:
    ctx = build_ssl_context(None)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_cert_none_disables_verification_and_hostname_check() -> None:
    ctx = build_ssl_context({"cert_reqs": ssl.CERT_NONE})
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False


def test_check_hostname_false_keeps_verification() -> None:
    ctx = build_ssl_context({"check_hostname": False})
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False


def test_unknown_sslopt_key_is_named() -> None:
    with pytest.raises(WebSocketConfigurationException, match="'cert_req'") as info:
        build_ssl_context({"cert_req": ssl.CERT_NONE}, url="wss://h/")
    assert isinstance(info.value, ValueError)
    assert info.value.url == "wss://h/"


@pytest.mark.parametrize(
    "sslopt",
    [
        {"cert_reqs": 7},
        {"cert_reqs": ssl.CERT_NONE, "check_hostname": True},
        {"check_hostname": "yes"},
        {"ssl_version": ssl.TLSVersion.TLSv1},
        {"ssl_version": "TLSv1.2"},
        {"ssl_version": ssl.PROTOCOL_TLS_SERVER},
        {"ssl_version": ssl.PROTOCOL_TLS_CLIENT, "protocol": ssl.PROTOCOL_TLS_CLIENT},
        {"ca_certs": "/nonexistent/ca.pem"},
        {"certfile": "/nonexistent/cert.pem"},
        {"keyfile": "/nonexistent/key.pem"},
        {"ciphers": "NO-SUCH-CIPHER"},
        {"ecdh_curve": "no-such-curve"},
        {"server_hostname": 42},
        {"do_handshake_on_connect": False},
        {"context": "not a context"},
    ],
)
def test_bad_sslopt_values_are_configuration_errors(sslopt: dict[str, Any]) -> None:
    with pytest.raises(WebSocketConfigurationException):
        build_ssl_context(sslopt)


def test_ssl_version_tls12_maps_to_minimum_version() -> None:
    ctx = build_ssl_context({"ssl_version": ssl.TLSVersion.TLSv1_3})
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    tls12 = getattr(ssl, "PROTOCOL_TLSv1_2", None)
    if tls12 is not None:
        ctx = build_ssl_context({"protocol": tls12})
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert build_ssl_context({"ssl_version": ssl.PROTOCOL_TLS_CLIENT}).verify_mode == (
        ssl.CERT_REQUIRED
    )


def test_ready_context_is_used_unchanged() -> None:
    mine = ssl.create_default_context()
    assert build_ssl_context({"context": mine, "server_hostname": "x"}) is mine
    assert build_ssl_context(None, mine) is mine
    with pytest.raises(WebSocketConfigurationException, match="ca_certs"):
        build_ssl_context({"context": mine, "ca_certs": "/x.pem"})
    with pytest.raises(WebSocketConfigurationException):
        build_ssl_context({"context": ssl.create_default_context()}, mine)


def test_server_hostname_for() -> None:
    assert server_hostname_for("example.com", None) == "example.com"
    assert server_hostname_for("10.0.0.1", {"server_hostname": "api.example"}) == "api.example"


# --------------------------------------------------------------------------- TLS over sockets


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def ca_path(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: Any, *, client_ca: Any = None, max_tls12: bool = False) -> ssl.SSLContext:
    """A server context whose certificate names only "localhost" (no IP address)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.fixture
def tls_echo(ca: Any) -> Iterator[EchoServer]:
    with EchoServer(server_context(ca)) as server:
        yield server


def tls_open(url: str, sslopt: dict[str, Any] | None) -> socket.socket:
    parsed = parse_url(url)
    return dial(
        parsed,
        ssl_context=build_ssl_context(sslopt),
        server_hostname=server_hostname_for(parsed.host, sslopt),
    )


def test_tls_trusted_ca_via_ca_certs_sends_sni_and_alpn(tls_echo: EchoServer, ca_path: str) -> None:
    """RFC 6066 §3: the host name goes in SNI; ALPN offers http/1.1 (RFC 7301)."""
    with tls_open(f"wss://localhost:{tls_echo.port}/", {"ca_certs": ca_path}) as sock:
        assert isinstance(sock, ssl.SSLSocket)
        assert roundtrip(sock) == b"hello through the tunnel"
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.gettimeout() == 5.0
    assert tls_echo.sni_names == ["localhost"]


def test_tls_untrusted_certificate_fails(tls_echo: EchoServer) -> None:
    with pytest.raises(WebSocketTLSException, match="certificate verify failed") as info:
        tls_open(f"wss://localhost:{tls_echo.port}/", None)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "ca_certs" in str(info.value)
    assert info.value.url == f"wss://localhost:{tls_echo.port}/"


def test_tls_wrong_host_name_fails(tls_echo: EchoServer, ca_path: str) -> None:
    """The certificate names "localhost" only, so 127.0.0.1 must be refused."""
    with pytest.raises(WebSocketTLSException, match="server_hostname") as info:
        tls_open(f"wss://127.0.0.1:{tls_echo.port}/", {"ca_certs": ca_path})
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


def test_tls_server_hostname_override_is_checked_and_sent(
    tls_echo: EchoServer, ca_path: str
) -> None:
    sslopt = {"ca_certs": ca_path, "server_hostname": "localhost"}
    with tls_open(f"wss://127.0.0.1:{tls_echo.port}/", sslopt) as sock:
        assert roundtrip(sock) == b"hello through the tunnel"
    assert tls_echo.sni_names == ["localhost"]


def test_tls_check_hostname_false_passes_and_ip_sends_no_sni(
    tls_echo: EchoServer, ca_path: str
) -> None:
    """RFC 6066 §3: no SNI for an IP address literal."""
    sslopt = {"ca_certs": ca_path, "check_hostname": False}
    with tls_open(f"wss://127.0.0.1:{tls_echo.port}/", sslopt) as sock:
        assert roundtrip(sock) == b"hello through the tunnel"
    assert tls_echo.sni_names == [None]


def test_tls_cert_none_passes_untrusted(tls_echo: EchoServer) -> None:
    with tls_open(f"wss://localhost:{tls_echo.port}/", {"cert_reqs": ssl.CERT_NONE}) as sock:
        assert roundtrip(sock) == b"hello through the tunnel"


def test_tls_default_context_when_none_given(tls_echo: EchoServer) -> None:
    """ssl_context=None for wss:// still verifies (secure by default)."""
    with pytest.raises(WebSocketTLSException):
        open_url(f"wss://localhost:{tls_echo.port}/")


@pytest.fixture(scope="module")
def client_ca() -> Any:
    return trustme.CA()


@pytest.fixture
def client_cert_files(client_ca: Any, tmp_path: Path) -> tuple[str, str]:
    cert = client_ca.issue_cert("client@example.test")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.mark.parametrize("max_tls12", [True, False], ids=["tls1.2", "tls1.3"])
def test_tls_client_certificate_accepted(
    ca: Any, client_ca: Any, ca_path: str, client_cert_files: tuple[str, str], max_tls12: bool
) -> None:
    certfile, keyfile = client_cert_files
    ctx = server_context(ca, client_ca=client_ca, max_tls12=max_tls12)
    with EchoServer(ctx) as server:
        sslopt = {"ca_certs": ca_path, "certfile": certfile, "keyfile": keyfile}
        with tls_open(f"wss://localhost:{server.port}/", sslopt) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        server.wait_idle()
        assert server.tls_errors == []


def test_tls_client_certificate_missing_fails_tls12(ca: Any, client_ca: Any, ca_path: str) -> None:
    """With TLS 1.2 the server's refusal arrives during the handshake."""
    ctx = server_context(ca, client_ca=client_ca, max_tls12=True)
    with EchoServer(ctx) as server:
        with pytest.raises(WebSocketTLSException, match="TLS handshake") as info:
            tls_open(f"wss://localhost:{server.port}/", {"ca_certs": ca_path})
        assert isinstance(info.value.__cause__, ssl.SSLError | ConnectionError)
        server.wait_idle()
        assert server.tls_errors


def test_tls_client_certificate_missing_fails_tls13_on_first_read(
    ca: Any, client_ca: Any, ca_path: str
) -> None:
    """With TLS 1.3 the client finishes first; the server's alert comes on the first read."""
    ctx = server_context(ca, client_ca=client_ca)
    with EchoServer(ctx) as server:
        with (
            tls_open(f"wss://localhost:{server.port}/", {"ca_certs": ca_path}) as sock,
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            sock.sendall(b"x")
            if not sock.recv(1):
                raise ConnectionError("closed without an alert")
        server.wait_idle()
        assert server.tls_errors


# --------------------------------------------------------------------------- proxy selection

WS = parse_url("ws://example.com/feed")
WSS = parse_url("wss://example.com/feed")


def test_explicit_proxy_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://env-proxy:3128")
    proxy = select_proxy(
        WS, http_proxy_host="explicit", http_proxy_port=8080, http_proxy_auth=("u", "p")
    )
    assert proxy == ProxyConfig("http", "explicit", 8080, ("u", "p"))


def test_explicit_proxy_defaults() -> None:
    assert select_proxy(WS, http_proxy_host="p") == ProxyConfig("http", "p", 80)
    socks = select_proxy(WS, http_proxy_host="p", proxy_type="socks5h", http_proxy_timeout=2)
    assert socks == ProxyConfig("socks5h", "p", 1080, timeout=2)
    assert select_proxy(WS) is None


def test_environment_proxy_per_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    monkeypatch.setenv("https_proxy", "socks5h://alice:p%40ss@secure-proxy")
    assert select_proxy(WS) == ProxyConfig("http", "plain-proxy", 3128)
    assert select_proxy(WSS) == ProxyConfig("socks5h", "secure-proxy", 1080, ("alice", "p@ss"))
    assert select_proxy(WSS, use_environment=False) is None


def test_environment_all_proxy_fallback_and_lowercase_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://all:1081")
    assert select_proxy(WSS) == ProxyConfig("socks5", "all", 1081)
    monkeypatch.setenv("http_proxy", "lower:1")
    monkeypatch.setenv("HTTP_PROXY", "http://upper:2")
    assert select_proxy(WS) == ProxyConfig("http", "lower", 1)


def test_uppercase_http_proxy_ignored_in_cgi(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpoxy: a CGI request can set HTTP_PROXY from a client header."""
    monkeypatch.setenv("HTTP_PROXY", "http://attacker:1")
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    assert select_proxy(WS) is None


def test_environment_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy:3128")
    monkeypatch.setenv("no_proxy", "internal.example, example.com")
    assert select_proxy(WS) is None
    assert select_proxy(parse_url("ws://other.org/")) is not None
    # the argument replaces the environment's list
    assert select_proxy(WS, http_no_proxy=["other.org"]) is not None
    # and applies to explicit proxies too (as in websocket-client)
    assert select_proxy(WS, http_proxy_host="explicit") is None


def test_environment_proxy_skips_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy:3128")
    for url in ("ws://localhost/", "ws://127.0.0.1:9000/", "ws://[::1]/"):
        assert select_proxy(parse_url(url)) is None
    # an explicit proxy is used even for loopback targets
    assert select_proxy(parse_url("ws://127.0.0.1/"), http_proxy_host="p") is not None
    # a no_proxy list replaces the default
    monkeypatch.setenv("no_proxy", "example.org")
    assert select_proxy(parse_url("ws://127.0.0.1/")) is not None


@pytest.mark.parametrize(
    ("host", "port", "entries", "expected"),
    [
        ("anything.example", 80, ["*"], True),
        ("example.com", 80, ["example.com"], True),
        ("api.example.com", 80, ["example.com"], True),
        ("api.example.com", 80, [".example.com"], True),
        ("api.example.com", 80, ["*.example.com"], True),
        ("EXAMPLE.com", 80, ["example.COM"], True),
        ("badexample.com", 80, ["example.com"], False),
        ("example.com", 443, ["example.com:443"], True),
        ("example.com", 80, ["example.com:443"], False),
        ("10.1.2.3", 80, ["10.0.0.0/8"], True),
        ("11.1.2.3", 80, ["10.0.0.0/8"], False),
        ("192.168.0.1", 80, ["192.168.0.1"], True),
        ("1.2.3.4", 80, ["3.4"], False),
        ("::1", 80, ["::1"], True),
        ("::1", 9000, ["[::1]:9000"], True),
        ("2001:db8::5", 80, ["2001:db8::/32"], True),
        ("example.com", 80, ["10.0.0.0/8", "not a cidr/x"], False),
        ("example.com", 80, [], False),
    ],
)
def test_no_proxy_matching(host: str, port: int, entries: list[str], expected: bool) -> None:
    assert is_no_proxy_host(host, port, entries) is expected


@pytest.mark.parametrize(
    "value",
    ["https://proxy:443", "ftp://proxy", "http://:3128", "http://proxy:notaport"],
)
def test_bad_proxy_urls(value: str) -> None:
    with pytest.raises(WebSocketConfigurationException):
        parse_proxy_url(value)


def test_bad_proxy_arguments() -> None:
    with pytest.raises(WebSocketConfigurationException, match="proxy_type"):
        select_proxy(WS, http_proxy_host="p", proxy_type="socks6")
    with pytest.raises(WebSocketConfigurationException, match="http_proxy_port"):
        select_proxy(WS, http_proxy_host="p", http_proxy_port=70000)
    with pytest.raises(WebSocketConfigurationException, match="http_proxy_auth"):
        select_proxy(WS, http_proxy_host="p", http_proxy_auth="user:pass")  # type: ignore[arg-type]
    with pytest.raises(WebSocketConfigurationException, match="http_proxy_timeout"):
        select_proxy(WS, http_proxy_host="p", http_proxy_timeout=0)


# --------------------------------------------------------------------------- sans-I/O handshakes


def feed_bytewise(feed: Callable[[bytes], Any], data: bytes) -> list[Any]:
    return [feed(data[i : i + 1]) for i in range(len(data))]


def test_http_connect_request_and_bytewise_response() -> None:
    """RFC 9110 §9.3.6 CONNECT with RFC 7617 Basic proxy credentials."""
    hs = HttpConnectHandshake("example.com", 443, ("Aladdin", "open sesame"))
    assert hs.request_bytes() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
    )
    results = feed_bytewise(hs.feed, b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nEXTRA")
    assert results.index(True) == len(results) - 6  # True from the last byte of the head on
    assert hs.done and hs.status_code == 200
    assert hs.headers == [("X", "y")]
    assert hs.leftover == b"EXTRA"


def test_http_connect_ipv6_target_and_interim_response() -> None:
    hs = HttpConnectHandshake("::1", 9000, None)
    assert hs.request_bytes() == b"CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n"
    assert hs.feed(b"HTTP/1.1 100 Continue\r\n\r\n") is False
    assert hs.feed(b"HTTP/1.0 200 OK\r\n\r\n") is True


def test_http_connect_407_without_credentials() -> None:
    hs = HttpConnectHandshake("example.com", 443, None, proxy_address="proxy:3128")
    with pytest.raises(WebSocketProxyException, match=r"requires authentication.*http_proxy_auth"):
        hs.feed(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")


def test_http_connect_407_with_credentials_says_rejected() -> None:
    hs = HttpConnectHandshake("example.com", 443, ("bob", "wrong"))
    with pytest.raises(WebSocketProxyException, match="rejected the credentials of user 'bob'"):
        feed_bytewise(hs.feed, b"HTTP/1.1 407 Nope\r\n\r\n")


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "refused the tunnel to example.com:443: 403 Forbidden"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
        (b"", "closed the connection"),
    ],
)
def test_http_connect_failures(response: bytes, match: str) -> None:
    hs = HttpConnectHandshake("example.com", 443, None, url="wss://example.com/")
    with pytest.raises(WebSocketProxyException, match=match) as info:
        hs.feed(response)
    assert info.value.url == "wss://example.com/"


def test_http_connect_bounded_head() -> None:
    hs = HttpConnectHandshake("example.com", 443, None)
    with pytest.raises(WebSocketProxyException, match="longer than"):
        for _ in range(100):
            hs.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 1000)


def drive_socks(hs: Any, server_bytes: list[bytes]) -> list[bytes]:
    """Feed each server message byte by byte; collect what the handshake sends."""
    sent = [hs.initial_bytes()]
    for message in server_bytes:
        out = b"".join(feed_bytewise(hs.feed, message))
        if out:
            sent.append(out)
    return sent


def test_socks5_no_auth_ipv4_bytewise() -> None:
    """RFC 1928 §3-§6: greeting, method 0, CONNECT with ATYP 1, reply."""
    hs = Socks5Handshake("127.0.0.1", 8080, None)
    sent = drive_socks(hs, [b"\x05\x00", b"\x05\x00\x00\x01\x0a\x00\x00\x01\x1f\x90TAIL"])
    assert sent == [b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"]
    assert hs.done
    assert hs.bound_address == ("10.0.0.1", 8080)
    assert hs.leftover == b"TAIL"


def test_socks5_user_pass_domain_bytewise() -> None:
    """RFC 1929 username/password, then a domain-name target (ATYP 3, remote DNS)."""
    hs = Socks5Handshake("echo.invalid", 443, ("user", "pw"))
    sent = drive_socks(hs, [b"\x05\x02", b"\x01\x00", b"\x05\x00\x00\x03\x04name\x00\x50"])
    assert sent == [
        b"\x05\x02\x00\x02",
        b"\x01\x04user\x02pw",
        b"\x05\x01\x00\x03\x0cecho.invalid\x01\xbb",
    ]
    assert hs.done and hs.bound_address == ("name", 80) and hs.leftover == b""


def test_socks5_ipv6_target() -> None:
    hs = Socks5Handshake("::1", 1, None)
    hs.initial_bytes()
    assert hs.feed(b"\x05\x00") == b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x01"
    hs.feed(b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x01")
    assert hs.done and hs.bound_address == ("::", 1)


@pytest.mark.parametrize(
    ("auth", "replies", "match"),
    [
        (None, [b"\x05\xff"], "none of the offered auth methods; pass http_proxy_auth"),
        (None, [b"\x05\x02"], "not offered"),
        (("u", "p"), [b"\x05\x02", b"\x01\x01"], "rejected the user name/password of user 'u'"),
        (None, [b"\x04\x00"], "not 5"),
        (None, [b"\x05\x00", b"\x05\x05"], "connection refused by the target"),
        (None, [b"\x05\x00", b"\x05\x02"], "not allowed"),
        (None, [b"\x05\x00", b"\x05\x04"], "host unreachable"),
        (None, [b"\x05\x00", b"\x05\x00\x00\x09"], "unknown address type"),
        (None, [b"\x05\x00", b""], "closed the connection"),
    ],
)
def test_socks5_failures(auth: tuple[str, str] | None, replies: list[bytes], match: str) -> None:
    hs = Socks5Handshake("127.0.0.1", 80, auth)
    with pytest.raises(WebSocketProxyException, match=match):
        drive_socks(hs, replies)
        hs.feed(b"")  # end of stream if the replies did not fail


def test_socks5_bad_configuration() -> None:
    with pytest.raises(WebSocketConfigurationException):
        Socks5Handshake("a" * 256, 80, None)
    with pytest.raises(WebSocketConfigurationException):
        Socks5Handshake("h", 80, ("", "p"))


def test_socks4_and_socks4a_requests() -> None:
    hs4 = Socks4Handshake("127.0.0.1", 80, "me")
    assert hs4.initial_bytes() == b"\x04\x01\x00\x50\x7f\x00\x00\x01me\x00"
    feed_bytewise(hs4.feed, b"\x00\x5a\x00\x00\x00\x00\x00\x00")
    assert hs4.done and hs4.leftover == b""
    hs4a = Socks4Handshake("echo.invalid", 80)
    assert hs4a.initial_bytes() == b"\x04\x01\x00\x50\x00\x00\x00\x01\x00echo.invalid\x00"
    with pytest.raises(WebSocketProxyException, match="rejected or failed"):
        hs4a.feed(b"\x00\x5b\x00\x00\x00\x00\x00\x00")
    with pytest.raises(WebSocketConfigurationException, match="IPv6"):
        Socks4Handshake("::1", 80)


# --------------------------------------------------------------------------- open_socket


def test_direct_connection(echo: EchoServer) -> None:
    with open_url(
        f"ws://127.0.0.1:{echo.port}/",
        sockopt=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
        source_address=("127.0.0.1", 0),
    ) as sock:
        assert roundtrip(sock) == b"hello through the tunnel"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.gettimeout() == 5.0


def test_connection_refused_keeps_type_and_names_url() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(ConnectionRefusedError, match=f"ws://127.0.0.1:{port}/"):
            open_url(f"ws://127.0.0.1:{port}/")


def test_unresolvable_host() -> None:
    with pytest.raises(WebSocketAddressException, match=r"'nonexistent\.invalid'"):
        open_url("ws://nonexistent.invalid/")


def test_bad_sockopt_is_configuration_error(echo: EchoServer) -> None:
    with pytest.raises(WebSocketConfigurationException, match="sockopt"):
        open_url(f"ws://127.0.0.1:{echo.port}/", sockopt=[(socket.SOL_SOCKET, 99999, 1)])


def proxy_config(kind: str, server: Any, auth: tuple[str, str] | None = None) -> ProxyConfig:
    return ProxyConfig(kind, server.host, server.port, auth)  # type: ignore[arg-type]


def test_http_proxy_tunnel(echo: EchoServer) -> None:
    with HttpConnectProxy() as proxy:
        with open_url(f"ws://127.0.0.1:{echo.port}/", proxy=proxy_config("http", proxy)) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert [(r.method, r.target) for r in proxy.requests] == [
            ("CONNECT", f"127.0.0.1:{echo.port}")
        ]
        assert "proxy-authorization" not in proxy.requests[0].headers


def test_http_proxy_resolves_names_itself(echo: EchoServer) -> None:
    """The name only the proxy knows works: wspool did not resolve it."""
    with HttpConnectProxy(hosts={"echo.invalid": "127.0.0.1"}) as proxy:
        url = f"ws://echo.invalid:{echo.port}/"
        with open_url(url, proxy=proxy_config("http", proxy)) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert proxy.requests[0].target == f"echo.invalid:{echo.port}"


def test_http_proxy_auth_success(echo: EchoServer) -> None:
    with HttpConnectProxy(auth=("alice", "s3cret")) as proxy:
        config = proxy_config("http", proxy, ("alice", "s3cret"))
        with open_url(f"ws://127.0.0.1:{echo.port}/", proxy=config) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert proxy.requests[0].credentials == ("alice", "s3cret")


@pytest.mark.parametrize(
    ("auth", "match"),
    [(None, "requires authentication"), (("alice", "wrong"), "rejected the credentials")],
)
def test_http_proxy_auth_failure(
    echo: EchoServer, auth: tuple[str, str] | None, match: str
) -> None:
    with HttpConnectProxy(auth=("alice", "s3cret")) as proxy:
        with pytest.raises(WebSocketProxyException, match=match) as info:
            open_url(f"ws://127.0.0.1:{echo.port}/", proxy=proxy_config("http", proxy, auth))
        assert info.value.url == f"ws://127.0.0.1:{echo.port}/"


def test_http_proxy_refused_target() -> None:
    with socket.socket() as placeholder, HttpConnectProxy() as proxy:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(WebSocketProxyException, match="502 Bad Gateway"):
            open_url(f"ws://127.0.0.1:{port}/", proxy=proxy_config("http", proxy))


def test_http_proxy_data_after_tunnel_is_rejected() -> None:
    with (
        HttpConnectProxy(raw_reply=b"HTTP/1.1 200 OK\r\n\r\nunexpected") as proxy,
        pytest.raises(WebSocketProxyException, match="unexpected bytes"),
    ):
        open_url("ws://127.0.0.1:9/", proxy=proxy_config("http", proxy))


def test_tls_through_http_proxy(ca: Any, ca_path: str) -> None:
    with (
        EchoServer(server_context(ca)) as server,
        HttpConnectProxy(hosts={"localhost": "127.0.0.1"}) as proxy,
    ):
        parsed = parse_url(f"wss://localhost:{server.port}/")
        sock = dial(
            parsed,
            proxy=proxy_config("http", proxy),
            ssl_context=build_ssl_context({"ca_certs": ca_path}),
            server_hostname="localhost",
        )
        with sock:
            assert isinstance(sock, ssl.SSLSocket)
            assert roundtrip(sock) == b"hello through the tunnel"
        assert server.sni_names == ["localhost"]
        assert proxy.requests[0].target == f"localhost:{server.port}"


def test_socks5_tunnel_sends_ip_address(echo: EchoServer) -> None:
    with SocksProxy() as proxy:
        with open_url(f"ws://127.0.0.1:{echo.port}/", proxy=proxy_config("socks5", proxy)) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        [request] = proxy.requests
        assert (request.version, request.address_type, request.host, request.port) == (
            5,
            "ipv4",
            "127.0.0.1",
            echo.port,
        )


def test_socks5_resolves_names_locally(echo: EchoServer) -> None:
    """socks5 (not socks5h): wspool resolves "localhost" and sends an address."""
    with SocksProxy() as proxy:
        with open_url(f"ws://localhost:{echo.port}/", proxy=proxy_config("socks5", proxy)) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert proxy.requests[0].address_type in ("ipv4", "ipv6")


def test_socks5h_sends_name_for_remote_dns(echo: EchoServer) -> None:
    with SocksProxy(hosts={"echo.invalid": "127.0.0.1"}) as proxy:
        url = f"ws://echo.invalid:{echo.port}/"
        with open_url(url, proxy=proxy_config("socks5h", proxy)) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert (proxy.requests[0].address_type, proxy.requests[0].host) == (
            "domain",
            "echo.invalid",
        )


def test_socks5_user_pass(echo: EchoServer) -> None:
    with SocksProxy(auth=("bob", "pw")) as proxy:
        url = f"ws://127.0.0.1:{echo.port}/"
        with open_url(url, proxy=proxy_config("socks5", proxy, ("bob", "pw"))) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert proxy.requests[0].user == "bob"
        with pytest.raises(WebSocketProxyException, match="rejected the user name/password"):
            open_url(url, proxy=proxy_config("socks5", proxy, ("bob", "bad")))
        with pytest.raises(WebSocketProxyException, match="pass http_proxy_auth"):
            open_url(url, proxy=proxy_config("socks5", proxy))


def test_socks5_refused_and_unreachable_targets() -> None:
    with socket.socket() as placeholder, SocksProxy() as proxy:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(WebSocketProxyException, match="connection refused by the target"):
            open_url(f"ws://127.0.0.1:{port}/", proxy=proxy_config("socks5", proxy))
        with pytest.raises(WebSocketProxyException, match="host unreachable"):
            open_url(f"ws://unknown.invalid:{port}/", proxy=proxy_config("socks5h", proxy))


@pytest.mark.parametrize(("kind", "host"), [("socks4", "127.0.0.1"), ("socks4a", "echo.invalid")])
def test_socks4_tunnels(echo: EchoServer, kind: str, host: str) -> None:
    with SocksProxy(hosts={"echo.invalid": "127.0.0.1"}) as proxy:
        config = proxy_config(kind, proxy, ("me", ""))
        with open_url(f"ws://{host}:{echo.port}/", proxy=config) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        [request] = proxy.requests
        assert (request.version, request.host, request.user) == (4, host, "me")


def test_environment_selected_proxy_end_to_end(
    echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HttpConnectProxy(auth=("env", "pw")) as http_proxy, SocksProxy() as socks_proxy:
        target = parse_url(f"ws://127.0.0.1:{echo.port}/")
        monkeypatch.setenv("http_proxy", http_proxy.url.replace("://", "://env:pw@"))
        monkeypatch.setenv("no_proxy", "example.org")  # replaces the loopback default
        proxy = select_proxy(target)
        with dial(target, proxy=proxy) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert http_proxy.requests[0].credentials == ("env", "pw")

        monkeypatch.delenv("http_proxy")
        monkeypatch.setenv("ALL_PROXY", socks_proxy.url_for("socks5h"))
        proxy = select_proxy(target)
        assert proxy is not None and proxy.type == "socks5h"
        with dial(target, proxy=proxy) as sock:
            assert roundtrip(sock) == b"hello through the tunnel"
        assert len(socks_proxy.requests) == 1

        monkeypatch.setenv("no_proxy", f"127.0.0.1:{echo.port}")
        assert select_proxy(target) is None
        assert len(http_proxy.requests) == 1


def test_proxy_not_listening() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        config = ProxyConfig("http", "127.0.0.1", placeholder.getsockname()[1])
        with pytest.raises(WebSocketProxyException, match="cannot connect to the http proxy"):
            open_url("ws://127.0.0.1:9/", proxy=config)


def test_proxy_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the connect; nobody ever answers
        config = ProxyConfig("http", "127.0.0.1", silent.getsockname()[1], timeout=0.2)
        with pytest.raises(WebSocketTimeoutException, match="timed out waiting") as info:
            open_url("ws://127.0.0.1:9/", proxy=config)
        assert isinstance(info.value, TimeoutError)


def test_no_socket_leaks_on_error_paths(tls_echo: EchoServer, echo: EchoServer) -> None:
    """Every failing open closes what it opened (counted in /proc/self/fd)."""
    if not can_list_fds():
        pytest.skip("needs /proc/self/fd")
    with (
        socket.socket() as placeholder,
        socket.socket() as silent,
        HttpConnectProxy(auth=("a", "b")) as http_proxy,
        SocksProxy() as socks_proxy,
    ):
        placeholder.bind(("127.0.0.1", 0))
        refused_port = placeholder.getsockname()[1]
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        failures: list[tuple[type[BaseException], Callable[[], Any]]] = [
            (ConnectionRefusedError, lambda: open_url(f"ws://127.0.0.1:{refused_port}/")),
            (WebSocketTLSException, lambda: open_url(f"wss://localhost:{tls_echo.port}/")),
            (
                WebSocketProxyException,
                lambda: open_url("ws://127.0.0.1:9/", proxy=proxy_config("http", http_proxy)),
            ),
            (
                WebSocketProxyException,
                lambda: open_url(
                    f"ws://127.0.0.1:{refused_port}/", proxy=proxy_config("socks5", socks_proxy)
                ),
            ),
            (
                WebSocketTimeoutException,
                lambda: open_url(
                    "ws://127.0.0.1:9/",
                    proxy=ProxyConfig("socks5", "127.0.0.1", silent.getsockname()[1], timeout=0.1),
                ),
            ),
            (
                WebSocketConfigurationException,
                lambda: open_url(f"ws://127.0.0.1:{echo.port}/", sockopt=[(0, 0, object())]),
            ),
        ]
        before = open_fds()
        # CPython closes a dropped socket itself, with a ResourceWarning: catch both signs
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for expected, attempt in failures:
                with pytest.raises(expected):
                    attempt()
            gc.collect()
        for server in (tls_echo, echo, http_proxy, socks_proxy):
            server.wait_idle()
        assert open_fds() == before
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_url_type_is_frozen() -> None:
    url = parse_url("ws://h/")
    assert isinstance(url, WebSocketURL)
    with pytest.raises(AttributeError):
        url.host = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("location", "expected", "keeps_credentials"),
    [
        ("/other?x=1", "ws://h.example:8080/other?x=1", True),
        ("next", "ws://h.example:8080/feed/next", True),
        ("https://h.example/secure", "wss://h.example/secure", False),
        ("ws://other.example/", "ws://other.example/", False),
        ("http://h.example:8080/plain", "ws://h.example:8080/plain", True),
    ],
)
def test_resolve_redirect(location: str, expected: str, keeps_credentials: bool) -> None:
    current = parse_url("ws://user:pw@h.example:8080/feed/")
    target = resolve_redirect(current, location)
    assert target.redacted == expected
    assert (target.username == "user") is keeps_credentials


def test_resolve_redirect_refuses_other_schemes() -> None:
    with pytest.raises(WebSocketRedirectException, match="unsupported"):
        resolve_redirect(parse_url("ws://h.example/"), "ftp://h.example/")
