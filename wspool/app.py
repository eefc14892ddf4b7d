"""``WebSocketApp``: websocket-client's callback API, running on a :class:`~wspool.Pool`.

A script written for ``websocket.WebSocketApp`` keeps working after
``import wspool as websocket``: the constructor, :meth:`WebSocketApp.run_forever`,
the ``send*``/``close`` methods and the callback signatures are websocket-client's,
with the app (not the pool's :class:`~wspool.Connection`) as first argument.

Underneath, every app is one pool connection.  Apps share one module-level pool
(:func:`shared_pool`, created on first use) unless given ``pool=``, so many apps
running in many threads cost one dispatcher thread plus the pool's workers, not a
thread per socket.  ``run_forever`` only waits: the pool does the I/O.  With
``dispatcher=`` (websocket-client's hook for an event loop such as ``rel``) it does
not even wait: the app starts on the pool, ``run_forever`` returns, and the
dispatcher's loop stays alive until the app is over (see :class:`_Dispatched`).

What the adaptation keeps from websocket-client (docs/migration.md, "WebSocketApp"):

* callbacks of one app run one at a time, in order;
* after a reconnect, ``on_reconnect`` runs *instead of* ``on_open`` (``on_open`` when
  there is no ``on_reconnect``);
* ``on_close`` runs once, when the connection is over for good, never between
  reconnects, on the thread that called ``run_forever`` (with a dispatcher: on the
  dispatcher's thread);
* ``on_error`` receives a failing callback's own exception;
* ``run_forever`` returns ``True`` when the connection ended because of an error (or
  Ctrl-C, which also goes to ``on_error``), ``False`` after a clean close;
* ``keep_running = False`` (from any thread or callback) stops the app like
  :meth:`WebSocketApp.close`;
* :func:`set_reconnect` sets the ``reconnect`` of later ``run_forever`` calls.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from wspool._reprs import without_userinfo
from wspool.exceptions import (
    CallbackError,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
)
from wspool.pool.backoff import ReconnectPolicy
from wspool.pool.connection import Connection, ConnectionState
from wspool.pool.pool import Pool
from wspool.protocol.frames import CloseCode, Opcode, encode_close_payload

if TYPE_CHECKING:
    pass

__all__ = [
    "SHARED_POOL_WORKERS",
    "AppSocket",
    "WebSocketApp",
    "setReconnect",
    "set_reconnect",
    "shared_pool",
]

logger = logging.getLogger("wspool")

#: Worker threads of the shared pool: callbacks of this many apps can run at once.
SHARED_POOL_WORKERS: Final = 4

# How long the run_forever thread waits for a callback running on a worker before it
# calls on_error/on_close itself (only after Ctrl-C can a worker still be busy).
_CALLBACK_LOCK_WAIT: Final = 5.0
# After Ctrl-C: how long the closing handshake may take before the socket is dropped.
_INTERRUPT_CLOSE_WAIT: Final = 5.0
# Close codes that say "no close frame with a status arrived" (RFC 6455 §7.1.5);
# websocket-client reports them as (None, None).
_NO_STATUS: Final = frozenset({CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE})
# What websocket-client registers with a dispatcher: Ctrl-C.
_SIGINT: Final = 2

_shared: Pool | None = None
_shared_lock = threading.Lock()

# set_reconnect(): the reconnect of run_forever calls that pass none (0: never).
_default_reconnect: float | ReconnectPolicy | None = 0


def shared_pool() -> Pool:
    """The pool apps run on when they are not given one; created on first use.

    It is closed at interpreter exit like every pool (closing handshakes first).  If it
    was closed earlier, the next call creates a new one.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared.closing:
            _shared = Pool(workers=SHARED_POOL_WORKERS, name="wspool-app")
        return _shared


def set_reconnect(reconnectInterval: float | ReconnectPolicy | None) -> None:
    """websocket-client's ``set_reconnect``: the ``reconnect`` used by every later
    :meth:`WebSocketApp.run_forever` call that passes none (``0``: no reconnect, the
    initial value).  The parameter keeps websocket-client's name.

    Raises :class:`WebSocketConfigurationException` for a value ``run_forever`` would
    refuse (checked here, so the mistake shows where it is made).
    """
    global _default_reconnect
    _reconnect_policy(reconnectInterval)
    _default_reconnect = reconnectInterval


