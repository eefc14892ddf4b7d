"""The clients the harness can test, and the Autobahn echo-client loop that drives them.

A client is anything with websocket-client's blocking shape: ``connect(url)`` returning an
object with ``recv_data() -> (opcode, bytes)``, ``send(data, opcode)`` and ``close()``,
where ``recv_data`` returns ``(8, payload)`` once the server's close frame arrived.  Both
wspool and websocket-client have it, so one loop drives either; the library under test
is imported only when chosen.

A callback-driven client (``wspool-pool``: every case is one ``Pool.connect`` on a Pool
shared by the whole run) brings its own ``case_runner`` instead of the loop, and a
``shutdown`` that releases what it holds for the run.  Its control requests
(getCaseCount, getCaseStatus, updateReports) still go through ``connect``: they are not
cases, and the agent name in their URL is what the reports are filed under.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import sys
import threading
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
    "PoolCase",
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
    # Runs one case by itself (url -> Outcome) instead of the blocking echo loop.
    case_runner: Callable[[str], Outcome] | None = None
    # Releases what the client holds for the whole run (the Pool's threads); idempotent.
    shutdown: Callable[[], object] = lambda: None


class OutcomeKind(enum.Enum):
    """How one case ended as seen by the client; Autobahn's verdict is separate."""

    SERVER_CLOSE = "server close"  # recv_data returned the close frame (pool: on_close, no error)
    CLIENT_ERROR = "client error"  # the library raised one of its own exceptions
    SOCKET_ERROR = "socket error"  # an OSError escaped the library
    UNEXPECTED = "unexpected exception"  # anything else: most likely a bug in the client
    TIMEOUT = "timeout"  # pool: not closed for good within --timeout; the harness aborted it


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


class PoolCase:
    """One Autobahn case as one ``Pool.connect``: echo from the callbacks, record the end.

    The callbacks of one connection run one at a time on a pool worker, while the
    harness reads the record on its own thread: hence the lock.
    """

    def __init__(self, callback_error: type[BaseException]) -> None:
        # The pool's wrapper for "a callback raised" (an echo that failed), as opposed
        # to an error that ended the connection.
        self._callback_error = callback_error
        self._lock = threading.Lock()
        self.messages = 0
        self.errors: list[BaseException] = []  # what ended the connection, in order
        self.echo_errors: list[BaseException] = []  # what conn.send raised in on_message
        self.closed: tuple[int, str] | None = None  # on_close's code and reason

    def on_message(self, conn: Any, message: str | bytes) -> None:
        with self._lock:
            self.messages += 1
        conn.send(message)  # str goes back as text, bytes as binary

    def on_error(self, conn: Any, error: BaseException) -> None:
        with self._lock:
            if isinstance(error, self._callback_error):
                self.echo_errors.append(getattr(error, "original", None) or error)
            else:
                self.errors.append(error)

    def on_close(self, conn: Any, code: int | None, reason: str | None) -> None:
        with self._lock:
            self.closed = (int(code or 0), reason or "")

    def outcome(
        self, error_types: tuple[type[BaseException], ...], timed_out: float | None = None
    ) -> Outcome:
        """How the case ended; ``timed_out`` is the bound the case overran, if it did."""
        with self._lock:
            messages = self.messages
            errors = list(self.errors)
            echo_errors = list(self.echo_errors)
            closed = self.closed
        # Kept on one line: run.py shows the last line of a detail.
        echoes = [f"echo failed: {_describe(e)}" for e in echo_errors]
        extra = echoes + ([] if closed is None else ["on_close " + _code_and_reason(*closed)])
        if timed_out is not None:
            head = [f"not closed within {timed_out:g} s, aborted", *map(_describe, errors)]
            return Outcome(OutcomeKind.TIMEOUT, messages, "; ".join(head + extra))
        # A failing echo is expected only as the library's own error (a close raced it).
        odd_echo = [e for e in echo_errors if not isinstance(e, (*error_types, OSError))]
        if errors:
            first = errors[0]
            if isinstance(first, error_types):
                kind = OutcomeKind.CLIENT_ERROR
            elif isinstance(first, OSError):
                kind = OutcomeKind.SOCKET_ERROR
            else:
                return Outcome(OutcomeKind.UNEXPECTED, messages, _traceback_of(first, extra))
            return Outcome(kind, messages, "; ".join([_describe(first), *extra]))
        if odd_echo:
            return Outcome(OutcomeKind.UNEXPECTED, messages, _traceback_of(odd_echo[0], extra))
        if closed is None:
            # wait_closed said closed for good, yet on_close never ran: a pool bug.
            return Outcome(OutcomeKind.UNEXPECTED, messages, "closed without on_close")
        # Ended by a closing handshake (or a close without an error): the server's code.
        detail = "; ".join([_code_and_reason(*closed), *echoes])
        return Outcome(OutcomeKind.SERVER_CLOSE, messages, detail)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _code_and_reason(code: int, reason: str) -> str:
    return f"code {code}" + (f" {reason!r}" if reason else "")


