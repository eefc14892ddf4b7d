"""Secrets never leak: credentials stay out of logs, errors, reprs, stats and tracebacks.

The secrets: proxy passwords (``http_proxy_auth`` and a ``user:pass@`` proxy URL in
the environment), URL user info (``ws://user:secret@host``), ``Authorization`` and
``Cookie`` headers given with ``header=``, and the ``cookie=`` option, plus the Basic
tokens made from the passwords.  Each test first proves that the secret was really in
play (the server or the proxy received it), then looks for it everywhere a user or a
log collector could see it: every log record at DEBUG with the protocol trace on
(exception tracebacks included), ``str``/``repr``/the formatted traceback of every
exception, the reprs of WebSocket, Connection, Pool and WebSocketApp, ``conn.stats``,
``Pool.stats()`` and ``CallbackError.format()``.  Redirects to another origin must
drop the origin's credentials, also when the connection goes through a proxy.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import WSServerFactory
from frontends import FrontEnd, front
from proxies import HttpConnectProxy, HttpProxyRequest, SocksProxy
from wsserver import HandshakeAction, Request, Response, redirect, refuse

import wspool
from wspool.exceptions import (
    CallbackError,
    WebSocketBadStatusException,
    WebSocketException,
    WebSocketProxyException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)

__all__ = ["front"]  # the fixture, imported for pytest

pytestmark = pytest.mark.usefixtures("no_thread_leaks", "no_fd_leaks")

PROXY_USER = "proxyuser"
PROXY_PASSWORD = "pr0xy-S3CRET-pw"
WRONG_PROXY_PASSWORD = "wr0ng-S3CRET-pw"
URL_USER = "urluser"
URL_PASSWORD = "url-S3CRET-pw"
TOKEN = "Bearer t0ken-S3CRET"
HEADER_COOKIE = "sid=hdr-cookie-S3CRET"
OPTION_COOKIE = "sid=opt-cookie-S3CRET"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


#: Every string that must never show, with its name for the failure message.
SECRETS = {
    "proxy password": PROXY_PASSWORD,
    "wrong proxy password": WRONG_PROXY_PASSWORD,
    "URL password": URL_PASSWORD,
    "Authorization header": TOKEN.split()[1],
    "Cookie header": HEADER_COOKIE,
    "cookie option": OPTION_COOKIE,
    "proxy Basic token": _basic(PROXY_USER, PROXY_PASSWORD),
    "wrong proxy Basic token": _basic(PROXY_USER, WRONG_PROXY_PASSWORD),
    "URL Basic token": _basic(URL_USER, URL_PASSWORD),
}
SHORT_OPEN = 5.0


def assert_clean(text: str, where: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"the {name} leaked into {where}:\n{text}"


def exception_texts(exc: BaseException) -> str:
    """Everything a user could print of an exception: str, repr, attributes, traceback."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [repr(value) for value in vars(exc).values()]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        parts += [str(cause), repr(cause)]
    return "\n".join(parts)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)  # with the traceback of exc_info, if any
        with self._lines_lock:
            self.lines.append(text)

    def text(self) -> str:
        with self._lines_lock:
            return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[_Capture]:
    """Every record of the ``wspool`` logger at DEBUG, with the protocol trace on."""
    capture = _Capture()
    logger = logging.getLogger("wspool")
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    wspool.enableTrace(True, handler=logging.NullHandler())
    try:
        yield capture
    finally:
        wspool.enableTrace(False)
        logger.removeHandler(capture)
        logger.setLevel(level)
    assert_clean(capture.text(), "the wspool log (DEBUG, trace on)")


def set_env_proxy(monkeypatch: pytest.MonkeyPatch, password: str, port: int) -> None:
    """``http_proxy`` with credentials; ``no_proxy`` set so loopback targets use it."""
    monkeypatch.setenv("http_proxy", f"http://{PROXY_USER}:{password}@127.0.0.1:{port}")
    monkeypatch.setenv("no_proxy", "example.invalid")


