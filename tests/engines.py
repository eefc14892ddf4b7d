"""Real Redis and NATS (JetStream) servers for the sink tests: subprocesses on free
loopback ports, each in a temporary directory of its own, stopped and restarted on
the same port, plus readers that fetch back what a sink wrote.

The readers speak the engines' protocols through the small clients of wspool.sinks
(``RedisClient``, ``NatsClient``), with commands of their own (XRANGE, XLEN,
$JS.API.STREAM.MSG.GET), not through the sinks' write paths.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from wspool.sinks import SinkError
from wspool.sinks.nats import NatsClient, NatsMessage
from wspool.sinks.redis import RedisClient

__all__ = ["Engine", "NatsServer", "RedisServer", "find_binary"]

START_WAIT = 15.0


def find_binary(name: str) -> str | None:
    """The server binary (Debian puts nats-server in /usr/sbin, often not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Engine:
    """One server subprocess; ``start()`` waits until it answers, ``stop()`` ends it
    (SIGTERM, then SIGKILL), ``start()`` again reuses the port and the data dir."""

    binary_name = ""

    def __init__(self, workdir: Path) -> None:
        binary = find_binary(self.binary_name)
        if binary is None:
            raise RuntimeError(f"{self.binary_name} is not installed (.ci/run installs it)")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        log.close()
        deadline = time.monotonic() + START_WAIT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary_name} exited: see {self.dir / 'server.log'}")
            try:
                if self.ready():
                    return
            except (OSError, SinkError):  # not listening yet, or still loading its data
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary_name} did not start within {START_WAIT}s")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class RedisServer(Engine):
    """redis-server with AOF (fsync always): what was confirmed survives a restart."""

    binary_name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]

    def client(self) -> RedisClient:
        return RedisClient("127.0.0.1", self.port, self.url, 10.0)

    def ready(self) -> bool:
        client = self.client()
        try:
            return client.command("PING") == "PONG"
        finally:
            client.close()

    def entries(self, key: str) -> list[dict[str, bytes]]:
        """Every entry of stream ``key``, in stream order, as a field -> value dict."""
        client = self.client()
        try:
            reply = client.command("XRANGE", key, "-", "+")
        finally:
            client.close()
        assert isinstance(reply, list)
        out = []
        for entry in reply:
            assert isinstance(entry, list)
            fields = entry[1]
            assert isinstance(fields, list)
            out.append(
                {
                    bytes(fields[i]).decode(): bytes(fields[i + 1])  # type: ignore[arg-type]
                    for i in range(0, len(fields), 2)
                }
            )
        return out


class NatsServer(Engine):
    """nats-server with JetStream on a file store in its directory."""

    binary_name = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.dir / "jetstream"),
        ]

    def client(self) -> NatsClient:
        return NatsClient("127.0.0.1", self.port, self.url, 10.0)

    def ready(self) -> bool:
        client = self.client()
        try:
            return client.request("$JS.API.INFO").status != 503
        finally:
            client.close()

    def api(self, subject: str, body: dict[str, Any] | None = None) -> Any:
        client = self.client()
        try:
            payload = b"" if body is None else json.dumps(body).encode()
            return client.request(subject, payload).json()
        finally:
            client.close()

    def messages(self, stream: str) -> list[NatsMessage]:
        """Every message of ``stream`` in stream order (MSG.GET by sequence,
        pipelined), with its headers."""
        info = self.api(f"$JS.API.STREAM.INFO.{stream}")
        state = info["state"]
        first, last = state["first_seq"], state["last_seq"]
        client = self.client()
        try:
            replies: dict[str, int] = {}
            for seq in range(first, last + 1):
                reply = client.new_reply()
                replies[reply] = seq
                client.publish(
                    f"$JS.API.STREAM.MSG.GET.{stream}",
                    json.dumps({"seq": seq}).encode(),
                    reply=reply,
                )
            client.flush()
            got: dict[int, NatsMessage] = {}
            while len(got) < len(replies):
                answer = client.next_message()
                if answer.subject in replies:
                    body = answer.json()["message"]
                    headers = base64.b64decode(body["hdrs"]) if body.get("hdrs") else None
                    data = base64.b64decode(body.get("data", ""))
                    got[replies[answer.subject]] = NatsMessage(body["subject"], None, headers, data)
        finally:
            client.close()
        return [got[seq] for seq in sorted(got)]
