"""Test servers for the transport layer: an HTTP CONNECT proxy, a SOCKS proxy, an echo server.

Written independently of ``wspool`` (nothing is imported from it) so that a client bug
and a proxy bug cannot cancel each other out.  Every server listens on 127.0.0.1 on
an ephemeral port, runs one thread per connection plus an accept thread, and is a
context manager (``stop()`` closes every socket and joins every thread).

The proxies only ever open connections to 127.0.0.1: a target given as a loopback
address (127.0.0.0/8 or ::1) or as a name listed in ``hosts`` is reached at
127.0.0.1; anything else is refused as unreachable.  ``hosts`` lets a test use a name
that only the proxy can resolve (e.g. ``"echo.invalid"``), which proves remote DNS.

Example::

    with EchoServer() as echo, HttpConnectProxy(auth=("u", "p")) as proxy:
        ...  # connect through proxy.host:proxy.port to 127.0.0.1:echo.port
        assert proxy.requests[0].target == f"127.0.0.1:{echo.port}"
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import selectors
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = [
    "EchoServer",
    "HttpConnectProxy",
    "HttpProxyRequest",
    "SocksProxy",
    "SocksRequest",
]

_LOOPBACK = "127.0.0.1"
_POLL = 0.05  # how often blocked loops look at the stop flag


class _PeerClosed(Exception):
    """The client went away in the middle of a message."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise _PeerClosed
        data += chunk
    return bytes(data)