#: websocket-client's older name of :func:`set_reconnect`.
setReconnect = set_reconnect


Callback = Callable[..., object]


class AppSocket:
    """What ``app.sock`` gives while the app runs: websocket-client's ``WebSocket``
    methods that make sense on a pool connection.

    ``connection`` is the underlying :class:`~wspool.Connection`.  Not available:
    the raw socket (``sock.sock``, ``fileno``: the dispatcher owns it), ``recv*``
    (messages go to the callbacks), ``pong`` and ``settimeout``.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def connected(self) -> bool:
        return self.connection.state is ConnectionState.OPEN

    @property
    def subprotocol(self) -> str | None:
        return self.connection.subprotocol

    def getsubprotocol(self) -> str | None:
        return self.connection.subprotocol

    @property
    def headers(self) -> dict[str, str]:
        return self.connection.headers

    def getheaders(self) -> dict[str, str]:
        return self.connection.headers

    def send(self, data: str | bytes | bytearray | memoryview, opcode: int = Opcode.TEXT) -> int:
        """Send a message, as text unless ``opcode`` says otherwise (websocket-client's
        default); returns the frame's size."""
        return self.connection.send(data, opcode)

    def send_text(self, text: str) -> int:
        return self.connection.send(text, Opcode.TEXT)

    def send_binary(self, data: bytes | bytearray | memoryview) -> int:
        return self.connection.send(data, Opcode.BINARY)

    send_bytes = send_binary

    def ping(self, payload: str | bytes = "") -> int:
        return self.connection.ping(payload)

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close with a closing handshake; the app ends (no reconnect follows)."""
        self.connection.close(status, reason)

    def shutdown(self) -> None:
        """Drop the connection at once, without a closing handshake (websocket-client's
        ``WebSocket.shutdown``); the app ends, no reconnect follows, ``on_close`` gets
        ``(None, None)``."""
        self.connection.abort()

    def __repr__(self) -> str:
        return f"<wspool.AppSocket {self.connection!r}>"


class _Run:
    """One ``run_forever`` call: the pool connection's callbacks, adapted to the app.

    The pool runs these on a worker, one at a time per connection, so the flags below
    need no lock.  A run's callbacks are ignored once the run is over, so a late event
    of a dropped connection cannot reach a later run of the same app.
    """

    def __init__(self, app: WebSocketApp) -> None:
        self.app = app
        self.connection: Connection | None = None
        self.socket: AppSocket | None = None
        self.finished = False
        #: With a dispatcher: how its loop learns that the run is over.
        self.dispatched: _Dispatched | None = None
        #: What close() asked for before the connection existed.
        self.close_request: tuple[int, str] = (CloseCode.NORMAL_CLOSURE, "")
        # (code, reason) for the final on_close: from the last loss the pool reported.
        self.close_args: tuple[int | None, str | None] = (None, None)
        # An error ended (or will end) the current session: its close is not the
        # server's close frame, and websocket-client then reports (None, None).
        self.loss_error = False
        # on_reconnect ran for this open, so on_open must not.
        self.open_handled = False
        # time.time() when the current connection opened: keepalive pings sent before
        # belong to an earlier one (see WebSocketApp.last_ping_tm).
        self.opened_at = 0.0

    def bind(self, connection: Connection) -> None:
        # Callbacks may run before pool.connect() returns in run_forever: whichever
        # comes first records the connection.
        if self.connection is None:
            self.connection = connection
            self.socket = AppSocket(connection)

    def callbacks(self) -> dict[str, Callback]:
        return {
            "on_open": self.on_open,
            "on_reconnect": self.on_reconnect,
            "on_message": self.on_message,
            "on_data": self.on_data,
            "on_error": self.on_error,
            "on_close": self.on_close,
            "on_ping": self.on_ping,
            "on_pong": self.on_pong,
        }

    def _call(self, callback: Callback | None, *args: Any) -> None:
        # Exceptions propagate to the pool, which reports them to on_error below as a
        # CallbackError naming the callback and the event.
        if callback is not None and not self.finished:
            with self.app._callback_lock:
                callback(self.app, *args)

    def _opened(self, connection: Connection) -> None:
        self.bind(connection)
        self.loss_error = False
        if not self.finished:  # websocket-client restarts its ping clock per connection
            self.opened_at = time.time()
            self.app.last_pong_tm = 0.0

    def on_reconnect(self, connection: Connection) -> None:
        self._opened(connection)
        callback = self.app.on_reconnect
        self.open_handled = callback is not None
        self._call(callback)

    def on_open(self, connection: Connection) -> None:
        if self.open_handled:  # websocket-client: on_reconnect instead of on_open
            self.open_handled = False
            return
        self._opened(connection)
        self._call(self.app.on_open)

    def on_message(self, connection: Connection, message: Any) -> None:
        self._call(self.app.on_message, message)

    def on_data(self, connection: Connection, data: Any, opcode: int, fin: bool) -> None:
        self._call(self.app.on_data, data, opcode, fin)

    def on_ping(self, connection: Connection, data: bytes) -> None:
        self._call(self.app.on_ping, data)

    def on_pong(self, connection: Connection, data: bytes) -> None:
        if not self.finished:
            self.app.last_pong_tm = time.time()
        self._call(self.app.on_pong, data)

    def on_error(self, connection: Connection, error: BaseException) -> None:
        self.bind(connection)
        if self.finished:
            return
        if isinstance(error, CallbackError):
            self.app._report_callback_error(error)
            return
        self.loss_error = True
        self.app.has_errored = True
        self.app._report(error)

    def on_close(self, connection: Connection, code: int, reason: str) -> None:
        # Not forwarded: the app's on_close runs once, after the last of these.
        if self.loss_error or code in _NO_STATUS:
            self.close_args = (None, None)
        else:
            self.close_args = (code, reason)
        self.loss_error = False


@dataclass(slots=True)
class _Lease:
    dispatcher: object
    runs: int
    handle: object  # what dispatcher.signal() returned
    installed: object  # the SIGINT handler right after registering


class _SignalLeases:
    """One ``dispatcher.signal(2, dispatcher.abort)`` per user dispatcher, held while
    any app runs on it, so that Ctrl-C ends the dispatcher's loop.

    websocket-client registers it for every app and never takes it back, so a
    dispatcher such as rel loops until Ctrl-C even after its apps are over.  Here the
    last run to end takes it back (``handle.delete()``, rel's way, which restores the
    previous handler) while the SIGINT handler is still the one it installed: the loop
    then ends with its last app.  If the user registered a handler since (the README's
    ``rel.signal(2, rel.abort)`` after ``run_forever``), that one is kept, and the loop
    runs until Ctrl-C, as with websocket-client.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, _Lease] = {}  # by id(dispatcher); the lease holds it

    def acquire(self, dispatcher: object, url: str) -> None:
        with self._lock:
            lease = self._leases.get(id(dispatcher))
            if lease is not None:
                lease.runs += 1
                return
            register = getattr(dispatcher, "signal", None)
            abort = getattr(dispatcher, "abort", None)
            handle = installed = None
            if callable(register) and callable(abort):  # else: no Ctrl-C hook, no error
                try:
                    handle = register(_SIGINT, abort)
                except ValueError as exc:  # signal.signal outside the main thread
                    raise WebSocketConfigurationException(
                        f"run_forever(dispatcher=...) registers Ctrl-C with "
                        f"dispatcher.signal(2, dispatcher.abort), which failed ({exc}): "
                        "call run_forever from the main thread",
                        url=url,
                    ) from exc
                installed = signal.getsignal(signal.SIGINT)
            self._leases[id(dispatcher)] = _Lease(dispatcher, 1, handle, installed)

    def release(self, dispatcher: object) -> None:
        with self._lock:
            lease = self._leases.get(id(dispatcher))
            if lease is None or lease.dispatcher is not dispatcher:
                return
            lease.runs -= 1
            if lease.runs:
                return
            del self._leases[id(dispatcher)]
            delete = getattr(lease.handle, "delete", None)
            if not callable(delete):
                return
            if threading.current_thread() is not threading.main_thread():
                # Only the main thread may change signal handlers (the run ended on a
                # worker: the dispatcher had dropped it).
                logger.debug("leaving the SIGINT registration of %r in place", dispatcher)
                return
            if signal.getsignal(signal.SIGINT) != lease.installed:
                return  # the user registered a handler since: theirs stays
            try:
                delete()
            except Exception:
                logger.debug("taking back SIGINT from %r failed", dispatcher, exc_info=True)


