"""One interface over wspool's three ways of opening a connection, for parity tests.

* ``connect``: the blocking client, ``wspool.connect(url, **options)``;
* ``pool``: ``wspool.Pool().connect(url, on_open=..., on_message=..., on_error=...,
  on_close=..., **options)``;
* ``pool-inline``: the same on ``wspool.Pool(deliver="dispatcher")``, whose callbacks
  run on the dispatcher thread;
* ``app``: ``wspool.WebSocketApp(url, ...).run_forever(**options)`` in a thread of its
  own (websocket-client's callback API on a Pool).

``front.open(url, **options)`` returns an opened :class:`Handle`, or raises the
exception that front end reported for the failed opening:

* connect: what ``wspool.connect`` raised;
* pool: an error ``Pool.connect`` raised at once (configuration), else the first error
  given to ``on_error``, once the connection has ended;
* app: an error ``run_forever`` raised (configuration), else the first error given to
  ``on_error``, once ``run_forever`` has returned.

``front.last_failure`` then tells whether the error came straight from the call
(``"sync"``) or was reported later through ``on_error`` (``"async"``).  Every wait is
bounded; the :func:`front` fixture closes every handle, pool and thread it made.

The fixture lives here; a test module uses it with ``from frontends import front``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Literal

import pytest

import wspool
from wspool import Opcode

__all__ = ["FRONT_ENDS", "OPEN_WAIT", "FrontEnd", "Handle", "front", "make_front"]

#: The front ends, in the order the parametrized tests run them.
FRONT_ENDS = ("connect", "pool", "pool-inline", "app")
#: Upper bound for an opening to succeed or fail (tests that expect a timeout pass a
#: much shorter open_timeout).
OPEN_WAIT = 15.0
#: Upper bound for closing a handle or stopping what a front end started.
CLOSE_WAIT = 5.0

#: Options WebSocketApp takes in its constructor rather than in run_forever.
_APP_CONSTRUCTOR_OPTIONS = frozenset({"header", "cookie", "subprotocols", "socket", "get_mask_key"})


class Handle(ABC):
    """An opened connection, whichever front end opened it."""

    subprotocol: str | None
    headers: dict[str, str]  # response headers, names lower-cased
    extensions: list[str]

    @abstractmethod
    def send(self, message: str | bytes) -> None:
        """Send ``str`` as a text message, ``bytes`` as a binary one."""

    @abstractmethod
    def recv(self, timeout: float = 5) -> str | bytes:
        """The next message received; raises TimeoutError after ``timeout`` seconds."""

    @abstractmethod
    def close(self) -> None:
        """Close with a closing handshake; returns once done (bounded)."""


class FrontEnd(ABC):
    """Opens connections one way; :meth:`shutdown` releases what it started."""

    name: str

    def __init__(self) -> None:
        self.last_failure: Literal["sync", "async"] | None = None
        self._handles: list[Handle] = []

    def open(self, url: str, **options: Any) -> Handle:
        self.last_failure = None
        handle = self._open(url, options)
        self._handles.append(handle)
        return handle

    @abstractmethod
    def _open(self, url: str, options: dict[str, Any]) -> Handle: ...

    def shutdown(self) -> None:
        for handle in self._handles:
            with contextlib.suppress(Exception):
                handle.close()

    def __repr__(self) -> str:
        return f"<front end {self.name}>"


# ----------------------------------------------------------------------- blocking


class _BlockingHandle(Handle):
    def __init__(self, ws: wspool.WebSocket) -> None:
        self.ws = ws
        self.subprotocol = ws.subprotocol
        self.headers = ws.headers
        self.extensions = list(ws.extensions)

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self, timeout: float = 5) -> str | bytes:
        self.ws.settimeout(timeout)
        try:
            return self.ws.recv()
        except wspool.WebSocketTimeoutException as exc:
            raise TimeoutError(f"no message within {timeout}s") from exc

    def close(self) -> None:
        self.ws.close(timeout=CLOSE_WAIT)


class ConnectFront(FrontEnd):
    name = "connect"

    def _open(self, url: str, options: dict[str, Any]) -> Handle:
        try:
            return _BlockingHandle(wspool.connect(url, **options))
        except BaseException:
            self.last_failure = "sync"
            raise


# ---------------------------------------------------------------- callback based


class _Recorder:
    """What the callbacks of one connection saw, with bounded waits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.opened = False
        self.closed = False
        self.errors: list[BaseException] = []
        self.messages: queue.Queue[str | bytes] = queue.Queue()

    def on_open(self, _conn: object) -> None:
        with self.cond:
            self.opened = True
            self.cond.notify_all()

    def on_message(self, _conn: object, message: str | bytes) -> None:
        self.messages.put(message)

    def on_error(self, _conn: object, error: BaseException) -> None:
        with self.cond:
            self.errors.append(error)
            self.cond.notify_all()

    def on_close(self, _conn: object, *_args: object) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_open_or_closed(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.opened or self.closed, timeout)

    def next_message(self, timeout: float) -> str | bytes:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout}s") from None

    def first_error(self, what: str) -> BaseException:
        with self.cond:
            if self.errors:
                return self.errors[0]
        return AssertionError(f"{what} ended without reporting an error to on_error")


class _PoolHandle(Handle):
    def __init__(self, connection: wspool.Connection, recorder: _Recorder) -> None:
        self.connection = connection
        self.recorder = recorder
        self.subprotocol = connection.subprotocol
        self.headers = connection.headers
        self.extensions = connection.extensions

    def send(self, message: str | bytes) -> None:
        self.connection.send(message)

    def recv(self, timeout: float = 5) -> str | bytes:
        return self.recorder.next_message(timeout)

    def close(self) -> None:
        self.connection.close()
        if not self.connection.wait_closed(CLOSE_WAIT):
            self.connection.abort()
            self.connection.wait_closed(1.0)


