"""Blocking socket opening: resolve, try each address, tunnel through a proxy, wrap in TLS.

Used by the blocking client.  ``timeout`` bounds the whole of :func:`open_socket`
(every connect attempt, the proxy handshake and the TLS handshake together) and is
left set on the returned socket.  The socket is closed on every error path.

Errors:

* the host name does not resolve: :class:`~wspool.exceptions.WebSocketAddressException`;
* every address refused or failed: the last :class:`OSError`, re-raised as the same
  class (so ``ConnectionRefusedError`` stays catchable, as with websocket-client) with
  a message naming the URL;
* the proxy cannot be resolved, reached or refuses the tunnel:
  :class:`~wspool.exceptions.WebSocketProxyException`;
* time is up: :class:`~wspool.exceptions.WebSocketTimeoutException`;
* TLS fails: :class:`~wspool.exceptions.WebSocketTLSException` (the
  :class:`ssl.SSLError` chained).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

from wspool.exceptions import (
    WebSocketAddressException,
    WebSocketConfigurationException,
    WebSocketProxyException,
    WebSocketTimeoutException,
)
from wspool.transport.proxy import ProxyConfig, make_handshake
from wspool.transport.tls import build_ssl_context, tls_handshake_error
from wspool.transport.url import WebSocketURL, format_host

__all__ = ["open_socket"]


class _Deadline:
    """The time left for the whole open; ``None`` everywhere means no limit."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self, cap: float | None = None) -> float | None:
        if self._end is None:
            return cap
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("open_socket deadline passed")
        return left if cap is None else min(left, cap)