class _ThreadedServer:
    """Accept loop on 127.0.0.1 plus one thread per connection; subclasses implement
    ``_handle(conn)``.  Exceptions from handlers are kept in ``errors``."""

    name = "server"

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((_LOOPBACK, 0))
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()[:2]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self.hosts: Mapping[str, str] = {}
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> Self:
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._accept_thread.is_alive():
            self._accept_thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every connection handled so far is finished (and closed)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- plumbing ---------------------------------------------------------------------
    def track(self, sock: socket.socket) -> socket.socket:
        """Register a socket so that ``stop()`` can unblock whoever uses it."""
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _accept_loop(self) -> None:
        self._listener.settimeout(_POLL)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.track(conn)
            thread = threading.Thread(
                target=self._run_handler, args=(conn,), name=f"{self.name}-conn", daemon=True
            )
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _run_handler(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        except (_PeerClosed, ConnectionError, ssl.SSLError):
            pass
        except OSError as exc:
            if not self._stop.is_set():
                self.errors.append(exc)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.close()
            with self._lock:
                self._sockets.discard(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        """Copy bytes both ways until both directions reached end of stream."""
        open_dirs = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            while open_dirs and not self._stop.is_set():
                for key, _ in sel.select(_POLL):
                    src = key.fileobj
                    assert isinstance(src, socket.socket)
                    dst = open_dirs[src]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        try:
                            dst.sendall(data)
                            continue
                        except OSError:
                            pass
                    sel.unregister(src)
                    del open_dirs[src]
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)

    def _open_target(self, host: str, port: int) -> socket.socket | None:
        """Connect to ``host:port`` if it maps to 127.0.0.1; ``None`` if not allowed.

        Raises ``OSError`` (e.g. ``ConnectionRefusedError``) if the connect fails.
        """
        address = self.hosts.get(host.lower())
        if address is None:
            try:
                if ipaddress.ip_address(host).is_loopback:
                    address = _LOOPBACK
            except ValueError:
                return None
        if address != _LOOPBACK:
            return None
        return self.track(socket.create_connection((_LOOPBACK, port), timeout=5))


class EchoServer(_ThreadedServer):
    """Echo every byte back.  With ``ssl_context`` it speaks TLS first; the names the
    clients sent in SNI are collected in ``sni_names`` (``None`` when a client sent none),
    handshake failures in ``tls_errors``."""

    name = "echo"

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.sni_names: list[str | None] = []
        self.tls_errors: list[ssl.SSLError | OSError] = []
        if ssl_context is not None:
            ssl_context.sni_callback = self._record_sni

    def _record_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni_names.append(name)

    def _handle(self, conn: socket.socket) -> None:
        if self.ssl_context is not None:
            try:
                conn = self.track(self.ssl_context.wrap_socket(conn, server_side=True))
            except (ssl.SSLError, OSError) as exc:
                self.tls_errors.append(exc)
                return
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        finally:
            conn.close()


@dataclass
class HttpProxyRequest:
    """One request the HTTP proxy received."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The decoded Basic credentials of ``Proxy-Authorization``, if any."""
        value = self.headers.get("proxy-authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
        return user, password


class HttpConnectProxy(_ThreadedServer):
    """An HTTP CONNECT proxy (RFC 9110 §9.3.6).

    ``auth`` (user, password) makes Basic authentication mandatory (407 otherwise).
    ``raw_reply`` replaces the whole answer with these bytes (then the connection is
    closed), to script broken proxies.  Each request is appended to ``requests``.
    """

    name = "http-proxy"

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        hosts: Mapping[str, str] | None = None,
        raw_reply: bytes | None = None,
    ) -> None:
        super().__init__()
        self.auth = auth
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.raw_reply = raw_reply
        self.requests: list[HttpProxyRequest] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _read_head(self, conn: socket.socket) -> bytes:
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(1)  # byte by byte: never read past the head
            if not chunk:
                raise _PeerClosed
            head += chunk
            if len(head) > 65536:
                raise _PeerClosed
        return bytes(head[:-4])

    def _handle(self, conn: socket.socket) -> None:
        lines = self._read_head(conn).decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        request = HttpProxyRequest(method, target, headers)
        self.requests.append(request)
        if self.raw_reply is not None:
            conn.sendall(self.raw_reply)
            return
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.auth is not None and request.credentials != self.auth:
            conn.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="wspool-test"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            upstream = self._open_target(host, int(port))
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        if upstream is None:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._relay(conn, upstream)
        finally:
            upstream.close()


@dataclass
class SocksRequest:
    """One CONNECT request the SOCKS proxy received.

    ``address_type`` is ``"ipv4"``, ``"ipv6"`` or ``"domain"`` (SOCKS4a names count as
    ``"domain"``); ``user`` is the RFC 1929 user name or the SOCKS4 user id.
    """

    version: int
    command: int
    address_type: str
    host: str
    port: int
    user: str | None = None


class SocksProxy(_ThreadedServer):
    """A SOCKS5 (RFC 1928) proxy that also answers SOCKS4/4a on the same port.

    ``auth`` (user, password) makes RFC 1929 username/password authentication
    mandatory for SOCKS5 (and the user id mandatory for SOCKS4).  Every CONNECT
    request is appended to ``requests``, before the proxy decides on it.
    """

    name = "socks-proxy"

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        hosts: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.auth = auth
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.requests: list[SocksRequest] = []

    @property
    def url(self) -> str:
        return self.url_for("socks5")

    def url_for(self, scheme: str) -> str:
        """The proxy URL with another scheme (``socks5h``, ``socks4``, ``socks4a``)."""
        return f"{scheme}://{self.host}:{self.port}"

    def _handle(self, conn: socket.socket) -> None:
        version = _recv_exact(conn, 1)[0]
        if version == 5:
            self._handle_socks5(conn)
        elif version == 4:
            self._handle_socks4(conn)

    def _handle_socks5(self, conn: socket.socket) -> None:
        methods = set(_recv_exact(conn, _recv_exact(conn, 1)[0]))
        wanted = 0x02 if self.auth is not None else 0x00
        if wanted not in methods:
            conn.sendall(b"\x05\xff")
            return
        conn.sendall(bytes([5, wanted]))
        user = None
        if self.auth is not None:
            _recv_exact(conn, 1)  # sub-negotiation version
            user = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode("utf-8")
            password = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode("utf-8")
            if (user, password) != self.auth:
                conn.sendall(b"\x01\x01")
                return
            conn.sendall(b"\x01\x00")
        _, command, _, atyp = _recv_exact(conn, 4)
        if atyp == 1:
            kind, host = "ipv4", str(ipaddress.IPv4Address(_recv_exact(conn, 4)))
        elif atyp == 4:
            kind, host = "ipv6", str(ipaddress.IPv6Address(_recv_exact(conn, 16)))
        elif atyp == 3:
            kind, host = "domain", _recv_exact(conn, _recv_exact(conn, 1)[0]).decode("ascii")
        else:
            conn.sendall(b"\x05\x08\x00\x01\0\0\0\0\0\0")
            return
        port = int.from_bytes(_recv_exact(conn, 2), "big")
        self.requests.append(SocksRequest(5, command, kind, host, port, user))
        if command != 1:
            conn.sendall(b"\x05\x07\x00\x01\0\0\0\0\0\0")
            return
        try:
            upstream = self._open_target(host, port)
        except OSError:
            conn.sendall(b"\x05\x05\x00\x01\0\0\0\0\0\0")  # connection refused
            return
        if upstream is None:
            conn.sendall(b"\x05\x04\x00\x01\0\0\0\0\0\0")  # host unreachable
            return
        try:
            bound_host, bound_port = upstream.getsockname()[:2]
            conn.sendall(
                b"\x05\x00\x00\x01"
                + ipaddress.IPv4Address(bound_host).packed
                + bound_port.to_bytes(2, "big")
            )
            self._relay(conn, upstream)
        finally:
            upstream.close()

    def _read_cstring(self, conn: socket.socket) -> bytes:
        data = bytearray()
        while (byte := _recv_exact(conn, 1)) != b"\0":
            data += byte
            if len(data) > 1024:
                raise _PeerClosed
        return bytes(data)

    def _handle_socks4(self, conn: socket.socket) -> None:
        header = _recv_exact(conn, 7)
        command, port, address = header[0], int.from_bytes(header[1:3], "big"), header[3:7]
        user = self._read_cstring(conn).decode("utf-8")
        if address[:3] == b"\0\0\0" and address[3] != 0:
            kind, host = "domain", self._read_cstring(conn).decode("ascii")
        else:
            kind, host = "ipv4", str(ipaddress.IPv4Address(address))
        self.requests.append(SocksRequest(4, command, kind, host, port, user))
        if command != 1 or (self.auth is not None and user != self.auth[0]):
            conn.sendall(b"\x00\x5b" + bytes(6))  # 91: rejected
            return
        try:
            upstream = self._open_target(host, port)
        except OSError:
            upstream = None
        if upstream is None:
            conn.sendall(b"\x00\x5b" + bytes(6))
            return
        try:
            conn.sendall(b"\x00\x5a" + bytes(6))  # 90: granted
            self._relay(conn, upstream)
        finally:
            upstream.close()
