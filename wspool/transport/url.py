"""Parsing of ``ws://`` and ``wss://`` URLs (RFC 6455 §3).

The result is a frozen :class:`WebSocketURL` with everything the transport and the
handshake need: host (IPv6 literals without brackets), port (80/443 by default), the
resource name sent in the request line, and any credentials from the userinfo part.
Anything wspool could not connect to is rejected here, early, with a
:class:`~wspool.exceptions.WebSocketConfigurationException`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from wspool._reprs import without_userinfo
from wspool.exceptions import WebSocketConfigurationException, WebSocketRedirectException

__all__ = ["WebSocketURL", "format_host", "parse_url", "resolve_redirect"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}

# RFC 3986 reg-name characters (unreserved / pct-encoded / sub-delims) minus the ones
# that would be ambiguous in a Host header.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%]+")

# Characters left alone when the resource name is made ASCII-only: every printable
# ASCII character except space, so an already-encoded path stays as the user wrote it.
_RESOURCE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def format_host(host: str) -> str:
    """Return ``host`` as it appears in a URL or Host header: IPv6 literals bracketed."""
    if ":" in host:
        # RFC 6874: the "%" of an IPv6 zone identifier is written "%25"
        return "[" + host.replace("%", "%25") + "]"
    return host


@dataclass(frozen=True)
class WebSocketURL:
    """A parsed WebSocket URL.

    ``resource`` is the path plus ``"?" + query`` (``"/"`` when the path is empty), ready
    for the request line.  ``username``/``password`` are percent-decoded; they are never
    part of :attr:`redacted`, the form used in messages and logs.
    """

    scheme: str
    secure: bool
    host: str
    port: int
    resource: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def authority(self) -> str:
        """``host[:port]`` for the Host header; the port is omitted when it is the default."""
        host = format_host(self.host)
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def redacted(self) -> str:
        """The URL without credentials, for messages and logs."""
        return f"{self.scheme}://{self.authority}{self.resource}"

    def __str__(self) -> str:
        return self.redacted


def parse_url(url: str) -> WebSocketURL:
    """Parse a ``ws://`` or ``wss://`` URL.

    The scheme is case-insensitive; the host is lower-cased, and a non-ASCII host name
    is converted to its IDNA (punycode) form.  The fragment is dropped (RFC 6455 §3
    forbids it in the resource name).  Non-ASCII characters in the path or query are
    percent-encoded as UTF-8.  Raises
    :class:`~wspool.exceptions.WebSocketConfigurationException` for another scheme, a
    missing host, a bad port, or control characters or spaces anywhere in the URL.
    """
    if not isinstance(url, str):
        raise WebSocketConfigurationException(
            f"the URL must be a str such as 'wss://example.org/feed', not {type(url).__name__}"
        )
    # urlsplit silently deletes tabs and newlines; refuse them (and every other control
    # character or space) so that nothing unexpected can reach the request line.
    for char in url:
        if char <= " " or char == "\x7f":
            raise WebSocketConfigurationException(
                f"invalid URL {_safe_repr(url)}: it contains a space or control character "
                f"({char!r}); percent-encode it"
            )
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the authority
        raise WebSocketConfigurationException(f"invalid URL {_safe_repr(url)}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"{parts.scheme!r}" if parts.scheme else "no scheme"
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: {shown} is not a WebSocket scheme; "
            "use 'ws://' or 'wss://'"
        )
    if not parts.netloc:
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: the host is missing; write it as "
            f"'{scheme}://host[:port]/path'"
        )

    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = _parse_host(hostport, url)
    port = _parse_port(hostport, scheme, url)

    username: str | None = None
    password: str | None = None
    if userinfo:
        raw_user, has_password, raw_password = userinfo.partition(":")
        try:
            username = unquote(raw_user, errors="strict")
            password = unquote(raw_password, errors="strict") if has_password else None
        except UnicodeDecodeError as exc:
            raise WebSocketConfigurationException(
                f"invalid URL {_safe_repr(url)}: the user name or password is not "
                "percent-encoded UTF-8"
            ) from exc

    resource = parts.path or "/"
    if parts.query:
        resource = f"{resource}?{parts.query}"
    resource = quote(resource, safe=_RESOURCE_SAFE)
    return WebSocketURL(
        scheme=scheme,
        secure=scheme == "wss",
        host=host,
        port=port,
        resource=resource,
        username=username,
        password=password,
    )


def _safe_repr(url: str) -> str:
    """The URL quoted for an error message, with any userinfo masked."""
    scheme_end = url.find("://")
    if scheme_end >= 0:
        rest = url[scheme_end + 3 :]
        authority_end = len(rest)
        for sep in "/?#":
            pos = rest.find(sep)
            if pos >= 0:
                authority_end = min(authority_end, pos)
        at = rest.rfind("@", 0, authority_end)
        if at >= 0:
            url = f"{url[: scheme_end + 3]}***@{rest[at + 1 :]}"
    return repr(url)


def _split_hostport(hostport: str) -> tuple[str, str | None]:
    """Split ``host[:port]`` (host maybe a bracketed IPv6 literal) into its parts."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, None
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if not rest:
            return host, None
        if rest.startswith(":"):
            return host, rest[1:]
        return hostport, None
    host, colon, port = hostport.partition(":")
    return host, port if colon else None


