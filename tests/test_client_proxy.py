"""End-to-end tests of ``wspool.connect`` through proxies: HTTP CONNECT (RFC 9110
§9.3.6), SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a, chosen by options or by the
environment.  The proxies of ``tests/proxies.py`` only ever connect to 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator

import pytest
from proxies import HttpConnectProxy, SocksProxy
from wsserver import WSServer

import wspool
from wspool import (
    WebSocketConfigurationException,
    WebSocketProxyException,
    WebSocketTimeoutException,
)

WSServerFactory = Callable[..., WSServer]
WAIT = 5.0


@pytest.fixture
def http_proxy() -> Iterator[HttpConnectProxy]:
    # "localhost" is the name on the TLS test certificate
    with HttpConnectProxy(hosts={"localhost": "127.0.0.1"}) as proxy:
        yield proxy
    assert proxy.errors == []


@pytest.fixture
def auth_http_proxy() -> Iterator[HttpConnectProxy]:
    with HttpConnectProxy(auth=("proxyuser", "proxy pass")) as proxy:
        yield proxy


@pytest.fixture
def socks_proxy() -> Iterator[SocksProxy]:
    with SocksProxy(auth=("sockuser", "sockpass"), hosts={"ws.invalid": "127.0.0.1"}) as proxy:
        yield proxy
    assert proxy.errors == []


def echo(ws: wspool.WebSocket) -> None:
    ws.send("through the proxy")
    assert ws.recv() == "through the proxy"
    ws.send(b"x" * 70_000)
    assert ws.recv() == b"x" * 70_000


def test_http_connect_proxy(ws_server: WSServerFactory, http_proxy: HttpConnectProxy) -> None:
    """The tunnel is opened with CONNECT host:port, then the upgrade runs inside it."""
    server = ws_server()
    with wspool.connect(
        server.url + "/via",
        http_proxy_host="127.0.0.1",
        http_proxy_port=http_proxy.port,
        timeout=WAIT,
    ) as ws:
        echo(ws)
    [request] = http_proxy.requests
    assert (request.method, request.target) == ("CONNECT", f"127.0.0.1:{server.port}")
    assert request.credentials is None
    assert server.requests[0].path == "/via"
    assert server.requests[0].get("Host") == f"127.0.0.1:{server.port}"


def test_http_connect_proxy_with_basic_auth(
    ws_server: WSServerFactory, auth_http_proxy: HttpConnectProxy
) -> None:
    """http_proxy_auth sends Proxy-Authorization to the proxy only, never to the
    WebSocket server."""
    server = ws_server()
    with wspool.connect(
        server.url,
        http_proxy_host="127.0.0.1",
        http_proxy_port=str(auth_http_proxy.port),
        http_proxy_auth=("proxyuser", "proxy pass"),
        timeout=WAIT,
    ) as ws:
        echo(ws)
    assert auth_http_proxy.requests[0].credentials == ("proxyuser", "proxy pass")
    assert server.requests[0].get("Proxy-Authorization") is None


@pytest.mark.parametrize("auth", [None, ("proxyuser", "wrong")], ids=["missing", "wrong"])
def test_http_proxy_auth_refused(
    ws_server: WSServerFactory,
    auth_http_proxy: HttpConnectProxy,
    auth: tuple[str, str] | None,
) -> None:
    """407 from the proxy: WebSocketProxyException naming the URL, the password not
    shown; the WebSocket server is never reached."""
    server = ws_server()
    with pytest.raises(WebSocketProxyException) as info:
        wspool.connect(
            server.url,
            http_proxy_host="127.0.0.1",
            http_proxy_port=auth_http_proxy.port,
            http_proxy_auth=auth,
            timeout=WAIT,
        )
    assert "407" in str(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert "wrong" not in str(info.value)
    assert server.requests == []


def test_http_proxy_refuses_the_target(http_proxy: HttpConnectProxy) -> None:
    """A proxy that will not open the tunnel (403): WebSocketProxyException.  The
    client does not resolve the name itself: the proxy gets it as given."""
    with pytest.raises(WebSocketProxyException) as info:
        wspool.connect(
            "ws://unreachable.invalid:9/",
            http_proxy_host="127.0.0.1",
            http_proxy_port=http_proxy.port,
            timeout=WAIT,
        )
    assert "unreachable.invalid" in str(info.value)
    assert http_proxy.requests[0].target == "unreachable.invalid:9"


def test_wss_through_http_proxy(
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    tls_server_ctx: ssl.SSLContext,
    ca_file: str,
) -> None:
    """TLS runs end to end inside the tunnel; the certificate is checked against the
    target's name, not the proxy's."""
    server = ws_server(ssl_context=tls_server_ctx)
    with wspool.connect(
        server.url,
        sslopt={"ca_certs": ca_file},
        http_proxy_host="127.0.0.1",
        http_proxy_port=http_proxy.port,
        timeout=WAIT,
    ) as ws:
        echo(ws)
    assert http_proxy.requests[0].target == f"localhost:{server.port}"
    assert server.requests[0].tls


def test_socks5_with_auth(ws_server: WSServerFactory, socks_proxy: SocksProxy) -> None:
    """SOCKS5 with username/password (RFC 1929); socks5 resolves the name locally,
    so the proxy gets an address."""
    server = ws_server()
    with wspool.connect(
        f"ws://localhost:{server.port}/s",
        http_proxy_host="127.0.0.1",
        http_proxy_port=socks_proxy.port,
        http_proxy_auth=("sockuser", "sockpass"),
        proxy_type="socks5",
        timeout=WAIT,
    ) as ws:
        echo(ws)
    [request] = socks_proxy.requests
    assert (request.version, request.user, request.port) == (5, "sockuser", server.port)
    assert request.address_type in ("ipv4", "ipv6")
    assert server.requests[0].get("Host") == f"localhost:{server.port}"


def test_socks5_wrong_auth(ws_server: WSServerFactory, socks_proxy: SocksProxy) -> None:
    server = ws_server()
    with pytest.raises(WebSocketProxyException) as info:
        wspool.connect(
            server.url,
            http_proxy_host="127.0.0.1",
            http_proxy_port=socks_proxy.port,
            http_proxy_auth=("sockuser", "nope"),
            proxy_type="socks5",
            timeout=WAIT,
        )
    assert "nope" not in str(info.value)
    assert server.requests == []


def test_socks5h_resolves_names_at_the_proxy(
    ws_server: WSServerFactory, socks_proxy: SocksProxy
) -> None:
    """socks5h sends the host name to the proxy (remote DNS): a name only the proxy
    knows works."""
    server = ws_server()
    with wspool.connect(
        f"ws://ws.invalid:{server.port}/",
        http_proxy_host="127.0.0.1",
        http_proxy_port=socks_proxy.port,
        http_proxy_auth=("sockuser", "sockpass"),
        proxy_type="socks5h",
        timeout=WAIT,
    ) as ws:
        echo(ws)
    [request] = socks_proxy.requests
    assert (request.address_type, request.host) == ("domain", "ws.invalid")
    assert server.requests[0].get("Host") == f"ws.invalid:{server.port}"


@pytest.mark.parametrize("proxy_type", ["socks4", "socks4a"])
def test_socks4(ws_server: WSServerFactory, proxy_type: str) -> None:
    server = ws_server()
    with SocksProxy(hosts={"ws.invalid": "127.0.0.1"}) as proxy:
        host = "ws.invalid" if proxy_type == "socks4a" else "127.0.0.1"
        with wspool.connect(
            f"ws://{host}:{server.port}",
            http_proxy_host="127.0.0.1",
            http_proxy_port=proxy.port,
            proxy_type=proxy_type,
            timeout=WAIT,
        ) as ws:
            echo(ws)
        assert proxy.requests[0].version == 4
        assert proxy.requests[0].host == host


def test_http_no_proxy_option_bypasses_the_proxy(
    ws_server: WSServerFactory, http_proxy: HttpConnectProxy
) -> None:
    server = ws_server()
    with wspool.connect(
        server.url,
        http_proxy_host="127.0.0.1",
        http_proxy_port=http_proxy.port,
        http_no_proxy=["127.0.0.1"],
        timeout=WAIT,
    ) as ws:
        echo(ws)
    assert http_proxy.requests == []


def test_http_proxy_timeout() -> None:
    """A proxy that accepts TCP but never answers: http_proxy_timeout bounds the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the TCP handshake; nobody answers
        with pytest.raises(WebSocketTimeoutException) as info:
            wspool.connect(
                "ws://127.0.0.1:9/",
                http_proxy_host="127.0.0.1",
                http_proxy_port=silent.getsockname()[1],
                http_proxy_timeout=0.2,
                open_timeout=WAIT,
            )
    assert "127.0.0.1:9" in str(info.value)
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect("ws://127.0.0.1:9/", http_proxy_host="127.0.0.1", http_proxy_timeout=-1)