_leases = _SignalLeases()


class _Dispatched:
    """One ``run_forever(dispatcher=...)`` run as the user's dispatcher sees it.

    ``dispatcher.read(reader, self.ready)`` registers one end of a socket pair: the
    registration keeps the dispatcher's loop alive (rel's loop ends when nothing is
    registered), and the other end gets a byte when the app's connection is over for
    good (:meth:`Connection.add_done_callback`, on the thread that ended it).
    :meth:`ready` then runs on the dispatcher's thread: the final ``on_close``, the
    end of the run, the socket pair closed, and ``False`` so the dispatcher drops the
    registration.  If the dispatcher dropped the registration without calling it
    (``rel.abort()``: its handle's ``pending()`` is false), nobody would call
    :meth:`ready`, so the end runs on a pool worker instead.

    ``_lock`` orders the end (:meth:`ended`) against :meth:`cancel`, and makes
    :meth:`finish` run once.
    """

    def __init__(self, run: _Run, dispatcher: Any, pool: Pool) -> None:
        self.run = run
        self.dispatcher = dispatcher
        self.pool = pool
        self.reader, self.writer = socket.socketpair()
        self.handle: object = None
        self._lock = threading.Lock()
        self._signalled = False
        self._cancelled = False
        self._done = False

    def register(self, connection: Connection) -> None:
        """Register with the user's dispatcher (run_forever's thread)."""
        self.handle = self.dispatcher.read(self.reader, self.ready)
        connection.add_done_callback(self.ended)

    def ended(self, _connection: Connection) -> None:
        """The connection is over for good (the thread that ended it; must not block)."""
        with self._lock:
            if self._cancelled or self._signalled:
                return
            self._signalled = True
            with contextlib.suppress(OSError):
                self.writer.send(b"\0")
            self.writer.close()
        if self._dropped():
            try:
                self.pool.executor.submit(self.finish)
            except RuntimeError:  # the executor was shut down: no callback can run
                self.finish(call_on_close=False)

    def _dropped(self) -> bool:
        pending = getattr(self.handle, "pending", None)
        if not callable(pending):
            return False
        try:
            return not pending()
        except Exception:
            return False

    def ready(self, *args: object) -> bool:
        """The dispatcher's read callback: end the run (its thread); False drops it."""
        if not self._signalled:
            return True  # not over: keep the registration
        self.finish()
        return False

    def finish(self, *, call_on_close: bool = True) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self.run.app._finish_dispatched(self.run, call_on_close=call_on_close)
        except Exception:  # never into the user's loop: rel would stop on it
            logger.exception("ending %s failed", self.run.app.url)
        finally:
            self.reader.close()
            _leases.release(self.dispatcher)

    def cancel(self) -> None:
        """run_forever failed after this was made: undo it (run_forever's thread)."""
        with self._lock:
            self._cancelled = self._done = True
            self.writer.close()
        self.reader.close()
        connection = self.run.connection
        if connection is not None:
            connection.abort()