@pytest.fixture(scope="module")
def http_proxy() -> Iterator[HttpConnectProxy]:
    proxy = HttpConnectProxy(auth=(PROXY_USER, PROXY_PASSWORD)).start()
    yield proxy
    proxy.stop()
    assert proxy.errors == []


@pytest.fixture(scope="module")
def socks_proxy() -> Iterator[SocksProxy]:
    proxy = SocksProxy(auth=(PROXY_USER, PROXY_PASSWORD)).start()
    yield proxy
    proxy.stop()
    assert proxy.errors == []


def _front_objects(front: FrontEnd, handle: Any) -> dict[str, object]:
    """The user-visible objects of an open handle, by name."""
    if front.name == "connect":
        return {"WebSocket": handle.ws}
    if front.name in ("pool", "pool-inline"):
        conn = handle.connection
        return {
            "Connection": conn,
            "Connection.stats": conn.stats,
            "Connection.stats_dict()": conn.stats_dict(),
            "Pool": front.pool,  # type: ignore[attr-defined]
            "Pool.stats()": front.pool.stats(),  # type: ignore[attr-defined]
        }
    app = handle.app
    return {
        "WebSocketApp": app,
        "AppSocket": app.sock,
        "Connection": app.sock.connection,
        "Connection.stats": app.sock.connection.stats,
        "Pool.stats()": front.pool.stats(),  # type: ignore[attr-defined]
    }


# ------------------------------------------------------------ open connections


@pytest.mark.parametrize("credentials", ["options", "url-and-env"])
def test_open_connection_shows_no_secret(
    front: FrontEnd,
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    logs: _Capture,
    monkeypatch: pytest.MonkeyPatch,
    credentials: str,
) -> None:
    """Through an authenticating proxy, with origin credentials: an echo works, and
    no secret shows in the log, reprs or stats, before or after closing."""
    server = ws_server()
    before = len(http_proxy.requests)
    if credentials == "options":
        url = server.url
        options: dict[str, Any] = {
            "header": {"Authorization": TOKEN, "Cookie": HEADER_COOKIE},
            "http_proxy_host": "127.0.0.1",
            "http_proxy_port": http_proxy.port,
            "http_proxy_auth": (PROXY_USER, PROXY_PASSWORD),
        }
        sent = (TOKEN, HEADER_COOKIE)
    else:
        url = f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.port}/"
        set_env_proxy(monkeypatch, PROXY_PASSWORD, http_proxy.port)
        options = {"cookie": OPTION_COOKIE}
        sent = ("Basic " + _basic(URL_USER, URL_PASSWORD), OPTION_COOKIE)
    handle = front.open(url, open_timeout=SHORT_OPEN, **options)
    handle.send("hello")
    assert handle.recv() == "hello"
    objects = _front_objects(front, handle)
    handle.close()
    # the secrets were in play: the proxy and the server received them
    assert [r.credentials for r in http_proxy.requests[before:]] == [(PROXY_USER, PROXY_PASSWORD)]
    request = server.requests[-1]
    assert (request.get("Authorization"), request.get("Cookie")) == sent
    assert request.get("Proxy-Authorization") is None
    assert any("Authorization: <redacted>" in line for line in logs.lines), "no trace captured"
    for name, value in objects.items():
        assert_clean(repr(value), f"repr({name})")
        assert_clean(str(value), f"str({name})")
    if front.name != "app":  # (an app's sock is gone once it closed)
        objects.update(_front_objects(front, handle))
    for name, value in objects.items():
        assert_clean(repr(value), f"repr({name}) after close")


# --------------------------------------------------------------------- failures


def _refusing(ws_server: WSServerFactory, status: int) -> str:
    body = b"go away"
    headers = [("WWW-Authenticate", 'Basic realm="x"')] if status == 401 else []
    server = ws_server(handshake=lambda request: refuse(status, body, headers))
    return f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.port}/private"