def test_unreachable_proxy() -> None:
    """Nothing listens at the proxy address: WebSocketProxyException naming the proxy
    and the URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(WebSocketProxyException) as info:
            wspool.connect(
                "ws://127.0.0.1:9/",
                http_proxy_host="127.0.0.1",
                http_proxy_port=port,
                open_timeout=WAIT,
            )
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "ws://127.0.0.1:9/" in str(info.value)


# ------------------------------------------------------------------ environment


def test_http_proxy_environment_variable(
    ws_server: WSServerFactory, http_proxy: HttpConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http_proxy applies to ws://.  Loopback goes direct only while no no_proxy is
    set, so an unrelated no_proxy makes 127.0.0.1 use the proxy."""
    server = ws_server()
    monkeypatch.setenv("http_proxy", http_proxy.url)
    monkeypatch.setenv("no_proxy", "unrelated.example")
    with wspool.connect(server.url, timeout=WAIT) as ws:
        echo(ws)
    assert http_proxy.requests[0].target == f"127.0.0.1:{server.port}"


def test_loopback_goes_direct_without_no_proxy(
    ws_server: WSServerFactory, http_proxy: HttpConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ws_server()
    monkeypatch.setenv("http_proxy", http_proxy.url)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        echo(ws)
    assert http_proxy.requests == []


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1"])
def test_no_proxy_environment_variable(
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
) -> None:
    server = ws_server()
    monkeypatch.setenv("http_proxy", http_proxy.url)
    monkeypatch.setenv("no_proxy", entry)
    with wspool.connect(server.url, timeout=WAIT) as ws:
        echo(ws)
    assert http_proxy.requests == []


def test_https_proxy_environment_variable_for_wss(
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    tls_server_ctx: ssl.SSLContext,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """https_proxy applies to wss://, http_proxy does not."""
    server = ws_server(ssl_context=tls_server_ctx)
    with HttpConnectProxy() as unused:
        monkeypatch.setenv("https_proxy", http_proxy.url)
        monkeypatch.setenv("http_proxy", unused.url)
        monkeypatch.setenv("no_proxy", "unrelated.example")
        with wspool.connect(server.url, sslopt={"ca_certs": ca_file}, timeout=WAIT) as ws:
            echo(ws)
        assert unused.requests == []
    assert http_proxy.requests[0].target == f"localhost:{server.port}"


def test_environment_proxy_with_credentials_and_socks_scheme(
    ws_server: WSServerFactory, socks_proxy: SocksProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socks5h:// proxy URL with user info in the environment: its scheme picks the
    protocol, its user info the credentials."""
    server = ws_server()
    monkeypatch.setenv("http_proxy", f"socks5h://sockuser:sockpass@127.0.0.1:{socks_proxy.port}")
    monkeypatch.setenv("no_proxy", "unrelated.example")
    with wspool.connect(f"ws://ws.invalid:{server.port}", timeout=WAIT) as ws:
        echo(ws)
    assert socks_proxy.requests[0].host == "ws.invalid"
    assert socks_proxy.requests[0].user == "sockuser"


def test_explicit_proxy_wins_over_environment(
    ws_server: WSServerFactory, http_proxy: HttpConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ws_server()
    with HttpConnectProxy() as env_proxy:
        monkeypatch.setenv("http_proxy", env_proxy.url)
        monkeypatch.setenv("no_proxy", "unrelated.example")
        with wspool.connect(
            server.url, http_proxy_host="127.0.0.1", http_proxy_port=http_proxy.port, timeout=WAIT
        ) as ws:
            echo(ws)
        assert env_proxy.requests == []
    assert len(http_proxy.requests) == 1
