"""The clients the harness can test, and the Autobahn echo-client loop that drives them.

A client is anything with websocket-client's blocking shape: ``connect(url)`` returning an
object with ``recv_data() -> (opcode, bytes)``, ``send(data, opcode)`` and ``close()``,
where ``recv_data`` returns ``(8, payload)`` once the server's close frame arrived.  Both
wspool and websocket-client have it, so one loop drives either; the library under test
is imported only when chosen.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

__all__ = [
    "CLIENTS",
    "Client",
    "Connection",
    "Outcome",
    "OutcomeKind",
    "load_client",
    "run_case",
]

OPCODE_CLOSE = 8
REPO_ROOT = Path(__file__).resolve().parent.parent


class Connection(Protocol):
    """The part of a blocking WebSocket client the echo loop uses."""

    def recv_data(self) -> tuple[int, bytes]: ...

    def send(self, data: bytes, opcode: int) -> object: ...

    def close(self) -> object: ...


@dataclass(frozen=True)
class Client:
    """A client under test: its Autobahn agent name, version and how to connect."""

    agent: str
    version: str
    connect: Callable[[str], Connection]
    # Errors the library raises by design (protocol violations, closed connection, ...).
    error_types: tuple[type[BaseException], ...]


class OutcomeKind(enum.Enum):
    """How one case ended as seen by the client; Autobahn's verdict is separate."""

    SERVER_CLOSE = "server close"  # recv_data returned the close frame
    CLIENT_ERROR = "client error"  # the library raised one of its own exceptions
    SOCKET_ERROR = "socket error"  # an OSError escaped the library
    UNEXPECTED = "unexpected exception"  # anything else: most likely a bug in the client


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    messages: int
    detail: str = ""


def _version_of(module: Any, dist: str) -> str:
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _load_wspool(timeout: float) -> Client:
    # The checkout's wspool wins over any installed copy: the harness tests this tree.
    sys.path.insert(0, str(REPO_ROOT))
    wspool = importlib.import_module("wspool")

    def connect(url: str) -> Connection:
        # compression is left at its default (permessage-deflate offered) for 12.x/13.x;
        # max_size=None because 9.x sends messages of up to 16 MiB.
        return cast(Connection, wspool.connect(url, max_size=None, timeout=timeout))

    return Client(
        agent="wspool",
        version=_version_of(wspool, "wspool"),
        connect=connect,
        error_types=(wspool.WebSocketException,),
    )


class _WebsocketClientConnection:
    """websocket-client's WebSocket, but close() after a completed closing handshake only
    drops the socket: its own close() would send a second close frame (RFC 6455 §5.5.1)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._close_received = False

    def recv_data(self) -> tuple[int, bytes]:
        opcode, data = self._ws.recv_data()  # replies to a close frame by itself
        self._close_received = opcode == OPCODE_CLOSE
        return int(opcode), bytes(data)

    def send(self, data: bytes, opcode: int) -> object:
        return self._ws.send(data, opcode)

    def close(self) -> object:
        if self._close_received:
            return self._ws.shutdown()
        return self._ws.close()


def _load_websocket_client(timeout: float) -> Client:
    websocket = importlib.import_module("websocket")

    def connect(url: str) -> Connection:
        return _WebsocketClientConnection(websocket.create_connection(url, timeout=timeout))

    return Client(
        agent="websocket-client",
        version=_version_of(websocket, "websocket-client"),
        connect=connect,
        error_types=(websocket.WebSocketException,),
    )


CLIENTS: dict[str, Callable[[float], Client]] = {
    "wspool": _load_wspool,
    "websocket-client": _load_websocket_client,
}


def load_client(name: str, timeout: float) -> Client:
    """Import the named client library; ``timeout`` bounds each blocking socket operation."""
    try:
        factory = CLIENTS[name]
    except KeyError:
        raise ValueError(f"unknown client {name!r}; choose one of {', '.join(CLIENTS)}") from None
    return factory(timeout)


def _close_quietly(ws: Connection) -> None:
    # The outcome is already recorded; a failing close adds nothing to it.
    with contextlib.suppress(Exception):
        ws.close()


def run_case(client: Client, url: str) -> Outcome:
    """Echo every message back with its opcode until the server closes (Autobahn convention)."""
    messages = 0
    try:
        ws = client.connect(url)
    except client.error_types as exc:
        return Outcome(OutcomeKind.CLIENT_ERROR, 0, f"connect: {type(exc).__name__}: {exc}")
    except OSError as exc:
        return Outcome(OutcomeKind.SOCKET_ERROR, 0, f"connect: {type(exc).__name__}: {exc}")
    except Exception:
        return Outcome(OutcomeKind.UNEXPECTED, 0, "connect: " + traceback.format_exc())
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == OPCODE_CLOSE:
                return Outcome(OutcomeKind.SERVER_CLOSE, messages, _close_detail(data))
            messages += 1
            ws.send(data, opcode)
    except client.error_types as exc:
        return Outcome(OutcomeKind.CLIENT_ERROR, messages, f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return Outcome(OutcomeKind.SOCKET_ERROR, messages, f"{type(exc).__name__}: {exc}")
    except Exception:
        return Outcome(OutcomeKind.UNEXPECTED, messages, traceback.format_exc())
    finally:
        _close_quietly(ws)


def _close_detail(payload: bytes) -> str:
    if len(payload) < 2:
        return "no status code"
    code = int.from_bytes(payload[:2], "big")
    reason = payload[2:].decode("utf-8", "replace")
    return f"code {code}" + (f" {reason!r}" if reason else "")


def fetch_text(client: Client, url: str) -> str:
    """Return the first message of a control endpoint (getCaseCount, getCaseInfo)."""
    ws = client.connect(url)
    try:
        opcode, data = ws.recv_data()
        if opcode == OPCODE_CLOSE:
            raise RuntimeError(f"{url} closed without a message ({_close_detail(data)})")
        return data.decode("utf-8")
    finally:
        _close_quietly(ws)


def fetch_json(client: Client, url: str) -> Any:
    return json.loads(fetch_text(client, url))


def wait_for_close(client: Client, url: str) -> None:
    """Open ``url`` and read until the server closes (updateReports replies that way)."""
    ws = client.connect(url)
    try:
        while ws.recv_data()[0] != OPCODE_CLOSE:
            pass
    finally:
        _close_quietly(ws)
