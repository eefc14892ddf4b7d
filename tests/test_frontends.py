"""Parity: every option and every opening behaviour means the same on every front end.

Each test runs against the blocking client (``wspool.connect``), the pool
(``wspool.Pool().connect``) and ``wspool.WebSocketApp.run_forever`` through the
``front`` fixture of ``tests/frontends.py``, over real sockets: the scriptable test
server, the test proxies, TLS with trustme certificates.

Every option is checked once, by ``wspool/options.py``, in the caller's thread: a bad
value raises the same WebSocketConfigurationException from every front end before any
connection is made.  ``open_timeout`` must be > 0 or None (0 is refused: None means no
limit); ``timeout`` may be 0 (never wait); a refused port raises ConnectionRefusedError
naming the URL everywhere; Pool-only options given to ``wspool.connect`` and unknown
options raise WebSocketConfigurationException naming the closest known option.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from frontends import FRONT_ENDS, FrontEnd, Handle, front, make_front
from helpers import tls_server_context
from proxies import HttpConnectProxy, HttpProxyRequest, SocksProxy
from wsserver import HandshakeAction, Request, Response, WSServer, accept, redirect, refuse

import wspool
from wspool import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketHandshakeException,
    WebSocketProxyException,
    WebSocketRedirectException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)

__all__ = ["front"]  # the fixture, imported from frontends

WSServerFactory = Callable[..., WSServer]
WAIT = 5.0
#: open_timeout for tests that do not expect a timeout: a drifting front end that hangs
#: fails in bounded time instead of after the 10 s default.
SHORT_OPEN = 2.0


# ------------------------------------------------------------------------- helpers


def on_fronts(*values: Any, case_id: str = "") -> list[Any]:
    """One ``pytest.param(front_name, *values)`` per front end."""
    return [
        pytest.param(name, *values, id=f"{case_id}-{name}" if case_id else name)
        for name in FRONT_ENDS
    ]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port bound but not listening for the duration: connecting is refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def connections_since(server: WSServer, before: int) -> int:
    """How many TCP connections ``server`` accepted since its count was ``before``.

    A probe connection goes through the same accept queue after any earlier one, so
    once the server has seen the probe's request every earlier connection is counted.
    """
    with socket.create_connection((server.host, server.port), timeout=WAIT) as probe:
        local_port = probe.getsockname()[1]
        probe.sendall(b"GET /connection-probe HTTP/1.1\r\n\r\n")
        assert server.wait_for(
            lambda: any(r.client_address[1] == local_port for r in server.requests), WAIT
        ), "the probe connection was not served"
    return server.accepted - before - 1


def echo_both_kinds(handle: Handle) -> None:
    handle.send("héllo")
    assert handle.recv() == "héllo"
    handle.send(b"\x00\xff")
    assert handle.recv() == b"\x00\xff"


# ------------------------------------------------------------ option validation


@dataclass(frozen=True)
class BadOption:
    """An option value every front end must refuse before connecting."""

    id: str
    options: dict[str, Any]
    #: regular expressions the message must match (besides being the same on every
    #: front end)
    mentions: tuple[str, ...]
    #: Pool-only option: the pool's message is the reference, and wspool.connect must
    #: refuse it for what it is.
    pool_only: bool = False
    secure: bool = False
    #: An unknown name: refused by wspool's own front ends, ignored with a warning by
    #: WebSocketApp (websocket-client's names; test_unknown_option_warns_on_the_app).
    unknown: bool = False


_MESSAGE_DIFFERS = "message differs from the blocking client's"

BAD_OPTIONS = [
    BadOption(
        "open_timeout=0",
        {"open_timeout": 0},
        ("open_timeout", "None"),
    ),
    BadOption("open_timeout=-1", {"open_timeout": -1}, ("open_timeout", "None")),
    BadOption("open_timeout='3'", {"open_timeout": "3"}, ("open_timeout", "None")),
    BadOption(
        "timeout=-1",
        {"timeout": -1},
        (r"\btimeout\b", "None"),
    ),
    BadOption("close_timeout=-1", {"close_timeout": -1}, ("close_timeout",)),
    BadOption(
        "max_size=1.5",
        {"max_size": 1.5},
        ("max_size",),
    ),
    BadOption(
        "max_size=-1",
        {"max_size": -1},
        ("max_size",),
    ),
    BadOption(
        "max_size=True",
        {"max_size": True},
        ("max_size",),
    ),
    BadOption(
        "max_queue='3'",
        {"max_queue": "3"},
        ("max_queue",),
        pool_only=True,
    ),
    BadOption(
        "max_queue=0",
        {"max_queue": 0},
        ("max_queue",),
        pool_only=True,
    ),
    BadOption("redirect_limit=-1", {"redirect_limit": -1}, ("redirect_limit",)),
    BadOption("http_proxy_timeout=0", {"http_proxy_timeout": 0}, ("http_proxy_timeout",)),
    BadOption("proxy_type='ftp'", {"proxy_type": "ftp"}, ("proxy_type", "ftp")),
    BadOption(
        "http_proxy_port='x'",
        {"http_proxy_host": "127.0.0.1", "http_proxy_port": "x"},
        ("http_proxy_port",),
    ),
    BadOption(
        "subprotocols='chat'",
        {"subprotocols": "chat"},
        ("subprotocols",),
    ),
    BadOption(
        "header='X: y'",
        {"header": "X: y"},
        ("header",),
    ),
    BadOption(
        "header=['bad']",
        {"header": ["bad"]},
        ("header", "bad"),
    ),
    BadOption(
        "header=CRLF",
        {"header": {"X": "a\r\nb"}},
        ("header",),
    ),
    BadOption("compression='lz4'", {"compression": "lz4"}, ("compression", "lz4")),
    BadOption(
        "sockopt=[(1,)]",
        {"sockopt": [(1,)]},
        ("sockopt",),
    ),
    BadOption(
        "unknown headers=",
        {"headers": {"X-Y": "z"}},
        (r"\bheaders\b", r"\bheader\b"),
        unknown=True,
    ),
    BadOption(
        "sslopt cert_reqs='nope'",
        {"sslopt": {"cert_reqs": "nope"}},
        ("cert_reqs",),
        secure=True,
    ),
]


def _bad_option_params() -> list[Any]:
    params = []
    for case in BAD_OPTIONS:
        fronts = [name for name in FRONT_ENDS if not (case.unknown and name == "app")]
        params += [pytest.param(name, case, id=f"{case.id}-{name}") for name in fronts]
    return params


def _reference_error(case: BadOption, server: WSServer) -> BaseException | None:
    """What the reference front end raises for ``case``: the blocking client, or the
    pool for a Pool-only option.  ``server`` is not the one whose connections are
    counted, so the reference message does not depend on when the check is made."""
    scheme = "wss" if case.secure else "ws"
    url = f"{scheme}://127.0.0.1:{server.port}/"
    options = {"open_timeout": SHORT_OPEN, **case.options}
    try:
        if case.pool_only:
            with wspool.Pool(workers=1, name="reference") as pool:
                pool.connect(url, **options)
        else:
            wspool.connect(url, **options).close()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize(("front", "case"), _bad_option_params(), indirect=["front"])
def test_bad_option_is_refused_before_connecting(
    front: FrontEnd, case: BadOption, ws_server: WSServerFactory
) -> None:
    """The same WebSocketConfigurationException, with the same message naming the
    option, straight from the call, before any TCP connection is made."""
    server = ws_server()
    scheme = "wss" if case.secure else "ws"
    url = f"{scheme}://127.0.0.1:{server.port}/"
    options = {"open_timeout": SHORT_OPEN, **case.options}
    before = server.accepted
    with pytest.raises(WebSocketConfigurationException) as info:
        front.open(url, **options)
    error = info.value
    assert front.last_failure == "sync", "reported later through on_error, not raised"
    assert connections_since(server, before) == 0, "a connection was made first"
    assert isinstance(error, ValueError)
    assert f"127.0.0.1:{server.port}" in str(error)
    for pattern in case.mentions:
        assert re.search(pattern, error.message), f"{pattern!r} not in {error.message!r}"
    if case.pool_only and front.name == "connect":
        assert "Pool" in error.message, "must say the option is for wspool.Pool only"
        return
    reference = _reference_error(case, ws_server())
    assert isinstance(reference, WebSocketConfigurationException), reference
    assert error.message == reference.message


def test_unknown_option_warns_on_the_app(ws_server: WSServerFactory) -> None:
    """WebSocketApp.run_forever is websocket-client's name: an unknown option is
    ignored with the same message as a warning, pointing at the caller, and the
    app connects; wspool.connect and Pool.connect raise it (above)."""
    server = ws_server()
    front_end = make_front("app")
    try:
        with pytest.warns(wspool.UnknownOptionWarning, match=r"did you mean 'header'\?"):
            handle = front_end.open(server.url, headers={"X-Y": "z"})
        echo_both_kinds(handle)
        handle.close()
    finally:
        front_end.shutdown()
    assert server.requests[0].get("X-Y") is None


ACCEPTED_OPTIONS = [
    *on_fronts({"open_timeout": None}, case_id="open_timeout=None"),
    *on_fronts(
        {"timeout": 5},
        case_id="timeout=5",
    ),
    *on_fronts(
        {"source_address": ("127.0.0.1", 0)},
        case_id="source_address",
    ),
    *on_fronts({"max_size": None}, case_id="max_size=None"),
    *on_fronts({"close_timeout": 0}, case_id="close_timeout=0"),
    # 0, as for socket.settimeout: never wait (docs/architecture.md, "One opening path").
    *on_fronts({"timeout": 0}, case_id="timeout=0"),
]


@pytest.mark.parametrize(("front", "options"), ACCEPTED_OPTIONS, indirect=["front"])
def test_accepted_option_values(
    front: FrontEnd, options: dict[str, Any], ws_server: WSServerFactory
) -> None:
    server = ws_server()
    handle = front.open(server.url, **options)
    echo_both_kinds(handle)
    handle.close()
    if "source_address" in options:
        assert server.requests[0].client_address[0] == "127.0.0.1"


# ------------------------------------------------------------- handshake outcomes


def test_success_with_subprotocol_and_response_headers(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """The server's subprotocol choice and its response headers (names lower-cased)."""

    def handshake(request: Request) -> Response:
        return accept(request, subprotocol="chat.v2", headers=[("X-Served-By", "wsserver")])

    server = ws_server(handshake=handshake)
    handle = front.open(server.url + "/sub", subprotocols=["chat.v1", "chat.v2"])
    assert handle.subprotocol == "chat.v2"
    assert handle.headers["x-served-by"] == "wsserver"
    assert handle.headers["upgrade"] == "websocket"
    assert handle.headers["sec-websocket-protocol"] == "chat.v2"
    echo_both_kinds(handle)
    handle.close()
    request = server.requests[0]
    assert request.path == "/sub"
    assert request.subprotocols == ["chat.v1", "chat.v2"]


