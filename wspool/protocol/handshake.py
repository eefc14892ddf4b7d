"""The WebSocket opening handshake (RFC 6455 §4), sans-I/O.

Three jobs, no sockets and no clocks:

* :func:`build_request` turns connection options into the client's upgrade request
  (:class:`HandshakeRequest`, serialized with :meth:`HandshakeRequest.to_bytes`);
* :class:`ResponseParser` reads the server's HTTP response head incrementally;
* :func:`validate_response` checks a parsed response against the request and
  returns the negotiated subprotocol and extensions (:class:`HandshakeResult`).

Redirects and error bodies are the I/O layer's business: :func:`is_redirect` tells
it when to follow ``Location``, and :func:`bad_status_error` builds the exception
for any other non-101 answer once it has read a bounded excerpt of the body.

Line endings: the response parser accepts CRLF and, as RFC 7230 §3.5 allows, a bare
LF as line terminator.  A CR anywhere else in the head is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final

from wspool.exceptions import (
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketHandshakeException,
)

if TYPE_CHECKING:
    # Only used for annotations: the handshake calls ``offer()``/``accept()`` on the
    # object it is given and never needs the codec module at run time.
    from wspool.protocol.deflate import DeflateOptions, PerMessageDeflate

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "REDIRECT_STATUSES",
    "WEBSOCKET_GUID",
    "WEBSOCKET_VERSION",
    "HandshakeRequest",
    "HandshakeResponse",
    "HandshakeResult",
    "ResponseParser",
    "accept_key",
    "bad_status_error",
    "build_request",
    "generate_key",
    "headers_without_credentials",
    "is_redirect",
    "parse_extensions",
    "validate_response",
]

#: The GUID appended to the key before hashing (RFC 6455 §1.3, §4.2.2).
WEBSOCKET_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The only protocol version this client speaks (RFC 6455 §4.1, item 9).
WEBSOCKET_VERSION: Final = "13"
DEFAULT_MAX_HEADER_BYTES: Final = 64 * 1024
DEFAULT_MAX_HEADERS: Final = 128
#: Statuses whose ``Location`` the I/O layer follows (same set as websocket-client).
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

_PERMESSAGE_DEFLATE: Final = "permessage-deflate"
#: Headers the handshake itself depends on; a user header may not replace them.
_RESERVED: Final = frozenset(
    {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
)

# RFC 7230 §3.2.6: token = 1*tchar.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A header value may hold HTAB, SP, VCHAR and obs-text, nothing else (RFC 7230 §3.2).
_BAD_VALUE_CHAR_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINE_RE: Final = re.compile(rb"HTTP/(\d+\.\d+) (\d{3})(?: (.*))?")


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


# --------------------------------------------------------------------------- keys


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: 16 random bytes, base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value a server must answer to ``key``.

    base64(SHA-1(key + GUID)), RFC 6455 §1.3 and §4.2.2 item 5.
    """
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _check_key(key: str) -> str:
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raw = b""
    if len(raw) != 16:
        raise WebSocketConfigurationException(
            f"invalid Sec-WebSocket-Key {key!r}: it must be 16 bytes encoded in base64 "
            "(RFC 6455 §4.1); leave key=None to generate one"
        )
    return key


# ------------------------------------------------------------------------ request


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The client's opening handshake, ready to send.

    ``subprotocols`` and ``extension_offer`` are what the request actually offers (a
    user header may have supplied them); :func:`validate_response` checks the
    server's choice against them.
    """

    resource: str
    headers: tuple[tuple[str, str], ...]
    key: str
    subprotocols: tuple[str, ...] = ()
    deflate: DeflateOptions | None = None
    extension_offer: str | None = None

    def to_bytes(self) -> bytes:
        """Serialize the request line and header block (header values as latin-1)."""
        lines = [f"GET {self.resource} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        lines.extend(("", ""))
        return "\r\n".join(lines).encode("latin-1")

    def get(self, name: str) -> str | None:
        """Return the value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for header_name, value in self.headers:
            if header_name.lower() == wanted:
                return value
        return None


