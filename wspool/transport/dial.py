"""The dial plan: what is resolved where, which proxy, which addresses in which order.

Computed once per hop (a redirect is a new hop) and shared by both I/O drivers: the
blocking :func:`wspool.transport.connect.open_socket` and the pool's non-blocking
session carry the same plan out and differ only in blocking versus non-blocking I/O.

* :func:`plan_dial` picks the proxy for the hop's URL (arguments, environment,
  ``no_proxy``) and the TLS settings;
* :func:`resolve` turns a plan into a :class:`Route`: the first hop's addresses in the
  order to try (families interleaved, RFC 8305 §4) and the target host as the proxy
  must be asked for it (resolved locally for ``socks4``/``socks5``).  It blocks only
  when :attr:`DialPlan.needs_lookup`; the pool then runs it off the dispatcher;
* :func:`new_socket`, :func:`proxy_handshake`, :func:`wrap_tls` and the ``*_error``
  functions are the steps and the one wording of every failure.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from wspool.exceptions import (
    WebSocketAddressException,
    WebSocketConfigurationException,
    WebSocketProxyException,
    WebSocketTimeoutException,
    WebSocketTLSException,
)
from wspool.transport.proxy import ProxyConfig, ProxyHandshake, make_handshake, select_proxy
from wspool.transport.tls import shared_ssl_context, tls_handshake_error
from wspool.transport.url import WebSocketURL, format_host

__all__ = [
    "AddressInfo",
    "DialPlan",
    "DialSettings",
    "ProxySettings",
    "Route",
    "connect_error",
    "connect_timeout_error",
    "is_ip_literal",
    "new_socket",
    "order_addresses",
    "plan_dial",
    "proxy_handshake",
    "proxy_leftover_error",
    "resolve",
    "tls_error",
    "wrap_tls",
]

#: One ``getaddrinfo`` entry: (family, type, proto, canonname, sockaddr).
AddressInfo: TypeAlias = tuple[Any, ...]

_STREAM: Final = (socket.SOCK_STREAM, socket.IPPROTO_TCP)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxy options as given (``http_proxy_*``, ``proxy_type``); the proxy itself
    is chosen per hop by :meth:`select`, since ``no_proxy`` and the environment depend
    on the target."""

    host: str | None = None
    port: int | str | None = None
    auth: tuple[str, str] | None = None
    no_proxy: tuple[str, ...] | None = None
    timeout: float | None = None
    type: str = "http"

    def select(self, url: WebSocketURL) -> ProxyConfig | None:
        return select_proxy(
            url,
            http_proxy_host=self.host,
            http_proxy_port=self.port,
            http_proxy_auth=self.auth,
            http_no_proxy=self.no_proxy,
            proxy_type=self.type,
            http_proxy_timeout=self.timeout,
        )


@dataclass(frozen=True, slots=True)
class DialSettings:
    """What the transport needs from the options, for every hop.

    The TLS context is made from ``sslopt``/``context`` only when a hop is ``wss://``
    (:meth:`ssl_context`), and shared between connections with equal ``sslopt``.
    """

    proxy: ProxySettings
    sslopt: Mapping[str, Any] | None = None
    #: The ``ssl=`` option: a ready context, used as it is.
    context: ssl.SSLContext | None = None
    sockopt: tuple[tuple[int, int, Any], ...] = ()
    source_address: tuple[str, int] | None = None

    @property
    def server_hostname(self) -> str | None:
        """``sslopt["server_hostname"]``: the name for SNI and the certificate check."""
        return None if not self.sslopt else self.sslopt.get("server_hostname")

    def ssl_context(self, url: WebSocketURL) -> ssl.SSLContext:
        return shared_ssl_context(self.sslopt, self.context, url=url.redacted)