def _reconnect_policy(reconnect: object) -> ReconnectPolicy | None:
    """websocket-client's ``reconnect`` (a delay in seconds, 0 or None for none) as a
    pool policy.  Like websocket-client, a close frame from the server ends the app
    instead of reconnecting, at least for 1000/1001."""
    if reconnect is None:
        return None
    if isinstance(reconnect, ReconnectPolicy):
        return reconnect
    if not isinstance(reconnect, int | float) or reconnect < 0:
        raise WebSocketConfigurationException(
            f"reconnect must be a delay in seconds >= 0 (0: no reconnect) or a "
            f"ReconnectPolicy; got {reconnect!r}"
        )
    if reconnect == 0:
        return None
    delay = float(reconnect)  # True counts as 1 s, as it does in websocket-client
    return ReconnectPolicy(initial_delay=delay, max_delay=max(30.0, delay), on_normal_close=False)


def _known_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the names no front end knows, each of which gets an
    :class:`~wspool.UnknownOptionWarning` pointing at run_forever's caller:
    websocket-client's run_forever takes no other options, and scripts pass some."""
    # Imported here: wspool.options imports wspool.pool, whose package imports
    # wspool.options back; imported first from this module, the cycle breaks.
    from wspool.options import OPTIONS, pool_options

    unknown = {name: value for name, value in options.items() if name not in OPTIONS}
    if not unknown:
        return options
    # Checking just these only warns; the rest is checked by Pool.connect.
    pool_options(url, unknown, unknown="warn", stacklevel=4)
    return {name: value for name, value in options.items() if name in OPTIONS}


