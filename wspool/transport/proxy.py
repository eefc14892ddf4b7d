"""Proxy selection and the sans-I/O proxy handshakes (HTTP CONNECT, SOCKS5, SOCKS4/4a).

Selection (:func:`select_proxy`) follows websocket-client: explicit ``http_proxy_*``
arguments win; otherwise ``https_proxy`` (for ``wss://``) or ``http_proxy`` (for
``ws://``), then ``all_proxy``, lower-case names before upper-case ones.  ``no_proxy``
(the ``http_no_proxy`` argument, else the environment) lists hosts reached directly.

Proxy types and where the target's name is resolved:

========  ====================================================================
http      HTTP CONNECT (RFC 9110 §9.3.6); the proxy resolves the name
socks5    SOCKS5 (RFC 1928); wspool resolves the name and sends an IP address
socks5h   SOCKS5; the name is sent to the proxy, which resolves it (remote DNS)
socks4    SOCKS4; wspool resolves the name (IPv4 only); user id = auth user name
socks4a   SOCKS4a; the name is sent to the proxy
========  ====================================================================

The handshakes are state machines with no I/O: the caller sends
``initial_bytes()``, then passes every chunk it receives to ``receive()`` and sends
what it returns, until ``done``; ``leftover`` then holds any bytes that followed the
proxy's answer.  An empty chunk means the proxy closed the connection.  The blocking
driver lives in :mod:`wspool.transport.connect`; the pool's dispatcher drives the same
objects from its selector loop.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeAlias, cast, get_args
from urllib.parse import unquote, urlsplit

from wspool.exceptions import WebSocketConfigurationException, WebSocketProxyException
from wspool.protocol import trace as _trace
from wspool.protocol.http import ResponseHeadParser
from wspool.transport.url import WebSocketURL, format_host

__all__ = [
    "HttpConnectHandshake",
    "ProxyConfig",
    "ProxyHandshake",
    "ProxyType",
    "Socks4Handshake",
    "Socks5Handshake",
    "is_no_proxy_host",
    "make_handshake",
    "parse_proxy_url",
    "select_proxy",
]

ProxyType: TypeAlias = Literal["http", "socks4", "socks4a", "socks5", "socks5h"]
_PROXY_TYPES: Final[tuple[str, ...]] = get_args(ProxyType)
_DEFAULT_PROXY_PORTS: Final = {"http": 80, "socks4": 1080, "socks4a": 1080, "socks5": 1080}
# Hosts reached directly when an *environment* proxy is set but no no_proxy list is.
_DEFAULT_NO_PROXY: Final = ("localhost", "127.0.0.0/8", "::1")


@dataclass(frozen=True)
class ProxyConfig:
    """Where and how to tunnel.

    ``timeout`` (``http_proxy_timeout``) bounds connecting to the proxy and its
    handshake; ``None`` means the connection's own timeout applies.
    """

    type: ProxyType
    host: str
    port: int
    auth: tuple[str, str] | None = field(default=None, repr=False)
    timeout: float | None = None

    @property
    def remote_dns(self) -> bool:
        """True when the proxy, not wspool, resolves the target's host name."""
        return self.type in ("http", "socks5h", "socks4a")

    @property
    def address(self) -> str:
        """``host:port`` of the proxy, for messages."""
        return f"{format_host(self.host)}:{self.port}"

    @property
    def redacted(self) -> str:
        """The proxy as a URL without credentials, for messages and logs."""
        return f"{self.type}://{self.address}"


# --------------------------------------------------------------------------- selection


