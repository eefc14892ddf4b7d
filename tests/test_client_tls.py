"""End-to-end tests of ``wspool.connect`` over TLS (wss://) against the test server.

Certificates come from a trustme CA (``tests/conftest.py``); the server listens on
127.0.0.1 only.  Its certificate names ``localhost`` and ``127.0.0.1`` unless a test
issues another one.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from helpers import tls_server_context
from wsserver import ServerConnection, WSServer

import wspool
from wspool import (
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)

WSServerFactory = Callable[..., WSServer]
WAIT = 5.0


def echo_once(ws: wspool.WebSocket) -> None:
    ws.send("over tls")
    assert ws.recv() == "over tls"
    ws.send(b"\x00" * 5000)
    assert ws.recv() == b"\x00" * 5000


def test_wss_with_ca_certs(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """sslopt={"ca_certs": path} trusts the test CA; certificate and host name are
    verified (RFC 6455 §4.1: wss runs the handshake over TLS)."""
    server = ws_server(ssl_context=tls_server_ctx)
    with wspool.connect(server.url + "/secure", sslopt={"ca_certs": ca_file}, timeout=WAIT) as ws:
        assert ws.url.startswith("wss://localhost:")
        echo_once(ws)
    request = server.requests[0]
    assert request.tls
    assert request.path == "/secure"
    assert request.get("Host") == f"localhost:{server.port}"
    assert request.get("Origin") == f"https://localhost:{server.port}"


def test_wss_to_ip_address(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """An IP literal is checked against the certificate's IP SAN."""
    server = ws_server(ssl_context=tls_server_ctx)
    url = f"wss://127.0.0.1:{server.port}"
    with wspool.connect(url, sslopt={"ca_certs": ca_file}, timeout=WAIT) as ws:
        echo_once(ws)


def test_wss_with_ssl_context(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, tls_client_ctx: ssl.SSLContext
) -> None:
    """ssl=SSLContext is used as it is; so is sslopt={"context": ...}."""
    server = ws_server(ssl_context=tls_server_ctx)
    with wspool.connect(server.url, ssl=tls_client_ctx, timeout=WAIT) as ws:
        echo_once(ws)
    with wspool.connect(server.url, sslopt={"context": tls_client_ctx}, timeout=WAIT) as ws:
        echo_once(ws)
    with pytest.raises(WebSocketConfigurationException):
        wspool.connect(server.url, ssl=tls_client_ctx, sslopt={"ca_certs": "ca.pem"})


def test_default_verification_rejects_untrusted_certificate(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, no_fd_leaks: None
) -> None:
    """Secure by default: a certificate from an unknown CA fails with
    WebSocketTLSException (the ssl error chained), naming the URL; the socket is closed,
    not left to the garbage collector (no_fd_leaks)."""
    server = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(WebSocketTLSException) as info:
        wspool.connect(server.url, timeout=WAIT)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert f"localhost:{server.port}" in str(info.value)
    assert server.connections == []
    server.wait_for(lambda: server.handshake_errors)  # its end has seen the failure


