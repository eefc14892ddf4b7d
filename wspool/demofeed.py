"""A local WebSocket demo feed: ticks, echo and heartbeats, no network needed.

The examples and the ``wspool`` documentation run against this server, so a user who
installed wspool can try everything offline::

    import wspool
    from wspool.demofeed import DemoFeed

    with DemoFeed(rate=50) as feed:              # a background thread, loopback only
        with wspool.connect(feed.url + "/ticker") as ws:
            ws.send('{"op": "subscribe", "channel": "ticker", "symbols": ["BTC-USD"]}')
            print(ws.recv())                     # {"type":"subscribed",...}
            print(ws.recv())                     # {"type":"ticker","symbol":"BTC-USD",...}

    python -m wspool.demofeed --port 8765        # the same in the foreground

One thread runs one ``selectors`` loop for every connection (non-blocking sockets, a
write buffer each), which is enough for a thousand concurrent connections.  It is
stdlib only and is not imported by ``import wspool``.

Paths:

``/ticker`` (also ``/``)
    A text ``{"op": "subscribe", "channel": "ticker", "symbols": [...]}`` (or any other
    text, ``"go"`` say, for every symbol) is answered with ``{"type": "subscribed",
    ...}``, then ticks ``{"type": "ticker", "symbol", "seq", "price", "size", "ts"}``
    arrive at ``rate`` per second per symbol.  ``{"op": "unsubscribe", ...}`` stops
    them.  The feed makes each tick once and sends it to every connection subscribed
    to that symbol: ``seq`` is one sequence per symbol (and rate) across connections,
    so two connections see the same ``(symbol, seq)`` messages, which is what
    make-before-break rotation and redundant feeds deduplicate on.  A text ``"ping"``
    is answered with a text ``"pong"`` (an application heartbeat, as some exchanges
    use); mistakes get ``{"type": "error", "message": ...}``.
``/echo``
    Every data message comes back as it was sent (text or binary).
``/health``
    ``{"status": "ok", "uptime": seconds, "ts": time}`` once a second.

Query parameters override the constructor for one connection: ``?max_age=S``,
``?silent_after=S&silent_for=S``, ``?rate=R`` (on ``/health``: beats per second);
``?id=anything`` is accepted and ignored (it makes URLs distinct, for sharding).  An
unknown parameter, a bad value, a bad handshake or an unknown path is answered with
an HTTP error (400, 404, or 426 for a WebSocket version other than 13) and a close.

The server side is strict where a client bug would show: client frames must be
masked, reserved bits clear, control frames short and whole, close codes valid,
text UTF-8; a violation closes with 1002 (1007 for bad UTF-8, 1009 over
:data:`MAX_MESSAGE`).  Pings are answered with pongs at any time, silent phase
included.  permessage-deflate (RFC 7692) is agreed when offered, always with
``server_no_context_takeover``: each message is compressed on its own, so a tick is
compressed once for all its subscribers (``compression=False`` turns it off).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import heapq
import ipaddress
import json
import logging
import math
import random
import selectors
import socket
import ssl
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

__all__ = ["MAX_MESSAGE", "DemoFeed", "main"]

logger = logging.getLogger("wspool")

#: The largest client message (and frame) the feed accepts; more is closed with 1009.
MAX_MESSAGE: Final = 4 * 1024 * 1024
#: Past this many unsent bytes for one connection (a client that stopped reading), the
#: feed drops that connection's ticks instead of buffering without bound.
MAX_BUFFERED: Final = 4 * 1024 * 1024
MAX_REQUEST_HEAD: Final = 16 * 1024
HANDSHAKE_TIMEOUT: Final = 10.0  # TLS and HTTP request, from accept
CLOSE_TIMEOUT: Final = 5.0  # for the client's close reply, or to flush ours
SHUTDOWN_TIMEOUT: Final = 2.0  # close(): how long open connections get to answer
PATHS: Final = ("/", "/ticker", "/echo", "/health")
MAX_RATE: Final = 1000.0

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_TLS_CHUNK: Final = 64 * 1024  # bytes per SSL write, so a retry repeats a bounded slice
_SYNC_TAIL: Final = b"\x00\x00\xff\xff"
_NO_VALUE_PARAMS: Final = ("server_no_context_takeover", "client_no_context_takeover")
_DEFLATE_PARAMS: Final = frozenset(
    {*_NO_VALUE_PARAMS, "server_max_window_bits", "client_max_window_bits"}
)
_QUERY_KEYS: Final = frozenset({"max_age", "silent_after", "silent_for", "rate", "id"})

# Connection phases, in order.
_TLS, _HTTP, _OPEN, _CLOSING, _GONE = range(5)

_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA

_BASE_PRICES: Final = {"BTC-USD": 65000.0, "ETH-USD": 3200.0, "SOL-USD": 150.0}

_STATS_KEYS: Final = (
    "connections_opened",
    "connections_open",
    "messages_sent",
    "messages_received",
    "messages_dropped",
    "subscriptions",
    "subscribe_requests",
    "rotations",
    "bad_requests",
    "tls_failures",
)


def _frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, length))
    elif length < 65536:
        head = bytes((first, 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + length.to_bytes(8, "big")
    return head + payload


class _Outgoing:
    """One data message to send, framed once per encoding: plain, or deflated with a
    given window.  The feed compresses without context takeover, so a tick deflates
    to the same bytes for every connection and is compressed once, not per client."""

    __slots__ = ("_deflated", "_plain", "opcode", "payload")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload
        self._plain: bytes | None = None
        self._deflated: dict[int, bytes] = {}

    def frame(self, window_bits: int | None) -> bytes:
        if window_bits is None:
            if self._plain is None:
                self._plain = _frame(self.opcode, self.payload)
            return self._plain
        framed = self._deflated.get(window_bits)
        if framed is None:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
            data = compressor.compress(self.payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if data.endswith(_SYNC_TAIL):  # RFC 7692 §7.2.1
                data = data[:-4]
            framed = self._deflated[window_bits] = _frame(self.opcode, data, rsv1=True)
        return framed


def _text(body: dict[str, Any] | str) -> _Outgoing:
    if isinstance(body, str):
        return _Outgoing(_TEXT, body.encode())
    return _Outgoing(_TEXT, json.dumps(body, separators=(",", ":")).encode())


def _negotiate_deflate(header: str) -> tuple[int, str] | None:
    """The first permessage-deflate offer (RFC 7692) the feed accepts: its server
    window bits and the response's extension value; None when there is none.

    The feed always answers ``server_no_context_takeover`` (allowed unasked, §7.1.1.1)
    and honours ``server_max_window_bits`` from 9 to 15; it inflates what the client
    sends with a full window, which reads any window the client uses.
    """
    for offer in header.split(","):
        name, *raw = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        params: dict[str, str | None] = {}
        for item in raw:
            key, equals, value = item.partition("=")
            key = key.strip().lower()
            if key in params:
                params = {"duplicate": None}
                break
            params[key] = value.strip().strip('"') if equals else None
        if not set(params) <= _DEFLATE_PARAMS:
            continue
        if any(params.get(k) is not None for k in _NO_VALUE_PARAMS):
            continue
        response = "permessage-deflate; server_no_context_takeover"
        bits = 15
        if "server_max_window_bits" in params:
            value = params["server_max_window_bits"] or ""
            # zlib cannot make raw deflate with an 8-bit window: decline such offers.
            if not value.isdigit() or not 9 <= int(value) <= 15:
                continue
            bits = int(value)
            response += f"; server_max_window_bits={bits}"
        client_bits = params.get("client_max_window_bits")
        if client_bits is not None and not (client_bits.isdigit() and 8 <= int(client_bits) <= 15):
            continue
        return bits, response
    return None


def _close_frame(code: int, reason: str = "") -> bytes:
    return _frame(_CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8"))


def _unmask(data: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 §5.3), as one big int."""
    n = len(data)
    if not n:
        return b""
    keys = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def _valid_close_code(code: int) -> bool:
    """RFC 6455 §7.4: the codes a peer may send in a close frame."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or (3000 <= code <= 4999)


class _Reject(Exception):
    """An HTTP error answer to a bad upgrade request."""

    def __init__(self, status: int, reason: str, body: str, extra: str = "") -> None:
        super().__init__(body)
        self.status = status
        self.reason = reason
        self.body = body
        self.extra = extra


class _Conn:
    """One client connection inside the loop (the loop thread owns every field)."""

    __slots__ = (
        "__weakref__",
        "close_after_flush",
        "close_sent",
        "deflate_bits",
        "events",
        "frag_compressed",
        "frag_data",
        "frag_opcode",
        "inbuf",
        "inflater",
        "max_age",
        "opened",
        "out",
        "path",
        "rate",
        "silent_after",
        "silent_for",
        "sock",
        "state",
        "streams",
        "tls",
    )

    def __init__(self, sock: socket.socket, tls: bool, feed: DemoFeed) -> None:
        self.sock = sock
        self.tls = tls
        self.state = _TLS if tls else _HTTP
        self.inbuf = bytearray()
        self.out = bytearray()
        self.events = selectors.EVENT_READ
        self.close_sent = False
        self.close_after_flush = False  # drop the socket once ``out`` is written
        self.frag_opcode: int | None = None  # the opcode of a fragmented message in progress
        self.frag_data = bytearray()
        self.frag_compressed = False  # the message in progress had RSV1 set
        self.deflate_bits: int | None = None  # server window bits once deflate is agreed
        self.inflater: Any = None  # zlib decompressobj, made at the first compressed message
        self.path = ""
        self.opened = 0.0
        self.rate = feed.rate
        self.max_age = feed.max_session_age
        self.silent_after = feed.silent_after
        self.silent_for = feed.silent_for
        self.streams: dict[tuple[str | None, float], _Stream] = {}

    def silent(self, now: float) -> bool:
        """Whether this connection is in its silent phase (``silent_for <= 0``: for
        the rest of the connection)."""
        if self.silent_after is None:
            return False
        age = now - self.opened
        if age < self.silent_after:
            return False
        return self.silent_for <= 0 or age < self.silent_after + self.silent_for


class _Stream:
    """A clock that makes one message per period and fans it out to its subscribers:
    the ticks of one symbol at one rate, or (``symbol`` None) the /health beat."""

    __slots__ = ("period", "price", "rate", "rng", "running", "seq", "subscribers", "symbol")

    def __init__(self, symbol: str | None, rate: float, seed: int | None) -> None:
        self.symbol = symbol
        self.rate = rate
        self.period = 1.0 / rate
        self.rng = random.Random(None if seed is None else f"{seed}/{symbol}/{rate}")
        base = _BASE_PRICES.get(symbol or "")
        self.price = round(base or self.rng.uniform(20.0, 2000.0), 2)
        self.seq = 0
        self.subscribers: set[_Conn] = set()
        self.running = False

    def next_message(self, uptime: float) -> _Outgoing:
        now = time.time()
        if self.symbol is None:
            body: dict[str, Any] = {"status": "ok", "uptime": round(uptime, 3), "ts": now}
        else:
            self.seq += 1
            # A random walk, kept positive.
            self.price = max(0.01, round(self.price * (1.0 + self.rng.gauss(0.0, 0.0005)), 2))
            size = round(self.rng.expovariate(2.0) + 0.0001, 4)
            body = {
                "type": "ticker",
                "symbol": self.symbol,
                "seq": self.seq,
                "price": self.price,
                "size": size,
                "ts": now,
            }
        return _text(body)


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}")


class DemoFeed:
    """A WebSocket feed server on a background thread (one selectors loop), loopback only.

    ``rate`` is ticks per second per subscribed symbol; ``max_session_age`` makes the
    server close each connection that long after it opened (close 1001 "rotating", as
    exchanges rotate sessions); ``silent_after``/``silent_for`` make each connection
    stop sending data messages that many seconds after it opened, for that long
    (``silent_for <= 0``: for good), while pings are still answered: a stalled feed
    on a live socket.  ``seed`` makes prices and sizes reproducible.
    ``compression=False`` declines permessage-deflate offers.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rate: float = 20.0,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD", "SOL-USD"),
        max_session_age: float | None = None,
        silent_after: float | None = None,
        silent_for: float = 0.0,
        seed: int | None = None,
        compression: bool = True,
    ) -> None:
        if host != "localhost":
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(f"DemoFeed listens on loopback only, not {host!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port!r}")
        _positive("rate", rate)
        if rate > MAX_RATE:
            raise ValueError(f"rate must be at most {MAX_RATE:g}, not {rate!r}")
        _positive("max_session_age", max_session_age)
        _positive("silent_after", silent_after, zero=True)
        _positive("silent_for", silent_for, zero=True)
        names = list(symbols)
        if isinstance(symbols, str) or not names or not all(isinstance(s, str) for s in names):
            raise ValueError(f"symbols must be a non-empty sequence of str, not {symbols!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"symbols repeat: {names!r}")
        self.host = host
        self.ssl_context = ssl_context
        self.rate = float(rate)
        self.symbols: tuple[str, ...] = tuple(names)
        self.max_session_age = max_session_age
        self.silent_after = silent_after
        self.silent_for = silent_for
        self.seed = seed
        self.compression = compression
        self._port = port
        self._lock = threading.Lock()  # guards _thread and _stop_requested
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._stats: dict[str, int] = dict.fromkeys(_STATS_KEYS, 0)
        self._close_codes: dict[int, int] = {}
        # Everything below belongs to the loop thread once started.
        self._sel: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._waker_r: socket.socket | None = None
        self._waker_w: socket.socket | None = None
        self._conns: set[_Conn] = set()
        self._dirty: set[_Conn] = set()
        self._streams: dict[tuple[str | None, float], _Stream] = {}
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = 0
        self._started_at = 0.0
        self._shutdown_deadline: float | None = None
        self._shutdown_timeout = SHUTDOWN_TIMEOUT

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        """The listening port (the one the OS chose when ``port=0``, once started)."""
        if self._port == 0:
            raise RuntimeError("the DemoFeed is not started: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss://localhost:PORT`` with ``ssl_context``), no path."""
        if self.ssl_context is not None:
            return f"wss://localhost:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def start(self) -> DemoFeed:
        """Listen and start the loop thread; returns ``self``."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this DemoFeed was already started")
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                # Restarting on the same port right after close() (TIME_WAIT) must work.
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.host, self._port))
                listener.listen(1024)
                listener.setblocking(False)
            except BaseException:
                listener.close()
                raise
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._waker_r, self._waker_w = socket.socketpair()
            self._waker_r.setblocking(False)
            self._waker_w.setblocking(False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(listener, selectors.EVENT_READ, "accept")
            self._sel.register(self._waker_r, selectors.EVENT_READ, "wake")
            self._started_at = time.monotonic()
            self._thread = threading.Thread(
                target=self._run, name=f"wspool-demofeed-{self._port}", daemon=True
            )
            self._thread.start()
        logger.debug("demo feed listening at %s", self.url)
        return self

    def close(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop accepting, close every open connection with a close frame (1001 "feed
        closing"), wait up to ``timeout`` seconds for the replies, then drop what is
        left and join the thread.  Idempotent."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            if not self._stop_requested:
                self._stop_requested = True
                self._shutdown_timeout = timeout
                self._wake()
        if thread is not threading.current_thread():
            thread.join(timeout + 10.0)

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters: ``connections_opened`` (handshakes completed),
        ``connections_open`` (now), ``messages_sent`` (data messages queued),
        ``messages_received``, ``messages_dropped`` (silent phase or a client not
        reading), ``subscriptions`` ((connection, symbol) pairs now),
        ``subscribe_requests``, ``rotations`` (max-age closes), ``bad_requests``
        (HTTP errors answered), ``tls_failures``."""
        return dict(self._stats)

    def close_codes(self) -> dict[int, int]:
        """How many close frames the feed received from clients, by code (1005 for a
        close frame without a code): shows that clients closed cleanly."""
        return dict(self._close_codes)

    @property
    def running(self) -> bool:
        """Whether the loop thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def __enter__(self) -> DemoFeed:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<DemoFeed {where} open={self._stats['connections_open']}>"

    # ------------------------------------------------------------------ the loop

    def _wake(self) -> None:
        if self._waker_w is not None:
            with contextlib.suppress(OSError):  # full (already woken) or closed
                self._waker_w.send(b"x")

    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        try:
            while True:
                now = time.monotonic()
                if self._stop_requested and self._shutdown_deadline is None:
                    self._begin_shutdown(now)
                if self._shutdown_deadline is not None and (
                    not self._conns or now >= self._shutdown_deadline
                ):
                    break
                self._dispatch(sel.select(self._timeout(now)))
                self._run_timers(time.monotonic())
                self._flush_dirty()
        except Exception:
            logger.exception("demo feed loop failed")
        finally:
            self._cleanup()

    def _dispatch(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        # A function of its own, so no loop variable keeps the last connection alive.
        for key, mask in events:
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    key.fileobj.recv(4096)  # type: ignore[union-attr]
            else:
                self._ready(key.data, mask)

    def _timeout(self, now: float) -> float | None:
        timeout: float | None = None
        if self._timers:
            timeout = max(0.0, self._timers[0][0] - now)
        if self._shutdown_deadline is not None:
            left = max(0.0, self._shutdown_deadline - now)
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def _ready(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.state == _TLS:
                self._tls_handshake(conn)
                return
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.state != _GONE:
                self._read(conn)
        except Exception:
            # One connection's bug must not stop the feed for the others.
            logger.exception("demo feed: dropping a connection after an error")
            self._drop(conn)

    def _call_at(self, due: float, callback: Callable[[float], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, callback))

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, callback = heapq.heappop(timers)
            callback(now)

    def _begin_shutdown(self, now: float) -> None:
        self._shutdown_deadline = now + self._shutdown_timeout
        if self._listener is not None and self._sel is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for conn in list(self._conns):
            if conn.state == _OPEN:
                self._start_close(conn, 1001, "feed closing", now)
            elif conn.state in (_TLS, _HTTP):
                self._drop(conn)

    def _cleanup(self) -> None:
        for conn in list(self._conns):
            self._drop(conn)
        if self._sel is not None:
            self._sel.close()
        for sock in (self._listener, self._waker_r, self._waker_w):
            if sock is not None:
                sock.close()
        self._listener = self._waker_r = self._waker_w = None
        self._timers.clear()
        self._streams.clear()

    # ------------------------------------------------------------------ sockets

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None and self._sel is not None
        for _ in range(256):  # then let the other sockets have a turn
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the rest wait in the backlog
                logger.warning("demo feed: accept failed: %s", exc)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ssl_context is not None
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (ssl.SSLError, OSError) as exc:  # reset already, say
                    logger.debug("demo feed: cannot start TLS: %s", exc)
                    self._stats["tls_failures"] += 1
                    sock.close()
                    continue
            conn = _Conn(sock, tls, self)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._call_later(conn, time.monotonic() + HANDSHAKE_TIMEOUT, self._handshake_expired)

    def _call_later(self, conn: _Conn, due: float, action: Callable[[_Conn, float], None]) -> None:
        """``action(conn, now)`` at ``due`` unless the connection is gone by then.  The
        timer holds the connection weakly: a closed connection is freed at once, not
        when its timers run out."""
        ref = weakref.ref(conn)

        def fire(now: float) -> None:
            target = ref()
            if target is not None and target.state != _GONE:
                action(target, now)

        self._call_at(due, fire)

    def _handshake_expired(self, conn: _Conn, now: float) -> None:
        if conn.state in (_TLS, _HTTP):
            self._drop(conn)

    def _want_write(self, conn: _Conn, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        if events != conn.events and conn.state != _GONE and self._sel is not None:
            conn.events = events
            self._sel.modify(conn.sock, events, conn)

    def _tls_handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write(conn, False)
            return
        except ssl.SSLWantWriteError:
            self._want_write(conn, True)
            return
        except (ssl.SSLError, OSError) as exc:
            logger.debug("demo feed: TLS handshake failed: %s", exc)
            self._stats["tls_failures"] += 1
            self._drop(conn)
            return
        conn.state = _HTTP
        self._want_write(conn, False)
        self._read(conn)  # the request may already sit in OpenSSL's buffer

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            data = sock.recv(65536)
            if conn.tls and data:
                assert isinstance(sock, ssl.SSLSocket)
                while pending := sock.pending():
                    data += sock.recv(pending)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)  # end of stream (with or without a close frame)
            return
        if conn.close_after_flush:
            return  # failed or answered: the rest is ignored (RFC 6455 §7.1.7)
        conn.inbuf += data
        if conn.state == _HTTP:
            self._handshake(conn)
        if conn.state in (_OPEN, _CLOSING):
            self._frames(conn)

    def _queue(self, conn: _Conn, data: bytes) -> None:
        conn.out += data
        self._dirty.add(conn)

    def _flush_dirty(self) -> None:
        # Writes wait for the end of a loop turn, so the ticks of several symbols due
        # at once (and replies) leave in one send per connection.
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            if conn.state != _GONE:
                self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        sock = conn.sock
        while out:
            try:
                # An SSL write that wants a retry must be retried with the same bytes
                # first: ``out`` only grows at its end, so the slice starts the same.
                sent = sock.send(out[:_TLS_CHUNK] if conn.tls else out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:
                break
            except OSError:
                self._drop(conn)
                return
            del out[:sent]
        if not out and conn.close_after_flush:
            self._drop(conn)
            return
        self._want_write(conn, bool(out))

    def _drop(self, conn: _Conn) -> None:
        if conn.state == _GONE:
            return
        was_open = conn.state in (_OPEN, _CLOSING)
        self._leave_streams(conn)
        conn.state = _GONE
        self._conns.discard(conn)
        self._dirty.discard(conn)
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        conn.sock.close()
        # Release the buffers and the inflater now (a timer may still hold ``conn``).
        conn.out = bytearray()
        conn.inbuf = bytearray()
        conn.frag_data = bytearray()
        conn.inflater = None
        if was_open:
            self._stats["connections_open"] -= 1

    # ------------------------------------------------------------------ the handshake

    def _handshake(self, conn: _Conn) -> None:
        inbuf = conn.inbuf
        end = inbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(inbuf) > MAX_REQUEST_HEAD:
                self._reject(conn, _Reject(400, "Bad Request", "the request head is too long"))
            return
        head = bytes(inbuf[:end])
        del inbuf[: end + 4]
        try:
            key, path, params, extensions = self._check_request(head)
            values = self._apply_params(conn, params)
        except _Reject as rejection:
            self._reject(conn, rejection)
            return
        accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
        )
        agreed = _negotiate_deflate(extensions) if self.compression and extensions else None
        if agreed is not None:
            conn.deflate_bits, value = agreed
            response += b"Sec-WebSocket-Extensions: " + value.encode() + b"\r\n"
        self._queue(conn, response + b"\r\n")
        now = time.monotonic()
        conn.state = _OPEN
        conn.path = "/ticker" if path == "/" else path
        conn.opened = now
        self._stats["connections_opened"] += 1
        self._stats["connections_open"] += 1
        if conn.max_age is not None:
            self._call_later(conn, now + conn.max_age, self._rotate)
        if conn.path == "/health":
            self._join(conn, None, values.get("rate", 1.0), now)  # a beat a second

    def _check_request(self, head: bytes) -> tuple[str, str, list[tuple[str, str]], str]:
        """The key, path, query and extension offers of a valid upgrade request;
        raises :class:`_Reject`."""
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            raise _Reject(400, "Bad Request", "the request head is not ASCII") from None
        request_line, *lines = text.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            raise _Reject(400, "Bad Request", "expected GET <path> HTTP/1.1")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise _Reject(400, "Bad Request", f"malformed header line {line[:40]!r}")
            name = name.lower()
            value = value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value

        def tokens(name: str) -> set[str]:
            return {t.strip().lower() for t in headers.get(name, "").split(",")}

        if "host" not in headers:
            raise _Reject(400, "Bad Request", "no Host header")
        if "websocket" not in tokens("upgrade") or "upgrade" not in tokens("connection"):
            raise _Reject(400, "Bad Request", "not a WebSocket upgrade request")
        if headers.get("sec-websocket-version") != "13":
            raise _Reject(
                426,
                "Upgrade Required",
                "only WebSocket version 13 is supported",
                "Sec-WebSocket-Version: 13\r\n",
            )
        key = headers.get("sec-websocket-key", "")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            raise _Reject(400, "Bad Request", "Sec-WebSocket-Key is not 16 bytes in base64")
        target = urlsplit(parts[1])
        if target.path not in PATHS:
            raise _Reject(404, "Not Found", f"no such path; try one of {', '.join(PATHS)}")
        try:
            params = parse_qsl(target.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            params = [("", "")] if target.query else []
        return key, target.path, params, headers.get("sec-websocket-extensions", "")

    def _apply_params(self, conn: _Conn, params: list[tuple[str, str]]) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, raw in params:
            if name == "id":
                continue  # any value: lets a client make its URLs distinct
            if name not in _QUERY_KEYS:
                known = ", ".join(sorted(_QUERY_KEYS))
                raise _Reject(400, "Bad Request", f"unknown query parameter {name!r}; ({known})")
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            minimum_ok = value > 0 if name in ("max_age", "rate") else value >= 0
            if not math.isfinite(value) or not minimum_ok or (name == "rate" and value > MAX_RATE):
                raise _Reject(400, "Bad Request", f"bad value for {name}: {raw!r}")
            values[name] = value
        if "max_age" in values:
            conn.max_age = values["max_age"]
        if "silent_after" in values:
            conn.silent_after = values["silent_after"]
        if "silent_for" in values:
            conn.silent_for = values["silent_for"]
        if "rate" in values:
            conn.rate = values["rate"]
        return values

    def _reject(self, conn: _Conn, rejection: _Reject) -> None:
        body = (rejection.body + "\n").encode()
        self._queue(
            conn,
            f"HTTP/1.1 {rejection.status} {rejection.reason}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"{rejection.extra}Connection: close\r\n\r\n".encode()
            + body,
        )
        conn.close_after_flush = True
        self._stats["bad_requests"] += 1

    # ------------------------------------------------------------------ frames

    def _frames(self, conn: _Conn) -> None:
        buf = conn.inbuf
        pos = 0
        size = len(buf)
        while conn.state in (_OPEN, _CLOSING) and not conn.close_after_flush:
            if size - pos < 2:
                break
            first, second = buf[pos], buf[pos + 1]
            opcode, fin, length = first & 0x0F, bool(first & 0x80), second & 0x7F
            if not second & 0x80:
                self._fail(conn, 1002, "client frames must be masked")
                return
            rsv1 = bool(first & 0x40)
            if first & 0x30 or (rsv1 and (conn.deflate_bits is None or opcode not in (1, 2))):
                self._fail(conn, 1002, "reserved bits set that no extension allows")
                return
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            if opcode >= 0x8:
                if opcode not in (_CLOSE, _PING, _PONG):
                    self._fail(conn, 1002, f"reserved opcode {opcode:#x}")
                    return
                if not fin or length > 125:
                    self._fail(conn, 1002, "control frames must be whole and at most 125 bytes")
                    return
            elif opcode not in (0x0, _TEXT, _BINARY):
                self._fail(conn, 1002, f"reserved opcode {opcode:#x}")
                return
            if length + len(conn.frag_data) > MAX_MESSAGE:
                self._fail(conn, 1009, "message too big")
                return
            start = pos + header + 4
            if size < start + length:
                break
            payload = _unmask(buf[start : start + length], buf[start - 4 : start])
            pos = start + length
            self._frame_in(conn, opcode, fin, rsv1, payload)
        del buf[:pos]

    def _frame_in(self, conn: _Conn, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> None:
        if opcode == _CLOSE:
            self._close_in(conn, payload)
        elif opcode == _PING:
            if not conn.close_sent:  # nothing after our close frame (RFC 6455 §5.5.1)
                self._queue(conn, _frame(_PONG, payload))  # even while silent
        elif opcode == _PONG:
            pass
        elif opcode == 0x0:
            if conn.frag_opcode is None:
                self._fail(conn, 1002, "a continuation frame without a message to continue")
                return
            conn.frag_data += payload
            if fin:
                first, data = conn.frag_opcode, bytes(conn.frag_data)
                conn.frag_opcode = None
                conn.frag_data.clear()
                self._message_in(conn, first, data, conn.frag_compressed)
        elif conn.frag_opcode is not None:
            self._fail(conn, 1002, "a new message inside a fragmented one")
        elif fin:
            self._message_in(conn, opcode, payload, rsv1)
        else:
            conn.frag_opcode = opcode
            conn.frag_compressed = rsv1
            conn.frag_data += payload

    def _close_in(self, conn: _Conn, payload: bytes) -> None:
        code: int | None = None
        if len(payload) == 1:
            self._fail(conn, 1002, "a one-byte close payload")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _valid_close_code(code):
                self._fail(conn, 1002, f"invalid close code {code}")
                return
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(conn, 1007, "the close reason is not UTF-8")
                return
        received = 1005 if code is None else code
        self._close_codes[received] = self._close_codes.get(received, 0) + 1
        if conn.close_sent:
            # The reply to our close: the handshake is complete; the server closes TCP
            # first (RFC 6455 §7.1.1).
            self._drop(conn)
            return
        self._leave_streams(conn)
        self._queue(conn, _close_frame(code) if code is not None else _frame(_CLOSE, b""))
        conn.close_sent = True
        conn.close_after_flush = True
        conn.state = _CLOSING
        self._call_later(conn, time.monotonic() + CLOSE_TIMEOUT, self._drop_late)

    def _fail(self, conn: _Conn, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): our close frame, then drop."""
        logger.debug("demo feed: closing a connection with %d: %s", code, reason)
        self._leave_streams(conn)
        if not conn.close_sent:
            self._queue(conn, _close_frame(code, reason))
            conn.close_sent = True
        conn.close_after_flush = True
        conn.state = _CLOSING
        conn.inbuf.clear()
        self._call_later(conn, time.monotonic() + CLOSE_TIMEOUT, self._drop_late)

    def _start_close(self, conn: _Conn, code: int, reason: str, now: float) -> None:
        """Begin a closing handshake from the server side; the client's reply (or the
        timeout) drops the connection."""
        if conn.state != _OPEN:
            return
        self._leave_streams(conn)
        self._queue(conn, _close_frame(code, reason))
        conn.close_sent = True
        conn.state = _CLOSING
        self._call_later(conn, now + CLOSE_TIMEOUT, self._drop_late)

    def _drop_late(self, conn: _Conn, now: float) -> None:
        """The close timeout: the client did not answer (or read) in time."""
        self._drop(conn)

    def _rotate(self, conn: _Conn, now: float) -> None:
        if conn.state == _OPEN:
            self._stats["rotations"] += 1
            self._start_close(conn, 1001, "rotating", now)

    # ------------------------------------------------------------------ messages

    def _message_in(self, conn: _Conn, opcode: int, data: bytes, compressed: bool) -> None:
        if compressed:
            if conn.inflater is None:
                conn.inflater = zlib.decompressobj(-15)
            try:
                inflated = conn.inflater.decompress(data + _SYNC_TAIL, MAX_MESSAGE + 1)
            except zlib.error:
                self._fail(conn, 1007, "invalid compressed data")
                return
            if len(inflated) > MAX_MESSAGE or conn.inflater.unconsumed_tail:
                self._fail(conn, 1009, "message too big once inflated")
                return
            data = inflated
        text: str | None = None
        if opcode == _TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(conn, 1007, "a text message that is not UTF-8")
                return
        if conn.close_sent:
            return  # we are closing: data is no longer answered
        self._stats["messages_received"] += 1
        if conn.path == "/echo":
            self._send(conn, _Outgoing(opcode, data))
        elif text is not None and text.strip() == "ping":
            self._send(conn, _text("pong"))
        elif conn.path == "/ticker":
            if text is None:
                self._reply(conn, {"type": "error", "message": "send text (JSON), not binary"})
            else:
                self._ticker_request(conn, text)

    def _ticker_request(self, conn: _Conn, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict) or "op" not in request:
            self._subscribe(conn, list(self.symbols), True)  # "go", or any other text
            return
        op = request["op"]
        channel = request.get("channel", "ticker")
        symbols = request.get("symbols", list(self.symbols))
        if op not in ("subscribe", "unsubscribe"):
            self._reply(conn, {"type": "error", "message": f"unknown op {op!r}"})
        elif channel != "ticker":
            self._reply(conn, {"type": "error", "message": f"unknown channel {channel!r}"})
        elif not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            self._reply(conn, {"type": "error", "message": "symbols must be a list of strings"})
        elif unknown := [s for s in symbols if s not in self.symbols]:
            self._reply(
                conn,
                {
                    "type": "error",
                    "message": f"unknown symbols {unknown}; this feed has {list(self.symbols)}",
                },
            )
        else:
            self._subscribe(conn, symbols, op == "subscribe")

    def _subscribe(self, conn: _Conn, symbols: list[str], subscribe: bool) -> None:
        now = time.monotonic()
        if subscribe:
            self._stats["subscribe_requests"] += 1
        # The reply goes out before the first tick of a new subscription.
        reply = {
            "type": "subscribed" if subscribe else "unsubscribed",
            "channel": "ticker",
            "symbols": symbols,
        }
        self._reply(conn, reply)
        for symbol in symbols:
            if subscribe:
                self._join(conn, symbol, conn.rate, now)
            else:
                self._leave(conn, symbol, conn.rate)

    def _reply(self, conn: _Conn, body: dict[str, Any]) -> None:
        self._send(conn, _text(body))

    def _send(self, conn: _Conn, message: _Outgoing, now: float | None = None) -> None:
        """Queue one data message unless the connection is silent or not reading."""
        if conn.state != _OPEN:
            return
        if conn.silent(time.monotonic() if now is None else now) or len(conn.out) > MAX_BUFFERED:
            self._stats["messages_dropped"] += 1
            return
        self._queue(conn, message.frame(conn.deflate_bits))
        self._stats["messages_sent"] += 1

    # ------------------------------------------------------------------ streams

    def _join(self, conn: _Conn, symbol: str | None, rate: float, now: float) -> None:
        key = (symbol, rate)
        if key in conn.streams:
            return
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(symbol, rate, self.seed)
        stream.subscribers.add(conn)
        conn.streams[key] = stream
        if symbol is not None:
            self._stats["subscriptions"] += 1
        if not stream.running:
            stream.running = True
            # A first message at once, a period after the subscription's reply.
            self._call_at(now, self._tick_timer(stream, now))

    def _leave(self, conn: _Conn, symbol: str | None, rate: float) -> None:
        stream = conn.streams.pop((symbol, rate), None)
        if stream is not None:
            stream.subscribers.discard(conn)
            if symbol is not None:
                self._stats["subscriptions"] -= 1

    def _leave_streams(self, conn: _Conn) -> None:
        for symbol, rate in list(conn.streams):
            self._leave(conn, symbol, rate)

    def _tick_timer(self, stream: _Stream, due: float) -> Callable[[float], None]:
        def tick(now: float) -> None:
            if not stream.subscribers:
                stream.running = False  # restarted by the next subscriber; seq goes on
                return
            message = stream.next_message(now - self._started_at)
            for conn in stream.subscribers:
                self._send(conn, message, now)
            # Keep to the planned times; far behind (a busy machine), skip instead of
            # bursting.
            following = due + stream.period
            if following < now - 1.0:
                following = now + stream.period
            self._call_at(following, self._tick_timer(stream, following))

        return tick


# ---------------------------------------------------------------------- command line


def _raise_fd_limit() -> None:
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wspool.demofeed``: run a DemoFeed in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m wspool.demofeed", description="wspool's local WebSocket demo feed"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (8765; 0: any free one)")
    parser.add_argument("--rate", type=float, default=20.0, help="ticks/s per symbol (20)")
    parser.add_argument("--symbols", default="BTC-USD,ETH-USD,SOL-USD", help="comma-separated")
    parser.add_argument("--max-age", type=float, help="close each connection after S seconds")
    parser.add_argument("--silent-after", type=float, help="stop sending data after S seconds")
    parser.add_argument("--silent-for", type=float, default=0.0, help="... for S (0: for good)")
    parser.add_argument("--seed", type=int, help="reproducible prices")
    parser.add_argument("--certfile", help="serve wss:// with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    _raise_fd_limit()
    try:
        feed = DemoFeed(
            args.host,
            args.port,
            ssl_context=context,
            rate=args.rate,
            symbols=[s for s in args.symbols.split(",") if s],
            max_session_age=args.max_age,
            silent_after=args.silent_after,
            silent_for=args.silent_for,
            seed=args.seed,
        ).start()
    except (ValueError, OSError) as exc:
        print(f"demofeed: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:  # from here on, Ctrl-C closes the feed cleanly
        print(f"demo feed at {feed.url}", flush=True)
        print("paths: /ticker (also /), /echo, /health; Ctrl-C stops it", flush=True)
        while feed.running:
            time.sleep(0.5)
        status = 1  # the loop thread ended by itself: it logged why
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    stats = feed.stats()
    print(
        f"demo feed closed: {stats['connections_opened']} connections, "
        f"{stats['messages_sent']} messages sent",
        flush=True,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