def test_permessage_deflate_negotiated_and_refused(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """Offered by default and negotiated; a server may decline; compression=None
    offers nothing (RFC 7692)."""
    willing = ws_server()
    unwilling = ws_server(compression=False)
    handle = front.open(willing.url)
    assert handle.extensions == ["permessage-deflate"]
    assert handle.headers["sec-websocket-extensions"] == "permessage-deflate"
    handle.send("compress me " * 200)
    assert handle.recv() == "compress me " * 200
    handle.close()
    assert willing.requests[0].extensions[0][0] == "permessage-deflate"

    handle = front.open(unwilling.url)
    assert handle.extensions == []
    assert "sec-websocket-extensions" not in handle.headers
    echo_both_kinds(handle)
    handle.close()

    handle = front.open(willing.url, compression=None)
    assert handle.extensions == []
    assert willing.requests[1].get("Sec-WebSocket-Extensions") is None
    echo_both_kinds(handle)
    handle.close()


LONG_BODY = b"refused: " + bytes(range(32, 127)) * 100  # 9.5 kB


@pytest.mark.parametrize("status", [400, 403, 404, 500, 503])
def test_bad_status(front: FrontEnd, ws_server: WSServerFactory, status: int) -> None:
    """A non-101 answer: WebSocketBadStatusException with the status, the headers and
    at most 4096 bytes of the body."""
    short_body = f"no ({status})".encode()

    def handshake(request: Request) -> Response:
        body = LONG_BODY if request.path == "/long" else short_body
        return refuse(status, body, [("X-Why", "testing")])

    server = ws_server(handshake=handshake)
    with pytest.raises(WebSocketBadStatusException) as info:
        front.open(server.url + "/short")
    error = info.value
    assert error.status_code == status
    assert ("X-Why", "testing") in error.headers
    assert error.resp_headers["x-why"] == "testing"
    assert error.resp_body == short_body
    assert str(status) in str(error)
    assert f"127.0.0.1:{server.port}/short" in str(error)

    with pytest.raises(WebSocketBadStatusException) as info:
        front.open(server.url + "/long")
    assert info.value.status_code == status
    assert info.value.resp_body == LONG_BODY[:4096]


def _broken(edit: Callable[[Response], object]) -> Callable[[Request], Response]:
    def handshake(request: Request) -> Response:
        response = accept(request)
        edit(response)
        return response

    return handshake


MALFORMED: dict[str, Callable[[Request], Response]] = {
    "bad status line": lambda request: Response(raw=b"HTTP/1.1 1o1 Switching\r\n\r\n"),
    "not HTTP at all": lambda request: Response(raw=b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "wrong Sec-WebSocket-Accept": _broken(lambda r: r.set_header("Sec-WebSocket-Accept", "AA==")),
    "missing Upgrade": _broken(lambda r: r.set_header("Upgrade", None)),
    "closes before answering": lambda request: Response(action=HandshakeAction.CLOSE),
}


@pytest.mark.parametrize("handshake", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_answer(
    front: FrontEnd, ws_server: WSServerFactory, handshake: Callable[[Request], Response]
) -> None:
    server = ws_server(handshake=handshake)
    with pytest.raises(WebSocketHandshakeException) as info:
        front.open(server.url)
    assert not isinstance(info.value, WebSocketBadStatusException | WebSocketRedirectException)
    assert f"127.0.0.1:{server.port}" in str(info.value)


def test_open_timeout_when_the_upgrade_is_never_answered(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """TCP accepted, no answer: WebSocketTimeoutException after about open_timeout."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    started = time.monotonic()
    with pytest.raises(WebSocketTimeoutException) as info:
        front.open(server.url, open_timeout=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.5
    assert isinstance(info.value, TimeoutError)
    assert f"127.0.0.1:{server.port}" in str(info.value)


# ---------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_followed(front: FrontEnd, ws_server: WSServerFactory, status: int) -> None:
    """Absolute and relative Location, for every redirect status (RFC 9110 §15.4)."""
    server = ws_server()

    def handshake(request: Request) -> Response | None:
        if request.path == "/dir/absolute":
            return redirect(f"ws://127.0.0.1:{server.port}/landed-absolute", status)
        if request.path == "/dir/relative":
            return redirect("landed-relative?q=1", status)
        return None

    server.handshake = handshake
    for start in ("/dir/absolute", "/dir/relative"):
        handle = front.open(server.url + start)
        echo_both_kinds(handle)
        handle.close()
    assert [r.path for r in server.requests] == [
        "/dir/absolute",
        "/landed-absolute",
        "/dir/relative",
        "/dir/landed-relative?q=1",
    ]


def test_redirect_limit(front: FrontEnd, ws_server: WSServerFactory) -> None:
    """More redirects than redirect_limit: WebSocketRedirectException naming the URL."""
    server = ws_server()
    server.handshake = lambda request: redirect(f"/hop{len(server.requests)}", 302)
    with pytest.raises(WebSocketRedirectException) as info:
        front.open(server.url + "/start", redirect_limit=2)
    assert len(server.requests) == 3
    assert f"127.0.0.1:{server.port}" in str(info.value)
    with pytest.raises(WebSocketRedirectException):
        front.open(server.url + "/again", redirect_limit=0)
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    "front",
    on_fronts(),
    indirect=True,
)
def test_redirect_loop_is_detected(front: FrontEnd, ws_server: WSServerFactory) -> None:
    """A -> B -> A: a WebSocketRedirectException about the loop, long before a generous
    redirect_limit would stop it."""
    a = ws_server()
    b = ws_server()
    a.handshake = lambda request: redirect(f"{b.url}/b", 302)
    b.handshake = lambda request: redirect(f"{a.url}/a", 302)
    with pytest.raises(WebSocketRedirectException) as info:
        front.open(f"{a.url}/a", redirect_limit=20)
    assert "loop" in info.value.message
    assert len(a.requests) + len(b.requests) == 2


def test_credentials_follow_redirects_to_the_same_origin_only(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """Authorization and Cookie headers, the cookie option and URL credentials are
    sent again after a redirect to the same host and port, not to another origin."""
    other = ws_server()
    home = ws_server()

    def handshake(request: Request) -> Response | None:
        if request.path == "/same":
            return redirect("/landed", 307)
        if request.path == "/away":
            return redirect(f"{other.url}/landed", 307)
        return None

    home.handshake = handshake
    header = {"Authorization": "Bearer t0ken", "Cookie": "from=header", "X-Keep": "yes"}
    basic = "Basic " + base64.b64encode(b"user:pw").decode()
    authority = f"127.0.0.1:{home.port}"
    for path in ("/same", "/away"):
        front.open(f"ws://{authority}{path}", header=header).close()
        front.open(f"ws://user:pw@{authority}{path}", cookie="from=option").close()

    landed_home = [r for r in home.requests if r.path == "/landed"]
    assert [(r.get("Authorization"), r.get("Cookie")) for r in landed_home] == [
        ("Bearer t0ken", "from=header"),
        (basic, "from=option"),
    ]
    assert landed_home[0].get("X-Keep") == "yes"
    assert len(other.requests) == 2
    for request in other.requests:
        assert request.get("Authorization") is None
        assert request.get("Cookie") is None
    assert other.requests[0].get("X-Keep") == "yes"


# ------------------------------------------------------------------------ proxies

PROXY_USER = ("proxyuser", "proxy pass")


@dataclass
class Proxies:
    http: HttpConnectProxy
    http_auth: HttpConnectProxy
    socks: SocksProxy
    socks_auth: SocksProxy

    def pick(self, proxy_type: str, auth: bool) -> HttpConnectProxy | SocksProxy:
        if proxy_type == "http":
            return self.http_auth if auth else self.http
        return self.socks_auth if auth else self.socks

    def all(self) -> list[HttpConnectProxy | SocksProxy]:
        return [self.http, self.http_auth, self.socks, self.socks_auth]


@pytest.fixture(scope="module")
def proxies() -> Iterator[Proxies]:
    """The proxies, shared by the module's tests; they reach 127.0.0.1 only and resolve
    "localhost" themselves (for the proxy types with remote DNS)."""
    hosts = {"localhost": "127.0.0.1"}
    started = Proxies(
        HttpConnectProxy(hosts=hosts).start(),
        HttpConnectProxy(auth=PROXY_USER, hosts=hosts).start(),
        SocksProxy(hosts=hosts).start(),
        SocksProxy(auth=PROXY_USER, hosts=hosts).start(),
    )
    yield started
    for proxy in started.all():
        proxy.stop()
    for proxy in started.all():
        assert proxy.errors == []


def _proxy_params() -> list[Any]:
    params = []
    for proxy_type in ("http", "socks4", "socks4a", "socks5", "socks5h"):
        for host in ("localhost", "127.0.0.1"):
            for auth in (False, True):
                label = f"{proxy_type}-{host}-{'auth' if auth else 'noauth'}"
                params += on_fronts(proxy_type, host, auth, case_id=label)
    return params


@pytest.mark.parametrize(
    ("front", "proxy_type", "host", "auth"), _proxy_params(), indirect=["front"]
)
def test_through_proxy(
    front: FrontEnd,
    proxy_type: str,
    host: str,
    auth: bool,
    ws_server: WSServerFactory,
    proxies: Proxies,
) -> None:
    """HTTP CONNECT, SOCKS4, SOCKS4a, SOCKS5, SOCKS5h; target as a name or an IP
    literal; with and without credentials (SOCKS4: the user id)."""
    server = ws_server()
    proxy = proxies.pick(proxy_type, auth)
    before = len(proxy.requests)
    handle = front.open(
        f"ws://{host}:{server.port}/via",
        http_proxy_host="127.0.0.1",
        http_proxy_port=proxy.port,
        http_proxy_auth=PROXY_USER if auth else None,
        proxy_type=proxy_type,
        open_timeout=SHORT_OPEN,
    )
    echo_both_kinds(handle)
    handle.close()
    new = proxy.requests[before:]
    assert len(new) == 1
    request = new[0]
    if isinstance(request, HttpProxyRequest):
        assert (request.method, request.target) == ("CONNECT", f"{host}:{server.port}")
        assert request.credentials == (PROXY_USER if auth else None)
    else:
        assert request.version == (4 if proxy_type.startswith("socks4") else 5)
        assert request.port == server.port
        if proxy_type in ("socks4a", "socks5h"):  # the proxy resolves the name
            assert request.host == host
        else:  # resolved locally: the proxy gets an address
            assert request.address_type in ("ipv4", "ipv6")
        if auth:
            assert request.user == PROXY_USER[0]
    upgrade = server.requests[-1]
    assert upgrade.path == "/via"
    assert upgrade.get("Host") == f"{host}:{server.port}"
    assert upgrade.get("Proxy-Authorization") is None


@pytest.mark.parametrize("auth", [None, ("proxyuser", "wrong-secret")], ids=["missing", "wrong"])
def test_http_proxy_refuses_without_the_right_credentials(
    front: FrontEnd,
    ws_server: WSServerFactory,
    proxies: Proxies,
    auth: tuple[str, str] | None,
) -> None:
    """407 from the proxy: WebSocketProxyException; the password is not shown and the
    WebSocket server is never reached."""
    server = ws_server()
    with pytest.raises(WebSocketProxyException) as info:
        front.open(
            server.url,
            http_proxy_host="127.0.0.1",
            http_proxy_port=proxies.http_auth.port,
            http_proxy_auth=auth,
            open_timeout=SHORT_OPEN,
        )
    assert "407" in str(info.value)
    assert "wrong-secret" not in str(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert server.requests == []


def test_proxy_from_the_environment(
    front: FrontEnd,
    ws_server: WSServerFactory,
    proxies: Proxies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """http_proxy (and socks5h:// with credentials in it) from the environment; an
    unrelated no_proxy keeps loopback going through the proxy."""
    server = ws_server()
    monkeypatch.setenv("no_proxy", "unrelated.example")
    monkeypatch.setenv("http_proxy", proxies.http.url)
    before = len(proxies.http.requests)
    handle = front.open(server.url, open_timeout=SHORT_OPEN)
    echo_both_kinds(handle)
    handle.close()
    assert [r.target for r in proxies.http.requests[before:]] == [f"127.0.0.1:{server.port}"]

    socks = proxies.socks_auth
    user, password = PROXY_USER
    monkeypatch.setenv(
        "http_proxy", f"socks5h://{user}:{password.replace(' ', '%20')}@127.0.0.1:{socks.port}"
    )
    before = len(socks.requests)
    handle = front.open(f"ws://localhost:{server.port}", open_timeout=SHORT_OPEN)
    echo_both_kinds(handle)
    handle.close()
    [request] = socks.requests[before:]
    assert (request.address_type, request.host, request.user) == ("domain", "localhost", user)


def test_no_proxy(
    front: FrontEnd,
    ws_server: WSServerFactory,
    proxies: Proxies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """http_no_proxy (option) and no_proxy (environment) send matching hosts direct."""
    server = ws_server()
    before = len(proxies.http.requests)
    handle = front.open(
        server.url,
        http_proxy_host="127.0.0.1",
        http_proxy_port=proxies.http.port,
        http_no_proxy=["127.0.0.1"],
        open_timeout=SHORT_OPEN,
    )
    echo_both_kinds(handle)
    handle.close()
    monkeypatch.setenv("http_proxy", proxies.http.url)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.0/8")
    handle = front.open(server.url, open_timeout=SHORT_OPEN)
    echo_both_kinds(handle)
    handle.close()
    assert proxies.http.requests[before:] == []
    assert len(server.requests) == 2


# ---------------------------------------------------------------------------- TLS


def test_tls_verified(
    front: FrontEnd,
    ws_server: WSServerFactory,
    tls_server_ctx: ssl.SSLContext,
    tls_client_ctx: ssl.SSLContext,
    ca_file: str,
) -> None:
    """sslopt={"ca_certs": ...} and ssl=<SSLContext> both verify the test CA's
    certificate; the upgrade runs over TLS."""
    server = ws_server(ssl_context=tls_server_ctx)
    handle = front.open(server.url + "/secure", sslopt={"ca_certs": ca_file})
    echo_both_kinds(handle)
    handle.close()
    handle = front.open(server.url + "/context", ssl=tls_client_ctx)
    echo_both_kinds(handle)
    handle.close()
    assert [(r.path, r.tls) for r in server.requests] == [("/secure", True), ("/context", True)]


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_tls_untrusted_certificate(
    front: FrontEnd, ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext
) -> None:
    """Secure by default: a certificate from an unknown CA is refused."""
    server = ws_server(ssl_context=tls_server_ctx)
    with pytest.raises(WebSocketTLSException) as info:
        front.open(server.url)
    assert "certificate verify failed" in info.value.message
    assert f"localhost:{server.port}" in str(info.value)
    assert server.connections == []
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_tls_host_name_mismatch(
    front: FrontEnd, ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    """A trusted certificate for another name fails the host name check."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    with pytest.raises(WebSocketTLSException) as info:
        front.open(server.url, sslopt={"ca_certs": ca_file})
    assert "'localhost'" in info.value.message  # the name that was checked
    assert server.connections == []
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


def test_tls_cert_none_skips_verification(
    front: FrontEnd, ws_server: WSServerFactory, tls_ca: trustme.CA
) -> None:
    """cert_reqs=CERT_NONE accepts an untrusted certificate for another name."""
    ctx, _ = tls_server_context(tls_ca, "other.example")
    server = ws_server(ssl_context=ctx)
    handle = front.open(server.url, sslopt={"cert_reqs": ssl.CERT_NONE})
    echo_both_kinds(handle)
    handle.close()


def test_tls_server_hostname_overrides_sni(
    front: FrontEnd, ws_server: WSServerFactory, tls_ca: trustme.CA, ca_file: str
) -> None:
    """sslopt["server_hostname"] is the name sent in SNI and checked on the
    certificate; an IP literal alone sends no SNI (RFC 6066 §3)."""
    ctx, seen = tls_server_context(tls_ca, "127.0.0.1", "virtual.example")
    server = ws_server(ssl_context=ctx)
    ip_url = f"wss://127.0.0.1:{server.port}"
    front.open(ip_url, sslopt={"ca_certs": ca_file}).close()
    handle = front.open(ip_url, sslopt={"ca_certs": ca_file, "server_hostname": "virtual.example"})
    echo_both_kinds(handle)
    handle.close()
    assert seen == [None, "virtual.example"]
    with pytest.raises(WebSocketTLSException):
        front.open(ip_url, sslopt={"ca_certs": ca_file, "server_hostname": "elsewhere.example"})


# -------------------------------------------------------------- connection errors


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_refused_port(front: FrontEnd) -> None:
    """Nothing listens: ConnectionRefusedError (an OSError, as in websocket-client)
    naming the URL without its credentials."""
    with refused_port() as port, pytest.raises(ConnectionRefusedError) as info:
        front.open(f"ws://user:s3cret@127.0.0.1:{port}/x", open_timeout=SHORT_OPEN)
    assert f"ws://127.0.0.1:{port}/x" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_unresolvable_host(front: FrontEnd) -> None:
    """A name that cannot resolve (RFC 6761 reserves .invalid): the same
    WebSocketAddressException everywhere, naming the URL."""
    with pytest.raises(WebSocketAddressException) as info:
        front.open("ws://no-such-host.invalid:9/", open_timeout=SHORT_OPEN)
    assert "no-such-host.invalid" in str(info.value)


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"subprotocols": ["chat"], "header": ["Sec-WebSocket-Protocol: chat"]}, "subprotocols"),
        ({"header": {"Upgrade": "h2c"}}, "Upgrade"),
        ({"origin": "http://a\r\nX-Evil: 1"}, "Origin"),
    ],
)
@pytest.mark.parametrize("front", FRONT_ENDS, indirect=True)
def test_request_conflicts_are_refused_before_connecting(
    front: FrontEnd, options: dict[str, Any], mentions: str, ws_server: WSServerFactory
) -> None:
    """Options that only clash once the request is built (a header that the handshake
    generates, header injection) are still refused in the caller's thread."""
    server = ws_server()
    before = server.accepted
    with pytest.raises(wspool.WebSocketConfigurationException, match=mentions):
        front.open(server.url, **options)
    assert front.last_failure == "sync"
    assert connections_since(server, before) == 0


# ------------------------------------------------------------ the socket option


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_socket_option_is_used_instead_of_dialling(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """socket=<connected socket>: the handshake runs over it; the URL's host is only
    named in the request (it is never resolved nor dialled)."""
    server = ws_server()
    sock = socket.create_connection(("127.0.0.1", server.port))
    handle = front.open("ws://unresolvable.invalid/over-socket", socket=sock)
    echo_both_kinds(handle)
    handle.close()
    assert [(r.path, r.get("Host")) for r in server.requests] == [
        ("/over-socket", "unresolvable.invalid")
    ]
    assert sock.fileno() == -1, "the given socket is closed with the connection"


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_socket_option_gets_tls_for_wss(
    front: FrontEnd, ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """A plain socket with a wss:// URL is wrapped in TLS and verified for the URL's
    host; an SSLSocket the caller made is used as it is."""
    server = ws_server(ssl_context=tls_server_ctx)
    url = f"wss://localhost:{server.port}/plain"
    plain = socket.create_connection(("127.0.0.1", server.port))
    handle = front.open(url, socket=plain, sslopt={"ca_certs": ca_file})
    echo_both_kinds(handle)
    handle.close()
    client_ctx = ssl.create_default_context(cafile=ca_file)
    ready = client_ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port)), server_hostname="localhost"
    )
    handle = front.open(f"wss://localhost:{server.port}/ready", socket=ready)
    echo_both_kinds(handle)
    handle.close()
    assert [(r.path, r.tls) for r in server.requests] == [("/plain", True), ("/ready", True)]


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_socket_option_failed_handshake_closes_it(
    front: FrontEnd, ws_server: WSServerFactory
) -> None:
    """A refused upgrade over the given socket raises as usual and closes the socket."""
    server = ws_server(handshake=lambda request: refuse(403))
    sock = socket.create_connection(("127.0.0.1", server.port))
    with pytest.raises(WebSocketBadStatusException):
        front.open(server.url, socket=sock)
    assert sock.fileno() == -1