def _traceback_of(error: BaseException, extra: list[str]) -> str:
    # The traceback last: its final line (the exception) is what run.py's summary shows.
    return "\n".join([*extra, "".join(traceback.format_exception(error))])


def run_pool_case(
    pool: Any,
    url: str,
    *,
    case_timeout: float,
    error_types: tuple[type[BaseException], ...],
    callback_error: type[BaseException],
    **options: Any,
) -> Outcome:
    """One case on ``pool``: connect with ``options``, echo from on_message, and wait
    until the connection is closed for good (at most ``case_timeout`` seconds)."""
    case = PoolCase(callback_error)
    try:
        conn = pool.connect(
            url,
            on_message=case.on_message,
            on_error=case.on_error,
            on_close=case.on_close,
            **options,
        )
    except error_types as exc:
        return Outcome(OutcomeKind.CLIENT_ERROR, 0, f"connect: {_describe(exc)}")
    except OSError as exc:
        return Outcome(OutcomeKind.SOCKET_ERROR, 0, f"connect: {_describe(exc)}")
    except Exception:
        return Outcome(OutcomeKind.UNEXPECTED, 0, "connect: " + traceback.format_exc())
    if conn.wait_closed(case_timeout):
        return case.outcome(error_types)
    # A hung case must not stall the run: drop it, and give on_close a moment to run.
    with contextlib.suppress(Exception):
        conn.abort()
        conn.wait_closed(5.0)
    return case.outcome(error_types, timed_out=case_timeout)


def _load_wspool_pool(timeout: float, deliver: str = "workers") -> Client:
    blocking = _load_wspool(timeout)  # imports the checkout's wspool
    wspool = sys.modules["wspool"]
    # One pool for the whole run with the default workers: the shape a real program
    # has.  Its threads start with the first case; run.py calls shutdown at the end.
    pool = wspool.Pool(deliver=deliver)
    error_types = (wspool.WebSocketException,)

    def run(url: str) -> Outcome:
        # As for the blocking client: compression at its default (offered) for 12.x/13.x,
        # max_size=None for 9.x.  ``timeout`` is the pool's write-stall bound; the same
        # value bounds the whole case.
        return run_pool_case(
            pool,
            url,
            case_timeout=timeout,
            error_types=error_types,
            callback_error=wspool.CallbackError,
            max_size=None,
            timeout=timeout,
        )

    return Client(
        agent="wspool-pool" if deliver == "workers" else "wspool-pool-inline",
        version=blocking.version,
        connect=blocking.connect,  # control requests (getCaseCount, ...) are not cases
        error_types=error_types,
        case_runner=run,
        shutdown=pool.close,
    )


CLIENTS: dict[str, Callable[[float], Client]] = {
    "wspool": _load_wspool,
    "wspool-pool": _load_wspool_pool,
    # Pool(deliver="dispatcher"): the callbacks (and so the echo) on the dispatcher thread.
    "wspool-pool-inline": lambda timeout: _load_wspool_pool(timeout, "dispatcher"),
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
    if client.case_runner is not None:
        try:
            return client.case_runner(url)
        except Exception:
            return Outcome(OutcomeKind.UNEXPECTED, 0, traceback.format_exc())
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
