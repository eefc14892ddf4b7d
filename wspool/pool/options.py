"""Per-connection options of the pool, checked once when ``pool.connect`` is called.

Everything a session needs to (re)open a socket is computed here, on the caller's
thread, so that mistakes raise at once with the option's name and nothing costly
(SSL context, proxy selection) is redone per reconnect.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from wspool.exceptions import WebSocketConfigurationException
from wspool.protocol.client_protocol import DEFAULT_MAX_SIZE
from wspool.protocol.deflate import DeflateOptions, coerce_compression
from wspool.protocol.handshake import headers_without_credentials
from wspool.transport.proxy import ProxyConfig, select_proxy
from wspool.transport.tls import build_ssl_context, server_hostname_for
from wspool.transport.url import WebSocketURL, parse_url

__all__ = ["ConnectOptions", "build_options"]

_DEFAULT_OPEN_TIMEOUT: Final = 10.0
_DEFAULT_CLOSE_TIMEOUT: Final = 3.0
#: Undelivered messages per connection before its socket stops being read.
DEFAULT_MAX_QUEUE: Final = 10_000
DEFAULT_MAX_QUEUE_BYTES: Final = 64 * 1024 * 1024

# Contexts built from the same sslopt are shared: a default context loads the whole
# CA store, far too much memory to repeat for thousands of connections.
_shared_contexts: dict[Any, ssl.SSLContext] = {}


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    url: WebSocketURL
    proxy: ProxyConfig | None
    ssl_context: ssl.SSLContext
    server_hostname: str | None
    header: Any
    header_without_credentials: list[tuple[str, str]]
    cookie: str | None
    origin: str | None
    suppress_origin: bool
    host: str | None
    subprotocols: Sequence[str] | None
    deflate: DeflateOptions | None
    max_size: int | None
    skip_utf8_validation: bool
    sockopt: Sequence[tuple[int, int, int]]
    open_timeout: float | None
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float | None
    ping_payload: bytes
    redirect_limit: int
    max_queue: int
    max_queue_bytes: int | None


def _seconds(name: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise WebSocketConfigurationException(
            f"{name} must be a number of seconds >= 0{' or None' if allow_none else ''}, "
            f"not {value!r}"
        )
    return float(value) or (None if allow_none else 0.0)


def _context_for(url: WebSocketURL, sslopt: Mapping[str, Any] | None, ctx: Any) -> ssl.SSLContext:
    if ctx is not None or (sslopt and "context" in sslopt):
        return build_ssl_context(sslopt, ctx, url=url.redacted)
    key = None if not sslopt else tuple(sorted((k, repr(v)) for k, v in sslopt.items()))
    context = _shared_contexts.get(key)
    if context is None:
        context = _shared_contexts[key] = build_ssl_context(sslopt, None, url=url.redacted)
    return context


def build_options(
    url: str,
    *,
    header: Mapping[str, str] | Sequence[str] | Sequence[tuple[str, str]] | None = None,
    cookie: str | None = None,
    origin: str | None = None,
    suppress_origin: bool = False,
    host: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: Any = "deflate",
    max_size: int | None = DEFAULT_MAX_SIZE,
    skip_utf8_validation: bool = False,
    sslopt: Mapping[str, Any] | None = None,
    ssl: ssl.SSLContext | None = None,
    sockopt: Sequence[tuple[int, int, int]] = (),
    http_proxy_host: str | None = None,
    http_proxy_port: int | str | None = None,
    http_proxy_auth: tuple[str, str] | None = None,
    http_no_proxy: Sequence[str] | None = None,
    http_proxy_timeout: float | None = None,
    proxy_type: str = "http",
    open_timeout: float | None = _DEFAULT_OPEN_TIMEOUT,
    close_timeout: float = _DEFAULT_CLOSE_TIMEOUT,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    ping_payload: str | bytes = b"",
    redirect_limit: int = 3,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
) -> ConnectOptions:
    """Check every option and precompute what sessions share."""
    target = parse_url(url)
    try:
        interval = _seconds("ping_interval", ping_interval, allow_none=True)
        timeout = _seconds("ping_timeout", ping_timeout, allow_none=True)
        if interval is not None and timeout is not None and timeout >= interval:
            raise WebSocketConfigurationException(
                f"ping_timeout ({timeout}s) must be shorter than ping_interval ({interval}s)"
            )
        if timeout is not None and interval is None:
            raise WebSocketConfigurationException("ping_timeout needs ping_interval")
        payload = ping_payload.encode() if isinstance(ping_payload, str) else bytes(ping_payload)
        if len(payload) > 125:
            raise WebSocketConfigurationException(
                f"ping_payload is {len(payload)} bytes; control frames carry at most 125"
            )
        if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
            raise WebSocketConfigurationException(
                f"max_size must be >= 0 or None, not {max_size!r}"
            )
        if max_queue < 1:
            raise WebSocketConfigurationException(f"max_queue must be >= 1, not {max_queue!r}")
        if max_queue_bytes is not None and max_queue_bytes < 1:
            raise WebSocketConfigurationException(
                f"max_queue_bytes must be >= 1 or None, not {max_queue_bytes!r}"
            )
        if redirect_limit < 0:
            raise WebSocketConfigurationException(
                f"redirect_limit must be >= 0, not {redirect_limit!r}"
            )
        proxy = select_proxy(
            target,
            http_proxy_host=http_proxy_host,
            http_proxy_port=http_proxy_port,
            http_proxy_auth=http_proxy_auth,
            http_no_proxy=http_no_proxy,
            proxy_type=proxy_type,
            http_proxy_timeout=http_proxy_timeout,
        )
        context = _context_for(target, sslopt, ssl)
        return ConnectOptions(
            url=target,
            proxy=proxy,
            ssl_context=context,
            server_hostname=server_hostname_for(target.host, sslopt),
            header=header,
            header_without_credentials=headers_without_credentials(header),
            cookie=cookie,
            origin=origin,
            suppress_origin=suppress_origin,
            host=host,
            subprotocols=subprotocols,
            deflate=coerce_compression(compression),
            max_size=max_size,
            skip_utf8_validation=skip_utf8_validation,
            sockopt=tuple(sockopt),
            open_timeout=_seconds("open_timeout", open_timeout, allow_none=True),
            close_timeout=_seconds("close_timeout", close_timeout, allow_none=False) or 0.0,
            ping_interval=interval,
            ping_timeout=timeout,
            ping_payload=payload,
            redirect_limit=redirect_limit,
            max_queue=max_queue,
            max_queue_bytes=max_queue_bytes,
        )
    except WebSocketConfigurationException as exc:
        exc.url = exc.url or target.redacted
        raise