def _unconnected() -> socket.socket:
    return socket.socket()


def _datagram() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


@pytest.mark.parametrize(
    ("front", "make", "why"),
    [
        *on_fronts(_unconnected, "not connected", case_id="unconnected"),
        *on_fronts(_datagram, "SOCK_STREAM", case_id="datagram"),
        *on_fronts(lambda: "127.0.0.1:80", "connected stream socket", case_id="str"),
    ],
    indirect=["front"],
)
def test_socket_option_must_be_a_connected_stream_socket(
    front: FrontEnd, ws_server: WSServerFactory, make: Callable[[], Any], why: str
) -> None:
    server = ws_server()
    value = make()
    try:
        with pytest.raises(WebSocketConfigurationException) as info:
            front.open(server.url, socket=value)
        assert front.last_failure == "sync"
        assert "socket=" in info.value.message
        assert why in info.value.message
        assert server.accepted == 0
    finally:
        if isinstance(value, socket.socket):
            value.close()


def test_socket_option_with_reconnect_is_refused(ws_server: WSServerFactory) -> None:
    """A given socket serves one connection: the pool refuses it with reconnect."""
    server = ws_server()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as sock,
        wspool.Pool(workers=1) as pool,
        pytest.raises(WebSocketConfigurationException, match="reconnect"),
    ):
        pool.connect(server.url, socket=sock, reconnect=True)


