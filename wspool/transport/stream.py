"""Blocking reads and writes on one connected socket, safe from two threads at once.

The blocking client lets one thread wait in ``recv`` while others ``send``.  On a
plain TCP socket that is the kernel's business and safe: :class:`SocketStream` just
calls ``recv``/``sendall`` with the socket's timeout.  An :class:`ssl.SSLSocket` is
different: OpenSSL does not promise that ``SSL_read`` and ``SSL_write`` on one
connection may run at the same time (both touch the session's buffers, and a read may
have to write: TLS 1.3 key updates, renegotiation), and CPython releases the GIL around
both.  So a TLS socket is put in non-blocking mode and every call into OpenSSL runs
under one lock, while the *waiting* (``poll`` on the file descriptor, with the
caller's timeout) happens outside it: a reader blocked for minutes never holds the
lock a sender needs, and no two threads are ever inside OpenSSL for this socket.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Final

__all__ = ["SocketStream"]

_RECV_SIZE: Final = 64 * 1024


class SocketStream:
    """``recv``/``sendall`` with a timeout on ``sock``; TLS calls serialized.

    ``timeout`` is ``None`` (wait forever), 0 (never wait: raise at once) or seconds;
    an expired wait raises :class:`TimeoutError`, as a socket timeout does.
    """

    __slots__ = ("_lock", "_tls", "sock", "timeout")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        # Only OpenSSL calls run under it, never a wait (see the module docstring).
        self._lock = threading.Lock()
        self.timeout = timeout
        self.settimeout(timeout)

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        if self._tls:
            self.sock.setblocking(False)
        else:
            self.sock.settimeout(timeout)

    def recv(self, size: int = _RECV_SIZE, timeout: float | bool | None = False) -> bytes:
        """Up to ``size`` bytes (``b""`` at the end of the stream).  ``timeout``
        overrides the stream's for this call (``False``: the stream's)."""
        sock = self.sock
        wait = self.timeout if timeout is False else timeout
        if not self._tls:
            if timeout is not False:
                sock.settimeout(wait)
                try:
                    return sock.recv(size)
                finally:
                    sock.settimeout(self.timeout)
            return sock.recv(size)
        assert isinstance(sock, ssl.SSLSocket)
        deadline = _deadline(wait)
        while True:
            with self._lock:
                try:
                    return sock.recv(size)
                except ssl.SSLWantReadError:
                    readable = True
                except ssl.SSLWantWriteError:
                    readable = False
                except ssl.SSLZeroReturnError:
                    return b""  # the peer's TLS close_notify
            _wait(sock, readable, deadline)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` or raise (``TimeoutError`` when the peer stopped
        reading for longer than the timeout; part of ``data`` may be out then)."""
        sock = self.sock
        if not self._tls:
            sock.sendall(data)
            return
        assert isinstance(sock, ssl.SSLSocket)
        view = memoryview(data).cast("B")
        deadline = _deadline(self.timeout)
        while view:
            with self._lock:
                try:
                    sent = sock.send(view)
                except ssl.SSLWantWriteError:
                    writable = True
                except ssl.SSLWantReadError:
                    writable = False
                else:
                    view = view[sent:]
                    continue
            # OpenSSL wants the same bytes again once the socket is ready (CPython sets
            # SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, so the view may be a new object).
            _wait(sock, not writable, deadline)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _wait(sock: socket.socket, readable: bool, deadline: float | None) -> None:
    """Block until ``sock`` is readable (or writable) or ``deadline`` passes."""
    if deadline is None:
        remaining = None
    else:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
    fd = sock.fileno()
    if fd < 0:
        raise OSError("the socket was closed")
    events = select.POLLIN if readable else select.POLLOUT
    poller = select.poll()
    poller.register(fd, events | select.POLLERR | select.POLLHUP)
    ready = poller.poll(None if remaining is None else max(0, remaining * 1000))
    if not ready and deadline is not None:
        raise TimeoutError("timed out")