def test_wrong_host_name_is_rejected(
    ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    """A trusted certificate for another name fails the host name check."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    with pytest.raises(WebSocketTLSException) as info:
        wspool.connect(server.url, sslopt={"ca_certs": ca_file}, timeout=WAIT)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "localhost" in str(info.value)


def test_check_hostname_false_skips_only_the_name_check(
    ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str, tls_server_ctx: ssl.SSLContext
) -> None:
    """check_hostname=False accepts a trusted certificate for another name, but still
    refuses an untrusted one."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    sslopt = {"ca_certs": ca_file, "check_hostname": False}
    with wspool.connect(server.url, sslopt=sslopt, timeout=WAIT) as ws:
        echo_once(ws)
    untrusted = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(WebSocketTLSException):
        wspool.connect(untrusted.url, sslopt={"check_hostname": False}, timeout=WAIT)


def test_cert_none_skips_verification(ws_server: WSServerFactory, tls_ca: trustme.CA) -> None:
    """cert_reqs=ssl.CERT_NONE accepts an untrusted certificate for another name."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    with wspool.connect(server.url, sslopt={"cert_reqs": ssl.CERT_NONE}, timeout=WAIT) as ws:
        echo_once(ws)


def test_sni_server_hostname_option(
    ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    """SNI carries the URL's host name, or sslopt["server_hostname"], which is also
    the name checked (RFC 6066 §3); an IP literal sends no SNI."""
    ctx, seen = tls_server_context(tls_ca, "localhost", "127.0.0.1", "virtual.example")
    server = ws_server(ssl_context=ctx)
    with wspool.connect(server.url, sslopt={"ca_certs": ca_file}, timeout=WAIT):
        pass
    ip_url = f"wss://127.0.0.1:{server.port}"
    with wspool.connect(ip_url, sslopt={"ca_certs": ca_file}, timeout=WAIT):
        pass
    sslopt = {"ca_certs": ca_file, "server_hostname": "virtual.example"}
    with wspool.connect(ip_url, sslopt=sslopt, timeout=WAIT) as ws:
        echo_once(ws)
    assert seen == ["localhost", None, "virtual.example"]
    sslopt = {"ca_certs": ca_file, "server_hostname": "not-on-the-cert.example"}
    with pytest.raises(WebSocketTLSException):
        wspool.connect(ip_url, sslopt=sslopt, timeout=WAIT)


@pytest.fixture
def client_cert_server(ws_server: WSServerFactory, tls_ca: trustme.CA) -> WSServer:
    """A TLS server that requires a client certificate signed by the test CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(ctx)

    def handler(conn: ServerConnection) -> None:
        peer = conn.sock.getpeercert()  # type: ignore[attr-defined]
        assert peer is not None
        conn.send_message(str(dict(x[0] for x in peer["subject"]).get("commonName", "")))
        conn.recv_message(WAIT)

    return ws_server(handler, ssl_context=ctx)


def test_client_certificate(
    client_cert_server: WSServer, tls_ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    """certfile + keyfile present a client certificate the server verifies."""
    cert = tls_ca.issue_cert("client.example", common_name="client.example")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    sslopt = {"ca_certs": ca_file, "certfile": str(certfile), "keyfile": str(keyfile)}
    with wspool.connect(client_cert_server.url, sslopt=sslopt, timeout=WAIT) as ws:
        assert ws.recv() == "client.example"


def test_client_certificate_with_encrypted_key(
    client_cert_server: WSServer, tls_ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    """password= decrypts an encrypted private key; a wrong one is a configuration
    or TLS error, never a hang."""
    cert = tls_ca.issue_cert("enc.example", common_name="enc.example")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    both = tmp_path / "both.pem"
    both.write_bytes(encrypted + cert.cert_chain_pems[0].bytes())
    sslopt = {"ca_certs": ca_file, "certfile": str(both), "password": "s3cret"}
    with wspool.connect(client_cert_server.url, sslopt=sslopt, timeout=WAIT) as ws:
        assert ws.recv() == "enc.example"
    with pytest.raises(WebSocketException):
        wspool.connect(client_cert_server.url, sslopt={**sslopt, "password": "wrong"}, timeout=WAIT)


def test_missing_client_certificate_fails(client_cert_server: WSServer, ca_file: str) -> None:
    """Without the required client certificate the connection fails with a TLS error
    (with TLS 1.3 the server's alert arrives after the client's handshake ended)."""
    with pytest.raises(WebSocketTLSException) as info:
        wspool.connect(client_cert_server.url, sslopt={"ca_certs": ca_file}, timeout=WAIT)
    assert f"localhost:{client_cert_server.port}" in str(info.value)


def test_tls_to_a_plain_server_fails_cleanly(ws_server: WSServerFactory, ca_file: str) -> None:
    """wss:// to a server that does not speak TLS: a TLS error, not a hang.  (The test
    server drops a request it cannot parse after handshake_timeout.)"""
    server = ws_server(handshake_timeout=0.2)
    with pytest.raises(WebSocketTLSException) as info:
        wspool.connect(
            f"wss://127.0.0.1:{server.port}", sslopt={"ca_certs": ca_file}, open_timeout=WAIT
        )
    assert f"127.0.0.1:{server.port}" in str(info.value)


def test_unknown_sslopt_key_is_refused(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext
) -> None:
    server = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(WebSocketConfigurationException) as info:
        wspool.connect(server.url, sslopt={"ca_cert": "typo"})
    assert "ca_cert" in str(info.value)


# ------------------------------------------- one SSLSocket, a reader and senders


def test_tls_reader_and_senders_at_once(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """One thread waits in recv() while others send on the same wss:// connection:
    OpenSSL is entered by one thread at a time (the reader waits outside the lock),
    so the senders are never blocked by the waiting reader and nothing is corrupted."""
    server = ws_server(ssl_context=tls_server_ctx)  # the echo handler
    ws = wspool.connect(server.url, sslopt={"ca_certs": ca_file}, timeout=10)
    received: list[str | bytes] = []

    def reader() -> None:
        for _ in range(4 * 300):
            received.append(ws.recv())

    reading = threading.Thread(target=reader)
    reading.start()

    def sender(n: int) -> None:
        for i in range(300):
            ws.send(f"{n}:{i}:" + "x" * (i % 97))

    senders = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(20)
    reading.join(20)
    assert not reading.is_alive()
    ws.close()
    assert len(received) == 1200
    for n in range(4):
        mine = [m for m in received if isinstance(m, str) and m.startswith(f"{n}:")]
        assert [int(m.split(":")[1]) for m in mine] == list(range(300))  # in order


def test_tls_recv_timeout_and_abort_from_another_thread(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """The read timeout holds on a TLS connection (its socket is non-blocking
    underneath), and abort() wakes a reader that waits without a timeout."""

    def silent(conn: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            conn.recv_message(10)

    server = ws_server(silent, ssl_context=tls_server_ctx)
    ws = wspool.connect(server.url, sslopt={"ca_certs": ca_file}, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(WebSocketTimeoutException):
        ws.recv()
    assert 0.25 <= time.monotonic() - started < 2
    assert ws.gettimeout() == 0.3
    ws.settimeout(None)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            ws.recv()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.2)
    ws.abort()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], WebSocketConnectionClosedException)