# -------------------------------------------- setdefaulttimeout, WEBSOCKET_CLIENT_CA_BUNDLE


@pytest.fixture
def default_timeout() -> Iterator[None]:
    yield
    wspool.setdefaulttimeout(None)


@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_default_timeout_bounds_the_opening(
    front: FrontEnd, ws_server: WSServerFactory, default_timeout: None
) -> None:
    """setdefaulttimeout(t) is the default of timeout=, and a positive timeout is the
    default bound of the opening (websocket-client's socket timeout bounds it too)."""
    server = ws_server(handshake=lambda request: Response(action=HandshakeAction.SILENT))
    wspool.setdefaulttimeout(0.5)
    assert wspool.getdefaulttimeout() == 0.5
    started = time.monotonic()
    with pytest.raises(WebSocketTimeoutException) as info:
        front.open(server.url)
    assert 0.4 <= time.monotonic() - started < 3.0
    assert "open_timeout=0.5" in info.value.message
    # open_timeout given: it wins over the default timeout.
    started = time.monotonic()
    with pytest.raises(WebSocketTimeoutException):
        front.open(server.url, open_timeout=1.0)
    assert time.monotonic() - started >= 0.9


def test_default_timeout_is_checked(default_timeout: None) -> None:
    for bad in (-1, "5", float("nan"), True):
        with pytest.raises(WebSocketConfigurationException, match="setdefaulttimeout"):
            wspool.setdefaulttimeout(bad)  # type: ignore[arg-type]
    assert wspool.getdefaulttimeout() is None


@pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
@pytest.mark.parametrize("front", on_fronts(), indirect=True)
def test_ca_bundle_environment_variable(
    front: FrontEnd,
    ws_server: WSServerFactory,
    tls_server_ctx: ssl.SSLContext,
    tls_ca: trustme.CA,
    ca_file: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    as_directory: bool,
) -> None:
    """WEBSOCKET_CLIENT_CA_BUNDLE names a CA file or a hashed CA directory, used when
    sslopt names none (as in websocket-client); sslopt's own ca_certs wins."""
    server = ws_server(ssl_context=tls_server_ctx)
    if as_directory:
        directory = tmp_path / "cas"
        directory.mkdir()
        pem = tls_ca.cert_pem.bytes()
        subject_hash = _openssl_subject_hash(ca_file)
        (directory / f"{subject_hash}.0").write_bytes(pem)
        monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(directory))
    else:
        monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", ca_file)
    handle = front.open(server.url)
    echo_both_kinds(handle)
    handle.close()
    other = trustme.CA()
    other_file = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_file))
    with pytest.raises(WebSocketTLSException):
        front.open(server.url, sslopt={"ca_certs": str(other_file)})


def _openssl_subject_hash(ca_file: str) -> str:
    """The subject-hash file name OpenSSL looks up in a CA directory (c_rehash)."""
    import subprocess

    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", ca_file],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()
