"""One opening of a connection, hop by hop: the single opening path of every front end.

An :class:`Opening` holds what one attempt to open a connection decides, so that the
blocking client and the pool's session only move bytes:

* for the current hop (the URL, then each redirect target): its
  :class:`~wspool.transport.dial.DialPlan` and its
  :class:`~wspool.protocol.handshake.ClientHandshake`;
* the one redirect policy: at most ``redirect_limit`` redirects, a URL visited twice
  is a loop, and credentials (``Authorization``/``Cookie`` headers, the ``cookie`` and
  ``host`` options, URL user info) only go to the origin (scheme, host, port) they
  were given for;
* the core protocol object once the handshake is accepted.

The ``open_timeout`` deadline covers every hop of one opening; the drivers keep it (a
deadline in the blocking client, a dispatcher timer in the pool).
"""

from __future__ import annotations

import socket

from wspool._reprs import without_userinfo
from wspool.exceptions import WebSocketException, WebSocketRedirectException
from wspool.options import ConnectOptions
from wspool.protocol.client_protocol import ClientProtocol
from wspool.protocol.handshake import Accepted, ClientHandshake, Redirect, build_request
from wspool.protocol.headers import without_credentials
from wspool.transport.dial import DialPlan, plan_dial
from wspool.transport.url import WebSocketURL, resolve_redirect

__all__ = ["Opening"]


class Opening:
    """The hops of one attempt to open ``options.url``; not thread-safe (one driver)."""

    __slots__ = ("_checked", "_given", "_visited", "options", "redirects", "url")

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        #: The hop being dialled: the URL, then each redirect's target.
        self.url: WebSocketURL = options.url
        self.redirects = 0
        # Every URL after the first, once redirects happen (none: no allocation; one
        # Opening lives with each pool session).
        self._visited: tuple[str, ...] = ()
        # The first hop's handshake once check_request() built it: handshake() hands it
        # out instead of building the same request twice.
        self._checked: ClientHandshake | None = None
        # The ``socket`` option: the first hop goes over it instead of a dialled one.
        self._given = options.sock

    @property
    def same_origin(self) -> bool:
        """Whether the current hop is the origin the credentials were given for."""
        first, hop = self.options.url, self.url
        return (hop.secure, hop.host, hop.port) == (first.secure, first.host, first.port)

    def check_request(self) -> None:
        """Build the first hop's request once, so that an unusable header, subprotocol
        or extension combination raises in the caller's thread, before any connection
        (the front ends call it right after checking the options)."""
        try:
            self._checked = self._build_handshake()
        except WebSocketException as exc:
            exc.url = exc.url or self.url.redacted
            raise

    def take_socket(self) -> socket.socket | None:
        """The caller's connected socket for the first hop, once; ``None`` otherwise
        (no ``socket`` option, or a redirect: its target is dialled, as in
        websocket-client)."""
        given, self._given = self._given, None
        return given if self.redirects == 0 else None

    def plan(self) -> DialPlan:
        """How to reach the current hop (its proxy is chosen for its own URL)."""
        return plan_dial(self.url, self.options.dial)

    def handshake(self) -> ClientHandshake:
        """A fresh client handshake for the current hop."""
        checked, self._checked = self._checked, None
        if checked is not None and self.redirects == 0:
            return checked
        return self._build_handshake()

    def _build_handshake(self) -> ClientHandshake:
        options, url = self.options, self.url
        same_origin = self.same_origin
        request = build_request(
            host=url.host,
            port=url.port,
            resource=url.resource,
            secure=url.secure,
            subprotocols=options.subprotocols or None,
            origin=options.origin,
            suppress_origin=options.suppress_origin,
            header=list(options.header) if same_origin else without_credentials(options.header),
            cookie=options.cookie if same_origin else None,
            host_header=options.host if same_origin else None,
            auth=(url.username, url.password or "") if url.username is not None else None,
            deflate=options.deflate,
        )
        return ClientHandshake(request, max_size=options.max_size, label=url.redacted)

    def follow(self, redirect: Redirect) -> WebSocketURL:
        """Move on to the redirect's target, or raise
        :class:`~wspool.exceptions.WebSocketRedirectException` (limit, loop, a target
        that is not HTTP(S)/WS(S))."""
        limit = self.options.redirect_limit
        if self.redirects >= limit:
            raise WebSocketRedirectException(
                f"more than redirect_limit={limit} redirects (the last one, "
                f"{redirect.status}, to {without_userinfo(redirect.location)!r}); "
                "raise the limit or fix the URL",
                url=self.url.redacted,
            )
        try:
            target = resolve_redirect(self.url, redirect.location)
        except WebSocketRedirectException as exc:
            exc.url = exc.url or self.url.redacted
            raise
        if target.redacted == self.options.url.redacted or target.redacted in self._visited:
            raise WebSocketRedirectException(
                f"redirect loop: {self.url.redacted} redirects ({redirect.status}) to "
                f"{target.redacted}, which was already visited",
                url=self.options.url.redacted,
            )
        self._visited += (target.redacted,)
        self.redirects += 1
        self.url = target
        return target

    def protocol(self, accepted: Accepted, *, defer_failure: bool) -> ClientProtocol:
        """The core for the accepted connection, with the negotiated compression, the
        ``get_mask_key`` source and the hop's redacted URL as its label (trace, errors)."""
        return ClientProtocol(
            max_size=self.options.max_size,
            skip_utf8_validation=self.options.skip_utf8_validation,
            text_errors=self.options.text_errors,
            deflate=accepted.result.deflate,
            defer_failure=defer_failure,
            mask_key_source=self.options.mask_key_source,
            label=self.url.redacted,
        )
