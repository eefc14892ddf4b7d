"""Shared pytest fixtures: leak checks, the scriptable WebSocket test server and TLS
material.  Plain helpers (waits, fd listings, a callback recorder, subprocesses) are in
``helpers.py``."""

from __future__ import annotations

import gc
import ssl
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).parent))  # lets tests `import wsserver`, `helpers`

from helpers import can_list_fds, fd_targets, wait_until
from wsserver import ServerConnection, WSServer, echo_handler

WSServerFactory = Callable[..., WSServer]

#: The proxy variables wspool reads (lower and upper case), and CGI's REQUEST_METHOD.
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's proxy variables must not reroute any test's connections; tests
    that need them set them with ``monkeypatch``."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


#: Fixtures that check for leftovers at teardown: ``ws_server`` sets them up before
#: itself, so they are torn down after its servers are stopped.
LEAK_CHECKS = ("no_thread_leaks", "no_fd_leaks")


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if threads it started are still alive (after a 2 s grace period).

    Request it before ``ws_server`` or not: ``ws_server`` arranges to stop its servers
    first either way.
    """
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before]
    if not wait_until(lambda: not any(t.is_alive() for t in leaked), timeout=2.0, interval=0.02):
        pytest.fail(f"test leaked threads: {[t.name for t in leaked if t.is_alive()]}")


@pytest.fixture
def no_fd_leaks() -> Iterator[None]:
    """Fail the test if it leaves a file descriptor open that was not open before it,
    or leaves a socket for the garbage collector to close (a ResourceWarning).

    Descriptors are compared by target (see ``helpers.fd_targets``).  The test server
    lives in this process too: its threads get 5 s to close their ends of connections
    that just ended, and ``ws_server``'s servers are stopped before the check.  Skips
    the test where ``/proc/self/fd`` does not exist.
    """
    if not can_list_fds():
        pytest.skip("needs /proc/self/fd")
    gc.collect()
    before = fd_targets()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    if unclosed:
        pytest.fail(f"sockets left to the garbage collector: {unclosed}")
    if not wait_until(lambda: not fd_targets() - before, timeout=5.0):
        pytest.fail(f"file descriptors leaked: {sorted(fd_targets() - before)}")


@pytest.fixture
def ws_server(request: pytest.FixtureRequest) -> Iterator[WSServerFactory]:
    """Factory: ``ws_server(handler, **WSServer_kwargs)`` returns a started server.

    At teardown every server is stopped; the test fails if a server thread is still
    alive or a handler raised (pass ``check_errors=False`` to allow handler errors,
    for tests where the client misbehaves on purpose).
    """
    for name in LEAK_CHECKS:
        if name in request.fixturenames:
            # set it up first so it is torn down last, after the servers are stopped
            request.getfixturevalue(name)
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
