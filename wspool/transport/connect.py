"""The blocking carrier of a dial plan: resolve, try each address, tunnel, wrap in TLS.

Used by the blocking client; the pool's session carries the same
:class:`~wspool.transport.dial.DialPlan` out without blocking.  Every decision (which
proxy, which addresses in which order, what each failure is called) comes from
:mod:`wspool.transport.dial`; this module only waits.  The socket is closed on every
error path.

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

from wspool.exceptions import (
    WebSocketConfigurationException,
    WebSocketProxyException,
    WebSocketTimeoutException,
)
from wspool.transport.dial import (
    DialPlan,
    Route,
    connect_error,
    connect_timeout_error,
    new_socket,
    proxy_handshake,
    proxy_leftover_error,
    resolve,
    tls_error,
    wrap_tls,
)

__all__ = ["Deadline", "open_socket", "use_socket"]


class Deadline:
    """The time left for a whole opening; ``None`` everywhere means no limit."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self, cap: float | None = None) -> float | None:
        """Seconds left (at most ``cap``); raises :class:`TimeoutError` once passed."""
        if self._end is None:
            return cap
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the opening deadline passed")
        return left if cap is None else min(left, cap)


def open_socket(plan: DialPlan, deadline: Deadline) -> socket.socket:
    """A connected socket for ``plan``: tunnelled through its proxy if any, TLS-wrapped
    (handshake done) for ``wss://``.  The socket's timeout is left at the deadline's
    whole ``timeout`` (the caller sets its own for the handshake and after)."""
    route = resolve(plan)
    sock = _connect_first_hop(route, deadline)
    try:
        if plan.proxy is not None:
            _tunnel(sock, route, deadline)
        if plan.url.secure:
            sock = _handshake_tls(plan, sock, deadline)
        sock.settimeout(deadline.timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def use_socket(plan: DialPlan, sock: socket.socket, deadline: Deadline) -> socket.socket:
    """The caller's connected socket (the ``socket`` option) made ready for the
    handshake: TLS-wrapped for ``wss://`` unless it is already an :class:`ssl.SSLSocket`.
    No proxy and no socket options apply: the caller chose where it leads.  On error
    the socket is closed, as a dialled one would be."""
    try:
        if plan.url.secure and not isinstance(sock, ssl.SSLSocket):
            sock = _handshake_tls(plan, sock, deadline)
        sock.settimeout(deadline.timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect_first_hop(route: Route, deadline: Deadline) -> socket.socket:
    """Connect to the proxy or the server, trying each address in the route's order."""
    plan = route.plan
    cap = plan.proxy.timeout if plan.proxy is not None else None
    last_error: OSError | None = None
    for info in route.addresses:
        sock = new_socket(route, info)
        try:
            sock.settimeout(deadline.remaining(cap))
            sock.connect(info[4])
        except WebSocketConfigurationException:
            sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            raise connect_timeout_error(plan, info[4]) from exc
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise connect_error(plan, last_error) from last_error


def _tunnel(sock: socket.socket, route: Route, deadline: Deadline) -> None:
    """Run the proxy handshake over ``sock`` until the tunnel to the target is up."""
    plan = route.plan
    proxy = plan.proxy
    assert proxy is not None
    handshake = proxy_handshake(route)
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
            url=plan.url.redacted,
        ) from exc
    except OSError as exc:
        raise WebSocketProxyException(
            f"connection to the {proxy.type} proxy {proxy.address} failed during its "
            f"handshake: {exc}",
            url=plan.url.redacted,
        ) from exc
    if handshake.leftover:
        raise proxy_leftover_error(plan, len(handshake.leftover))


def _handshake_tls(plan: DialPlan, sock: socket.socket, deadline: Deadline) -> ssl.SSLSocket:
    tls = wrap_tls(plan, sock)
    try:
        tls.settimeout(deadline.remaining())
        tls.do_handshake()
    except TimeoutError as exc:
        tls.close()
        raise WebSocketTimeoutException(
            f"timed out during the TLS handshake with {plan.url.authority}",
            url=plan.url.redacted,
        ) from exc
    except OSError as exc:  # ssl.SSLError included
        tls.close()
        raise tls_error(plan, exc) from exc
    except BaseException:
        tls.close()
        raise
    return tls
