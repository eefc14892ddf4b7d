"""Shared pytest fixtures: the scriptable WebSocket test server and TLS material."""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).parent))  # lets tests `import wsserver` directly

from wsserver import ServerConnection, WSServer, echo_handler

WSServerFactory = Callable[..., WSServer]


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if threads it started are still alive (after a 2 s grace period).

    Request it before ``ws_server`` or not: ``ws_server`` arranges to stop its servers
    first either way.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    leaked = [t for t in threading.enumerate() if t not in before]
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = [t for t in leaked if t.is_alive()]
    if leaked:
        pytest.fail(f"test leaked threads: {[t.name for t in leaked]}")


@pytest.fixture
def ws_server(request: pytest.FixtureRequest) -> Iterator[WSServerFactory]:
    """Factory: ``ws_server(handler, **WSServer_kwargs)`` returns a started server.

    At teardown every server is stopped; the test fails if a server thread is still
    alive or a handler raised (pass ``check_errors=False`` to allow handler errors,
    for tests where the client misbehaves on purpose).
    """
    if "no_thread_leaks" in request.fixturenames:
        # set it up first so it is torn down last, after the servers are stopped
        request.getfixturevalue("no_thread_leaks")
    servers: list[tuple[WSServer, bool]] = []

    def factory(
        handler: Callable[[ServerConnection], None] = echo_handler,
        *,
        check_errors: bool = True,
        **kwargs: Any,
    ) -> WSServer:
        server = WSServer(handler, **kwargs)
        servers.append((server, check_errors))
        return server.start()

    yield factory
    problems: list[str] = []
    for server, check_errors in servers:
        alive = server.stop()
        if alive:
            problems.append(f"{server.url}: threads still alive after stop(): {alive}")
        if check_errors and server.errors:
            problems.append(f"{server.url}: handler errors: {server.errors!r}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A session-wide trustme certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_ctx(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server SSLContext whose certificate names "localhost" and "127.0.0.1"."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def tls_client_ctx(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A client SSLContext that trusts ``tls_ca`` (verification fully on)."""
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> str:
    """Path of the CA certificate PEM (for ``sslopt={"ca_certs": ...}``)."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)
