"""websocket-client 1.9's documented usages, run under ``import wspool as websocket``.

Each snippet of websocket-client's README, examples/ folder and docs pages (examples,
FAQ, threading) becomes a test, pointed at the local test server (tests/wsserver.py)
instead of the internet, and named after its doc section.  This module holds the
blocking-client snippets and the checklist of all of them; the WebSocketApp snippets
are in test_compat_app.py (those on rel in test_compat_rel.py), TLS and proxies in
test_compat_tls_proxy.py, and the API the snippets rely on (options, timeouts, frames,
iteration) in test_compat_api.py.

Where wspool differs on purpose (docs/migration.md, "Differences, on purpose") the
test says so in its docstring.  permessage-deflate is one: wspool offers it, so tests
that pin a frame's size (the docs' ``ws.send(...)`` returning 19) use a server that
declines it, as the docs' echo servers do.
"""

# Checklist: doc page, section -> test.  "app:", "api:", "rel:", "tls:" name the modules
# test_compat_app, test_compat_api, test_compat_rel and test_compat_tls_proxy; no prefix:
# this module.  [a, b] are the parametrized variants.
#
# README.md
#   Long-lived Connection (run_forever(dispatcher=rel, reconnect=5), rel.dispatch())
#       -> rel: test_readme_long_lived_connection[rel, stand-in]
#   Short-lived Connection -> test_readme_short_lived_connection
#   Performance (skip_utf8_validation)
#       -> api: test_faq_why_is_this_library_slow_skip_utf8_validation
# examples/
#   echo_client.py -> test_example_echo_client
#   echoapp_client.py -> app: test_example_echoapp_client
#   rel_client.py -> rel: test_example_rel_client[rel, stand-in]
# docs/source/examples.rst
#   Creating Your First WebSocket Connection
#     WebSocket example -> test_first_connection_websocket_example
#     WebSocketApp example -> app: test_first_connection_websocketapp_example
#   Debug and Logging Options
#       -> test_debug_and_logging_options_shows_the_origin_header,
#          test_debug_and_logging_options_handler_and_level,
#          test_debug_and_logging_trace_redacts_credentials
#   Using websocket-client with "with" statements
#     Short-lived WebSocket using "with" statement
#       -> test_with_statement_short_lived_websocket
#   Setting Common Header Values
#     WebSocket common headers example
#       -> test_websocket_common_headers_example[both doc versions of host=]
#     WebSocketApp common headers example -> app: test_websocketapp_common_headers_example
#     WebSocket subprotocols example -> test_websocket_subprotocols_example
#     WebSocketApp subprotocols example
#       -> app: test_websocketapp_subprotocols_example[STOMP, testproto]
#   Suppress Origin Header
#     WebSocket suppress origin example -> test_websocket_suppress_origin_example
#     WebSocketApp suppress origin example -> app: test_websocketapp_suppress_origin_example
#   Setting Custom Header Values ("in a list or dict")
#     WebSocket custom headers example -> test_websocket_custom_headers_example[dict, list]
#     WebSocketApp custom headers example
#       -> app: test_websocketapp_custom_headers_example[dict, list]
#   Disabling SSL or Hostname Verification -> see faq.rst below
#   Using a Custom Class -> test_using_a_custom_class
#   Setting Timeout Value
#     setdefaulttimeout() / getdefaulttimeout()
#       -> api: test_setdefaulttimeout_is_the_default_of_every_front_end
#     WebSocket timeout example -> test_websocket_timeout_example
#     WebSocketApp timeout example -> app: test_websocketapp_timeout_example
#   Connecting through a proxy (the older page: "Connecting through a HTTP proxy")
#     WebSocket proxy example (port "8080", a string) -> tls: test_websocket_http_proxy_example
#     WebSocket HTTP proxy with authentication example
#       -> tls: test_websocket_http_proxy_with_authentication_example
#     WebSocket SOCKS4 (or SOCKS5) proxy example
#       -> tls: test_websocket_socks_proxy_example[socks4, socks4a, socks5, socks5h]
#     WebSocketApp proxy example -> tls: test_websocketapp_proxy_example[socks5, http]
#   Connecting with Custom Sockets (the older page: "Using Unix Domain Sockets")
#     unix domain socket example -> test_custom_socket_unix_domain_socket
#     AF_INET socket example -> test_custom_socket_af_inet
#     the same with wss:// -> tls: test_custom_socket_with_wss[plain, ssl-socket]
#   Ping/Pong Usage
#     WebSocket ping/pong example -> test_websocket_ping_pong_example
#     WebSocketApp ping/pong example -> app: test_websocketapp_ping_pong_example
#   Sending Connection Close Status Codes
#     WebSocket sending close() status code example
#       -> test_websocket_sending_close_status_code[positional, keyword]
#     WebSocketApp sending close() status code example
#       -> app: test_websocketapp_sending_close_status_code
#   Receiving Connection Close Status Codes
#     WebSocket receiving close status code example
#       -> test_websocket_receiving_close_status_code
#     WebSocketApp receiving close status code example
#       -> app: test_websocketapp_receiving_close_status_code
#   Customizing frame mask
#     WebSocket custom masking key code example
#       -> test_websocket_custom_masking_key[set_mask_key, constructor]
#     WebSocketApp custom masking key code example -> app: test_websocketapp_custom_masking_key
#   Customizing opcode
#     WebSocket custom opcode code example -> test_websocket_custom_opcode
#     WebSocketApp custom opcode code example -> app: test_websocketapp_custom_opcode
#   Dispatching Multiple WebSocketApps (rel, reconnect=3)
#       -> rel: test_dispatching_multiple_websocketapps[rel, stand-in]
#   README Examples -> the README tests above
# docs/source/faq.rst
#   Why is this library slow? / I get the error 'utf8' codec can't decode byte 0x81
#       -> api: test_faq_why_is_this_library_slow_skip_utf8_validation
#   How to troubleshoot an unclear callback error?
#       -> app: test_faq_troubleshoot_an_unclear_callback_error
#   How to solve the "connection is already closed" error?
#       -> api: test_faq_connection_is_already_closed
#   What is the difference between recv_frame(), recv_data_frame(), and recv_data()?
#       -> api: test_faq_recv_frame_recv_data_frame_recv_data
#   How to disable ssl cert verification?
#       -> tls: test_faq_disable_ssl_cert_verification[WebSocketApp, create_connection, WebSocket]
#   How to disable hostname verification?
#       -> tls: test_faq_disable_hostname_verification[WebSocketApp, create_connection, WebSocket]
#   What else can I do with sslopts? (context)
#       -> tls: test_faq_sslopt_context[run_forever, create_connection]
#   How to enable SNI? -> tls: test_faq_sni_is_enabled_automatically
#   Using Subprotocols -> test_faq_using_subprotocols
#   (Python 2, naming, compression, reconnect semantics, missing messages: no snippet)
# docs/source/threading.rst
#   Importance of enable_multithread -> test_threading_importance_of_enable_multithread
#   asyncio library usage -> test_threading_asyncio_library_usage
#   threading library usage (echoapp_client.py) -> app: test_example_echoapp_client
#   Possible issues with threading
#     NOT working / Working on_close() example, without / with threading
#       -> app: test_threading_on_close_examples[without, with]
#     NOT working on_close() example, with sleep delay; Working ..., with threading delay
#       -> app: test_threading_on_close_with_delays[sleep, timer]
# Beyond the pages: the API those snippets lean on
#   WebSocket(...) without a socket, connect(), connect again, accessors, timeouts
#       -> api: test_websocket_constructor_options_and_accessors
#   create_connection(class_=...) -> api: test_create_connection_class_gets_the_options
#   unknown options: websocket-client's entry points warn, wspool's raise
#       -> api: test_unknown_option_is_ignored_with_a_hint[create_connection, WebSocket(),
#          ws.connect], api: test_unknown_option_raises_in_wspool_front_ends,
#          app: test_run_forever_ignores_an_unknown_option_with_a_hint
#   STATUS_* -> api: test_status_constants
#   ABNF, send_frame(), recv_frame() -> api: test_abnf_frames_sent_and_received
#   next(ws), ws.next(), for message in ws -> api: test_iterating_over_messages
#   send_close(), abort(), shutdown() -> api: test_send_close_then_recv_returns_empty,
#          api: test_abort_wakes_a_blocked_recv, api: test_shutdown_closes_at_once
#   WEBSOCKET_CLIENT_CA_BUNDLE -> tls: test_ca_bundle_environment_variable[file, directory]
#   WebSocketApp: ws.keep_running = False, ws.sock.shutdown(), websocket.set_reconnect()
#       -> app: test_keep_running_false_in_on_open_ends_run_forever,
#          app: test_sock_shutdown_ends_run_forever, app: test_set_reconnect_is_the_default_delay

