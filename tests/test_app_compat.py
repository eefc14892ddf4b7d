"""WebSocketApp as a drop-in for websocket-client 1.9's: ``keep_running``, dispatchers
(rel and a stand-in of its shape), ``ready()``, ``sock.shutdown()``, the keepalive
timestamps, ``set_reconnect``, ``get_mask_key=`` and ``socket=``, against the real test
server on 127.0.0.1."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
from helpers import WAIT, run_in_thread, run_python, wait_until
from test_app import Events, recording_app, run_forever_in_thread
from wsserver import ServerConnection, WSServer, echo_handler

import wspool
from wspool.app import WebSocketApp, set_reconnect, setReconnect
from wspool.pool import Pool

WSServerFactory = Callable[..., WSServer]


@pytest.fixture
def pool() -> Iterator[Pool]:
    """A pool whose dispatcher already runs, so that its own descriptors (selector,
    wake-up pair) exist before a test's fd check takes its snapshot."""
    with Pool(workers=3) as p:
        p.dispatcher.start()
        yield p


# ------------------------------------------------------------------ keep_running


@pytest.mark.parametrize("where", ["on_open", "on_message", "another thread"])
def test_keep_running_false_closes_and_run_forever_returns(
    pool: Pool, ws_server: WSServerFactory, where: str
) -> None:
    """websocket-client's loop stops when keep_running turns False: here it is a
    property whose setter closes the connection (RFC 6455 §7.1.2 closing handshake),
    on_close runs and run_forever returns False."""
    server = ws_server()
    events = Events()

    def on_open(ws: WebSocketApp) -> None:
        events.add("open", ws.keep_running)
        if where == "on_open":
            ws.keep_running = False
        else:
            ws.send("ping me")

    def on_message(ws: WebSocketApp, message: Any) -> None:
        events.add("message", message)
        if where == "on_message":
            ws.keep_running = False

    app = recording_app(server.url, events, pool=pool, on_open=on_open, on_message=on_message)
    runner = run_forever_in_thread(app)
    if where == "another thread":
        events.wait(lambda calls: any(c[0] == "message" for c in calls))
        app.keep_running = False
    assert runner.result() is False
    assert events.of("open") == [(True,)]
    assert events.names()[-1] == "close" and events.of("close") == [(1000, "")]
    assert server.connections[0].close_received == (1000, b"")
    assert app.keep_running is False and app.sock is None


