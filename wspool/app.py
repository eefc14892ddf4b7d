"""``WebSocketApp``: websocket-client's callback API, running on a :class:`~wspool.Pool`.

A script written for ``websocket.WebSocketApp`` keeps working after
``import wspool as websocket``: the constructor, :meth:`WebSocketApp.run_forever`,
the ``send*``/``close`` methods and the callback signatures are websocket-client's,
with the app (not the pool's :class:`~wspool.Connection`) as first argument.

Underneath, every app is one pool connection.  Apps share one module-level pool
(:func:`shared_pool`, created on first use) unless given ``pool=``, so many apps
running in many threads cost one dispatcher thread plus the pool's workers, not a
thread per socket.  ``run_forever`` only waits: the pool does the I/O.

What the adaptation keeps from websocket-client (docs/migration.md, "WebSocketApp"):

* callbacks of one app run one at a time, in order;
* after a reconnect, ``on_reconnect`` runs *instead of* ``on_open`` (``on_open`` when
  there is no ``on_reconnect``);
* ``on_close`` runs once, when the connection is over for good, never between
  reconnects, on the thread that called ``run_forever``;
* ``on_error`` receives a failing callback's own exception;
* ``run_forever`` returns ``True`` when the connection ended because of an error (or
  Ctrl-C, which also goes to ``on_error``), ``False`` after a clean close.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from wspool.exceptions import (
    CallbackError,
    WebSocketConfigurationException,
    WebSocketConnectionClosedException,
    WebSocketException,
)
from wspool.pool.backoff import ReconnectPolicy
from wspool.pool.connection import Connection, ConnectionState
from wspool.pool.pool import Pool
from wspool.protocol.frames import CloseCode, Opcode

__all__ = ["SHARED_POOL_WORKERS", "AppSocket", "WebSocketApp", "shared_pool"]

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

_shared: Pool | None = None
_shared_lock = threading.Lock()


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
        self.connection.close(status, reason)

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
        # (code, reason) for the final on_close: from the last loss the pool reported.
        self.close_args: tuple[int | None, str | None] = (None, None)
        # An error ended (or will end) the current session: its close is not the
        # server's close frame, and websocket-client then reports (None, None).
        self.loss_error = False
        # on_reconnect ran for this open, so on_open must not.
        self.open_handled = False

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

    def on_reconnect(self, connection: Connection) -> None:
        self.bind(connection)
        self.loss_error = False
        callback = self.app.on_reconnect
        self.open_handled = callback is not None
        self._call(callback)

    def on_open(self, connection: Connection) -> None:
        self.bind(connection)
        self.loss_error = False
        if self.open_handled:  # websocket-client: on_reconnect instead of on_open
            self.open_handled = False
            return
        self._call(self.app.on_open)

    def on_message(self, connection: Connection, message: Any) -> None:
        self._call(self.app.on_message, message)

    def on_data(self, connection: Connection, data: Any, opcode: int, fin: bool) -> None:
        self._call(self.app.on_data, data, opcode, fin)

    def on_ping(self, connection: Connection, data: bytes) -> None:
        self._call(self.app.on_ping, data)

    def on_pong(self, connection: Connection, data: bytes) -> None:
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


def _unsupported(name: str, why: str) -> WebSocketConfigurationException:
    return WebSocketConfigurationException(f"WebSocketApp({name}=...) is not supported: {why}")


class WebSocketApp:
    """websocket-client's ``WebSocketApp`` on a wspool :class:`~wspool.Pool`.

    Callbacks (attributes, so they may also be set after construction) take the app
    first: ``on_open(ws)``, ``on_reconnect(ws)``, ``on_message(ws, message)`` (``str``
    for text, ``bytes`` for binary), ``on_data(ws, data, opcode, fin)`` (before
    ``on_message``, ``fin`` always True), ``on_ping(ws, data)``, ``on_pong(ws, data)``,
    ``on_error(ws, exc)``, ``on_close(ws, close_status_code, close_msg)``.

    Not supported (a :class:`WebSocketConfigurationException` says so when given):
    ``get_mask_key`` (masking keys always come from :func:`os.urandom`), ``socket``
    (the pool opens its own sockets), ``on_cont_message`` (messages arrive whole).
    ``keep_running`` is accepted and ignored, as in websocket-client.

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
        socket: object = None,
        *,
        pool: Pool | None = None,
    ) -> None:
        if get_mask_key is not None:
            raise _unsupported(
                "get_mask_key", "wspool always masks with os.urandom keys; drop the argument"
            )
        if socket is not None:
            raise _unsupported(
                "socket",
                "the pool opens and owns its sockets; pass the URL (and sockopt/proxy "
                "options to run_forever) instead",
            )
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
        self._check_callbacks()
        #: True while run_forever runs and close() was not called.
        self.keep_running = False
        #: Whether the last run_forever saw a connection error (its return value).
        self.has_errored = False
        self.ping_interval: float = 0
        self.ping_timeout: float | None = None
        self.ping_payload: str | bytes = ""
        self._pool = pool
        self._lock = threading.Lock()  # guards _run
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
        if self.get_mask_key is not None:
            raise _unsupported("get_mask_key", "wspool always masks with os.urandom keys")

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

    def __repr__(self) -> str:
        state = "running" if self._run is not None else "idle"
        return f"<wspool.WebSocketApp {self.url} {state}>"

    # ------------------------------------------------------------------ sending

    def _connection(self) -> Connection:
        run = self._run
        connection = None if run is None or run.finished else run.connection
        if connection is None:
            raise WebSocketConnectionClosedException(url=self.url)
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
        self.keep_running = False
        run = self._run
        connection = None if run is None else run.connection
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
        dispatcher: object = None,
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
        detect a dead peer.  ``reconnect`` is a delay in seconds (0/None: never): a
        connection lost to an error is opened again after at most that long, then with
        exponential backoff (jitter, at most 30 s); a :class:`~wspool.ReconnectPolicy`
        is also accepted.  Further keyword ``options`` go to :meth:`Pool.connect`
        (``compression``, ``max_size``, ``open_timeout``...).

        Raises :class:`WebSocketConfigurationException` for an invalid or unsupported
        option (``dispatcher``), and :class:`WebSocketException` if this app is already
        running.
        """
        if dispatcher is not None:
            raise WebSocketConfigurationException(
                "run_forever(dispatcher=...) is not supported: the wspool pool is the event "
                "loop; call run_forever in a thread of its own for each app instead"
            )
        self._check_callbacks()
        policy = _reconnect_policy(reconnect)
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
            **options,
        }
        if proxy_type is not None:
            connect_options["proxy_type"] = proxy_type
        with self._lock:
            if self._run is not None:
                raise WebSocketException(
                    "run_forever is already running for this WebSocketApp: create one app "
                    "per connection",
                    url=self.url,
                )
            run = self._run = _Run(self)
        self.has_errored = False
        self.keep_running = True
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ping_payload = ping_payload
        try:
            connect_options["header"] = self.header() if callable(self.header) else self.header
            connect_options["reconnect"] = policy
            connect_options.update(run.callbacks())
            connection = self.pool.connect(self.url, **connect_options)
            run.bind(connection)
            if not self.keep_running:  # close() came before the connection existed
                connection.close()
            return self._wait(run, connection)
        finally:
            run.finished = True
            self.keep_running = False
            with self._lock:
                self._run = None

    def _wait(self, run: _Run, connection: Connection) -> bool:
        try:
            # Short waits keep Ctrl-C responsive on every platform.
            while not connection.wait_closed(0.5):
                pass
        except KeyboardInterrupt as interrupt:
            self.has_errored = True
            self.keep_running = False
            self._invoke("on_error", interrupt)
            connection.close()
            if not connection.wait_closed(_INTERRUPT_CLOSE_WAIT):
                connection.abort()
                connection.wait_closed(1.0)
        # Every pool callback of this connection has run: on_close comes last.
        run.finished = True
        self._invoke("on_close", *run.close_args)
        return self.has_errored

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
                logger.exception("on_error raised while handling %r for %s", args[0], self.url)
            else:
                error = CallbackError(
                    url=self.url, label=None, callback=name, event=None, original=exc
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