def open_socket(
    url: WebSocketURL,
    *,
    timeout: float | None,
    proxy: ProxyConfig | None,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    sockopt: Sequence[tuple[int, int, Any]] = (),
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """Return a connected socket for ``url``: tunnelled through ``proxy`` if given, and
    TLS-wrapped when the URL is ``wss://`` (``ssl_context`` ``None`` then means the
    secure default).  ``server_hostname`` (SNI and certificate name) defaults to the
    URL's host.  TCP_NODELAY is set; ``sockopt`` entries are ``setsockopt`` arguments
    applied before connecting; ``source_address`` is bound before connecting.
    """
    deadline = _Deadline(timeout)
    if proxy is not None:
        hop_host, hop_port = proxy.host, proxy.port
    else:
        hop_host, hop_port = url.host, url.port
    sock = _connect_first_hop(url, proxy, hop_host, hop_port, deadline, sockopt, source_address)
    try:
        if proxy is not None:
            _tunnel(sock, url, proxy, deadline)
        if url.secure:
            context = ssl_context if ssl_context is not None else build_ssl_context(None)
            sock = _wrap_tls(sock, url, context, server_hostname or url.host, deadline)
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(host: str, port: int, url: WebSocketURL, *, for_proxy: bool) -> list[tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        if for_proxy:
            raise WebSocketProxyException(
                f"cannot resolve the proxy host {host!r}: {exc}; check http_proxy_host "
                "or the proxy environment variables",
                url=url.redacted,
            ) from exc
        raise WebSocketAddressException(
            f"cannot resolve host {host!r}: {exc}; check the host name and your DNS",
            url=url.redacted,
        ) from exc
    if not infos:
        raise WebSocketAddressException(f"host {host!r} has no address", url=url.redacted)
    return [tuple(info) for info in infos]


def _connect_first_hop(
    url: WebSocketURL,
    proxy: ProxyConfig | None,
    host: str,
    port: int,
    deadline: _Deadline,
    sockopt: Sequence[tuple[int, int, Any]],
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """Connect to the proxy or the server, trying each resolved address in turn."""
    what = f"the proxy {proxy.address}" if proxy is not None else url.authority
    infos = _resolve(host, port, url, for_proxy=proxy is not None)
    cap = proxy.timeout if proxy is not None else None
    last_error: OSError | None = None
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            _apply_sockopts(sock, sockopt, url)
            if source_address is not None:
                sock.bind(source_address)
            sock.settimeout(deadline.remaining(cap))
            sock.connect(address)
        except WebSocketConfigurationException:
            sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            raise WebSocketTimeoutException(
                f"timed out connecting to {what} ({format_host(address[0])}:{address[1]})",
                url=url.redacted,
            ) from exc
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert last_error is not None
    message = f"cannot connect to {what}: {last_error.strerror or last_error}"
    if proxy is not None:
        raise WebSocketProxyException(message, url=url.redacted) from last_error
    if last_error.errno is None:
        raise last_error
    # OSError(errno, ...) picks the matching subclass (ConnectionRefusedError, ...)
    raise OSError(last_error.errno, f"{message} [{url.redacted}]") from last_error


def _apply_sockopts(
    sock: socket.socket, sockopt: Sequence[tuple[int, int, Any]], url: WebSocketURL
) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for option in sockopt:
        try:
            sock.setsockopt(*option)
        except (OSError, TypeError, ValueError) as exc:
            raise WebSocketConfigurationException(
                f"sockopt {option!r} was refused: {exc}; each entry is "
                "(level, option, value) for socket.setsockopt",
                url=url.redacted,
            ) from exc


def _tunnel(
    sock: socket.socket, url: WebSocketURL, proxy: ProxyConfig, deadline: _Deadline
) -> None:
    """Run the proxy handshake over ``sock`` until the tunnel to ``url`` is up."""
    target_host = url.host
    if not proxy.remote_dns:
        family = socket.AF_INET if proxy.type == "socks4" else 0
        try:
            infos = socket.getaddrinfo(url.host, url.port, family, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise WebSocketAddressException(
                f"cannot resolve host {url.host!r} for the {proxy.type} proxy: {exc}; "
                "use socks5h/socks4a to let the proxy resolve it",
                url=url.redacted,
            ) from exc
        target_host = str(infos[0][4][0])
    handshake = make_handshake(proxy, target_host, url.port, url=url.redacted)
    try:
        sock.settimeout(deadline.remaining(proxy.timeout))
        sock.sendall(handshake.initial_bytes())
        while not handshake.done:
            sock.settimeout(deadline.remaining(proxy.timeout))
            reply = handshake.receive(sock.recv(4096))
            if reply:
                sock.sendall(reply)
    except TimeoutError as exc:
        raise WebSocketTimeoutException(
            f"timed out waiting for the {proxy.type} proxy {proxy.address} to open the tunnel",
            url=url.redacted,
        ) from exc
    except OSError as exc:
        raise WebSocketProxyException(
            f"connection to the {proxy.type} proxy {proxy.address} failed during its "
            f"handshake: {exc}",
            url=url.redacted,
        ) from exc
    if handshake.leftover:
        # Neither a WebSocket nor a TLS server speaks first, so this is a broken proxy.
        raise WebSocketProxyException(
            f"the {proxy.type} proxy {proxy.address} sent {len(handshake.leftover)} "
            "unexpected bytes after opening the tunnel",
            url=url.redacted,
        )


def _wrap_tls(
    sock: socket.socket,
    url: WebSocketURL,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: _Deadline,
) -> ssl.SSLSocket:
    tls: ssl.SSLSocket | None = None
    try:
        tls = context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        tls.settimeout(deadline.remaining())
        tls.do_handshake()
    except TimeoutError as exc:
        _close(sock, tls)
        raise WebSocketTimeoutException(
            f"timed out during the TLS handshake with {url.authority}", url=url.redacted
        ) from exc
    except OSError as exc:  # ssl.SSLError included
        _close(sock, tls)
        raise tls_handshake_error(exc, url, server_hostname) from exc
    except BaseException:
        _close(sock, tls)
        raise
    return tls


def _close(sock: socket.socket, tls: ssl.SSLSocket | None) -> None:
    # wrap_socket detaches the file descriptor from ``sock``; closing both is safe
    if tls is not None:
        tls.close()
    sock.close()
