"""A host name that fails to resolve for a while, then resolves: a reconnecting pool
connection reports each failure to on_error as WebSocketAddressException naming the
host, keeps retrying with backoff, and opens once the name resolves.

The name is made to resolve by adding it to /etc/hosts (read by getaddrinfo on every
lookup through the "files" source), which needs write access to that file: root on
CI machines and containers.  The original file is restored afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import WSServerFactory
from helpers import wait_until

import wspool
from wspool import ReconnectPolicy, WebSocketAddressException

HOSTS = Path("/etc/hosts")
NAME = "wspool-dns-recovery.test"


@pytest.fixture
def hosts_file() -> Iterator[Path]:
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("needs write access to /etc/hosts (run as root, as CI does)")
    original = HOSTS.read_bytes()
    try:
        yield HOSTS
    finally:
        HOSTS.write_bytes(original)


def test_connection_recovers_once_the_name_resolves(
    ws_server: WSServerFactory, hosts_file: Path
) -> None:
    server = ws_server()
    errors: list[BaseException] = []
    opened = threading.Event()
    echoed: list[str] = []
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)
    with wspool.Pool(workers=1) as pool:
        conn = pool.connect(
            f"ws://{NAME}:{server.port}/",
            reconnect=policy,
            on_error=lambda _c, e: errors.append(e),
            on_open=lambda c: (opened.set(), c.send("back")),
            on_message=lambda _c, m: echoed.append(m),
        )
        assert wait_until(lambda: len(errors) >= 2, timeout=15), errors
        assert not opened.is_set()
        snapshot = list(errors)
        assert all(isinstance(e, WebSocketAddressException) for e in snapshot), snapshot
        assert all(NAME in str(e) for e in snapshot)
        with hosts_file.open("a") as hosts:
            hosts.write(f"\n127.0.0.1 {NAME}\n")
        assert opened.wait(10), "did not recover after the name resolved"
        assert wait_until(lambda: echoed == ["back"])
        conn.close()
        assert conn.wait_closed(5)
    assert server.requests[0].get("Host") == f"{NAME}:{server.port}"