class PoolFront(FrontEnd):
    name = "pool"
    deliver = "workers"

    def __init__(self) -> None:
        super().__init__()
        self.pool = wspool.Pool(workers=2, name=f"frontends-{self.name}", deliver=self.deliver)

    def _open(self, url: str, options: dict[str, Any]) -> Handle:
        recorder = _Recorder()
        try:
            connection = self.pool.connect(
                url,
                on_open=recorder.on_open,
                on_message=recorder.on_message,
                on_error=recorder.on_error,
                on_close=recorder.on_close,
                **options,
            )
        except BaseException:
            self.last_failure = "sync"
            raise
        if not recorder.wait_open_or_closed(OPEN_WAIT):
            connection.abort()
            connection.wait_closed(1.0)
            raise AssertionError(f"the pool connection neither opened nor ended in {OPEN_WAIT}s")
        if recorder.opened:
            return _PoolHandle(connection, recorder)
        if not connection.wait_closed(CLOSE_WAIT):
            raise AssertionError("on_close ran but the connection is not closed")
        self.last_failure = "async"
        raise recorder.first_error("the pool connection")

    def shutdown(self) -> None:
        super().shutdown()
        self.pool.close(timeout=CLOSE_WAIT)


class _AppRun:
    """One ``run_forever`` in a thread of its own."""

    def __init__(
        self, app: wspool.WebSocketApp, options: dict[str, Any], recorder: _Recorder
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.result: bool | None = None
        self.raised: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(options,), name="frontends-app", daemon=True
        )
        self.thread.start()

    def _run(self, options: dict[str, Any]) -> None:
        try:
            self.result = self.app.run_forever(**options)
        except BaseException as exc:  # handed to the test thread
            self.raised = exc
        finally:
            with self.recorder.cond:
                self.done.set()
                self.recorder.cond.notify_all()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


class _AppHandle(Handle):
    def __init__(self, run: _AppRun, recorder: _Recorder) -> None:
        self.run = run
        self.app = run.app
        self.recorder = recorder
        sock = run.app.sock
        assert sock is not None, "on_open ran but app.sock is None"
        self.subprotocol = sock.subprotocol
        self.headers = sock.headers
        self.extensions = sock.connection.extensions

    def send(self, message: str | bytes) -> None:
        # WebSocketApp.send sends bytes as text by default (websocket-client's rule):
        # say binary explicitly so that every handle sends the same frames.
        opcode = Opcode.BINARY if isinstance(message, bytes) else Opcode.TEXT
        self.app.send(message, opcode)

    def recv(self, timeout: float = 5) -> str | bytes:
        return self.recorder.next_message(timeout)

    def close(self) -> None:
        self.app.close()
        if not self.run.join(CLOSE_WAIT):
            sock = self.app.sock
            if sock is not None:
                sock.connection.abort()
            self.run.join(1.0)


class AppFront(FrontEnd):
    name = "app"

    def __init__(self) -> None:
        super().__init__()
        # A pool of its own rather than the shared one, so the fixture can stop it.
        self.pool = wspool.Pool(workers=2, name="frontends-app")
        self._runs: list[_AppRun] = []

    def _open(self, url: str, options: dict[str, Any]) -> Handle:
        recorder = _Recorder()
        constructor = {k: v for k, v in options.items() if k in _APP_CONSTRUCTOR_OPTIONS}
        run_options = {k: v for k, v in options.items() if k not in _APP_CONSTRUCTOR_OPTIONS}
        app = wspool.WebSocketApp(
            url,
            on_open=recorder.on_open,
            on_message=recorder.on_message,
            on_error=recorder.on_error,
            on_close=recorder.on_close,
            pool=self.pool,
            **constructor,
        )
        run = _AppRun(app, run_options, recorder)
        self._runs.append(run)
        deadline = time.monotonic() + OPEN_WAIT
        with recorder.cond:
            recorder.cond.wait_for(lambda: recorder.opened or run.done.is_set(), OPEN_WAIT)
        if recorder.opened and not run.done.is_set():
            return _AppHandle(run, recorder)
        if not run.join(max(0.1, deadline - time.monotonic())):
            app.close()
            run.join(CLOSE_WAIT)
            raise AssertionError(f"run_forever neither opened nor returned in {OPEN_WAIT}s")
        if run.raised is not None:
            self.last_failure = "sync"
            raise run.raised
        self.last_failure = "async"
        raise recorder.first_error(f"run_forever (returned {run.result!r})")

    def shutdown(self) -> None:
        super().shutdown()
        for run in self._runs:
            if not run.join(0):
                run.app.close()
                run.join(CLOSE_WAIT)
        self.pool.close(timeout=CLOSE_WAIT)


class InlinePoolFront(PoolFront):
    """The Pool with ``deliver="dispatcher"``: every callback on the dispatcher thread."""

    name = "pool-inline"
    deliver = "dispatcher"


def make_front(name: str) -> FrontEnd:
    """A fresh front end; call :meth:`FrontEnd.shutdown` when done."""
    kinds: dict[str, type[FrontEnd]] = {
        "connect": ConnectFront,
        "pool": PoolFront,
        "pool-inline": InlinePoolFront,
        "app": AppFront,
    }
    return kinds[name]()


@pytest.fixture(params=FRONT_ENDS)
def front(request: pytest.FixtureRequest) -> Iterator[FrontEnd]:
    """Each front end in turn; everything it opened is closed at teardown."""
    front_end = make_front(request.param)
    try:
        yield front_end
    finally:
        front_end.shutdown()
