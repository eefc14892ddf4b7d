"""TLS faults: each ends the opening with a named exception within open_timeout, on
every front end, leaves nothing open (the autouse leak checks), and is not retried by
a reconnecting pool (a retry cannot fix a certificate) unless the policy asks.

Untrusted certificates and host name mismatches are in test_frontends.py; here: an
expired certificate, plain TCP behind a wss:// URL, TLS behind a ws:// URL, and a
server that stops in the middle of the TLS handshake.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import trustme
from conftest import WSServerFactory
from frontends import FrontEnd, front
from helpers import wait_until

import wspool
from wspool import (
    ReconnectPolicy,
    WebSocketException,
    WebSocketHandshakeException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)

__all__ = ["front"]

OPEN = 2.0


def _expired_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    ca.issue_cert(
        "localhost",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    ).configure_cert(ctx)
    return ctx


@contextlib.contextmanager
def stalling_tls_server() -> Iterator[tuple[int, list[bytes]]]:
    """Accepts, reads the ClientHello, then says nothing until the client gives up."""
    listener = socket.create_server(("127.0.0.1", 0))
    hellos: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(OPEN * 3)
                with contextlib.suppress(OSError):
                    hellos.append(conn.recv(65536))
                    while conn.recv(65536):  # until the client closes
                        pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1], hellos
    finally:
        stop.set()
        thread.join(10)
        listener.close()


@contextlib.contextmanager
def plain_http_server() -> Iterator[int]:
    """Answers whatever arrives with ``400 Bad Request`` in plain text and closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(OPEN)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def test_expired_certificate(
    front: FrontEnd, ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    server = ws_server(ssl_context=_expired_context(tls_ca))
    with pytest.raises(WebSocketTLSException) as info:
        front.open(server.url, sslopt={"ca_certs": ca_file}, open_timeout=OPEN)
    assert "expired" in info.value.message
    assert f"localhost:{server.port}" in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


def test_plain_tcp_behind_a_wss_url(front: FrontEnd, ca_file: str) -> None:
    """An HTTP server where TLS was expected answers the ClientHello with a plain
    400, as web servers do: a TLS error naming the URL, not a hang."""
    with plain_http_server() as port:
        started = time.monotonic()
        with pytest.raises(WebSocketTLSException) as info:
            front.open(f"wss://localhost:{port}/", sslopt={"ca_certs": ca_file}, open_timeout=OPEN)
        assert time.monotonic() - started < OPEN
        assert f"localhost:{port}" in str(info.value)


def test_tls_behind_a_ws_url(
    front: FrontEnd, ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext
) -> None:
    """The server expects a ClientHello and gets an HTTP request: the opening fails
    (the server drops the connection) with a handshake error, within open_timeout."""
    server = ws_server(ssl_context=tls_server_ctx, check_errors=False)
    url = f"ws://localhost:{server.port}/"
    started = time.monotonic()
    with pytest.raises((WebSocketHandshakeException, WebSocketTimeoutException)) as info:
        front.open(url, open_timeout=OPEN)
    assert time.monotonic() - started < OPEN + 1
    assert f"localhost:{server.port}" in str(info.value)


def test_server_stops_in_the_middle_of_the_tls_handshake(front: FrontEnd, ca_file: str) -> None:
    with stalling_tls_server() as (port, hellos):
        started = time.monotonic()
        with pytest.raises(WebSocketTimeoutException) as info:
            front.open(f"wss://localhost:{port}/", sslopt={"ca_certs": ca_file}, open_timeout=1)
        assert 0.9 <= time.monotonic() - started < 3
        assert f"localhost:{port}" in str(info.value)
        assert hellos and hellos[0][:1] == b"\x16"  # a TLS handshake record was sent


@pytest.mark.parametrize("retry_tls_errors", [False, True])
def test_reconnecting_pool_does_not_retry_certificate_errors(
    ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str, retry_tls_errors: bool
) -> None:
    """No retry storm: a certificate error ends a reconnecting connection after one
    attempt, reported to on_error once; retry_tls_errors=True retries with backoff."""
    server = ws_server(ssl_context=_expired_context(tls_ca))
    errors: list[BaseException] = []
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.05, retry_tls_errors=retry_tls_errors)
    with wspool.Pool(workers=1) as pool:
        conn = pool.connect(
            server.url,
            sslopt={"ca_certs": ca_file},
            reconnect=policy,
            on_error=lambda _c, e: errors.append(e),
        )
        if retry_tls_errors:
            assert wait_until(lambda: len(errors) >= 3, timeout=5)
            conn.close()
        else:
            assert conn.wait_closed(5)
            time.sleep(0.3)  # a retry, if any, would come within this
            assert len(errors) == 1
        assert conn.wait_closed(5)
    assert all(isinstance(e, WebSocketTLSException) for e in errors)
    assert all(isinstance(e, WebSocketException) for e in errors)