def select_proxy(
    url: WebSocketURL,
    *,
    http_proxy_host: str | None = None,
    http_proxy_port: int | str | None = None,
    http_proxy_auth: tuple[str, str] | None = None,
    http_no_proxy: Iterable[str] | str | None = None,
    proxy_type: str = "http",
    http_proxy_timeout: float | None = None,
    use_environment: bool = True,
) -> ProxyConfig | None:
    """Return the proxy to use for ``url``, or ``None`` to connect directly.

    With ``http_proxy_host`` the explicit settings are used (``proxy_type`` picks the
    protocol; the port defaults to 80 for http, 1080 for SOCKS).  Otherwise, when
    ``use_environment`` is true, the proxy environment variables are read; the type then
    comes from the variable's scheme (``http://``, ``socks5://``, ``socks5h://``,
    ``socks4://``, ``socks4a://``; none means http).  ``HTTP_PROXY`` in upper case is
    ignored inside a CGI request (``REQUEST_METHOD`` set), as urllib does.

    ``no_proxy`` entries (comma or space separated): ``*``; host names, matching the
    name and its subdomains (``example.com``, ``.example.com``, ``*.example.com``);
    IP addresses; CIDR ranges (``10.0.0.0/8``); any of those with ``:port``.  It
    applies to explicit and environment proxies alike, like websocket-client.  When an
    environment proxy is used and no ``no_proxy`` is set anywhere, loopback targets
    (``localhost``, ``127.0.0.0/8``, ``::1``) go direct.
    """
    if proxy_type not in _PROXY_TYPES:
        raise WebSocketConfigurationException(
            f"proxy_type={proxy_type!r} is not supported; use one of {', '.join(_PROXY_TYPES)}",
            url=url.redacted,
        )
    if http_proxy_timeout is not None and (
        isinstance(http_proxy_timeout, bool)
        or not isinstance(http_proxy_timeout, int | float)
        or http_proxy_timeout <= 0
    ):
        raise WebSocketConfigurationException(
            f"http_proxy_timeout must be a positive number of seconds or None, "
            f"not {http_proxy_timeout!r}",
            url=url.redacted,
        )
    no_proxy: list[str] | None = None
    if http_no_proxy is not None:
        no_proxy = _split_no_proxy(http_no_proxy)
    elif use_environment:
        env_value = _getenv("no_proxy") or _getenv("NO_PROXY")
        if env_value:
            no_proxy = _split_no_proxy(env_value)

    if http_proxy_host:
        if no_proxy and is_no_proxy_host(url.host, url.port, no_proxy):
            return None
        return ProxyConfig(
            type=cast(ProxyType, proxy_type),
            host=_strip_brackets(http_proxy_host),
            port=_proxy_port(http_proxy_port, proxy_type, url),
            auth=_check_auth(http_proxy_auth, url),
            timeout=http_proxy_timeout,
        )
    if not use_environment:
        return None
    value = _environment_proxy(url.secure)
    if not value:
        return None
    if is_no_proxy_host(url.host, url.port, no_proxy if no_proxy else _DEFAULT_NO_PROXY):
        return None
    config = parse_proxy_url(value, url=url.redacted)
    if http_proxy_timeout is not None:
        config = ProxyConfig(config.type, config.host, config.port, config.auth, http_proxy_timeout)
    return config