@dataclass(frozen=True, slots=True)
class DialPlan:
    """How to reach one hop's URL."""

    url: WebSocketURL
    proxy: ProxyConfig | None
    settings: DialSettings

    @property
    def first_hop(self) -> tuple[str, int]:
        """The host and port the TCP connection goes to: the proxy's or the server's."""
        if self.proxy is not None:
            return self.proxy.host, self.proxy.port
        return self.url.host, self.url.port

    @property
    def resolves_target_locally(self) -> bool:
        """True when the proxy wants an address, not a name, for the target."""
        return self.proxy is not None and not self.proxy.remote_dns

    @property
    def needs_lookup(self) -> bool:
        """True when :func:`resolve` asks DNS (and may block)."""
        if not is_ip_literal(self.first_hop[0]):
            return True
        return self.resolves_target_locally and not is_ip_literal(self.url.host)

    @property
    def server_hostname(self) -> str:
        """The name for SNI and the certificate check."""
        return self.settings.server_hostname or self.url.host

    @property
    def first_hop_name(self) -> str:
        """The first hop, for messages."""
        if self.proxy is not None:
            return f"the {self.proxy.type} proxy {self.proxy.address}"
        return self.url.authority


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved plan: addresses to try in order and the target as the proxy sees it."""

    plan: DialPlan
    addresses: tuple[AddressInfo, ...]
    tunnel_host: str


def plan_dial(url: WebSocketURL, settings: DialSettings) -> DialPlan:
    """The plan for one hop: its proxy (or none) and TLS settings."""
    return DialPlan(url=url, proxy=settings.proxy.select(url), settings=settings)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4/IPv6 address (an IPv6 zone id allowed)."""
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def resolve(plan: DialPlan) -> Route:
    """Look up the first hop (and the target, for proxies without remote DNS).

    Blocks on DNS when :attr:`DialPlan.needs_lookup`; IP literals are converted without
    asking DNS.  Raises :class:`WebSocketAddressException` for a server name that does
    not resolve, :class:`WebSocketProxyException` for a proxy name.
    """
    host, port = plan.first_hop
    infos = _lookup(host, port, plan, for_proxy=plan.proxy is not None)
    tunnel_host = plan.url.host
    if plan.resolves_target_locally:
        assert plan.proxy is not None
        # SOCKS4 carries IPv4 addresses only.
        family = socket.AF_INET if plan.proxy.type == "socks4" else 0
        tunnel_host = str(_lookup(plan.url.host, plan.url.port, plan, family=family)[0][4][0])
    return Route(plan=plan, addresses=tuple(order_addresses(infos)), tunnel_host=tunnel_host)


def _lookup(
    host: str, port: int, plan: DialPlan, *, for_proxy: bool = False, family: int = 0
) -> list[AddressInfo]:
    flags = socket.AI_NUMERICHOST if is_ip_literal(host) else 0
    try:
        infos = socket.getaddrinfo(host, port, family, *_STREAM, flags)
    except (OSError, UnicodeError) as exc:
        url = plan.url.redacted
        if for_proxy:
            raise WebSocketProxyException(
                f"cannot resolve the proxy host {host!r}: {exc}; check http_proxy_host "
                "or the proxy environment variables",
                url=url,
            ) from exc
        if plan.resolves_target_locally and host == plan.url.host:
            assert plan.proxy is not None
            raise WebSocketAddressException(
                f"cannot resolve host {host!r} for the {plan.proxy.type} proxy: {exc}; "
                "use socks5h/socks4a to let the proxy resolve it",
                url=url,
            ) from exc
        raise WebSocketAddressException(
            f"cannot resolve host {host!r}: {exc}; check the host name and your DNS", url=url
        ) from exc
    if not infos:
        raise WebSocketAddressException(f"host {host!r} has no address", url=plan.url.redacted)
    return [tuple(info) for info in infos]


