"""Socket plumbing shared by the blocking client and the pool.

URL parsing (:mod:`.url`), ``sslopt`` to :class:`ssl.SSLContext` (:mod:`.tls`), proxy
selection and the sans-I/O proxy handshakes (:mod:`.proxy`), the dial plan both front
ends carry out (:mod:`.dial`: proxy per hop, lookups, address order, socket setup,
failure wording), and its blocking carrier (:mod:`.connect`).
"""

from wspool.transport.connect import open_socket
from wspool.transport.proxy import (
    HttpConnectHandshake,
    ProxyConfig,
    ProxyHandshake,
    Socks4Handshake,
    Socks5Handshake,
    is_no_proxy_host,
    make_handshake,
    parse_proxy_url,
    select_proxy,
)
from wspool.transport.tls import build_ssl_context, server_hostname_for, tls_handshake_error
from wspool.transport.url import WebSocketURL, format_host, parse_url, resolve_redirect

__all__ = [
    "HttpConnectHandshake",
    "ProxyConfig",
    "ProxyHandshake",
    "Socks4Handshake",
    "Socks5Handshake",
    "WebSocketURL",
    "build_ssl_context",
    "format_host",
    "is_no_proxy_host",
    "make_handshake",
    "open_socket",
    "parse_proxy_url",
    "parse_url",
    "resolve_redirect",
    "select_proxy",
    "server_hostname_for",
    "tls_handshake_error",
]