def parse_proxy_url(value: str, *, url: str | None = None) -> ProxyConfig:
    """Parse a proxy URL such as ``http://user:pass@proxy:3128`` or ``socks5h://proxy``."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise WebSocketConfigurationException(
            f"invalid proxy URL {_mask(value)!r}: {exc}", url=url
        ) from exc
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise WebSocketConfigurationException(
            f"proxy URL {_mask(value)!r}: TLS to the proxy (https://) is not supported; "
            "use an http:// or socks5:// proxy",
            url=url,
        )
    if scheme not in _PROXY_TYPES:
        raise WebSocketConfigurationException(
            f"proxy URL {_mask(value)!r}: unsupported scheme {parts.scheme!r}; use one of "
            f"{', '.join(t + '://' for t in _PROXY_TYPES)}",
            url=url,
        )
    if not parts.hostname:
        raise WebSocketConfigurationException(f"proxy URL {_mask(value)!r} has no host", url=url)
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    proxy_type = cast(ProxyType, scheme)
    return ProxyConfig(
        type=proxy_type,
        host=parts.hostname,
        port=port if port else _DEFAULT_PROXY_PORTS.get(proxy_type, 1080),
        auth=auth,
    )


def is_no_proxy_host(host: str, port: int, no_proxy: Iterable[str]) -> bool:
    """Whether ``host:port`` matches a ``no_proxy`` entry (see :func:`select_proxy`)."""
    host = host.lower().rstrip(".")
    try:
        target_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        target_ip = None
    for raw in no_proxy:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry_host:
            try:
                network = ipaddress.ip_network(entry_host, strict=False)
            except ValueError:
                continue
            if target_ip is not None and target_ip in network:
                return True
            continue
        try:
            entry_ip = ipaddress.ip_address(entry_host)
        except ValueError:
            entry_ip = None
        if entry_ip is not None or target_ip is not None:
            if entry_ip is not None and entry_ip == target_ip:
                return True
            continue
        name = entry_host.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    """Split a no_proxy entry into host (or CIDR) and optional port."""
    if entry.startswith("["):
        end = entry.find("]")
        if end > 0:
            rest = entry[end + 1 :]
            port = rest[1:] if rest.startswith(":") else ""
            return entry[1:end], int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _split_no_proxy(value: Iterable[str] | str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    entries: list[str] = []
    for item in value:
        entries.extend(part for part in re.split(r"[,\s]+", item) if part)
    return entries


def _environment_proxy(secure: bool) -> str | None:
    names = ["https_proxy", "HTTPS_PROXY"] if secure else ["http_proxy", "HTTP_PROXY"]
    if not secure and "REQUEST_METHOD" in os.environ:
        # httpoxy: in CGI, HTTP_PROXY can come from a client's "Proxy:" header
        names.remove("HTTP_PROXY")
    names += ["all_proxy", "ALL_PROXY"]
    for name in names:
        value = _getenv(name)
        if value:
            return value
    return None


def _getenv(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _proxy_port(port: int | str | None, proxy_type: str, url: WebSocketURL) -> int:
    if port is None or port == 0 or port == "":
        return _DEFAULT_PROXY_PORTS.get(proxy_type, 1080)
    try:
        if isinstance(port, bool):
            raise ValueError(port)
        number = int(port)
    except ValueError as exc:
        raise WebSocketConfigurationException(
            f"http_proxy_port={port!r} is not a port number", url=url.redacted
        ) from exc
    if not 0 < number < 65536:
        raise WebSocketConfigurationException(
            f"http_proxy_port={number} is outside 1-65535", url=url.redacted
        )
    return number


def _check_auth(auth: object, url: WebSocketURL) -> tuple[str, str] | None:
    if auth is None:
        return None
    if (
        isinstance(auth, tuple | list)
        and len(auth) == 2
        and all(isinstance(part, str) for part in auth)
    ):
        return (auth[0], auth[1])
    raise WebSocketConfigurationException(
        "http_proxy_auth must be a (user, password) tuple of str", url=url.redacted
    )


def _mask(value: str) -> str:
    """A proxy URL with its credentials hidden."""
    return re.sub(r"(?<=://)[^/@]*@", "***@", value)


# --------------------------------------------------------------------------- handshakes


class ProxyHandshake(Protocol):
    """What the I/O drivers need from a proxy handshake (see the module docstring)."""

    @property
    def done(self) -> bool: ...

    @property
    def leftover(self) -> bytes: ...

    def initial_bytes(self) -> bytes: ...

    def receive(self, data: bytes) -> bytes: ...


def make_handshake(
    proxy: ProxyConfig, target_host: str, target_port: int, *, url: str | None = None
) -> ProxyHandshake:
    """The handshake for ``proxy``; ``target_host`` must already be an IP address for
    the types without remote DNS (``socks5``, ``socks4``) — the caller resolves it."""
    if proxy.type == "http":
        return HttpConnectHandshake(
            target_host, target_port, proxy.auth, url=url, proxy_address=proxy.address
        )
    if proxy.type in ("socks5", "socks5h"):
        return Socks5Handshake(
            target_host, target_port, proxy.auth, url=url, proxy_address=proxy.address
        )
    user_id = proxy.auth[0] if proxy.auth else ""
    return Socks4Handshake(target_host, target_port, user_id, url=url, proxy_address=proxy.address)


def _target_authority(host: str, port: int) -> str:
    return f"{format_host(host)}:{port}"


class HttpConnectHandshake:
    """HTTP CONNECT tunnel set-up (RFC 9110 §9.3.6) with optional Basic auth (RFC 7617).

    The reply is read by the shared HTTP parser (:mod:`wspool.protocol.http`), with
    its limits and strictness; interim 1xx answers are skipped (RFC 9110 §15.2).
    After a 2xx answer ``done`` is true and ``status_code``/``headers`` describe it;
    any other answer, a malformed or oversized reply, or the proxy closing the
    connection first raises :class:`~wspool.exceptions.WebSocketProxyException`.
    ``url`` (the connection's URL without credentials) also names the connection in
    the protocol trace (:mod:`wspool.protocol.trace`), which shows the request and the reply
    with ``Proxy-Authorization`` redacted.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        auth: tuple[str, str] | None,
        *,
        url: str | None = None,
        proxy_address: str | None = None,
    ) -> None:
        self.target = _target_authority(target_host, target_port)
        self.auth = auth
        self.url = url
        self.proxy_name = f"HTTP proxy {proxy_address}" if proxy_address else "HTTP proxy"
        self.done = False
        self.leftover = b""
        self.status_code: int | None = None
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self._parser = ResponseHeadParser(
            subject=f"the {self.proxy_name}'s reply to CONNECT {self.target}",
            error_type=WebSocketProxyException,
            skip_informational=True,
        )
        for char in self.target:
            if char <= " " or char == "\x7f":
                raise WebSocketConfigurationException(
                    f"invalid CONNECT target {self.target!r}", url=url
                )

    def request_bytes(self) -> bytes:
        """The CONNECT request."""
        lines = [f"CONNECT {self.target} HTTP/1.1", f"Host: {self.target}"]
        if self.auth is not None:
            user, password = self.auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            lines.append(f"Proxy-Authorization: Basic {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def initial_bytes(self) -> bytes:
        data = self.request_bytes()
        if _trace.enabled:
            _trace.request_head(self.url, data, via=self.proxy_name)
        return data

    def receive(self, data: bytes) -> bytes:
        self.feed(data)
        return b""

    def feed(self, data: bytes) -> bool:
        """Consume bytes from the proxy; ``True`` once the tunnel is up."""
        if self.done:
            self.leftover += data
            return True
        try:
            response = self._parser.feed(data)
        except WebSocketProxyException as exc:
            exc.url = self.url  # the parser does not know the connection's URL
            raise
        if response is None:
            return False
        if _trace.enabled:
            status_line = f"{response.http_version} {response.status} {response.reason}"
            _trace.http_head(
                self.url,
                _trace.RECEIVED,
                status_line.rstrip(),
                response.headers,
                via=self.proxy_name,
            )
        self.status_code = response.status
        self.reason = response.reason.strip()
        self.headers = response.headers
        if not 200 <= response.status < 300:
            raise self._refusal()
        self.done = True  # a 2xx reply to CONNECT is final: the tunnel follows
        self.leftover = self._parser.leftover
        return True

    def _refusal(self) -> WebSocketProxyException:
        status = f"{self.status_code} {self.reason}".strip()
        if self.status_code == 407:
            challenge = next(
                (v for n, v in self.headers if n.lower() == "proxy-authenticate"), None
            )
            asks = f" (it asks for: {challenge})" if challenge else ""
            if self.auth is None:
                return WebSocketProxyException(
                    f"the {self.proxy_name} requires authentication ({status}){asks}; "
                    "pass http_proxy_auth=(user, password)",
                    url=self.url,
                )
            return WebSocketProxyException(
                f"the {self.proxy_name} rejected the credentials of user {self.auth[0]!r} "
                f"({status}){asks}; check http_proxy_auth",
                url=self.url,
            )
        return WebSocketProxyException(
            f"the {self.proxy_name} refused the tunnel to {self.target}: {status}",
            url=self.url,
        )


class _Socks5State(enum.Enum):
    NEW = "new"
    METHOD_SENT = "method sent"  # waiting for the method selection
    AUTH_SENT = "auth sent"  # waiting for the RFC 1929 status
    CONNECT_SENT = "connect sent"  # waiting for the CONNECT reply
    DONE = "done"


_SOCKS5_REPLIES: Final = {
    1: "general SOCKS server failure",
    2: "connection not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the target",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_NO_AUTH: Final = 0x00
_USER_PASS: Final = 0x02
_NO_ACCEPTABLE: Final = 0xFF


def _address_bytes(host: str, url: str | None) -> tuple[int, bytes]:
    """SOCKS5 ATYP and DST.ADDR for ``host`` (RFC 1928 §5)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return (1, ip.packed) if ip.version == 4 else (4, ip.packed)
    try:
        name = host.encode("ascii")
    except UnicodeEncodeError as exc:
        raise WebSocketConfigurationException(
            f"host name {host!r} is not ASCII; give its IDNA form", url=url
        ) from exc
    if not 0 < len(name) < 256:
        raise WebSocketConfigurationException(
            f"host name {host[:40]!r}... is too long for SOCKS5 (at most 255 bytes)", url=url
        )
    return 3, bytes([len(name)]) + name


class Socks5Handshake:
    """SOCKS5 CONNECT (RFC 1928) with optional username/password auth (RFC 1929).

    A ``target_host`` that is an IP literal is sent as an address; a name is sent as a
    domain name for the proxy to resolve (``socks5h``).  After success ``bound_address``
    holds the proxy's BND.ADDR and BND.PORT.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        auth: tuple[str, str] | None,
        *,
        url: str | None = None,
        proxy_address: str | None = None,
    ) -> None:
        self.url = url
        self.proxy_name = f"SOCKS5 proxy {proxy_address}" if proxy_address else "SOCKS5 proxy"
        self.target = _target_authority(target_host, target_port)
        self.auth = auth
        self.state = _Socks5State.NEW
        self.leftover = b""
        self.bound_address: tuple[str, int] | None = None
        self._buffer = bytearray()
        atyp, address = _address_bytes(target_host, url)
        self._connect_request = bytes([5, 1, 0, atyp]) + address + target_port.to_bytes(2, "big")
        self._auth_request = b""
        if auth is not None:
            user, password = (part.encode("utf-8") for part in auth)
            if not 0 < len(user) < 256 or not 0 < len(password) < 256:
                raise WebSocketConfigurationException(
                    "SOCKS5 user name and password must each be 1-255 bytes (RFC 1929)",
                    url=url,
                )
            self._auth_request = bytes([1, len(user)]) + user + bytes([len(password)]) + password

    @property
    def done(self) -> bool:
        return self.state is _Socks5State.DONE

    def initial_bytes(self) -> bytes:
        """The greeting: the authentication methods offered."""
        methods = [_NO_AUTH] if self.auth is None else [_NO_AUTH, _USER_PASS]
        self.state = _Socks5State.METHOD_SENT
        return bytes([5, len(methods), *methods])

    def receive(self, data: bytes) -> bytes:
        return self.feed(data)

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the proxy; return the bytes to send next (maybe ``b""``)."""
        if self.state is _Socks5State.DONE:
            self.leftover += data
            return b""
        if self.state is _Socks5State.NEW:
            raise RuntimeError("Socks5Handshake.feed() called before initial_bytes()")
        if not data:
            raise self._error(f"closed the connection during the handshake ({self.state.value})")
        self._buffer += data
        out = bytearray()
        while True:
            if self.state is _Socks5State.METHOD_SENT:
                if len(self._buffer) < 2:
                    break
                version, method = self._buffer[0], self._buffer[1]
                del self._buffer[:2]
                self._check_version(version)
                if method == _NO_AUTH:
                    out += self._connect_request
                    self.state = _Socks5State.CONNECT_SENT
                elif method == _USER_PASS and self.auth is not None:
                    out += self._auth_request
                    self.state = _Socks5State.AUTH_SENT
                elif method == _NO_ACCEPTABLE:
                    hint = (
                        "pass http_proxy_auth=(user, password)"
                        if self.auth is None
                        else "it does not support username/password either"
                    )
                    raise self._error(f"accepts none of the offered auth methods; {hint}")
                else:
                    raise self._error(f"chose auth method {method:#04x}, which was not offered")
            elif self.state is _Socks5State.AUTH_SENT:
                if len(self._buffer) < 2:
                    break
                version, status = self._buffer[0], self._buffer[1]
                del self._buffer[:2]
                # RFC 1929 says version 1; some proxies answer 5
                if version not in (1, 5):
                    raise self._error(f"sent auth reply version {version}, expected 1")
                if status != 0:
                    assert self.auth is not None
                    raise self._error(
                        f"rejected the user name/password of user {self.auth[0]!r} "
                        f"(status {status}); check http_proxy_auth"
                    )
                out += self._connect_request
                self.state = _Socks5State.CONNECT_SENT
            elif self.state is _Socks5State.CONNECT_SENT:
                if not self._parse_reply():
                    break
            else:
                break
        return bytes(out)

    def _parse_reply(self) -> bool:
        buf = self._buffer
        if len(buf) < 2:
            return False
        self._check_version(buf[0])
        if buf[1] != 0:
            meaning = _SOCKS5_REPLIES.get(buf[1], "unknown error")
            raise self._error(f"could not connect to {self.target}: {meaning} (reply {buf[1]})")
        if len(buf) < 4:
            return False
        atyp = buf[3]
        if atyp == 1:
            length = 4
        elif atyp == 4:
            length = 16
        elif atyp == 3:
            if len(buf) < 5:
                return False
            length = 1 + buf[4]
        else:
            raise self._error(f"sent an unknown address type {atyp} in its reply")
        total = 4 + length + 2
        if len(buf) < total:
            return False
        raw = bytes(buf[4 : 4 + length])
        host = raw[1:].decode("ascii", "replace") if atyp == 3 else str(ipaddress.ip_address(raw))
        self.bound_address = (host, int.from_bytes(buf[total - 2 : total], "big"))
        self.leftover = bytes(buf[total:])
        buf.clear()
        self.state = _Socks5State.DONE
        return True

    def _check_version(self, version: int) -> None:
        if version != 5:
            raise self._error(
                f"answered with version byte {version:#04x}, not 5; is it a SOCKS5 proxy?"
            )

    def _error(self, what: str) -> WebSocketProxyException:
        return WebSocketProxyException(f"the {self.proxy_name} {what}", url=self.url)


_SOCKS4_REPLIES: Final = {
    91: "request rejected or failed",
    92: "request rejected: the proxy cannot reach an identd on the client",
    93: "request rejected: identd reports a different user id",
}


class Socks4Handshake:
    """SOCKS4 CONNECT; SOCKS4a when ``target_host`` is a name (the proxy resolves it).

    SOCKS4 carries IPv4 addresses only and authenticates by a bare user id.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        user_id: str = "",
        *,
        url: str | None = None,
        proxy_address: str | None = None,
    ) -> None:
        self.url = url
        self.proxy_name = f"SOCKS4 proxy {proxy_address}" if proxy_address else "SOCKS4 proxy"
        self.target = _target_authority(target_host, target_port)
        self.done = False
        self.leftover = b""
        self._buffer = bytearray()
        try:
            ip = ipaddress.ip_address(target_host)
        except ValueError:
            ip = None
        if ip is not None and ip.version != 4:
            raise WebSocketConfigurationException(
                f"SOCKS4 cannot reach the IPv6 address {target_host}; use a socks5 proxy",
                url=url,
            )
        user = user_id.encode("utf-8")
        if b"\0" in user:
            raise WebSocketConfigurationException("SOCKS4 user id contains NUL", url=url)
        port = target_port.to_bytes(2, "big")
        if ip is not None:
            self._request = b"\x04\x01" + port + ip.packed + user + b"\0"
        else:
            try:
                name = target_host.encode("ascii")
            except UnicodeEncodeError as exc:
                raise WebSocketConfigurationException(
                    f"host name {target_host!r} is not ASCII; give its IDNA form", url=url
                ) from exc
            # SOCKS4a: the invalid address 0.0.0.1 says "the name follows"
            self._request = b"\x04\x01" + port + b"\0\0\0\x01" + user + b"\0" + name + b"\0"

    def initial_bytes(self) -> bytes:
        return self._request

    def receive(self, data: bytes) -> bytes:
        return self.feed(data)

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the proxy; never has anything more to send."""
        if self.done:
            self.leftover += data
            return b""
        if not data:
            raise WebSocketProxyException(
                f"the {self.proxy_name} closed the connection during the handshake",
                url=self.url,
            )
        self._buffer += data
        if len(self._buffer) < 8:
            return b""
        version, code = self._buffer[0], self._buffer[1]
        if version not in (0, 4):
            raise WebSocketProxyException(
                f"the {self.proxy_name} answered with version byte {version:#04x}; "
                "is it a SOCKS4 proxy?",
                url=self.url,
            )
        if code != 90:
            meaning = _SOCKS4_REPLIES.get(code, "unknown error")
            raise WebSocketProxyException(
                f"the {self.proxy_name} could not connect to {self.target}: {meaning} "
                f"(reply {code})",
                url=self.url,
            )
        self.done = True
        self.leftover = bytes(self._buffer[8:])
        self._buffer.clear()
        return b""
