"""HTTP header grammar shared by the handshake request builder and the validators.

Sans-I/O and stateless: checks for tokens and field values (RFC 9110 §5.5, §5.6.2),
the normalization of the ``header`` option (websocket-client's three forms) into
checked ``(name, value)`` pairs, credential filtering for redirects, the
subprotocol list check (RFC 6455 §4.1), list splitting (RFC 9110 §5.6.1), the
``Sec-WebSocket-Extensions`` grammar (RFC 6455 §9.1) and the ``Host`` form of a host
name (RFC 6874 §2).

User-supplied values that break the grammar raise
:class:`~wspool.exceptions.WebSocketConfigurationException`; a peer's header that
does (an extension list) raises :class:`~wspool.exceptions.WebSocketHandshakeException`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias

from wspool.exceptions import WebSocketConfigurationException, WebSocketHandshakeException

__all__ = [
    "CREDENTIAL_HEADERS",
    "HeaderOption",
    "check_header",
    "check_subprotocols",
    "host_for_header",
    "is_field_value",
    "is_token",
    "normalize_headers",
    "parse_extensions",
    "split_list",
    "without_credentials",
]

#: The ``header`` option: a dict (``None`` values skipped), a list of
#: ``"Name: value"`` strings or a list of ``(name, value)`` pairs.
HeaderOption: TypeAlias = (
    Mapping[str, str | None] | Sequence[str] | Sequence[tuple[str, str]] | None
)

#: Headers that carry credentials: never sent to a host they were not given for.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value may hold HTAB, SP, VCHAR and obs-text, nothing else (RFC 9110 §5.5).
_BAD_VALUE_CHAR_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_token(text: str) -> bool:
    """Whether ``text`` is an HTTP token (header names, subprotocols, extensions)."""
    return _TOKEN_RE.fullmatch(text) is not None


def is_field_value(text: str) -> bool:
    """Whether ``text`` has no control character but HTAB, so it cannot end a header."""
    return _BAD_VALUE_CHAR_RE.search(text) is None


def check_header(name: str, value: str) -> tuple[str, str]:
    """Return ``(name, value)`` with the value's outer SP/HTAB stripped, once checked.

    Raises :class:`WebSocketConfigurationException` when the name is not a token or
    the value holds CR, LF, NUL or another control character (header injection) or
    is not latin-1 encodable (the request is serialized as latin-1).
    """
    if not is_token(name):
        raise WebSocketConfigurationException(
            f"invalid header name {name!r}: header names must be HTTP tokens "
            "(letters, digits and !#$%&'*+-.^_`|~), without CR, LF, spaces or colons"
        )
    if not is_field_value(value):
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


def normalize_headers(header: HeaderOption) -> list[tuple[str, str]]:
    """The ``header`` option (any of websocket-client's three forms) as checked pairs.

    Order and repeated names are kept; ``None`` values of the dict form are skipped,
    as websocket-client does.  Raises :class:`WebSocketConfigurationException` for a
    malformed entry or a value that fails :func:`check_header`.
    """
    if header is None:
        return []
    pairs: list[tuple[str, str]] = []
    if isinstance(header, Mapping):
        for name, value in header.items():
            if value is not None:
                pairs.append((str(name), str(value)))
        return [check_header(name, value) for name, value in pairs]
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
    return [check_header(name, value) for name, value in pairs]


def without_credentials(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` minus :data:`CREDENTIAL_HEADERS` (any case): for a redirect to another host."""
    return [(name, value) for name, value in pairs if name.lower() not in CREDENTIAL_HEADERS]


def check_subprotocols(subprotocols: Sequence[str]) -> tuple[str, ...]:
    """Return the subprotocols as a tuple once each is a unique token (RFC 6455 §4.1 item 10).

    Raises :class:`WebSocketConfigurationException` otherwise, and for a bare string
    (a common slip for a one-element list).
    """
    if isinstance(subprotocols, str):
        raise WebSocketConfigurationException(
            f"subprotocols must be a list of names, not the string {subprotocols!r}"
        )
    seen: set[str] = set()
    for name in subprotocols:
        if not isinstance(name, str) or not is_token(name):
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


def split_list(values: Iterable[str]) -> list[str]:
    """Split comma-separated header values into their non-empty, stripped elements.

    Empty elements are dropped, as RFC 9110 §5.6.1 asks of recipients.
    """
    return [item.strip(" \t") for value in values for item in value.split(",") if item.strip(" \t")]


def host_for_header(host: str) -> str:
    """``host`` as it appears in ``Host`` and ``Origin``.

    IPv6 literals get brackets, and a zone id's ``%`` becomes ``%25`` (RFC 6874 §2).
    """
    if ":" in host and not host.startswith("["):
        return "[" + host.replace("%", "%25") + "]"
    return host


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
        # RFC 9110 §5.6.4: DQUOTE *( qdtext / quoted-pair ) DQUOTE
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


def parse_extensions(values: Iterable[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1, RFC 7692 §5).

    Every header line is a comma-separated list of extensions, each a token followed
    by ``;``-separated parameters ``name`` or ``name=value``; a value may be a token
    or a quoted-string, which is unquoted and must then still be a token (RFC 6455
    §9.1).  Empty list elements are ignored (RFC 9110 §5.6.1).  Returns
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
                        if not is_token(param_value):
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
