"""The client side of the WebSocket opening handshake (RFC 6455 §4), sans-I/O.

No sockets and no clocks:

* :func:`build_request` turns connection options into the client's upgrade request
  (:class:`HandshakeRequest`, serialized with :meth:`HandshakeRequest.to_bytes`);
* :func:`validate_response` checks the server's 101 answer (a
  :class:`~wspool.protocol.http.ResponseHead`) against the request and returns the
  negotiated subprotocol and extensions (:class:`HandshakeResult`);
* :class:`ClientHandshake` puts both together as one state machine: it hands out
  the request bytes, reads the answer with the shared HTTP parser
  (:mod:`wspool.protocol.http`) and ends in exactly one event: :class:`Accepted`
  (with the bytes that followed the head, the first frames), :class:`Redirect`
  (the driver follows ``Location``) or :class:`Rejected` (with a bounded excerpt of
  the refusal's body).

The drivers own the I/O and the clocks: they send :meth:`ClientHandshake.data_to_send`,
feed what they receive to :meth:`ClientHandshake.receive_data` (``b""`` at end of
stream) and, when a refusal's body is slow to come, give up after
:data:`REJECTION_BODY_WAIT` seconds with :meth:`ClientHandshake.body_timed_out`.
The header grammar lives in :mod:`wspool.protocol.headers`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final, TypeAlias

from wspool.exceptions import (
    WebSocketBadStatusException,
    WebSocketConfigurationException,
    WebSocketHandshakeException,
)
from wspool.protocol import trace as _trace
from wspool.protocol.headers import (
    HeaderOption,
    check_header,
    check_subprotocols,
    host_for_header,
    normalize_headers,
    parse_extensions,
    split_list,
)
from wspool.protocol.http import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    ResponseHead,
    ResponseHeadParser,
)

if TYPE_CHECKING:
    # Only used for annotations: the handshake calls ``offer()``/``accept()`` on the
    # object it is given and never needs the codec module at run time.
    from wspool.protocol.deflate import DeflateOptions, PerMessageDeflate

__all__ = [
    "BODY_EXCERPT_LIMIT",
    "REDIRECT_STATUSES",
    "REJECTION_BODY_WAIT",
    "WEBSOCKET_GUID",
    "WEBSOCKET_VERSION",
    "Accepted",
    "ClientHandshake",
    "HandshakeEvent",
    "HandshakeRequest",
    "HandshakeResult",
    "HandshakeState",
    "Redirect",
    "Rejected",
    "accept_key",
    "bad_status_error",
    "build_request",
    "generate_key",
    "validate_response",
]

logger = logging.getLogger("wspool")

#: The GUID appended to the key before hashing (RFC 6455 §1.3, §4.2.2).
WEBSOCKET_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The only protocol version this client speaks (RFC 6455 §4.1, item 9).
WEBSOCKET_VERSION: Final = "13"
#: Statuses whose ``Location`` the I/O layer follows (same set as websocket-client).
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
#: Bytes of a refused handshake's body kept for the exception.
BODY_EXCERPT_LIMIT: Final = 4096
#: Seconds a driver waits for a refusal's body before giving up (policy for the
#: drivers: this module has no clock, see :meth:`ClientHandshake.body_timed_out`).
REJECTION_BODY_WAIT: Final = 1.0

_PERMESSAGE_DEFLATE: Final = "permessage-deflate"
#: Headers the handshake itself depends on; a user header may not replace them.
_RESERVED: Final = frozenset(
    {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
)
#: Statuses whose response never has a body (RFC 9112 §6.3 item 1; 1xx are skipped).
_BODILESS_STATUSES: Final = frozenset({204, 304})
_CONTENT_LENGTH_RE: Final = re.compile(r"[0-9]{1,18}")


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
    header: HeaderOption = None,
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
    offered = check_subprotocols(subprotocols) if subprotocols else ()
    user = normalize_headers(header)
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
    host_port = host_for_header(host)
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
    generated = [check_header(name, value) for name, value in generated]

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
        offered = tuple(split_list(protocol_values))
    extension_values = [v for n, v in headers if n.lower() == "sec-websocket-extensions"]

    return HandshakeRequest(
        resource=resource,
        headers=tuple(headers),
        key=key,
        subprotocols=offered,
        deflate=deflate,
        extension_offer=", ".join(extension_values) if extension_values else None,
    )


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


def bad_status_error(response: ResponseHead, body: bytes = b"") -> WebSocketBadStatusException:
    """Build the exception for a non-101 answer; ``body`` is a bounded excerpt."""
    status_text = f"{response.status} {response.reason}".rstrip()
    return WebSocketBadStatusException(
        f"Handshake status {status_text}: server refused the WebSocket upgrade",
        response.status,
        response.headers,
        body,
    )


def validate_response(
    request: HandshakeRequest, response: ResponseHead, *, max_size: int | None
) -> HandshakeResult:
    """Check the server's answer against ``request`` (RFC 6455 §4.1, client side).

    Returns the negotiated subprotocol and extensions.  Any non-101 status raises
    :class:`WebSocketBadStatusException` without body (:class:`ClientHandshake` sorts
    redirects and refusals out before calling this, and builds a refusal's exception
    with :func:`bad_status_error` once it has the body excerpt).  Every other failure
    raises :class:`WebSocketHandshakeException` naming the header and
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
    if "upgrade" not in (item.lower() for item in split_list(connection)):
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


