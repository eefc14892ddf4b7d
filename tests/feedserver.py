"""A market-data-like feed for the feed-grade stream tests, on tests/wsserver.py.

One ticker thread makes ticks of ONE global sequence (``{"seq": n}``) at ``rate`` per
second and fans each out to every subscribed connection, so two connections of one
client see the same sequence numbers at the same time: a rotation or a redundant
session can be checked for gaps and duplicates by ``seq``.

A connection subscribes with any text message other than ``"ping"``.  What else it
does is chosen by the request's query string (so a test scripts it by URL):

``max_age=S``       the server closes the connection after S seconds with ``code``
                    (default 1001, "going away"), as exchanges do every 24 hours
``code=C``          the close code for ``max_age``
``silent_after=S``  after S seconds, stop sending ticks (pings still answered)
``silent_for=S``    ... for S seconds (default: for good)
``limit=R``         more than R client messages within a 0.95 s window: close 1008
``close_after=N``   after N client messages, close with 1012 (service restart)
``heartbeat=1``     answer a text "ping" with a text "pong" (also every connection
                    with ``hb_until=S``: answer only during the first S seconds)

``FeedServer.events`` records (time, kind, detail) per connection for assertions.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from wsserver import Opcode, PeerClosed, ServerConnection, WSServer


@dataclass
class _Subscriber:
    conn: ServerConnection
    outbox: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)
    silent_from: float | None = None
    silent_until: float | None = None


class FeedServer:
    """Start with ``with FeedServer(rate=200) as feed:``; ``feed.url(query)``."""

    def __init__(self, rate: float = 200.0, **server_options: Any) -> None:
        self.rate = rate
        self.seq = 0
        self.connections = 0
        self.client_messages = 0
        self.violations: list[str] = []  # 1008 closes sent (rate limit tripped)
        self._subscribers: list[_Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="feed-ticker", daemon=True)
        self.server = WSServer(self._handler, **server_options)

    def __enter__(self) -> FeedServer:
        self.server.start()
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for sub in self._subscribers:
                sub.outbox.put(None)
        self._ticker.join(5)
        self.server.stop()

    def url(self, query: str = "") -> str:
        return self.server.url + "/" + ("?" + query if query else "")

    # ------------------------------------------------------------------ ticker

    def _tick(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            with self._lock:
                self.seq += 1
                message = json.dumps({"seq": self.seq})
                subscribers = list(self._subscribers)
            for sub in subscribers:
                sub.outbox.put(message)

    def _writer(self, sub: _Subscriber) -> None:
        conn = sub.conn
        while True:
            item = sub.outbox.get()
            if item is None or conn.closed or conn.close_sent:
                return
            now = time.monotonic()
            silent = sub.silent_from is not None and now >= sub.silent_from
            if silent and (sub.silent_until is None or now < sub.silent_until):
                continue  # silent: the tick is not sent
            try:
                # Under the connection's send lock: no tick may follow our close frame.
                with conn._send_lock:
                    if conn.close_sent:
                        return
                    conn.send_message(item)
            except OSError:
                return

    # ------------------------------------------------------------- connection

    def _handler(self, conn: ServerConnection) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(conn.request.path).query)

        def number(name: str) -> float | None:
            values = query.get(name)
            return float(values[0]) if values else None

        with self._lock:
            self.connections += 1
        started = time.monotonic()
        max_age = number("max_age")
        code = int(number("code") or 1001)
        limit = number("limit")
        close_after = number("close_after")
        heartbeat = number("heartbeat") is not None or number("hb_until") is not None
        hb_until = number("hb_until")
        sub = _Subscriber(conn)
        silent_after = number("silent_after")
        if silent_after is not None:
            sub.silent_from = started + silent_after
            silent_for = number("silent_for")
            if silent_for is not None:
                sub.silent_until = sub.silent_from + silent_for
        writer = threading.Thread(target=self._writer, args=(sub,), daemon=True)
        received: list[float] = []
        count = 0
        subscribed = False
        try:
            while True:
                now = time.monotonic()
                if max_age is not None and now - started >= max_age:
                    self._close(conn, sub, code, "rotating")
                    return
                try:
                    opcode, data = conn.recv_message(timeout=0.02)
                except TimeoutError:
                    continue
                if opcode == Opcode.CLOSE:
                    self._unsubscribe(sub)
                    with contextlib.suppress(OSError):
                        conn.send_close(1000)
                    conn.close_tcp()
                    return
                text = data.decode("utf-8", "replace")
                with self._lock:
                    self.client_messages += 1
                now = time.monotonic()
                count += 1
                received.append(now)
                if limit is not None:
                    recent = [t for t in received if t > now - 0.95]
                    del received[: len(received) - len(recent)]
                    if len(recent) > limit:
                        self.violations.append(f"{len(recent)} messages in 0.95 s")
                        self._close(conn, sub, 1008, "rate limit exceeded")
                        return
                if text == "ping":
                    if heartbeat and (hb_until is None or now - started < hb_until):
                        sub.outbox.put("pong")
                    continue
                if not subscribed:
                    subscribed = True
                    writer.start()
                    with self._lock:
                        self._subscribers.append(sub)
                if close_after is not None and count >= close_after:
                    self._close(conn, sub, 1012, "restarting")
                    return
        except (PeerClosed, OSError):
            self._unsubscribe(sub)

    def _unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
        sub.outbox.put(None)

    def _close(self, conn: ServerConnection, sub: _Subscriber, code: int, reason: str) -> None:
        self._unsubscribe(sub)
        with contextlib.suppress(OSError, PeerClosed, TimeoutError):
            conn.close(code, reason, timeout=2)
        with contextlib.suppress(OSError):
            conn.close_tcp()