def _check_header(name: str, value: str) -> tuple[str, str]:
    if not _is_token(name):
        raise WebSocketConfigurationException(
            f"invalid header name {name!r}: header names must be HTTP tokens "
            "(letters, digits and !#$%&'*+-.^_`|~), without CR, LF, spaces or colons"
        )
    if _BAD_VALUE_CHAR_RE.search(value):
        raise WebSocketConfigurationException(
            f"invalid value for header {name!r}: {value!r} contains CR, LF, NUL or another "
            "control character, which would corrupt the request (header injection)"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise WebSocketConfigurationException(
            f"invalid value for header {name!r}: {value!r} is not latin-1 encodable; "
            "percent-encode or otherwise escape non-latin-1 characters"
        ) from None
    return name, value.strip(" \t")


def _user_headers(
    header: Mapping[str, str | None] | Sequence[str] | Sequence[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """Normalize the ``header`` option (websocket-client's three forms) to pairs."""
    if header is None:
        return []
    pairs: list[tuple[str, str]] = []
    if isinstance(header, Mapping):
        for name, value in header.items():
            if value is not None:  # websocket-client skips None values in the dict form
                pairs.append((str(name), str(value)))
        return [_check_header(name, value) for name, value in pairs]
    if isinstance(header, str | bytes):
        raise WebSocketConfigurationException(
            "header must be a dict, a list of 'Name: value' strings or a list of "
            f"(name, value) pairs, not a single {type(header).__name__}"
        )
    for item in header:
        if isinstance(item, str):
            name, colon, value = item.partition(":")
            if not colon:
                raise WebSocketConfigurationException(
                    f"invalid header line {item!r}: expected 'Name: value'"
                )
            pairs.append((name, value))
        elif isinstance(item, tuple) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        else:
            raise WebSocketConfigurationException(
                f"invalid header entry {item!r}: expected a 'Name: value' string or a "
                "(name, value) pair"
            )
    return [_check_header(name, value) for name, value in pairs]


#: Headers that carry credentials: never sent to a host they were not given for.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


def headers_without_credentials(
    header: Mapping[str, str | None] | Sequence[str] | Sequence[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """The ``header`` option as pairs, minus credentials: for a redirect to another host."""
    return [(n, v) for n, v in _user_headers(header) if n.strip().lower() not in CREDENTIAL_HEADERS]


def _host_for_header(host: str) -> str:
    """Bracket IPv6 literals; a zone id's '%' becomes '%25' (RFC 6874 §2)."""
    if ":" in host and not host.startswith("["):
        return "[" + host.replace("%", "%25") + "]"
    return host


def _check_request_target(resource: str) -> None:
    if not resource.startswith("/"):
        raise WebSocketConfigurationException(
            f"invalid resource {resource!r}: it must start with '/' (path and query of the URL)"
        )
    bad = [ch for ch in resource if not "\x21" <= ch <= "\x7e"]
    if bad:
        raise WebSocketConfigurationException(
            f"invalid resource {resource!r}: it contains {bad[0]!r}; CR, LF, NUL, spaces, "
            "controls and non-ASCII characters must be percent-encoded"
        )


def _check_host(host: str, port: int) -> None:
    if not host:
        raise WebSocketConfigurationException("host is empty: the URL needs a host name")
    bad = [ch for ch in host if not "\x21" <= ch <= "\x7e"]
    if bad:
        raise WebSocketConfigurationException(
            f"invalid host {host!r}: it contains {bad[0]!r}; use the ASCII (IDNA) form of "
            "the host name, without spaces or control characters"
        )
    if not 1 <= port <= 65535:
        raise WebSocketConfigurationException(f"invalid port {port}: it must be 1..65535")


def _check_subprotocols(subprotocols: Sequence[str]) -> tuple[str, ...]:
    if isinstance(subprotocols, str):
        raise WebSocketConfigurationException(
            f"subprotocols must be a list of names, not the string {subprotocols!r}"
        )
    seen: set[str] = set()
    for name in subprotocols:
        if not isinstance(name, str) or not _is_token(name):
            raise WebSocketConfigurationException(
                f"invalid subprotocol {name!r}: subprotocol names must be HTTP tokens "
                "(RFC 6455 §4.1, item 10)"
            )
        if name in seen:
            raise WebSocketConfigurationException(
                f"subprotocol {name!r} is listed twice; each must be unique (RFC 6455 §4.1)"
            )
        seen.add(name)
    return tuple(subprotocols)


def _basic_authorization(auth: tuple[str, str]) -> str:
    user, password = auth
    if ":" in user:
        raise WebSocketConfigurationException(
            f"invalid user name {user!r} for Basic authentication: it may not contain ':' "
            "(RFC 7617 §2)"
        )
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def build_request(
    *,
    host: str,
    port: int,
    resource: str,
    secure: bool,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    suppress_origin: bool = False,
    header: Mapping[str, str | None] | Sequence[str] | Sequence[tuple[str, str]] | None = None,
    cookie: str | None = None,
    host_header: str | None = None,
    auth: tuple[str, str] | None = None,
    deflate: DeflateOptions | None = None,
    key: str | None = None,
) -> HandshakeRequest:
    """Build the opening handshake request (RFC 6455 §4.1).

    ``host``/``port``/``secure`` come from the URL (``secure`` for wss), ``resource``
    is its path and query.  The port appears in ``Host`` and the default ``Origin``
    only when it is not the scheme's default (80 for ws, 443 for wss).  ``header``
    accepts websocket-client's forms: a dict (``None`` values skipped), a list of
    ``"Name: value"`` strings or a list of ``(name, value)`` pairs.  A user header
    replaces the generated header of the same name (case-insensitive), in place;
    ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version``
    cannot be replaced.  ``auth`` adds ``Authorization: Basic`` unless ``header``
    has its own ``Authorization``.  ``key`` fixes the key (for tests).

    Raises :class:`WebSocketConfigurationException` for any unusable option,
    including CR/LF/NUL in a header or the resource (header injection).
    """
    _check_host(host, port)
    _check_request_target(resource)
    key = generate_key() if key is None else _check_key(key)
    offered = _check_subprotocols(subprotocols) if subprotocols else ()
    user = _user_headers(header)
    user_names = {name.lower() for name, _ in user}

    for name, _ in user:
        if name.lower() in _RESERVED:
            raise WebSocketConfigurationException(
                f"header {name!r} cannot be set: wspool generates it and the handshake "
                "depends on its value (RFC 6455 §4.1)"
            )
    if deflate is not None and "sec-websocket-extensions" in user_names:
        raise WebSocketConfigurationException(
            "Sec-WebSocket-Extensions is both in header and generated by the compression "
            "option; use one or the other"
        )
    if offered and "sec-websocket-protocol" in user_names:
        raise WebSocketConfigurationException(
            "Sec-WebSocket-Protocol is both in header and given as subprotocols; "
            "use subprotocols only"
        )

    default_port = 443 if secure else 80
    host_port = _host_for_header(host)
    if port != default_port:
        host_port = f"{host_port}:{port}"

    generated: list[tuple[str, str]] = [
        ("Host", host_header if host_header is not None else host_port),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
    ]
    if not suppress_origin:
        scheme = "https" if secure else "http"
        generated.append(("Origin", origin if origin is not None else f"{scheme}://{host_port}"))
    if offered:
        generated.append(("Sec-WebSocket-Protocol", ", ".join(offered)))
    if deflate is not None:
        generated.append(("Sec-WebSocket-Extensions", deflate.offer()))
    if cookie:
        generated.append(("Cookie", cookie))
    if auth is not None:
        generated.append(("Authorization", _basic_authorization(auth)))
    generated = [_check_header(name, value) for name, value in generated]

    # Each user header takes the place of the generated one with the same name;
    # the rest follow in the user's order.
    headers: list[tuple[str, str]] = []
    placed: set[int] = set()
    for name, value in generated:
        lowered = name.lower()
        if lowered not in user_names:
            headers.append((name, value))
            continue
        for index, (user_name, user_value) in enumerate(user):
            if user_name.lower() == lowered:
                headers.append((user_name, user_value))
                placed.add(index)
    headers.extend(pair for index, pair in enumerate(user) if index not in placed)

    # What the request really offers, including offers made through ``header``.
    protocol_values = [v for n, v in headers if n.lower() == "sec-websocket-protocol"]
    if protocol_values and not offered:
        offered = tuple(_split_list(protocol_values))
    extension_values = [v for n, v in headers if n.lower() == "sec-websocket-extensions"]

    return HandshakeRequest(
        resource=resource,
        headers=tuple(headers),
        key=key,
        subprotocols=offered,
        deflate=deflate,
        extension_offer=", ".join(extension_values) if extension_values else None,
    )


# ----------------------------------------------------------------------- response


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """A parsed HTTP response head: status line and headers in original order and case."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """Return header ``name`` (case-insensitive), or ``None`` when absent.

        Repeated fields are joined with ", " as RFC 7230 §3.2.2 allows for list headers;
        use :meth:`get_all` to see them separately.
        """
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for header_name, value in self.headers if header_name.lower() == wanted]


class _ParserState(Enum):
    STATUS_LINE = "status line"
    HEADERS = "headers"
    DONE = "done"


class ResponseParser:
    """Incremental parser of the server's handshake response head.

    Feed it bytes as they arrive; :meth:`feed` returns the :class:`HandshakeResponse`
    once the blank line ending the head has arrived, and ``None`` before.  Bytes after
    the head (the first frames after a 101, or a body) are kept in :attr:`leftover`.
    ``feed(b"")`` signals end of stream.  The head may hold at most
    ``max_header_bytes`` bytes (status line and terminators included) and
    ``max_headers`` header fields.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.leftover = b""
        self._state = _ParserState.STATUS_LINE
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no LF
        self._consumed = 0  # bytes of the head already parsed into lines
        self._status: tuple[str, int, str] | None = None
        self._headers: list[tuple[str, str]] = []
        self._response: HandshakeResponse | None = None

    @property
    def response(self) -> HandshakeResponse | None:
        """The parsed response, once complete."""
        return self._response

    def feed(self, data: bytes) -> HandshakeResponse | None:
        """Consume ``data``; return the response once the head is complete.

        After completion, further data is appended to :attr:`leftover`.  Raises
        :class:`WebSocketHandshakeException` on a malformed or oversized head, or on
        end of stream (``data == b""``) before the head is complete.
        """
        if self._response is not None:
            self.leftover += data
            return self._response
        if not data:
            raise WebSocketHandshakeException(
                "connection closed by the server before the handshake response was complete "
                f"(received {self._consumed + len(self._buffer)} bytes of the response head)"
            )
        self._buffer += data
        if self._state is _ParserState.STATUS_LINE:
            self._check_prefix()
        while self._response is None:
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            self._consumed += end + 1
            self._check_size(self._consumed)
            self._parse_line(line[:-1] if line.endswith(b"\r") else line)
        if self._response is None:
            self._check_size(self._consumed + len(self._buffer))
            return None
        self.leftover = bytes(self._buffer)
        self._buffer.clear()
        return self._response

    def _check_prefix(self) -> None:
        # Fail fast on a peer that does not speak HTTP (a TLS server on ws://, say).
        head = bytes(self._buffer[:5])
        if not b"HTTP/".startswith(head):
            raise WebSocketHandshakeException(
                f"the server's response does not start with an HTTP status line (got "
                f"{bytes(self._buffer[:32])!r}); check the URL scheme (ws:// or wss://) and port"
            )

    def _check_size(self, size: int) -> None:
        if size > self.max_header_bytes:
            raise WebSocketHandshakeException(
                f"response headers exceed {self.max_header_bytes} bytes; the server sent an "
                "oversized or endless handshake response (raise max_header_bytes if legitimate)"
            )

    def _parse_line(self, line: bytes) -> None:
        if b"\r" in line:
            raise WebSocketHandshakeException(
                f"malformed handshake response: bare CR in line {line[:80]!r}"
            )
        if self._state is _ParserState.STATUS_LINE:
            self._status = _parse_status_line(line)
            self._state = _ParserState.HEADERS
        elif not line:
            assert self._status is not None  # the status line always comes first
            version, status, reason = self._status
            self._state = _ParserState.DONE
            self._response = HandshakeResponse(status, reason, version, self._headers)
        else:
            if len(self._headers) >= self.max_headers:
                raise WebSocketHandshakeException(
                    f"response has more than {self.max_headers} header fields; "
                    "raise max_headers if the server legitimately sends that many"
                )
            self._headers.append(_parse_header_line(line))


def _parse_status_line(line: bytes) -> tuple[str, int, str]:
    match = _STATUS_LINE_RE.fullmatch(line)
    if match is None:
        raise WebSocketHandshakeException(
            f"malformed status line in handshake response: {line[:80]!r} "
            "(expected e.g. 'HTTP/1.1 101 Switching Protocols')"
        )
    version = match.group(1).decode("ascii")
    if version not in ("1.0", "1.1"):
        raise WebSocketHandshakeException(
            f"unsupported HTTP version in handshake response: HTTP/{version} "
            "(a WebSocket upgrade needs HTTP/1.1)"
        )
    reason = (match.group(3) or b"").decode("latin-1")
    if _BAD_VALUE_CHAR_RE.search(reason):
        raise WebSocketHandshakeException(
            f"malformed status line in handshake response: control character in {line[:80]!r}"
        )
    return f"HTTP/{version}", int(match.group(2)), reason


def _parse_header_line(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise WebSocketHandshakeException(
            f"malformed header in handshake response: obsolete line folding in {line[:80]!r} "
            "(RFC 7230 §3.2.4)"
        )
    raw_name, colon, raw_value = line.partition(b":")
    name = raw_name.decode("latin-1")
    if not colon or not _is_token(name):
        raise WebSocketHandshakeException(
            f"malformed header in handshake response: {line[:80]!r} "
            "(expected 'name: value' with a token name and no space before the colon)"
        )
    value = raw_value.decode("latin-1").strip(" \t")
    if _BAD_VALUE_CHAR_RE.search(value):
        raise WebSocketHandshakeException(
            f"malformed header in handshake response: control character in the value of {name!r}"
        )
    return name, value


# --------------------------------------------------------------------- extensions


class _Scanner:
    """A cursor over one header value for the extension grammar (RFC 6455 §9.1)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> WebSocketHandshakeException:
        return WebSocketHandshakeException(
            f"invalid Sec-WebSocket-Extensions header {self.text!r}: {what} at position {self.pos}"
        )

    def skip_ows(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self, what: str) -> str:
        match = _TOKEN_RE.match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def quoted_string(self) -> str:
        # RFC 7230 §3.2.6: DQUOTE *( qdtext / quoted-pair ) DQUOTE
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(chars)
            if ch == "\\":
                if self.pos >= len(self.text):
                    break
                ch = self.text[self.pos]
                self.pos += 1
            chars.append(ch)
        raise self.error("unterminated quoted-string")


def parse_extensions(values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1, RFC 7692 §5).

    Every header line is a comma-separated list of extensions, each a token followed
    by ``;``-separated parameters ``name`` or ``name=value``; a value may be a token
    or a quoted-string, which is unquoted and must then still be a token (RFC 6455
    §9.1).  Empty list elements are ignored (RFC 7230 §7).  Returns
    ``[(name, [(param, value or None), ...]), ...]`` in order, names as sent.
    Raises :class:`WebSocketHandshakeException` on any syntax error.
    """
    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        scan = _Scanner(value)
        while True:
            scan.skip_ows()
            if scan.peek() == ",":
                scan.pos += 1
                continue
            if not scan.peek():
                break
            name = scan.token("an extension name")
            params: list[tuple[str, str | None]] = []
            scan.skip_ows()
            while scan.peek() == ";":
                scan.pos += 1
                scan.skip_ows()
                param = scan.token("a parameter name")
                scan.skip_ows()
                param_value: str | None = None
                if scan.peek() == "=":
                    scan.pos += 1
                    scan.skip_ows()
                    if scan.peek() == '"':
                        start = scan.pos
                        param_value = scan.quoted_string()
                        if not _is_token(param_value):
                            scan.pos = start
                            raise scan.error(
                                f"quoted value {param_value!r} of parameter {param!r} is not "
                                "a token"
                            )
                    else:
                        param_value = scan.token(f"a value for parameter {param!r}")
                    scan.skip_ows()
                params.append((param, param_value))
            result.append((name, params))
            if scan.peek() not in (",", ""):
                raise scan.error(f"unexpected {scan.peek()!r}")
    return result


def _split_list(values: list[str]) -> list[str]:
    """Split comma-separated header values into their non-empty, stripped elements."""
    return [item.strip(" \t") for value in values for item in value.split(",") if item.strip(" \t")]


# --------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a successful handshake negotiated.

    ``extensions`` lists the names of the extensions the server accepted, in its
    order; ``deflate`` is the negotiated permessage-deflate codec, if any.
    """

    status: int
    headers: list[tuple[str, str]]
    subprotocol: str | None = None
    extensions: list[str] = field(default_factory=list)
    deflate: PerMessageDeflate | None = None


def is_redirect(response: HandshakeResponse) -> bool:
    """True when the response is a redirect the I/O layer can follow (3xx + Location)."""
    return response.status in REDIRECT_STATUSES and bool(response.get("Location"))


def bad_status_error(response: HandshakeResponse, body: bytes = b"") -> WebSocketBadStatusException:
    """Build the exception for a non-101 answer; ``body`` is a bounded excerpt."""
    status_text = f"{response.status} {response.reason}".rstrip()
    return WebSocketBadStatusException(
        f"Handshake status {status_text}: server refused the WebSocket upgrade",
        response.status,
        response.headers,
        body,
    )


def validate_response(
    request: HandshakeRequest, response: HandshakeResponse, *, max_size: int | None
) -> HandshakeResult:
    """Check the server's answer against ``request`` (RFC 6455 §4.1, client side).

    Returns the negotiated subprotocol and extensions.  Any non-101 status raises
    :class:`WebSocketBadStatusException` (without body; check :func:`is_redirect`
    first and use :func:`bad_status_error` when a body excerpt is available).  Every
    other failure raises :class:`WebSocketHandshakeException` naming the header and
    the value seen.  ``max_size`` is passed on to permessage-deflate negotiation.
    """
    if response.status != 101:
        raise bad_status_error(response)
    if response.http_version != "HTTP/1.1":
        raise WebSocketHandshakeException(
            f"server answered 101 over {response.http_version}; a WebSocket upgrade needs HTTP/1.1"
        )

    upgrade = response.get("Upgrade")
    if upgrade is None or upgrade.lower() != "websocket":
        raise WebSocketHandshakeException(
            f"invalid Upgrade header in handshake response: {upgrade!r} (expected 'websocket')"
        )

    connection = response.get_all("Connection")
    if "upgrade" not in (item.lower() for item in _split_list(connection)):
        seen = ", ".join(connection) if connection else None
        raise WebSocketHandshakeException(
            f"invalid Connection header in handshake response: {seen!r} "
            "(expected it to contain 'Upgrade')"
        )

    accepts = response.get_all("Sec-WebSocket-Accept")
    expected = accept_key(request.key)
    if not accepts:
        raise WebSocketHandshakeException(
            "missing Sec-WebSocket-Accept header in handshake response "
            f"(expected {expected!r}); the server did not complete the WebSocket handshake"
        )
    if len(accepts) > 1:
        raise WebSocketHandshakeException(
            f"{len(accepts)} Sec-WebSocket-Accept headers in handshake response {accepts!r}; "
            f"expected exactly one, {expected!r}"
        )
    if accepts[0] != expected:
        raise WebSocketHandshakeException(
            f"invalid Sec-WebSocket-Accept header in handshake response: {accepts[0]!r} "
            f"(expected {expected!r}); the server or a proxy mishandled the key"
        )

    subprotocol = _negotiated_subprotocol(request, response)
    extensions, deflate = _negotiated_extensions(request, response, max_size)
    return HandshakeResult(
        status=response.status,
        headers=response.headers,
        subprotocol=subprotocol,
        extensions=extensions,
        deflate=deflate,
    )


def _negotiated_subprotocol(request: HandshakeRequest, response: HandshakeResponse) -> str | None:
    values = response.get_all("Sec-WebSocket-Protocol")
    if not values:
        return None
    chosen = [item.strip(" \t") for value in values for item in value.split(",")]
    if len(chosen) != 1 or not chosen[0]:
        raise WebSocketHandshakeException(
            f"invalid Sec-WebSocket-Protocol header in handshake response: "
            f"{', '.join(values)!r} (the server must select exactly one subprotocol)"
        )
    subprotocol = chosen[0]
    if not request.subprotocols:
        raise WebSocketHandshakeException(
            f"server selected subprotocol {subprotocol!r} but none was offered"
        )
    if subprotocol not in request.subprotocols:
        raise WebSocketHandshakeException(
            f"server selected subprotocol {subprotocol!r}, which is not one of the offered "
            f"{list(request.subprotocols)!r}"
        )
    return subprotocol


def _negotiated_extensions(
    request: HandshakeRequest, response: HandshakeResponse, max_size: int | None
) -> tuple[list[str], PerMessageDeflate | None]:
    values = response.get_all("Sec-WebSocket-Extensions")
    accepted = parse_extensions(values)
    offered = {name.lower() for name, _ in parse_extensions([request.extension_offer or ""])}
    names: list[str] = []
    deflate: PerMessageDeflate | None = None
    for name, params in accepted:
        lowered = name.lower()
        if lowered not in offered:
            raise WebSocketHandshakeException(
                f"server accepted extension {name!r}, which was not offered "
                f"(Sec-WebSocket-Extensions: {', '.join(values)!r})"
            )
        if lowered in (n.lower() for n in names):
            raise WebSocketHandshakeException(
                f"server accepted extension {name!r} more than once "
                f"(Sec-WebSocket-Extensions: {', '.join(values)!r})"
            )
        if lowered == _PERMESSAGE_DEFLATE:
            if request.deflate is None:
                raise WebSocketHandshakeException(
                    "server accepted permessage-deflate, which was offered through the header "
                    "option; enable compression with its option instead so it can be negotiated"
                )
            deflate = request.deflate.accept(params, max_size=max_size)
        names.append(name)
    return names, deflate
