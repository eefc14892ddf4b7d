"""The HTTP/1.1 response-head parser, sans-I/O (RFC 9112 §2-§5).

One parser for every HTTP answer wspool reads: the server's reply to the WebSocket
upgrade request and an HTTP proxy's reply to ``CONNECT``.  It reads the status line
and the header fields incrementally and stops at the blank line; the body, if any,
is the caller's business (it starts in :attr:`ResponseHeadParser.leftover`).

Strictness: CRLF or, as RFC 9112 §2.2 allows, a bare LF ends a line, and a CR
anywhere else is rejected; obsolete line folding is rejected (RFC 9112 §5.2); only
HTTP/1.0 and HTTP/1.1 are accepted; a peer whose first bytes are not ``HTTP/`` is
rejected at once instead of waiting for a line end that may never come (a TLS server
reached without TLS, say).  The head is bounded in bytes and in header fields.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Final

from wspool.exceptions import WebSocketException, WebSocketHandshakeException
from wspool.protocol.headers import is_field_value, is_token

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "ResponseHead",
    "ResponseHeadParser",
]

logger = logging.getLogger("wspool")

#: Bound on the bytes of a response head (interim 1xx heads included).
DEFAULT_MAX_HEADER_BYTES: Final = 64 * 1024
#: Bound on the header fields of one response head.
DEFAULT_MAX_HEADERS: Final = 128

_STATUS_LINE_RE: Final = re.compile(rb"HTTP/(\d+\.\d+) (\d{3})(?: (.*))?")


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed HTTP response head: status line and headers in original order and case."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """Return header ``name`` (case-insensitive), or ``None`` when absent.

        Repeated fields are joined with ", " as RFC 9110 §5.3 allows for list headers;
        use :meth:`get_all` to see them separately.
        """
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for header_name, value in self.headers if header_name.lower() == wanted]


class ResponseHeadParser:
    """Incremental parser of one HTTP response head.

    Feed it bytes as they arrive; :meth:`feed` returns the :class:`ResponseHead` once
    the blank line ending the head has arrived, and ``None`` before.  Bytes after the
    head (the first frames after a 101, a body, a tunnel's first bytes) are kept in
    :attr:`leftover`.  ``feed(b"")`` signals end of stream.

    ``subject`` names what is parsed in every error message (``"handshake response"``,
    ``"the HTTP proxy 127.0.0.1:3128's CONNECT reply"``) and every error is an
    ``error_type``, so each caller reports failures in its own terms.  The head may
    hold at most ``max_header_bytes`` bytes (status line and terminators included)
    and ``max_headers`` header fields.

    With ``skip_informational`` true, interim 1xx heads other than 101 (100 Continue,
    102, 103 Early Hints...) are parsed, checked and discarded, and the next head is
    the result (RFC 9110 §15.2: a client must accept 1xx answers it did not expect).
    ``max_header_bytes`` then bounds all the heads together, so an endless stream of
    interim answers cannot keep the parser busy forever.
    """

    def __init__(
        self,
        *,
        subject: str = "handshake response",
        error_type: type[WebSocketException] = WebSocketHandshakeException,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        skip_informational: bool = False,
    ) -> None:
        self.subject = subject
        self.error_type = error_type
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.skip_informational = skip_informational
        self.leftover = b""
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no LF
        self._consumed = 0  # bytes already parsed into lines, interim heads included
        self._status: tuple[str, int, str] | None = None  # None: status line expected
        self._headers: list[tuple[str, str]] = []
        self._response: ResponseHead | None = None

    @property
    def response(self) -> ResponseHead | None:
        """The parsed response head, once complete."""
        return self._response

    def feed(self, data: bytes) -> ResponseHead | None:
        """Consume ``data``; return the response head once it is complete.

        After completion, further data is appended to :attr:`leftover` and the same
        head is returned.  Raises ``error_type`` on a malformed or oversized head, or
        on end of stream (``data == b""``) before the head is complete.
        """
        if self._response is not None:
            self.leftover += data
            return self._response
        if not data:
            raise self._error(
                f"the peer closed the connection before {self.subject} was complete "
                f"(received {self._consumed + len(self._buffer)} bytes of the head)"
            )
        self._buffer += data
        while self._response is None:
            if self._status is None:
                self._check_prefix()
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                self._check_size(self._consumed + len(self._buffer))
                return None
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            self._consumed += end + 1
            self._check_size(self._consumed)
            self._parse_line(line[:-1] if line.endswith(b"\r") else line)
        self.leftover = bytes(self._buffer)
        self._buffer.clear()
        return self._response

    def _error(self, message: str) -> WebSocketException:
        return self.error_type(message)

    def _check_prefix(self) -> None:
        # Fail fast on a peer that does not speak HTTP (a TLS server on ws://, say).
        head = bytes(self._buffer[:5])
        if not b"HTTP/".startswith(head):
            raise self._error(
                f"malformed status line in {self.subject}: it does not start with an HTTP "
                f"status line (got {bytes(self._buffer[:32])!r}); the peer does not speak "
                "HTTP/1.x there: check the URL scheme (ws:// or wss://), the proxy type and "
                "the port"
            )

    def _check_size(self, size: int) -> None:
        if size > self.max_header_bytes:
            raise self._error(
                f"response headers exceed {self.max_header_bytes} bytes in {self.subject}: "
                "the peer sent a head longer than that, oversized or endless "
                "(raise max_header_bytes if it is legitimate)"
            )

    def _parse_line(self, line: bytes) -> None:
        if b"\r" in line:
            raise self._error(f"malformed line in {self.subject}: bare CR in {line[:80]!r}")
        if self._status is None:
            self._status = self._parse_status_line(line)
        elif line:
            if len(self._headers) >= self.max_headers:
                raise self._error(
                    f"{self.subject} has more than {self.max_headers} header fields; "
                    "raise max_headers if the peer legitimately sends that many"
                )
            self._headers.append(self._parse_header_line(line))
        else:
            version, status, reason = self._status
            if self.skip_informational and 100 <= status < 200 and status != 101:
                logger.debug("skipped an interim %d %s in %s", status, reason, self.subject)
                self._status = None
                self._headers = []
                return
            self._response = ResponseHead(status, reason, version, self._headers)

    def _parse_status_line(self, line: bytes) -> tuple[str, int, str]:
        match = _STATUS_LINE_RE.fullmatch(line)
        if match is None:
            raise self._error(
                f"malformed status line in {self.subject}: {line[:80]!r} "
                "(expected 'HTTP/1.1', a 3-digit status code and a reason phrase)"
            )
        version = match.group(1).decode("ascii")
        if version not in ("1.0", "1.1"):
            raise self._error(
                f"unsupported HTTP version in {self.subject}: HTTP/{version} "
                "(wspool speaks HTTP/1.1)"
            )
        reason = (match.group(3) or b"").decode("latin-1")
        if not is_field_value(reason):
            raise self._error(
                f"malformed status line in {self.subject}: control character in {line[:80]!r}"
            )
        return f"HTTP/{version}", int(match.group(2)), reason

    def _parse_header_line(self, line: bytes) -> tuple[str, str]:
        if line[:1] in (b" ", b"\t"):
            raise self._error(
                f"malformed header in {self.subject}: obsolete line folding in {line[:80]!r} "
                "(RFC 9112 §5.2)"
            )
        raw_name, colon, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1")
        if not colon or not is_token(name):
            raise self._error(
                f"malformed header in {self.subject}: {line[:80]!r} "
                "(expected 'name: value' with a token name and no space before the colon)"
            )
        value = raw_value.decode("latin-1").strip(" \t")
        if not is_field_value(value):
            raise self._error(
                f"malformed header in {self.subject}: control character in the value of {name!r}"
            )
        return name, value