from __future__ import annotations

import logging
import socket
import struct
from contextlib import closing
from typing import Any

import pytest
from compat_support import (
    CLOSE_REASON,
    GREETING,
    Output,
    UnixRelay,
    WSServerFactory,
    close_after_first_message,
    greet_then_echo,
    record_masks,
    websocket_client_state,
)
from helpers import run_in_thread, wait_until
from proxies import HttpConnectProxy
from wsserver import Request, Response, ServerConnection, accept

import wspool as websocket
from wspool import create_connection

__all__ = ["websocket_client_state"]  # the autouse fixture, imported from compat_support


def choose_first_subprotocol(request: Request) -> Response:
    """The server picks the first subprotocol offered (websocket-client, like wspool,
    refuses a 101 that picks none of those it asked for)."""
    offered = request.subprotocols
    return accept(request, subprotocol=offered[0] if offered else None)


def handler_done(conn: ServerConnection) -> bool:
    """Whether the server's handler of ``conn`` ended (and closed TCP) in time."""
    return wait_until(lambda: conn.closed)


class Capture(logging.Handler):
    """A handler for ``enableTrace(True, handler=...)`` that keeps the lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# --------------------------------------------------------------------- README, examples/


def test_readme_short_lived_connection(ws_server: WSServerFactory, capsys: Any) -> None:
    """README "Short-lived Connection": read the greeting, send, receive, close."""
    server = ws_server(greet_then_echo, compression=False)
    output = Output(capsys)

    ws = create_connection(server.url + "/")
    print(ws.recv())
    print("Sending 'Hello, World'...")
    assert ws.send("Hello, World") == 18  # the docs' doctest value: 6-byte header + 12
    print("Sent")
    print("Receiving...")
    result = ws.recv()
    print("Received '%s'" % result)  # noqa: UP031 (the README's line)
    ws.close()

    assert output.lines() == [
        GREETING,
        "Sending 'Hello, World'...",
        "Sent",
        "Receiving...",
        "Received 'Hello, World'",
    ]
    assert not ws.connected and ws.sock is None
    assert handler_done(server.connections[0])
    assert server.connections[0].close_received == (1000, b"")


def test_example_echo_client(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples/echo_client.py: the same exchange with ``enableTrace(True)``, whose trace
    goes to stderr while the script's own lines go to stdout."""
    server = ws_server(greet_then_echo)
    output = Output(capsys)

    websocket.enableTrace(True)
    ws = websocket.create_connection(server.url + "/")
    ws.recv()
    print("Sending 'Hello, World'...")
    ws.send("Hello, World")
    print("Sent")
    print("Receiving...")
    result = ws.recv()
    print(f"Received '{result}'")
    ws.close()

    assert output.lines() == [
        "Sending 'Hello, World'...",
        "Sent",
        "Receiving...",
        "Received 'Hello, World'",
    ]
    trace = output.err
    assert "GET / HTTP/1.1" in trace and "101" in trace
    assert "Hello, World" in trace  # the frames, both ways