def test_keep_running_false_before_the_connection_exists_ends_the_run(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """Set while run_forever prepares the connection (the header callable runs just
    before it), keep_running=False still ends the run: no connection is opened."""
    server = ws_server()
    events = Events()
    app: WebSocketApp

    def header() -> list[str]:
        assert app.keep_running is True
        app.keep_running = False
        return ["X-Test: 1"]

    app = recording_app(server.url, events, pool=pool, header=header)
    assert run_forever_in_thread(app).result() is False
    assert events.names() == ["close"]
    assert server.accepted == 0
    assert app.keep_running is False
    app.keep_running = True  # not running: nothing to start, nothing changes
    assert app.keep_running is False and app.sock is None


# ------------------------------------------------------------------ ready, shutdown


def test_ready_and_sock_shutdown_drop_the_connection_at_once(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """ws.sock.shutdown() drops the TCP connection without a closing handshake, like
    websocket-client's WebSocket.shutdown(); the app ends, on_close gets (None, None)."""
    server = ws_server()
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    assert app.ready() is False
    runner = run_forever_in_thread(app, reconnect=0.01)
    events.wait(lambda calls: ("open",) in calls)
    assert app.ready() is True
    sock = app.sock
    assert sock is not None and not hasattr(sock, "sock")  # the raw socket stays hidden
    sock.shutdown()
    runner.result()
    assert app.ready() is False
    assert events.of("close") == [(None, None)]
    conn = server.connections[0]
    assert wait_until(lambda: conn.peer_closed)
    assert conn.close_received is None  # no close frame came
    assert server.accepted == 1  # no reconnect after shutdown()


# ------------------------------------------------------------ keepalive timestamps


def test_last_ping_and_pong_times_follow_the_keepalive(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    server = ws_server()
    events = Events()
    started = time.time()

    def on_open(ws: WebSocketApp) -> None:
        events.add("open", ws.last_ping_tm, ws.last_pong_tm)

    def on_pong(ws: WebSocketApp, data: bytes) -> None:
        events.add("pong", ws.last_ping_tm, ws.last_pong_tm, time.time())
        if len(events.of("pong")) == 2:
            ws.close()

    app = recording_app(server.url, events, pool=pool, on_open=on_open, on_pong=on_pong)
    assert app.run_forever(ping_interval=0.05, ping_timeout=0.04) is False
    assert events.of("open") == [(0.0, 0.0)]
    (ping1, pong1, now1), (ping2, pong2, now2) = events.of("pong")
    assert started <= ping1 <= pong1 <= now1 <= ping2 <= pong2 <= now2
    assert ping2 - ping1 >= 0.04  # one keepalive interval apart (less the rtt jitter)
    assert app.last_ping_tm == 0.0 and app.last_pong_tm == 0.0  # reset at the end


# ------------------------------------------------------------------ set_reconnect


def _drop_the_first(
    server_box: list[WSServer], count: int = 1
) -> Callable[[ServerConnection], None]:
    """A handler that says hello, then drops the first ``count`` connections."""

    def handler(conn: ServerConnection) -> None:
        conn.send_message("hello")
        if server_box[0].connections.index(conn) < count:
            conn.abort()  # TCP reset: a lost connection, not a close
            return
        echo_handler(conn)

    return handler


def test_set_reconnect_is_the_default_of_run_forever(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    box: list[WSServer] = []
    server = ws_server(_drop_the_first(box))
    box.append(server)
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    assert setReconnect is set_reconnect
    with pytest.raises(wspool.WebSocketConfigurationException, match="reconnect must be"):
        set_reconnect(-1)
    set_reconnect(0.02)
    try:
        runner = run_forever_in_thread(app)
        events.wait(lambda calls: calls.count(("message", "hello")) == 2)
    finally:
        set_reconnect(0)
    app.close()
    assert runner.result() is True  # an error led to the reconnect
    assert server.accepted == 2
    # Back to 0: the same loss now ends the app.
    second = ws_server(lambda conn: (conn.send_message("hello"), conn.abort()))
    app.url = second.url
    assert app.run_forever() is True
    assert second.accepted == 1


# ----------------------------------------------------------- get_mask_key, socket


def test_get_mask_key_makes_the_masking_keys(pool: Pool, ws_server: WSServerFactory) -> None:
    """RFC 6455 §5.3: each client frame carries a masking key; get_mask_key (as in
    websocket-client) supplies it."""
    keys: list[bytes] = []

    def record_keys(conn: ServerConnection) -> None:
        frame = conn.recv_frame()
        keys.append(frame.mask_key)
        conn.send_message(frame.payload.decode())
        echo_handler(conn)

    server = ws_server(record_keys)
    asked: list[int] = []

    def get_mask_key(length: int) -> bytes:
        asked.append(length)
        return b"\x01\x02\x03\x04"[:length]

    events = Events()

    def on_message(ws: WebSocketApp, message: Any) -> None:
        events.add("message", message)
        ws.close()

    app = recording_app(
        server.url,
        events,
        pool=pool,
        get_mask_key=get_mask_key,
        on_open=lambda ws: ws.send("masked"),
        on_message=on_message,
    )
    assert app.run_forever(compression=None) is False
    assert events.of("message") == [("masked",)]
    assert keys == [b"\x01\x02\x03\x04"] and asked and set(asked) == {4}


def test_socket_is_used_instead_of_dialling(pool: Pool, ws_server: WSServerFactory) -> None:
    server = ws_server()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    unused_port = listener.getsockname()[1]
    listener.close()  # dialling the URL's port would be refused
    sock = socket.create_connection(("127.0.0.1", server.port))
    local_port = sock.getsockname()[1]
    events = Events()

    def on_message(ws: WebSocketApp, message: Any) -> None:
        events.add("message", message)
        ws.close()

    app = recording_app(
        f"ws://127.0.0.1:{unused_port}/",
        events,
        pool=pool,
        socket=sock,
        on_open=lambda ws: ws.send("over my socket"),
        on_message=on_message,
    )
    try:
        with pytest.raises(
            wspool.WebSocketConfigurationException, match=r"socket=.*cannot reconnect"
        ):
            app.run_forever(reconnect=1)
        assert app.run_forever() is False
        assert events.names() == ["message", "close"]
        assert server.requests[0].client_address[1] == local_port
        assert sock.fileno() == -1  # the connection owned it: closed at its end
        set_reconnect(1)
        try:  # the default from set_reconnect counts too
            with pytest.raises(wspool.WebSocketConfigurationException, match="used once"):
                app.run_forever()
        finally:
            set_reconnect(0)
    finally:
        sock.close()


def test_on_cont_message_is_still_refused() -> None:
    with pytest.raises(wspool.WebSocketConfigurationException, match="whole messages"):
        WebSocketApp("ws://127.0.0.1:9/", on_cont_message=lambda ws, data, fin: None)


# ------------------------------------------------------------------ dispatchers


class _Read:
    """One read registration of :class:`MiniLoop` (rel's SocketIO: pending/delete)."""

    def __init__(self, loop: MiniLoop, fd: int, cb: Callable[..., Any], args: tuple[Any, ...]):
        self.loop, self.fd, self.cb, self.args = loop, fd, cb, args
        self.active = True

    def pending(self) -> bool:
        return self.active

    def delete(self) -> None:
        if self.active:
            self.active = False
            self.loop.selector.unregister(self.fd)


class _Signal:
    """One signal registration of :class:`MiniLoop` (rel's Signal: installed with
    signal.signal, delete() puts the previous handler back)."""

    def __init__(self, loop: MiniLoop, sig: int, cb: Callable[..., Any], args: tuple[Any, ...]):
        self.loop, self.sig, self.cb, self.args = loop, sig, cb, args
        self.previous = signal.signal(sig, self.handle)
        loop.signals[sig] = self

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.cb(*self.args)

    def delete(self) -> None:
        signal.signal(self.sig, self.previous)
        if self.loop.signals.get(self.sig) is self:
            del self.loop.signals[self.sig]


class MiniLoop:
    """A stand-in for rel with its shape: ``read(sock, cb, *args)``, ``signal(sig, cb,
    *args)``, ``abort()``, ``dispatch()``.  Like rel, a read callback returning a falsy
    value is dropped, ``dispatch()`` returns once no read and no signal is registered,
    and ``abort()`` drops every read without calling it."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.signals: dict[int, _Signal] = {}
        self._running = False
        self._aborted = False

    def read(self, sock: socket.socket, cb: Callable[..., Any], *args: Any) -> _Read:
        registration = _Read(self, sock.fileno(), cb, args)
        self.selector.register(registration.fd, selectors.EVENT_READ, registration)
        return registration

    def signal(self, sig: int, cb: Callable[..., Any], *args: Any) -> _Signal:
        return _Signal(self, sig, cb, args)

    def abort(self) -> None:
        self._aborted = True  # any thread, or a signal handler: the loop acts on it

    def is_running(self) -> bool:
        return self._running

    def dispatch(self) -> None:
        self._running = True
        try:
            while not self._aborted and (self.selector.get_map() or self.signals):
                for key, _ in self.selector.select(0.02):
                    registration: _Read = key.data
                    if registration.active and not registration.cb(*registration.args):
                        registration.delete()
            for key in list(self.selector.get_map().values()):
                key.data.delete()
        finally:
            self._running = False
            self._aborted = False

    def close(self) -> None:
        self.selector.close()


@pytest.fixture(params=["stand-in", "rel"])
def loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A rel-shaped dispatcher: :class:`MiniLoop`, or the rel module itself.  The SIGINT
    handler is put back afterwards, and rel's global state reset (its ``dispatch()``
    returns at once once it has run, until ``init()``)."""
    previous = signal.getsignal(signal.SIGINT)
    if request.param == "rel":
        rel: Any = pytest.importorskip("rel")
        rel.init()  # also makes rel's poll object now, before any fd snapshot
        try:
            yield rel
        finally:
            rel.init()  # resets rel's signals first: that puts back handlers of its own
            signal.signal(signal.SIGINT, previous)
        return
    mini = MiniLoop()
    try:
        yield mini
    finally:
        for registration in list(mini.signals.values()):
            registration.delete()
        mini.close()
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_when_dispatching(loop: Any) -> None:
    """Send SIGINT to this process once ``loop.dispatch()`` runs in the main thread and
    a handler other than Python's default (which would interrupt pytest) is set."""
    assert wait_until(loop.is_running), "the dispatcher loop did not start"
    handler = signal.getsignal(signal.SIGINT)
    assert handler not in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN, None)
    os.kill(os.getpid(), signal.SIGINT)


def test_three_apps_on_one_dispatcher_end_the_loop_when_all_have_closed(
    loop: Any, pool: Pool, ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """websocket-client's examples/rel_client.py: three apps, each
    run_forever(dispatcher=rel), then rel.dispatch().  run_forever returns False at once;
    the callbacks run on the pool's workers, the final on_close on the dispatcher's
    thread; the loop ends with the last app (the app's SIGINT registration is taken back,
    so nothing is left registered)."""
    server = ws_server()
    previous_handler = signal.getsignal(signal.SIGINT)
    events = Events()
    main = threading.current_thread()
    apps = []
    # The echo can come back before this thread has checked keep_running below: the
    # apps close only once the three runs are set up.
    set_up = threading.Event()
    for i in range(3):

        def on_open(ws: WebSocketApp, i: int = i) -> None:
            ws.send(f"app {i}")

        def on_message(ws: WebSocketApp, message: Any) -> None:
            events.add("message", message, threading.current_thread())
            set_up.wait(WAIT)
            ws.close()

        def on_close(ws: WebSocketApp, code: Any, reason: Any) -> None:
            events.add("close", ws.url, code, threading.current_thread(), ws.sock)

        app = recording_app(
            server.url + f"/{i}",
            events,
            pool=pool,
            on_open=on_open,
            on_message=on_message,
            on_close=on_close,
        )
        assert app.run_forever(dispatcher=loop) is False
        assert app.keep_running is True
        apps.append(app)
    set_up.set()
    # Ctrl-C now goes to the dispatcher's abort (websocket-client's registration).
    assert signal.getsignal(signal.SIGINT) is not previous_handler
    started = time.monotonic()
    watchdog = threading.Timer(WAIT, loop.abort)  # a failure ends the test, not a hang
    watchdog.start()
    try:
        loop.dispatch()
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < WAIT, "the loop did not end with its apps"
    assert sorted(m for m, _ in events.of("message")) == ["app 0", "app 1", "app 2"]
    assert all(thread is not main for _, thread in events.of("message"))
    assert sorted(url for url, *_ in events.of("close")) == [app.url for app in apps]
    assert all(call[1:] == (1000, main, None) for call in events.of("close"))
    assert [app.keep_running for app in apps] == [False, False, False]
    assert signal.getsignal(signal.SIGINT) is previous_handler  # taken back at the end
    # The runs are over: an app can run again (rel's dispatch() itself only runs once
    # per process unless aborted or re-initialized, so without a dispatcher here).
    assert apps[0].run_forever() is False
    assert len(events.of("close")) == 4


def test_closing_the_pool_while_the_app_waits_to_reconnect_ends_the_loop(
    loop: Any, ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """The app's own Pool closed while the app waits out a reconnect delay: the
    connection ends with no callback of its own, and the dispatcher is still told
    (Connection.add_done_callback): on_close runs on its thread, the loop ends."""
    server = ws_server(lambda conn: conn.close(1011, "go away"))
    events = Events()
    main = threading.current_thread()
    own = Pool(workers=1, name="closed-under-the-app")
    try:

        def on_close(ws: WebSocketApp, code: Any, reason: Any) -> None:
            events.add("close", code, threading.current_thread())

        app = recording_app(server.url, events, pool=own, on_close=on_close)
        assert app.run_forever(dispatcher=loop, reconnect=600) is False
        assert wait_until(
            lambda: (
                app.sock is not None
                and app.sock.connection.state is wspool.ConnectionState.RECONNECTING
            )
        )
        closer = threading.Timer(0.1, own.close)
        closer.start()
        watchdog = threading.Timer(WAIT, loop.abort)
        watchdog.start()
        started = time.monotonic()
        try:
            loop.dispatch()
        finally:
            watchdog.cancel()
            closer.join()
        assert time.monotonic() - started < WAIT, "the loop did not end with the app"
        assert [thread for _, thread in events.of("close")] == [main]
        assert app.keep_running is False
    finally:
        own.close()


def test_readme_flow_reconnects_and_ctrl_c_ends_the_dispatcher(
    loop: Any, pool: Pool, ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """websocket-client's README: run_forever(dispatcher=rel, reconnect=5), then
    rel.signal(2, rel.abort) and rel.dispatch().  The server drops the connection; the
    app reconnects (on_reconnect instead of on_open, on_open again without it).  The
    user's own SIGINT registration keeps the loop running after the apps ended, until
    Ctrl-C aborts it.  (A short reconnect delay keeps the test fast.)"""
    box: list[WSServer] = []
    server = ws_server(_drop_the_first(box, 2))
    box.append(server)
    with_hook, without_hook = Events(), Events()
    apps = [
        recording_app(
            server.url, with_hook, pool=pool, on_reconnect=lambda ws: with_hook.add("reconnect")
        ),
        recording_app(server.url, without_hook, pool=pool),
    ]

    def drive() -> None:
        try:
            for events in (with_hook, without_hook):
                events.wait(lambda calls: calls.count(("message", "hello")) == 2)
            for app in apps:
                app.close()
            for events in (with_hook, without_hook):
                events.wait(lambda calls: calls[-1][0] == "close")
        finally:
            _ctrl_c_when_dispatching(loop)

    for app in apps:
        assert app.run_forever(dispatcher=loop, reconnect=0.02) is False
    loop.signal(2, loop.abort)  # Keyboard Interrupt
    driver = run_in_thread(drive, name="drive")
    loop.dispatch()
    driver.result()
    assert with_hook.names(errors=False) == ["open", "message", "reconnect", "message", "close"]
    assert without_hook.names(errors=False) == ["open", "message", "open", "message", "close"]
    for events in (with_hook, without_hook):
        assert events.of("close") == [(1000, "")]
        assert all(isinstance(exc, wspool.WebSocketException) for (exc,) in events.of("error"))
    assert [app.has_errored for app in apps] == [True, True]
    assert [app.keep_running for app in apps] == [False, False]


def test_ctrl_c_aborts_the_dispatcher_and_the_apps_run_on_until_closed(
    loop: Any, pool: Pool, ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """Ctrl-C reaches the dispatcher through the app's own registration
    (dispatcher.signal(2, dispatcher.abort)); dispatch() returns while the app still
    runs on the pool.  Closed later, the app still ends properly: on_close runs (on a
    pool worker, the dispatcher having let go of it) and nothing is left open."""
    server = ws_server()
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    assert app.run_forever(dispatcher=loop) is False

    def interrupt() -> None:
        events.wait(lambda calls: ("open",) in calls)
        _ctrl_c_when_dispatching(loop)

    driver = run_in_thread(interrupt, name="interrupt")
    loop.dispatch()
    driver.result()
    assert app.keep_running is True and app.ready() is True
    app.send("still here")
    events.wait(lambda calls: ("message", "still here") in calls)
    app.close()
    events.wait(lambda calls: calls[-1][0] == "close")
    assert events.of("close") == [(1000, "")]
    assert wait_until(lambda: app.sock is None and not app.keep_running)
    assert server.connections[0].close_received == (1000, b"")  # a closing handshake


def test_dispatcher_without_signal_runs_and_without_read_is_refused(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """A dispatcher needs read(); without signal() (or abort()) there is simply no Ctrl-C
    hook, as websocket-client raises nothing for it."""
    server = ws_server()
    events = Events()
    mini = MiniLoop()

    class ReadOnly:
        read = staticmethod(mini.read)

    previous_handler = signal.getsignal(signal.SIGINT)
    app = recording_app(server.url, events, pool=pool, on_open=lambda ws: ws.close())
    try:
        assert app.run_forever(dispatcher=ReadOnly()) is False
        assert signal.getsignal(signal.SIGINT) is previous_handler
        mini.dispatch()
    finally:
        mini.close()
    assert events.names() == ["close"] and server.accepted == 1
    assert app.keep_running is False

    class NoRead:
        def signal(self, sig: int, cb: Callable[..., Any]) -> None:
            raise AssertionError("not reached")

    with pytest.raises(wspool.WebSocketConfigurationException, match=r"read\(sock, callback\)"):
        app.run_forever(dispatcher=NoRead())
    assert app.keep_running is False and app.sock is None


def test_dispatcher_ctrl_c_hook_needs_the_main_thread(
    pool: Pool, ws_server: WSServerFactory, no_fd_leaks: None
) -> None:
    """dispatcher.signal() installs a signal handler, which only the main thread may do:
    from another thread run_forever says so and starts nothing."""
    server = ws_server()
    mini = MiniLoop()
    app = WebSocketApp(server.url, pool=pool)
    try:
        outcome = run_in_thread(lambda: app.run_forever(dispatcher=mini)).outcome()
    finally:
        mini.close()
    assert isinstance(outcome, wspool.WebSocketConfigurationException)
    assert "main thread" in str(outcome) and server.url in str(outcome)
    assert app.keep_running is False and app.sock is None
    assert server.accepted == 0


# ------------------------------------------------------- options websocket-client lacks


def test_unknown_run_forever_option_is_ignored_with_a_warning(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """websocket-client's run_forever has a fixed signature; extra names reach the pool
    here, and one no front end knows is ignored with a warning at the caller's line."""
    server = ws_server()
    events = Events()
    app = recording_app(server.url, events, pool=pool, on_open=lambda ws: ws.close())
    with pytest.warns(
        wspool.UnknownOptionWarning,
        match=r"unknown option 'headers': did you mean 'header'\? \(ignored\)",
    ) as caught:
        assert app.run_forever(headers=["X-Lost: 1"], compression=None) is False
    assert [warning.filename for warning in caught] == [__file__]
    assert events.names() == ["close"] and server.accepted == 1
    request = server.requests[0]
    assert request.get("X-Lost") is None
    assert request.get("Sec-WebSocket-Extensions") is None  # the known option applied


def test_setdefaulttimeout_bounds_the_opening_against_a_silent_server(
    pool: Pool, ws_server: WSServerFactory
) -> None:
    """websocket-client's "WebSocketApp timeout" example: setdefaulttimeout() is the
    app's socket timeout, so a server that never answers the handshake ends the app
    with a timeout error in on_error."""
    from wsserver import HandshakeAction, Response

    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    events = Events()
    app = recording_app(server.url, events, pool=pool)
    wspool.setdefaulttimeout(0.2)
    try:
        started = time.monotonic()
        assert app.run_forever() is True
        elapsed = time.monotonic() - started
    finally:
        wspool.setdefaulttimeout(None)
    assert events.names() == ["error", "close"]
    (error,) = events.of("error")[0]
    assert isinstance(error, wspool.WebSocketTimeoutException), error
    assert isinstance(error, TimeoutError)
    assert 0.15 <= elapsed < 5.0  # the 0.2 s default, not the 10 s open_timeout


_ABORTED_THEN_EXIT = """
import os, signal, sys, threading
from helpers import wait_until
from wsserver import WSServer
from wspool.app import WebSocketApp

if sys.argv[1] == "rel":
    import rel as loop
else:
    from test_app_compat import MiniLoop
    loop = MiniLoop()

server = WSServer().start()

def ctrl_c():
    wait_until(loop.is_running)
    os.kill(os.getpid(), signal.SIGINT)

def on_open(ws):
    print("on_open", flush=True)
    threading.Thread(target=ctrl_c).start()

def on_close(ws, code, reason):
    print("on_close", code, threading.current_thread().name.startswith("wspool-app-worker"),
          flush=True)

app = WebSocketApp(server.url, on_open=on_open, on_close=on_close)
print("run_forever", app.run_forever(dispatcher=loop), flush=True)
loop.dispatch()
print("dispatch returned", app.keep_running, flush=True)
"""


@pytest.mark.parametrize("kind", ["stand-in", "rel"])
def test_apps_left_running_after_ctrl_c_are_closed_at_exit(kind: str) -> None:
    """Ctrl-C aborts the dispatcher with the app still running on the shared pool; the
    interpreter then exits at once, the pool closing the app with a closing handshake
    (on_close gets the server's 1000, on a pool worker) instead of hanging."""
    if kind == "rel":
        pytest.importorskip("rel")
    result = run_python(_ABORTED_THEN_EXIT, kind, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # run_forever returns at once; on_open (a worker) may print before or after that.
    assert sorted(lines[:2]) == ["on_open", "run_forever False"], result.stdout + result.stderr
    assert lines[2:] == ["dispatch returned True", "on_close 1000 True"], result.stderr