def _parse_host(hostport: str, url: str) -> str:
    host, _ = _split_hostport(hostport)
    if not host:
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: the host is empty; write it as 'ws://host[:port]/path'"
        )
    if host.startswith("["):
        if not host.endswith("]"):
            raise WebSocketConfigurationException(
                f"invalid URL {_safe_repr(url)}: a bracketed IPv6 host must be followed "
                "by nothing, ':port' or a path"
            )
        literal = host[1:-1]
        try:
            # RFC 6874: a zone identifier is written "%25zone" inside the brackets
            address = ipaddress.IPv6Address(literal.replace("%25", "%", 1))
        except ValueError as exc:
            raise WebSocketConfigurationException(
                f"invalid URL {_safe_repr(url)}: {literal!r} is not a valid IPv6 address"
            ) from exc
        return str(address)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise WebSocketConfigurationException(
                f"invalid URL {_safe_repr(url)}: the host name {host!r} cannot be "
                f"converted to IDNA ({exc})"
            ) from exc
    if not _REG_NAME.fullmatch(host) or "%" in host:
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: {host!r} is not a valid host name"
        )
    return host.lower()


def _parse_port(hostport: str, scheme: str, url: str) -> int:
    _, text = _split_hostport(hostport)
    if text is None or text == "":
        return _DEFAULT_PORTS[scheme]
    if not text.isascii() or not text.isdigit():
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: the port {text!r} is not a number"
        )
    port = int(text)
    if not 0 < port < 65536:
        raise WebSocketConfigurationException(
            f"invalid URL {_safe_repr(url)}: the port {port} is outside 1-65535"
        )
    return port


_REDIRECT_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def resolve_redirect(current: WebSocketURL, location: str) -> WebSocketURL:
    """Where a redirect's ``Location`` (absolute or relative) leads from ``current``.

    http(s) targets become ws(s).  The user's credentials are kept only when the
    target is the same origin: scheme, host and port (they are never sent elsewhere).
    """
    base = f"{'https' if current.secure else 'http'}://{current.authority}{current.resource}"
    parts = urlsplit(urljoin(base, location.strip()))
    scheme = _REDIRECT_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise WebSocketRedirectException(
            f"redirect to unsupported URL {without_userinfo(location)!r}"
        )
    target = parse_url(urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")))
    same_origin = (target.secure, target.host, target.port) == (
        current.secure,
        current.host,
        current.port,
    )
    if same_origin and target.username is None and current.username is not None:
        target = replace(target, username=current.username, password=current.password)
    return target