def _negotiated_subprotocol(request: HandshakeRequest, response: ResponseHead) -> str | None:
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
    request: HandshakeRequest, response: ResponseHead, max_size: int | None
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


# ---------------------------------------------------------------- state machine


class HandshakeState(Enum):
    """Where a :class:`ClientHandshake` stands; the last four are terminal."""

    CONNECTING = "connecting"  # request built, waiting for the response head
    READING_BODY = "reading body"  # a refusal: collecting the body excerpt
    ACCEPTED = "accepted"
    REDIRECTED = "redirected"
    REJECTED = "rejected"
    FAILED = "failed"  # malformed or invalid response, or end of stream before the head


#: Every allowed transition; :meth:`ClientHandshake._move` enforces and logs them.
_TRANSITIONS: Final[Mapping[HandshakeState, frozenset[HandshakeState]]] = {
    HandshakeState.CONNECTING: frozenset(
        {
            HandshakeState.READING_BODY,
            HandshakeState.ACCEPTED,
            HandshakeState.REDIRECTED,
            HandshakeState.FAILED,
        }
    ),
    HandshakeState.READING_BODY: frozenset({HandshakeState.REJECTED}),
    HandshakeState.ACCEPTED: frozenset(),
    HandshakeState.REDIRECTED: frozenset(),
    HandshakeState.REJECTED: frozenset(),
    HandshakeState.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Accepted:
    """The server accepted the upgrade (101, validated).

    ``leftover`` holds the bytes that followed the response head: the server's first
    frames, to be fed to the frame protocol before anything read later.
    """

    result: HandshakeResult
    leftover: bytes


@dataclass(frozen=True, slots=True)
class Redirect:
    """The server redirected the upgrade: ``location`` is its ``Location``, unresolved."""

    status: int
    location: str
    response: ResponseHead


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server refused the upgrade.

    ``error`` carries ``status_code``, ``headers`` and the body excerpt
    (``resp_body``); the driver adds the URL and raises it.
    """

    error: WebSocketBadStatusException


#: What :meth:`ClientHandshake.receive_data` reports once the handshake is decided.
HandshakeEvent: TypeAlias = Accepted | Redirect | Rejected


class ClientHandshake:
    """Sans-I/O client side of the opening handshake (RFC 6455 §4.1/§4.2.2), in the
    spirit of h11/wsproto.

    The driver sends :meth:`data_to_send`, then feeds every chunk it receives to
    :meth:`receive_data` until it returns an event:

    * 101 → the response is validated (:func:`validate_response`) → :class:`Accepted`;
    * a status of :data:`REDIRECT_STATUSES` with a non-empty ``Location`` →
      :class:`Redirect` at once, without reading the body;
    * any other status (a 3xx without ``Location`` too) → the state becomes
      ``READING_BODY`` and at most ``min(Content-Length, body_limit)`` body bytes
      are collected (none for 204 and 304, RFC 9112 §6.3; ``Content-Length`` is
      ignored next to ``Transfer-Encoding``, RFC 9112 §6.3 item 3) → :class:`Rejected`
      once they are in, at end of stream, or when the driver calls
      :meth:`body_timed_out`.

    Interim 1xx answers other than 101 are skipped (RFC 9110 §15.2).  A malformed or
    oversized head, end of stream before the head, or a 101 that fails validation
    raises :class:`WebSocketHandshakeException` and leaves the state ``FAILED``.  Once
    the state is terminal, feeding more data is a driver bug and raises
    :class:`RuntimeError`.  ``max_size`` goes to permessage-deflate negotiation.
    ``label`` (the connection's URL without credentials) names the connection in
    the protocol trace (:mod:`wspool.protocol.trace`), which shows the request and response
    heads with credentials redacted.
    """

    def __init__(
        self,
        request: HandshakeRequest,
        *,
        max_size: int | None,
        body_limit: int = BODY_EXCERPT_LIMIT,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        label: str | None = None,
    ) -> None:
        if isinstance(body_limit, bool) or not isinstance(body_limit, int) or body_limit < 0:
            raise WebSocketConfigurationException(
                f"body_limit must be a number of bytes >= 0, not {body_limit!r}"
            )
        self.request = request
        self.label = label
        self.state = HandshakeState.CONNECTING
        self.max_size = max_size
        self.body_limit = body_limit
        self._parser = ResponseHeadParser(
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            skip_informational=True,
        )
        self._sent = False
        self._response: ResponseHead | None = None
        self._body = bytearray()
        self._body_wanted = 0

    @property
    def response(self) -> ResponseHead | None:
        """The server's final response head, once it has arrived."""
        return self._response

    def data_to_send(self) -> bytes:
        """The request bytes on the first call, ``b""`` on every later one."""
        if self._sent:
            return b""
        self._sent = True
        data = self.request.to_bytes()
        if _trace.enabled:
            _trace.request_head(self.label or self.request.get("Host"), data)
        return data

    def receive_data(self, data: bytes) -> HandshakeEvent | None:
        """Consume bytes from the server (``b""``: it closed the connection).

        Returns the event that decides the handshake, or ``None`` while more bytes
        are needed.  See the class docstring for the rules and the errors.
        """
        if self.state is HandshakeState.CONNECTING:
            return self._receive_head(data)
        if self.state is HandshakeState.READING_BODY:
            return self._receive_body(data)
        raise RuntimeError(
            f"ClientHandshake.receive_data() called in state {self.state.value!r}: the "
            "handshake is over; after Accepted, bytes belong to the frame protocol"
        )

    def body_timed_out(self) -> Rejected:
        """Stop waiting for the refusal's body: :class:`Rejected` with what arrived.

        Only valid in ``READING_BODY``; the driver calls it when its wait (typically
        :data:`REJECTION_BODY_WAIT` seconds) expires.
        """
        if self.state is not HandshakeState.READING_BODY:
            raise RuntimeError(
                f"ClientHandshake.body_timed_out() called in state {self.state.value!r}; "
                "it is only valid while reading a refusal's body"
            )
        return self._reject("body wait expired")

    def _receive_head(self, data: bytes) -> HandshakeEvent | None:
        try:
            response = self._parser.feed(data)
        except Exception:
            self._move(HandshakeState.FAILED, "unusable response head")
            raise
        if response is None:
            return None
        self._response = response
        if _trace.enabled:
            status_line = f"{response.http_version} {response.status} {response.reason}"
            _trace.http_head(
                self.label or self.request.get("Host"),
                _trace.RECEIVED,
                status_line.rstrip(),
                response.headers,
            )
        if response.status == 101:
            try:
                result = validate_response(self.request, response, max_size=self.max_size)
            except Exception:
                self._move(HandshakeState.FAILED, "101 failed validation")
                raise
            self._move(HandshakeState.ACCEPTED, "101")
            return Accepted(result, self._parser.leftover)
        location = response.get("Location")
        if response.status in REDIRECT_STATUSES and location:
            self._move(HandshakeState.REDIRECTED, str(response.status))
            return Redirect(response.status, location, response)
        self._body_wanted = _body_length(response, self.body_limit)
        self._move(HandshakeState.READING_BODY, f"{response.status}, {self._body_wanted} bytes")
        self._body += self._parser.leftover[: self._body_wanted]
        if len(self._body) >= self._body_wanted:
            return self._reject("body complete")
        return None

    def _receive_body(self, data: bytes) -> Rejected | None:
        if not data:
            return self._reject("end of stream")
        self._body += data[: self._body_wanted - len(self._body)]
        if len(self._body) >= self._body_wanted:
            return self._reject("body complete")
        return None

    def _reject(self, why: str) -> Rejected:
        assert self._response is not None  # READING_BODY always has a response
        self._move(HandshakeState.REJECTED, why)
        return Rejected(bad_status_error(self._response, bytes(self._body)))

    def _move(self, new: HandshakeState, why: str) -> None:
        """The one place the state changes: check the transition, then log it."""
        old = self.state
        if new not in _TRANSITIONS[old]:
            raise RuntimeError(f"ClientHandshake cannot go from {old.value!r} to {new.value!r}")
        self.state = new
        logger.debug(
            "opening handshake with %s: %s -> %s (%s)",
            self.request.get("Host"),
            old.value,
            new.value,
            why,
        )


def _body_length(response: ResponseHead, limit: int) -> int:
    """How many body bytes of a refusal to wait for: at most ``limit``."""
    if response.status in _BODILESS_STATUSES:
        return 0
    if response.get_all("Transfer-Encoding"):
        return limit  # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3)
    values = split_list(response.get_all("Content-Length"))
    # Repeated identical values are one length (RFC 9110 §8.6); anything else is unusable.
    if values and len(set(values)) == 1 and _CONTENT_LENGTH_RE.fullmatch(values[0]):
        return min(int(values[0]), limit)
    return limit