def _unsupported(name: str, why: str) -> WebSocketConfigurationException:
    return WebSocketConfigurationException(f"WebSocketApp({name}=...) is not supported: {why}")


class WebSocketApp:
    """websocket-client's ``WebSocketApp`` on a wspool :class:`~wspool.Pool`.

    Callbacks (attributes, so they may also be set after construction) take the app
    first: ``on_open(ws)``, ``on_reconnect(ws)``, ``on_message(ws, message)`` (``str``
    for text, ``bytes`` for binary), ``on_data(ws, data, opcode, fin)`` (before
    ``on_message``, ``fin`` always True), ``on_ping(ws, data)``, ``on_pong(ws, data)``,
    ``on_error(ws, exc)``, ``on_close(ws, close_status_code, close_msg)``.

    ``get_mask_key`` (a callable taking a length and returning that many bytes) makes
    the masking keys instead of :func:`os.urandom`.  ``socket`` is a connected stream
    socket to speak WebSocket over instead of dialling the URL's host: it is used once,
    so it cannot go with ``reconnect``.  Not supported (a
    :class:`WebSocketConfigurationException` says so when given): ``on_cont_message``
    (messages arrive whole).  The ``keep_running`` argument is ignored, as in
    websocket-client; the attribute is True while the app runs, and setting it to
    False stops the app like :meth:`close`.

    ``pool`` (wspool only): the pool to run on instead of :func:`shared_pool`.
    """

    def __init__(
        self,
        url: str,
        header: Any = None,
        on_open: Callback | None = None,
        on_reconnect: Callback | None = None,
        on_message: Callback | None = None,
        on_error: Callback | None = None,
        on_close: Callback | None = None,
        on_ping: Callback | None = None,
        on_pong: Callback | None = None,
        on_cont_message: Callback | None = None,
        keep_running: bool = True,
        get_mask_key: Callable[[int], bytes] | None = None,
        cookie: str | None = None,
        subprotocols: list[str] | None = None,
        on_data: Callback | None = None,
        socket: socket.socket | None = None,
        *,
        pool: Pool | None = None,
    ) -> None:
        self.url = url
        self.header = header
        self.cookie = cookie
        self.subprotocols = subprotocols
        self.on_open = on_open
        self.on_reconnect = on_reconnect
        self.on_message = on_message
        self.on_data = on_data
        self.on_error = on_error
        self.on_close = on_close
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.on_cont_message = on_cont_message
        self.get_mask_key = get_mask_key
        #: The ``socket`` argument (websocket-client's attribute name).
        self.prepared_socket = socket
        self._check_callbacks()
        self._keep_running = False
        #: Whether the last run_forever saw a connection error (its return value).
        self.has_errored = False
        self.ping_interval: float = 0
        self.ping_timeout: float | None = None
        self.ping_payload: str | bytes = ""
        #: time.time() of the last pong (0.0 before the first, and again after a
        #: reconnect and at the end); last_ping_tm is the same for keepalive pings.
        self.last_pong_tm = 0.0
        self._pool = pool
        self._lock = threading.Lock()  # guards _run, _keep_running and close requests
        self._run: _Run | None = None
        # Held around every user callback: a connection's callbacks already run one at
        # a time on the pool, the lock also orders the ones run_forever calls itself.
        self._callback_lock = threading.RLock()

    def _check_callbacks(self) -> None:
        if self.on_cont_message is not None:
            raise _unsupported(
                "on_cont_message",
                "wspool delivers whole messages (fragments are reassembled); "
                "use on_message or on_data",
            )

    # ------------------------------------------------------------------ reading

    @property
    def pool(self) -> Pool:
        """The pool this app runs on: ``pool=`` if given, else the shared pool."""
        return self._pool if self._pool is not None else shared_pool()

    @property
    def sock(self) -> AppSocket | None:
        """The running connection as an :class:`AppSocket`, or ``None`` when the app is
        not running (before ``run_forever``, after it returned)."""
        run = self._run
        if run is None or run.finished:
            return None
        return run.socket

    @property
    def keep_running(self) -> bool:
        """True while the app runs and nothing asked it to stop.

        Setting it to False stops the app as :meth:`close` does (closing handshake,
        ``on_close``, ``run_forever`` returns), from any thread or callback, also
        before the connection exists.  Setting it to True changes nothing: only
        ``run_forever`` starts an app.
        """
        return self._keep_running

    @keep_running.setter
    def keep_running(self, value: bool) -> None:
        if not value:
            self.close()

    @property
    def last_ping_tm(self) -> float:
        """``time.time()`` of the last keepalive ping sent on the current connection
        (0.0 before the first, after a reconnect and when the app is not running)."""
        run = self._run
        connection = None if run is None or run.finished else run.connection
        sent = None if connection is None else connection.stats.last_ping_at
        return sent if sent is not None and run is not None and sent >= run.opened_at else 0.0

    def ready(self) -> bool:
        """True while the connection is open (websocket-client's ``ready()``)."""
        sock = self.sock
        return sock is not None and sock.connected

    def __repr__(self) -> str:
        state = "running" if self._run is not None else "idle"
        return f"<wspool.WebSocketApp {without_userinfo(self.url)} {state}>"

    # ------------------------------------------------------------------ sending

    def _connection(self) -> Connection:
        run = self._run
        connection = None if run is None or run.finished else run.connection
        if connection is None:
            raise WebSocketConnectionClosedException(url=without_userinfo(self.url))
        return connection

    def send(self, data: str | bytes | bytearray | memoryview, opcode: int = Opcode.TEXT) -> None:
        """Send a message as **text** unless ``opcode`` says otherwise (websocket-client's
        default: bytes go as a text frame and must be UTF-8).  ``Opcode.PING`` sends a
        ping.  Thread-safe, never blocks on the network.

        Raises :class:`WebSocketConnectionClosedException` when not connected.
        """
        self._connection().send(data, opcode)

    def send_text(self, text_data: str) -> None:
        self._connection().send(text_data, Opcode.TEXT)

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._connection().send(data, Opcode.BINARY)

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection (closing handshake) and make ``run_forever`` return;
        no reconnect follows.  Callable from any thread, callbacks included; returns at
        once.  Does nothing when the app is not running."""
        encode_close_payload(status, reason)  # invalid arguments raise here, in the caller
        with self._lock:
            self._keep_running = False
            run = self._run
            if run is None:
                return
            # run_forever closes with these if the connection does not exist yet.
            run.close_request = (status, reason)
            connection = run.connection
        if connection is not None:
            connection.close(status, reason)

    # ------------------------------------------------------------------ running

    def run_forever(
        self,
        sockopt: Any = None,
        sslopt: dict[str, Any] | None = None,
        ping_interval: float = 0,
        ping_timeout: float | None = None,
        ping_payload: str | bytes = "",
        http_proxy_host: str | None = None,
        http_proxy_port: int | str | None = None,
        http_no_proxy: list[str] | None = None,
        http_proxy_auth: tuple[str, str] | None = None,
        http_proxy_timeout: float | None = None,
        skip_utf8_validation: bool = False,
        host: str | None = None,
        origin: str | None = None,
        dispatcher: Any = None,
        suppress_origin: bool = False,
        proxy_type: str | None = None,
        reconnect: float | ReconnectPolicy | None = None,
        **options: Any,
    ) -> bool:
        """Connect, run the callbacks, and block until the connection is over for good.

        Returns ``False`` after a clean close (by :meth:`close`, or by the server's
        close frame), ``True`` when a connection error ended it or an error led to a
        reconnect, and ``True`` on Ctrl-C (``KeyboardInterrupt`` goes to ``on_error``,
        the connection is closed, ``on_close`` runs), as websocket-client 1.8 does.

        ``ping_interval`` (0: none) and ``ping_timeout`` keep the connection alive and
        detect a dead peer.  ``reconnect`` is a delay in seconds (0: never; None: the
        value of :func:`set_reconnect`, 0 unless set): a connection lost to an error is
        opened again after at most that long, then with exponential backoff (jitter,
        at most 30 s); a :class:`~wspool.ReconnectPolicy` is also accepted.  Further
        keyword ``options`` go to :meth:`Pool.connect` (``compression``, ``max_size``,
        ``open_timeout``...); a name no front end knows is ignored with an
        :class:`~wspool.UnknownOptionWarning` that names the closest known option.

        ``dispatcher`` (an event loop shaped like rel: ``read(sock, callback)``, and
        optionally ``signal(sig, callback)`` and ``abort()``): start the app and return
        ``False`` at once.  The pool does the I/O and runs the callbacks on its
        workers; the dispatcher's loop keeps running while the app runs, Ctrl-C
        (``dispatcher.signal(2, dispatcher.abort)``) ends it, and the final
        ``on_close`` runs on its thread.

        Raises :class:`WebSocketConfigurationException` for an invalid or unsupported
        option, and :class:`WebSocketException` if this app is already running.
        """
        self._check_callbacks()
        if reconnect is None:
            reconnect = _default_reconnect
        policy = _reconnect_policy(reconnect)
        if self.prepared_socket is not None and policy is not None:
            raise WebSocketConfigurationException(
                f"WebSocketApp(socket=...) cannot reconnect (reconnect={reconnect!r}): the "
                "socket is used once, for the first connection; pass reconnect=0, or drop "
                "socket= so that the pool dials the URL each time",
                url=without_userinfo(self.url),
            )
        if dispatcher is not None and not callable(getattr(dispatcher, "read", None)):
            raise WebSocketConfigurationException(
                f"run_forever(dispatcher={dispatcher!r}) needs an event loop with a "
                "read(sock, callback) method, such as rel (import rel; dispatcher=rel); "
                "leave dispatcher out to have run_forever block instead",
                url=without_userinfo(self.url),
            )
        connect_options: dict[str, Any] = {
            "sockopt": sockopt or (),
            "sslopt": sslopt or None,
            # websocket-client uses ping_timeout without ping_interval only as its
            # select() timeout: nothing to do here.
            "ping_interval": ping_interval or None,
            "ping_timeout": ping_timeout if ping_interval else None,
            "ping_payload": ping_payload,
            "http_proxy_host": http_proxy_host,
            "http_proxy_port": http_proxy_port,
            "http_no_proxy": http_no_proxy,
            "http_proxy_auth": http_proxy_auth,
            "http_proxy_timeout": http_proxy_timeout,
            "skip_utf8_validation": skip_utf8_validation,
            "host": host,
            "origin": origin,
            "suppress_origin": suppress_origin,
            "cookie": self.cookie,
            "subprotocols": self.subprotocols,
        }
        if self.get_mask_key is not None:
            connect_options["get_mask_key"] = self.get_mask_key
        if self.prepared_socket is not None:
            connect_options["socket"] = self.prepared_socket
        if proxy_type is not None:
            connect_options["proxy_type"] = proxy_type
        connect_options.update(_known_options(self.url, options))
        pool = self.pool
        with self._lock:
            if self._run is not None:
                raise WebSocketException(
                    "run_forever is already running for this WebSocketApp: create one app "
                    "per connection",
                    url=without_userinfo(self.url),
                )
            run = self._run = _Run(self)
            self._keep_running = True
        self.has_errored = False
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ping_payload = ping_payload
        self.last_pong_tm = 0.0
        connect_options["reconnect"] = policy
        if dispatcher is None:
            try:
                connection = self._start(run, pool, connect_options)
                return self._wait(run, connection)
            finally:
                self._end_run(run)
        return self._start_dispatched(run, pool, dispatcher, connect_options)

    def _start(self, run: _Run, pool: Pool, connect_options: dict[str, Any]) -> Connection:
        connect_options["header"] = self.header() if callable(self.header) else self.header
        connect_options.update(run.callbacks())
        connection = pool.connect(self.url, **connect_options)
        with self._lock:
            run.bind(connection)
            stop = not self._keep_running  # close() came before the connection existed
        if stop:
            connection.close(*run.close_request)
        return connection

    def _start_dispatched(
        self, run: _Run, pool: Pool, dispatcher: Any, connect_options: dict[str, Any]
    ) -> bool:
        leased = False
        try:
            _leases.acquire(dispatcher, without_userinfo(self.url))
            leased = True
            run.dispatched = _Dispatched(run, dispatcher, pool)
            connection = self._start(run, pool, connect_options)
            run.dispatched.register(connection)
        except BaseException:
            run.finished = True
            if run.dispatched is not None:
                run.dispatched.cancel()
            if leased:
                _leases.release(dispatcher)
            self._end_run(run)
            raise
        return False  # websocket-client's value: nothing has gone wrong yet

    def _wait(self, run: _Run, connection: Connection) -> bool:
        try:
            # Short waits keep Ctrl-C responsive on every platform.
            while not connection.wait_closed(0.5):
                pass
        except KeyboardInterrupt as interrupt:
            self.has_errored = True
            self._keep_running = False
            self._invoke("on_error", interrupt)
            connection.close()
            if not connection.wait_closed(_INTERRUPT_CLOSE_WAIT):
                connection.abort()
                connection.wait_closed(1.0)
        # Every pool callback of this connection has run: on_close comes last.
        run.finished = True
        self._invoke("on_close", *run.close_args)
        return self.has_errored

    def _finish_dispatched(self, run: _Run, *, call_on_close: bool) -> None:
        """The end of a dispatcher run: on the dispatcher's thread (or a pool worker
        when the dispatcher let go of the run)."""
        try:
            connection = run.connection
            if connection is not None:
                # Over for good already; this waits for its last callbacks to finish.
                connection.wait_closed(_CALLBACK_LOCK_WAIT)
            run.finished = True
            if call_on_close:
                self._invoke("on_close", *run.close_args)
        finally:
            self._end_run(run)

    def _end_run(self, run: _Run) -> None:
        run.finished = True
        with self._lock:
            if self._run is run:
                self._run = None
                self._keep_running = False
                self.last_pong_tm = 0.0

    # ------------------------------------------------------------------- errors

    def _invoke(self, name: str, *args: Any) -> None:
        """Run a callback on this thread, like websocket-client's ``_callback``."""
        callback = getattr(self, name)
        if callback is None:
            return
        locked = self._callback_lock.acquire(timeout=_CALLBACK_LOCK_WAIT)
        try:
            callback(self, *args)
        except Exception as exc:
            if name == "on_error":
                logger.exception(
                    "on_error raised while handling %r for %s", args[0], without_userinfo(self.url)
                )
            else:
                error = CallbackError(
                    url=without_userinfo(self.url),
                    label=None,
                    callback=name,
                    event=None,
                    original=exc,
                )
                self._report_callback_error(error)
        finally:
            if locked:
                self._callback_lock.release()

    def _report_callback_error(self, error: CallbackError) -> None:
        # websocket-client hands on_error the callback's own exception; its traceback
        # is intact in __traceback__.
        if self.on_error is None:
            logger.error("%s", error, exc_info=error.original)
            return
        self._report(error.original)

    def _report(self, error: BaseException) -> None:
        if self.on_error is None:
            logger.warning("%s", error)
            return
        self._invoke("on_error", error)