# --------------------------------------------------------------------- examples.rst


def test_first_connection_websocket_example(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "Creating Your First WebSocket Connection", WebSocket example (the
    doctest version: ``send`` returns 19, ``recv`` gives the server's greeting)."""
    server = ws_server(greet_then_echo, compression=False)
    output = Output(capsys)

    ws = websocket.WebSocket()
    ws.connect(server.url)
    assert ws.send("Hello, Server") == 19
    print(ws.recv())
    ws.close()

    assert output.lines() == [GREETING]
    assert handler_done(server.connections[0])


def test_debug_and_logging_options_shows_the_origin_header(
    ws_server: WSServerFactory, capsys: Any
) -> None:
    """examples.rst "Debug and Logging Options": the trace (stderr) shows the request
    head with the Origin header given, the response head, and the frames."""
    server = ws_server(greet_then_echo)
    output = Output(capsys)

    websocket.enableTrace(True)
    ws = websocket.WebSocket()
    ws.connect(server.url + "/", origin="testing_websockets.com")
    ws.send("Hello, Server")
    print(ws.recv())
    ws.close()

    assert output.lines() == [GREETING]
    trace = output.err
    assert "GET / HTTP/1.1" in trace
    assert "Origin: testing_websockets.com" in trace
    assert "Upgrade: websocket" in trace and "Sec-WebSocket-Key: " in trace
    assert "101 Switching Protocols" in trace and "Sec-WebSocket-Accept: " in trace
    assert "Hello, Server" in trace and GREETING in trace
    assert server.requests[0].get("Origin") == "testing_websockets.com"


def test_debug_and_logging_options_handler_and_level(ws_server: WSServerFactory) -> None:
    """``enableTrace(True, handler=..., level=...)`` sends the trace to the given handler
    (websocket-client 1.9's signature); ``enableTrace(False)`` stops it."""
    server = ws_server()
    handler = Capture()

    websocket.enableTrace(True, handler=handler, level="DEBUG")
    with websocket.create_connection(server.url + "/traced", origin="testing_websockets.com"):
        pass
    assert any("GET /traced HTTP/1.1" in line for line in handler.lines)
    assert any("Origin: testing_websockets.com" in line for line in handler.lines)

    websocket.enableTrace(False)
    seen = len(handler.lines)
    with websocket.create_connection(server.url + "/quiet"):
        pass
    assert handler.lines[seen:] == []


def test_debug_and_logging_trace_redacts_credentials(ws_server: WSServerFactory) -> None:
    """The trace never shows credentials: Authorization, Cookie and (through an HTTP
    proxy) Proxy-Authorization appear with their values hidden."""
    server = ws_server()
    handler = Capture()
    websocket.enableTrace(True, handler=handler, level=logging.DEBUG)
    with HttpConnectProxy(auth=("proxyuser", "proxy-s3cret")) as proxy:
        ws = websocket.create_connection(
            server.url,
            header={"Authorization": "Bearer header-s3cret"},
            cookie="session=cookie-s3cret",
            http_proxy_host=proxy.host,
            http_proxy_port=proxy.port,
            http_proxy_auth=("proxyuser", "proxy-s3cret"),
        )
        ws.close()
    text = "\n".join(handler.lines)
    for name in ("Authorization:", "Cookie:", "Proxy-Authorization:"):
        assert name in text, f"no {name} line in the trace:\n{text}"
    for secret in ("header-s3cret", "cookie-s3cret", "proxy-s3cret", "cHJveHl1c2Vy"):
        assert secret not in text, f"{secret!r} leaked into the trace:\n{text}"
    # The server did get them: the trace hides them, the request does not.
    assert server.requests[0].get("Authorization") == "Bearer header-s3cret"
    assert server.requests[0].get("Cookie") == "session=cookie-s3cret"


def test_with_statement_short_lived_websocket(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst 'Using websocket-client with "with" statements': contextlib.closing
    around create_connection closes the connection (closing handshake) on exit."""
    server = ws_server(greet_then_echo)
    output = Output(capsys)

    with closing(create_connection(server.url + "/ws/btcusdt@trade")) as conn:
        print(conn.recv())

    assert output.lines() == [GREETING]
    assert not conn.connected and conn.sock is None
    assert server.requests[0].path == "/ws/btcusdt@trade"
    assert handler_done(server.connections[0])
    assert server.connections[0].close_received == (1000, b"")


@pytest.mark.parametrize(
    "host",
    [
        "echo.websocket.org/websocket-client-test",  # the older page
        "echo.websocket.events",  # the current page
    ],
)
def test_websocket_common_headers_example(ws_server: WSServerFactory, host: str) -> None:
    """examples.rst "WebSocket common headers example": cookie, origin and host set the
    Cookie, Origin and Host headers; host is sent as given, even with a path in it."""
    server = ws_server()

    ws = websocket.WebSocket()
    ws.connect(server.url, cookie="chocolate", origin="testing_websockets.com", host=host)

    request = server.requests[0]
    assert request.get("Cookie") == "chocolate"
    assert request.get("Origin") == "testing_websockets.com"
    assert request.get("Host") == host
    assert ws.connected
    ws.close()


def test_websocket_subprotocols_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket subprotocols example": subprotocols=["mqtt"] (the older
    page: "testproto") is offered in Sec-WebSocket-Protocol; the server's choice is
    ``getsubprotocol()``."""
    server = ws_server(handshake=choose_first_subprotocol)

    ws = websocket.WebSocket()
    ws.connect(server.url, subprotocols=["mqtt"])
    assert server.requests[0].subprotocols == ["mqtt"]
    assert ws.getsubprotocol() == "mqtt"
    ws.close()

    ws = websocket.WebSocket()
    ws.connect(server.url, subprotocols=["testproto"])
    assert server.requests[1].subprotocols == ["testproto"]
    assert ws.getsubprotocol() == "testproto"
    ws.close()


def test_faq_using_subprotocols(ws_server: WSServerFactory) -> None:
    """faq.rst "Using Subprotocols": create_connection(url, subprotocols=["binary",
    "base64"]) offers both, in order."""
    server = ws_server(handshake=choose_first_subprotocol)
    ws = websocket.create_connection(server.url + "/websocket", subprotocols=["binary", "base64"])
    assert server.requests[0].subprotocols == ["binary", "base64"]
    assert ws.getsubprotocol() == "binary"
    ws.close()


def test_websocket_suppress_origin_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket suppress origin example": no Origin header at all (and
    there is one by default)."""
    server = ws_server()

    ws = websocket.WebSocket()
    ws.connect(server.url, suppress_origin=True)
    ws.close()
    with websocket.create_connection(server.url):
        pass

    assert server.requests[0].get("Origin") is None
    assert server.requests[1].get("Origin") == f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    "header",
    [
        {"CustomHeader1": "123", "NewHeader2": "Test"},
        ["CustomHeader1: 123", "NewHeader2: Test"],
    ],
    ids=["dict", "list"],
)
def test_websocket_custom_headers_example(ws_server: WSServerFactory, header: Any) -> None:
    """examples.rst "WebSocket custom headers example": ``header`` as a dict (the
    example) or a list of "Name: value" lines (the text: "in a list or dict")."""
    server = ws_server()

    ws = websocket.WebSocket()
    ws.connect(server.url, header=header)
    ws.close()

    request = server.requests[0]
    assert request.get("CustomHeader1") == "123"
    assert request.get("NewHeader2") == "Test"


def test_using_a_custom_class(ws_server: WSServerFactory, capsys: Any) -> None:
    """examples.rst "Using a Custom Class": create_connection(..., sockopt=...,
    class_=MyWebSocket) returns the subclass, connected (TCP_NODELAY is on, as wspool
    sets it anyway); its recv_frame override runs.  (test_compat_api checks that
    class_ gets the options.)"""
    server = ws_server(greet_then_echo)
    output = Output(capsys)

    class MyWebSocket(websocket.WebSocket):
        def recv_frame(self) -> websocket.ABNF:
            frame = super().recv_frame()
            print("yay! I got this frame: ", frame)
            return frame

    ws = create_connection(
        server.url + "/",
        sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        class_=MyWebSocket,
    )
    assert isinstance(ws, MyWebSocket)
    assert ws.sock is not None
    assert ws.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    frame = ws.recv_frame()
    assert (frame.opcode, frame.fin, frame.data) == (
        websocket.ABNF.OPCODE_TEXT,
        1,
        GREETING.encode(),
    )
    ws.close()
    [line] = output.lines()
    assert line.startswith("yay! I got this frame:  ") and "opcode=1" in line


def test_websocket_timeout_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket timeout example": connect(url, timeout=...) to a server
    that sends nothing; recv() raises WebSocketTimeoutException (5 s there, 0.2 s here).
    The connection is still usable afterwards, as in websocket-client."""
    server = ws_server()  # the echo server: silent until spoken to

    ws = websocket.WebSocket()
    ws.connect(server.url, timeout=0.2)
    # ws.send("Hello, Server") # Commented out to trigger WebSocketTimeoutException
    with pytest.raises(websocket.WebSocketTimeoutException):
        print(ws.recv())

    assert ws.gettimeout() == 0.2
    ws.send("still open")
    assert ws.recv() == "still open"
    ws.close()


def test_custom_socket_unix_domain_socket(ws_server: WSServerFactory) -> None:
    """examples.rst "Connecting with Custom Sockets" (older: "Using Unix Domain
    Sockets"): create_connection(dummy URL, socket=a connected Unix socket).  The URL
    only names Host and path; sockopt does not apply to a given socket (as in
    websocket-client, which uses it as it is)."""
    server = ws_server()
    with UnixRelay((server.host, server.port)) as relay:
        my_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            my_socket.connect(relay.path)

            ws = create_connection(
                "ws://localhost/",  # Dummy URL
                socket=my_socket,
                sockopt=((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),),
            )
            assert ws.sock is my_socket
            assert my_socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            ws.send("over a unix socket")
            assert ws.recv() == "over a unix socket"
            ws.close()
        finally:
            my_socket.close()
        assert relay.relayed > 0
    request = server.requests[0]
    assert (request.get("Host"), request.path) == ("localhost", "/")
    assert server.connections[0].close_received == (1000, b"")


def test_custom_socket_af_inet(ws_server: WSServerFactory) -> None:
    """examples.rst "Connecting with Custom Sockets", AF_INET example: a socket bound to
    a chosen local address and connected by the caller is used instead of dialling."""
    server = ws_server()
    my_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        my_socket.bind(("127.0.0.1", 0))
        bound = my_socket.getsockname()
        my_socket.connect((server.host, server.port))

        ws = create_connection("ws://127.0.0.1/", socket=my_socket)  # Dummy URL
        ws.send("over my socket")
        assert ws.recv() == "over my socket"
        ws.close()
    finally:
        my_socket.close()
    request = server.requests[0]
    assert request.get("Host") == "127.0.0.1"
    assert request.client_address == bound  # the connection came from the caller's socket


def test_websocket_ping_pong_example(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket ping/pong example": ping() with and without a payload,
    and (older page) an unsolicited pong(), reach the server."""
    server = ws_server()

    websocket.enableTrace(True)
    ws = websocket.WebSocket()
    ws.connect(server.url)
    ws.ping()
    ws.ping("This is an optional ping payload")
    ws.pong()
    ws.close()

    conn = server.connections[0]
    assert handler_done(conn)
    assert conn.pings == [b"", b"This is an optional ping payload"]
    assert conn.pongs == [b""]


@pytest.mark.parametrize("form", ["positional", "keyword"])
def test_websocket_sending_close_status_code(ws_server: WSServerFactory, form: str) -> None:
    """examples.rst "WebSocket sending close() status code example":
    ws.close(websocket.STATUS_PROTOCOL_ERROR), "Alternatively, use ws.close(status=1002)"."""
    server = ws_server(greet_then_echo, compression=False)

    websocket.enableTrace(True)
    ws = websocket.WebSocket()
    ws.connect(server.url)
    assert ws.send("Hello, Server") == 19
    assert ws.recv() == GREETING
    if form == "positional":
        ws.close(websocket.STATUS_PROTOCOL_ERROR)
    else:
        ws.close(status=1002)

    conn = server.connections[0]
    assert handler_done(conn)
    assert conn.close_received == (1002, b"")


def test_websocket_receiving_close_status_code(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket receiving close status code example": recv_data() gives
    (8, payload) for the server's close frame; the code is the payload's first two
    bytes, big-endian, the reason the rest."""
    server = ws_server(close_after_first_message, compression=False)

    websocket.enableTrace(True)
    ws = websocket.WebSocket()
    ws.connect(server.url + "/v3/wsconnect")
    assert ws.send("Hello") == 11
    resp_opcode, msg = ws.recv_data()
    assert resp_opcode == 8 and len(msg) >= 2
    assert struct.unpack("!H", msg[0:2])[0] == 4000
    assert msg[2:] == CLOSE_REASON.encode()
    ws.close()
    # recv_data answered the close frame (RFC 6455 §5.5.1) with the same code.
    assert server.connections[0].close_sent
    assert server.connections[0].close_received == (4000, b"")


@pytest.mark.parametrize("how", ["set_mask_key", "constructor"])
def test_websocket_custom_masking_key(ws_server: WSServerFactory, how: str) -> None:
    """examples.rst "WebSocket custom masking key code example": ws.set_mask_key(f)
    before connect (or WebSocket(get_mask_key=f)); f returns a str of four NULs and
    every frame is masked with that key (RFC 6455 §5.3)."""
    keys: list[bytes] = []
    server = ws_server(record_masks(keys), compression=False)

    websocket.enableTrace(True)

    def zero_mask_key(_: int) -> str:
        return "\x00\x00\x00\x00"

    if how == "set_mask_key":
        ws = websocket.WebSocket()
        ws.set_mask_key(zero_mask_key)  # type: ignore[arg-type]  # a str, as in the docs
    else:
        ws = websocket.WebSocket(get_mask_key=zero_mask_key)  # type: ignore[arg-type]
    ws.connect(server.url)
    ws.send("Hello, Server")
    assert ws.recv() == "Hello, Server"
    ws.close()

    assert handler_done(server.connections[0])
    assert keys == [b"\x00\x00\x00\x00"] * 2  # the text frame and the close frame


def test_websocket_custom_opcode(ws_server: WSServerFactory) -> None:
    """examples.rst "WebSocket custom opcode code example": send(data, ABNF.OPCODE_TEXT)
    sends text, send(data, ABNF.OPCODE_PING) sends a ping."""
    server = ws_server()

    websocket.enableTrace(True)
    ws = websocket.WebSocket()
    ws.connect(server.url)
    ws.send("Hello, Server", websocket.ABNF.OPCODE_TEXT)
    assert ws.recv() == "Hello, Server"
    ws.send("This is a ping", websocket.ABNF.OPCODE_PING)
    ws.close()

    conn = server.connections[0]
    assert handler_done(conn)
    assert conn.pings == [b"This is a ping"]


# --------------------------------------------------------------------- threading.rst


def test_threading_importance_of_enable_multithread(ws_server: WSServerFactory) -> None:
    """threading.rst "Importance of enable_multithread": with enable_multithread=True
    one thread may block in recv() while another sends."""
    server = ws_server()
    ws = websocket.WebSocket(enable_multithread=True)
    ws.connect(server.url)
    receiver = run_in_thread(ws.recv, name="recv")
    for i in range(3):
        ws.send(f"from the main thread {i}")
    assert receiver.result() == "from the main thread 0"
    assert ws.recv() == "from the main thread 1"
    assert ws.recv() == "from the main thread 2"
    ws.close()


def test_threading_asyncio_library_usage(ws_server: WSServerFactory) -> None:
    """threading.rst "asyncio library usage": ws.recv in the event loop's executor."""
    import asyncio

    server = ws_server(greet_then_echo)
    ws = websocket.create_connection(server.url)

    async def mylisten(ws: websocket.WebSocket) -> str | bytes:
        result = await asyncio.get_event_loop().run_in_executor(None, ws.recv)
        return result

    async def main() -> list[str | bytes]:
        first = await mylisten(ws)
        ws.send("from asyncio")
        return [first, await mylisten(ws)]

    assert asyncio.run(main()) == [GREETING, "from asyncio"]
    ws.close()