def order_addresses(infos: Sequence[AddressInfo]) -> list[AddressInfo]:
    """Addresses in the order to try: duplicates dropped, address families interleaved
    starting with the resolver's first choice (RFC 8305 §4), so one broken family does
    not have to fail address by address before the other is tried."""
    seen: set[Any] = set()
    by_family: dict[int, list[AddressInfo]] = {}
    for info in infos:
        if info[4] in seen:
            continue
        seen.add(info[4])
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    ordered: list[AddressInfo] = []
    while queues:
        for queue in list(queues):
            ordered.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return ordered


def new_socket(route: Route, info: AddressInfo) -> socket.socket:
    """A socket for ``info`` with TCP_NODELAY, the user's ``sockopt`` and
    ``source_address`` applied; not yet connected.  Closed again on error."""
    family, type_, proto = info[0], info[1], info[2]
    sock = socket.socket(family, type_, proto)
    settings = route.plan.settings
    try:
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in settings.sockopt:
            try:
                sock.setsockopt(*option)
            except (OSError, TypeError, ValueError) as exc:
                raise WebSocketConfigurationException(
                    f"sockopt {option!r} was refused: {exc}; each entry is "
                    "(level, option, value) for socket.setsockopt",
                    url=route.plan.url.redacted,
                ) from exc
        if settings.source_address is not None:
            try:
                sock.bind(settings.source_address)
            except OSError as exc:
                raise WebSocketConfigurationException(
                    f"source_address={settings.source_address!r} cannot be bound: {exc}",
                    url=route.plan.url.redacted,
                ) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def connect_error(plan: DialPlan, last_error: OSError | None) -> BaseException:
    """The error once every address failed.

    Through a proxy: :class:`WebSocketProxyException`.  Directly: the last
    :class:`OSError` as the same class (``ConnectionRefusedError`` stays catchable, as
    with websocket-client), its message naming the URL.
    """
    detail = "no address to try" if last_error is None else last_error.strerror or last_error
    message = f"cannot connect to {plan.first_hop_name}: {detail}"
    if plan.proxy is not None:
        return WebSocketProxyException(message, url=plan.url.redacted)
    if last_error is None or last_error.errno is None:
        return WebSocketAddressException(message, url=plan.url.redacted)
    # OSError(errno, ...) picks the matching subclass (ConnectionRefusedError, ...)
    return OSError(last_error.errno, f"{message} [{plan.url.redacted}]")


def connect_timeout_error(plan: DialPlan, address: Any) -> WebSocketTimeoutException:
    return WebSocketTimeoutException(
        f"timed out connecting to {plan.first_hop_name} "
        f"({format_host(str(address[0]))}:{address[1]})",
        url=plan.url.redacted,
    )


def proxy_handshake(route: Route) -> ProxyHandshake:
    """The proxy's handshake for this route (the plan has a proxy)."""
    plan = route.plan
    assert plan.proxy is not None
    return make_handshake(plan.proxy, route.tunnel_host, plan.url.port, url=plan.url.redacted)


def proxy_leftover_error(plan: DialPlan, count: int) -> WebSocketProxyException:
    # Neither a WebSocket nor a TLS server speaks first, so this is a broken proxy.
    assert plan.proxy is not None
    return WebSocketProxyException(
        f"the {plan.proxy.type} proxy {plan.proxy.address} sent {count} unexpected bytes "
        "after opening the tunnel",
        url=plan.url.redacted,
    )


def wrap_tls(plan: DialPlan, sock: socket.socket) -> ssl.SSLSocket:
    """Wrap a connected (or tunnelled) socket for TLS; the handshake is the caller's."""
    try:
        return plan.settings.ssl_context(plan.url).wrap_socket(
            sock, server_hostname=plan.server_hostname, do_handshake_on_connect=False
        )
    except OSError as exc:
        raise tls_error(plan, exc) from exc


def tls_error(plan: DialPlan, exc: OSError) -> WebSocketTLSException:
    """The error for a failed TLS handshake (the caller chains ``exc``)."""
    return tls_handshake_error(exc, plan.url, plan.server_hostname)