ORIGIN_CREDENTIALS = {"header": {"Authorization": TOKEN}, "cookie": OPTION_COOKIE}


@pytest.mark.parametrize("status", [401, 403])
def test_refusal_shows_no_secret(
    front: FrontEnd, ws_server: WSServerFactory, logs: _Capture, status: int
) -> None:
    url = _refusing(ws_server, status)
    with pytest.raises(WebSocketBadStatusException) as info:
        front.open(url, open_timeout=SHORT_OPEN, **ORIGIN_CREDENTIALS)
    assert info.value.status_code == status
    assert "127.0.0.1" in str(info.value)  # the URL is named, without its user info
    assert_clean(exception_texts(info.value), f"the {status} refusal")


@pytest.mark.parametrize("via", ["option", "environment"])
def test_http_proxy_refusal_shows_no_password(
    front: FrontEnd,
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    logs: _Capture,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    """407 for a wrong password: the user is named, the password never."""
    server = ws_server()
    options: dict[str, Any] = dict(ORIGIN_CREDENTIALS)
    if via == "option":
        options.update(
            http_proxy_host="127.0.0.1",
            http_proxy_port=http_proxy.port,
            http_proxy_auth=(PROXY_USER, WRONG_PROXY_PASSWORD),
        )
    else:
        set_env_proxy(monkeypatch, WRONG_PROXY_PASSWORD, http_proxy.port)
    with pytest.raises(WebSocketProxyException) as info:
        front.open(server.url, open_timeout=SHORT_OPEN, **options)
    assert PROXY_USER in str(info.value)
    assert_clean(exception_texts(info.value), "the proxy refusal")
    assert server.requests == []


def test_socks5_refusal_shows_no_password(
    front: FrontEnd, ws_server: WSServerFactory, socks_proxy: SocksProxy, logs: _Capture
) -> None:
    server = ws_server()
    with pytest.raises(WebSocketProxyException) as info:
        front.open(
            server.url,
            open_timeout=SHORT_OPEN,
            http_proxy_host="127.0.0.1",
            http_proxy_port=socks_proxy.port,
            http_proxy_auth=(PROXY_USER, WRONG_PROXY_PASSWORD),
            proxy_type="socks5",
            **ORIGIN_CREDENTIALS,
        )
    assert_clean(exception_texts(info.value), "the SOCKS5 refusal")


def test_timeout_shows_no_secret(
    front: FrontEnd, ws_server: WSServerFactory, http_proxy: HttpConnectProxy, logs: _Capture
) -> None:
    """The server never answers the upgrade: the timeout error names no secret."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    with pytest.raises(WebSocketTimeoutException) as info:
        front.open(
            f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.port}/",
            open_timeout=0.5,
            http_proxy_host="127.0.0.1",
            http_proxy_port=http_proxy.port,
            http_proxy_auth=(PROXY_USER, PROXY_PASSWORD),
            **ORIGIN_CREDENTIALS,
        )
    assert_clean(exception_texts(info.value), "the open timeout")


def test_tls_failure_shows_no_secret(
    front: FrontEnd, ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, logs: _Capture
) -> None:
    """A certificate the client does not trust: the TLS error names no secret."""
    server = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(WebSocketTLSException) as info:
        front.open(
            f"wss://{URL_USER}:{URL_PASSWORD}@localhost:{server.port}/",
            open_timeout=SHORT_OPEN,
            **ORIGIN_CREDENTIALS,
        )
    assert_clean(exception_texts(info.value), "the TLS failure")


def test_refused_port_shows_no_secret(front: FrontEnd, logs: _Capture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises((ConnectionRefusedError, WebSocketException)) as info:
        front.open(
            f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}/",
            open_timeout=SHORT_OPEN,
            **ORIGIN_CREDENTIALS,
        )
    assert_clean(exception_texts(info.value), "the refused connection")


@pytest.mark.parametrize("case", ["limit", "loop", "unsupported"])
def test_redirect_errors_show_no_secret(
    front: FrontEnd, ws_server: WSServerFactory, logs: _Capture, case: str
) -> None:
    """Too many redirects, a loop and a Location that is not ws/http, with user info
    in the URL and in Location: the messages show neither."""
    other = ws_server()
    home = ws_server()
    if case == "limit":
        target = f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{other.port}/elsewhere"
        home.handshake = lambda request: redirect(target, 302)
        limit = 0
    elif case == "unsupported":  # a Location wspool cannot follow, with user info
        home.handshake = lambda request: redirect(f"ftp://{URL_USER}:{URL_PASSWORD}@x/", 302)
        limit = 3
    else:
        home.handshake = lambda request: redirect(
            f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{other.port}/b", 302
        )
        other.handshake = lambda request: redirect(
            f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{home.port}/a", 302
        )
        limit = 10
    with pytest.raises(WebSocketRedirectException) as info:
        front.open(
            f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{home.port}/a",
            open_timeout=SHORT_OPEN,
            redirect_limit=limit,
            **ORIGIN_CREDENTIALS,
        )
    assert_clean(exception_texts(info.value), f"the redirect error ({case})")


# --------------------------------------------------------------- CallbackError


def test_callback_error_format_renders_no_connection_secret(
    ws_server: WSServerFactory, http_proxy: HttpConnectProxy, logs: _Capture
) -> None:
    """A callback raises with a secret in one of its locals.

    ``format()`` renders no locals, so not even that one shows; ``format(locals=True)``
    is documented to render the frames' locals, and shows the callback's own local
    (the user's choice), but never the connection's options (headers, cookie, proxy
    password).  Without ``on_error``, the logged error shows no secret either.
    """
    server = ws_server()
    errors: list[BaseException] = []
    got = threading.Event()
    opened = threading.Semaphore(0)
    local_secret = "callback-local-" + "value"

    def on_message(_conn: object, _message: object) -> None:
        mine = local_secret  # noqa: F841 - the local variable under test
        raise ValueError("the callback failed")

    def on_error(_conn: object, error: BaseException) -> None:
        errors.append(error)
        got.set()

    options: dict[str, Any] = {
        "header": {"Authorization": TOKEN, "Cookie": HEADER_COOKIE},
        "http_proxy_host": "127.0.0.1",
        "http_proxy_port": http_proxy.port,
        "http_proxy_auth": (PROXY_USER, PROXY_PASSWORD),
        "open_timeout": SHORT_OPEN,
    }
    url = f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.port}/"
    with wspool.Pool(workers=1, name="secrets-pool") as pool:
        conn = pool.connect(
            url,
            on_open=lambda _c: opened.release(),
            on_message=on_message,
            on_error=on_error,
            **options,
        )
        # without on_error: the CallbackError goes to the log
        quiet = pool.connect(
            url, on_open=lambda _c: opened.release(), on_message=on_message, **options
        )
        assert opened.acquire(timeout=5) and opened.acquire(timeout=5), (
            "the connections did not open"
        )
        conn.send("boom")
        quiet.send("boom")
        assert got.wait(5), "on_error was not called"
        [error] = errors
        assert isinstance(error, CallbackError)
        plain = error.format()
        with_locals = error.format(locals=True)
        assert "the callback failed" in plain
        assert local_secret not in plain
        assert local_secret in with_locals  # format(locals=True) does render locals
        for text, where in ((plain, "format()"), (with_locals, "format(locals=True)")):
            assert_clean(text, f"CallbackError.{where}")
        assert_clean(exception_texts(error), "the CallbackError")
        assert_clean(repr(conn) + repr(conn.stats) + repr(pool.stats()), "reprs and stats")
        conn.close()
        quiet.close()
        assert conn.wait_closed(5) and quiet.wait_closed(5)
    assert "the callback failed" in logs.text()  # the quiet connection's error was logged


# ------------------------------------------------------------------- redirects


def _credential_headers(request: Request) -> dict[str, str | None]:
    return {name: request.get(name) for name in ("Authorization", "Cookie", "Proxy-Authorization")}


@pytest.mark.parametrize("proxy_via", ["option", "environment"])
def test_redirect_to_another_origin_through_a_proxy_drops_credentials(
    front: FrontEnd,
    ws_server: WSServerFactory,
    http_proxy: HttpConnectProxy,
    logs: _Capture,
    monkeypatch: pytest.MonkeyPatch,
    proxy_via: str,
) -> None:
    """Through an authenticating proxy, a redirect to another origin: the new origin
    gets neither the headers, the cookie nor the URL's credentials; the proxy's own
    credentials go to the proxy (both CONNECTs) and never to a server."""
    other = ws_server()
    home = ws_server()
    home.handshake = lambda request: redirect(f"{other.url}/landed", 307)
    before = len(http_proxy.requests)
    options: dict[str, Any] = {"open_timeout": SHORT_OPEN}
    if proxy_via == "option":
        options.update(
            http_proxy_host="127.0.0.1",
            http_proxy_port=http_proxy.port,
            http_proxy_auth=(PROXY_USER, PROXY_PASSWORD),
        )
    else:
        set_env_proxy(monkeypatch, PROXY_PASSWORD, http_proxy.port)
    home_url = f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{home.port}/away"
    front.open(home_url, header={"Cookie": HEADER_COOKIE, "X-Keep": "yes"}, **options).close()
    front.open(home_url, header={"Authorization": TOKEN}, cookie=OPTION_COOKIE, **options).close()

    first, second = home.requests
    assert _credential_headers(first)["Cookie"] == HEADER_COOKIE
    assert _credential_headers(second) == {
        "Authorization": TOKEN,
        "Cookie": OPTION_COOKIE,
        "Proxy-Authorization": None,
    }
    assert len(other.requests) == 2
    for request in other.requests:
        assert _credential_headers(request) == dict.fromkeys(
            ("Authorization", "Cookie", "Proxy-Authorization")
        ), request
    assert other.requests[0].get("X-Keep") == "yes"
    tunnels = [r for r in http_proxy.requests[before:] if isinstance(r, HttpProxyRequest)]
    assert [r.target for r in tunnels] == [
        f"127.0.0.1:{home.port}",
        f"127.0.0.1:{other.port}",
    ] * 2
    assert all(r.credentials == (PROXY_USER, PROXY_PASSWORD) for r in tunnels)


def test_websocket_app_errors_show_no_url_password(
    ws_server: WSServerFactory, logs: _Capture
) -> None:
    """WebSocketApp keeps the user's URL as given (websocket-client's ``app.url``), but
    its repr, its errors and its CallbackErrors name it without the user info."""
    server = ws_server()
    url = f"ws://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.port}/"

    def on_open(app: wspool.WebSocketApp) -> None:
        app.close()
        raise RuntimeError("on_open failed")  # no on_error: the CallbackError is logged

    with wspool.Pool(workers=1, name="secrets-app") as pool:
        app = wspool.WebSocketApp(
            url,
            on_open=on_open,
            cookie=OPTION_COOKIE,
            header={"Authorization": TOKEN},
            pool=pool,
        )
        assert app.url == url  # websocket-client's attribute, unchanged
        with pytest.raises(wspool.WebSocketConnectionClosedException) as info:
            app.send("not running")
        assert_clean(exception_texts(info.value), "WebSocketApp.send() before run_forever")
        assert_clean(repr(app), "repr(WebSocketApp)")
        app.run_forever()
    assert server.requests[-1].get("Cookie") == OPTION_COOKIE
    assert "on_open failed" in logs.text()  # logged, with the URL and the traceback
