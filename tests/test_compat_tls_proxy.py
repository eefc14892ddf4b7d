"""websocket-client 1.9's documented TLS and proxy usages, under
``import wspool as websocket``: the FAQ's "disable ssl cert verification" and "disable
hostname verification" in their three forms (WebSocketApp.run_forever(sslopt=),
create_connection(sslopt=), WebSocket(sslopt=).connect()), sslopt's ``context``, SNI,
``WEBSOCKET_CLIENT_CA_BUNDLE``, wss:// over a given socket, and examples.rst's HTTP and
SOCKS proxy examples (tests/proxies.py).  Certificates come from the trustme CA of
tests/conftest.py.  The checklist of every doc section is at the top of
test_websocket_client_compat.py.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from compat_support import WSServerFactory, close_at_once, run_app, websocket_client_state
from helpers import tls_server_context
from proxies import HttpConnectProxy, SocksProxy
from wsserver import WSServer

import wspool as websocket

__all__ = ["websocket_client_state"]  # the autouse fixture, imported from compat_support

CA_BUNDLE = "WEBSOCKET_CLIENT_CA_BUNDLE"


def echo_once(ws: websocket.WebSocket) -> None:
    ws.send("Hello, Server")
    assert ws.recv() == "Hello, Server"


# The FAQ's three forms, each connecting to ``url`` with ``sslopt`` as the FAQ writes it
# and returning once the connection was open (and closed again).


def _form_app(url: str, sslopt: dict[str, Any]) -> None:
    opened: list[bool] = []

    def on_open(ws: Any) -> None:
        opened.append(ws.sock.connected)
        ws.close()

    ws = websocket.WebSocketApp(url, on_open=on_open)
    assert run_app(ws, sslopt=sslopt) is False
    assert opened == [True]


def _form_create_connection(url: str, sslopt: dict[str, Any]) -> None:
    ws = websocket.create_connection(url, sslopt=sslopt)
    assert ws.is_ssl()
    echo_once(ws)
    ws.close()


def _form_websocket(url: str, sslopt: dict[str, Any]) -> None:
    ws = websocket.WebSocket(sslopt=sslopt)
    ws.connect(url)
    assert ws.is_ssl()
    echo_once(ws)
    ws.close()


FORMS = pytest.mark.parametrize(
    "form",
    [_form_app, _form_create_connection, _form_websocket],
    ids=["WebSocketApp", "create_connection", "WebSocket"],
)


@FORMS
def test_faq_disable_ssl_cert_verification(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, form: Callable[..., None]
) -> None:
    """faq.rst "How to disable ssl cert verification?": sslopt={"cert_reqs":
    ssl.CERT_NONE} connects to a server whose certificate nothing trusts (and without
    it, the same connection is refused)."""
    server = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(websocket.WebSocketTLSException):
        websocket.create_connection(server.url)

    form(server.url, {"cert_reqs": ssl.CERT_NONE})

    assert server.requests[-1].tls


@FORMS
def test_faq_disable_hostname_verification(
    ws_server: WSServerFactory,
    tls_ca: trustme.CA,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
    form: Callable[..., None],
) -> None:
    """faq.rst "How to disable hostname verification?": sslopt={"check_hostname":
    False} accepts a trusted certificate for another name (the CA is trusted through
    WEBSOCKET_CLIENT_CA_BUNDLE, as the FAQ's sslopt names no CA); the certificate is
    still verified, and without the option the name mismatch is refused."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    monkeypatch.setenv(CA_BUNDLE, ca_file)
    with pytest.raises(websocket.WebSocketTLSException):
        websocket.create_connection(server.url)

    form(server.url, {"check_hostname": False})

    untrusted, _ = tls_server_context(trustme.CA(), "other.example")
    stranger = ws_server(ssl_context=untrusted)
    with pytest.raises(websocket.WebSocketTLSException):
        websocket.create_connection(stranger.url, sslopt={"check_hostname": False})


@pytest.mark.parametrize(
    "form", [_form_app, _form_create_connection], ids=["run_forever", "create_connection"]
)
def test_faq_sslopt_context(
    ws_server: WSServerFactory,
    tls_server_ctx: ssl.SSLContext,
    ca_file: str,
    form: Callable[..., None],
) -> None:
    """faq.rst "What else can I do with sslopts?": a custom SSLContext (the default
    CAs plus one's own) passed as sslopt={'context': my_context}."""
    server = ws_server(ssl_context=tls_server_ctx)
    my_context = ssl.create_default_context()
    my_context.load_verify_locations(ca_file)

    form(server.url, {"context": my_context})


def test_faq_sni_is_enabled_automatically(
    ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    """faq.rst "How to enable SNI?": it is on by itself: the server sees the URL's
    host name in the TLS handshake."""
    ctx, sni_names = tls_server_context(tls_ca, "localhost")
    server = ws_server(ssl_context=ctx)
    ws = websocket.create_connection(server.url, sslopt={"ca_certs": ca_file})
    ws.close()
    assert sni_names == ["localhost"]


def _hashed_ca_directory(ca_file: str, into: Path) -> Path:
    """A CA directory as OpenSSL's c_rehash makes it (``<subject hash>.0``)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "this test needs the openssl command to hash the CA"
    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", ca_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    into.mkdir()
    shutil.copy(ca_file, into / f"{subject_hash}.0")
    return into


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_ca_bundle_environment_variable(
    ws_server: WSServerFactory,
    tls_server_ctx: ssl.SSLContext,
    ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """WEBSOCKET_CLIENT_CA_BUNDLE names the CA file (or hashed directory) to trust when
    sslopt gives none, for the blocking client and for WebSocketApp; a CA given in
    sslopt still replaces it."""
    server = ws_server(ssl_context=tls_server_ctx)
    bundle = ca_file if kind == "file" else str(_hashed_ca_directory(ca_file, tmp_path / "cas"))
    monkeypatch.setenv(CA_BUNDLE, bundle)

    _form_create_connection(server.url, {})
    _form_app(server.url, {})

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(websocket.WebSocketTLSException):
        websocket.create_connection(server.url, sslopt={"ca_certs": str(other_ca)})


@pytest.mark.parametrize("given", ["plain", "ssl-socket"])
def test_custom_socket_with_wss(
    ws_server: WSServerFactory,
    tls_server_ctx: ssl.SSLContext,
    tls_client_ctx: ssl.SSLContext,
    ca_file: str,
    given: str,
) -> None:
    """examples.rst "Connecting with Custom Sockets" with a wss:// URL: TLS is added over
    a given plain socket (verified with sslopt), and a given SSLSocket is used as it is."""
    server = ws_server(ssl_context=tls_server_ctx)
    my_socket: socket.socket = socket.create_connection((server.host, server.port))
    try:
        if given == "ssl-socket":
            my_socket = tls_client_ctx.wrap_socket(my_socket, server_hostname="localhost")
        ws = websocket.create_connection(
            f"wss://localhost:{server.port}/", socket=my_socket, sslopt={"ca_certs": ca_file}
        )
        assert ws.is_ssl()
        if given == "ssl-socket":
            assert ws.sock is my_socket
        echo_once(ws)
        ws.close()
    finally:
        my_socket.close()
    assert server.requests[0].tls


# --------------------------------------------------------------------- proxies


def test_websocket_http_proxy_example(ws_server: WSServerFactory) -> None:
    """examples.rst "Connecting through a HTTP proxy", WebSocket proxy example:
    http_proxy_host and http_proxy_port (a *string*, as the docs write it)."""
    server = ws_server()
    with HttpConnectProxy() as proxy:
        ws = websocket.WebSocket()
        ws.connect(server.url, http_proxy_host="127.0.0.1", http_proxy_port=str(proxy.port))
        ws.send("Hello, Server")
        assert ws.recv() == "Hello, Server"
        ws.close()
    [request] = proxy.requests
    assert (request.method, request.target) == ("CONNECT", f"127.0.0.1:{server.port}")
    assert proxy.errors == []


def test_websocket_http_proxy_with_authentication_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket HTTP proxy with authentication example": proxy_type="http",
    http_proxy_auth=(user, password) sent to the proxy (Basic), never to the server."""
    server = ws_server()
    with HttpConnectProxy(auth=("username", "password123")) as proxy:
        ws = websocket.WebSocket()
        ws.connect(
            server.url,
            http_proxy_host="127.0.0.1",
            http_proxy_port=str(proxy.port),
            proxy_type="http",
            http_proxy_auth=("username", "password123"),
        )
        echo_once(ws)
        ws.close()
    [request] = proxy.requests
    assert request.credentials == ("username", "password123")
    assert server.requests[0].get("Proxy-Authorization") is None


@pytest.mark.parametrize(
    ("proxy_type", "host", "version", "address_type"),
    [
        ("socks4", "127.0.0.1", 4, "ipv4"),
        ("socks4a", "echo.invalid", 4, "domain"),  # the proxy resolves the name
        ("socks5", "127.0.0.1", 5, "ipv4"),
        ("socks5h", "echo.invalid", 5, "domain"),
    ],
)
def test_websocket_socks_proxy_example(
    ws_server: WSServerFactory, proxy_type: str, host: str, version: int, address_type: str
) -> None:
    """examples.rst "WebSocket SOCKS4 (or SOCKS5) proxy example": proxy_type="socks4"
    with the port as a string; socks4a and socks5h leave the name to the proxy
    ("If you want to route DNS requests through the proxy, use SOCKS4a or SOCKS5h")."""
    server = ws_server()
    with SocksProxy(hosts={"echo.invalid": "127.0.0.1"}) as proxy:
        ws = websocket.WebSocket()
        ws.connect(
            f"ws://{host}:{server.port}",
            http_proxy_host="127.0.0.1",
            http_proxy_port=str(proxy.port),
            proxy_type=proxy_type,
        )
        echo_once(ws)
        ws.close()
    [request] = proxy.requests
    assert (request.version, request.address_type, request.port) == (
        version,
        address_type,
        server.port,
    )
    assert request.host == host
    assert server.requests[0].get("Host") == f"{host}:{server.port}"


def _app_through(server: WSServer, **proxy_options: Any) -> None:
    ws = websocket.WebSocketApp(server.url)
    assert run_app(ws, **proxy_options) is False  # the server closes at once


@pytest.mark.parametrize("proxy_type", ["socks5", "http"])
def test_websocketapp_proxy_example(ws_server: WSServerFactory, proxy_type: str) -> None:
    """examples.rst "WebSocketApp proxy example": run_forever(proxy_type=...,
    http_proxy_host=..., http_proxy_auth=(user, password)).  Added: http_proxy_port,
    which the docs leave out (their proxy listens on the default port; ours does not)."""
    server = ws_server(close_at_once)
    auth = ("proxy_username", "proxy_password")
    if proxy_type == "socks5":
        with SocksProxy(auth=auth) as socks:
            _app_through(
                server,
                proxy_type="socks5",
                http_proxy_host=socks.host,
                http_proxy_port=socks.port,
                http_proxy_auth=auth,
            )
        [request] = socks.requests
        assert (request.version, request.user, request.port) == (5, "proxy_username", server.port)
    else:
        with HttpConnectProxy(auth=auth) as http:
            _app_through(
                server,
                proxy_type="http",
                http_proxy_host=http.host,
                http_proxy_port=str(http.port),
                http_proxy_auth=auth,
            )
        [http_request] = http.requests
        assert http_request.credentials == auth
    assert len(server.requests) == 1
