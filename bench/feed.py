"""The load generator: a WebSocket feed server in its own process (stdlib only).

One ``selectors`` loop serves every connection.  What a connection gets is chosen by
the request path, so every driver needs nothing but URLs:

``/feed?count=N[&deflate=1]``
    After the client's first text message ("go"), write N prebuilt 128-byte JSON text
    frames flat out.  With ``deflate=1`` and a permessage-deflate offer, the frames are
    compressed once, in sequence with context takeover, and the same compressed stream
    is sent to every connection (each client inflater sees a valid stream).
``/paced?rate=R&count=N[&start=open]``
    After "go", send N timestamped 128-byte JSON messages at R per second, starting at
    a random phase.  ``"ts"`` is ``time.monotonic_ns()`` just before the write (the
    clock is system-wide on Linux, so the client can subtract it).  With
    ``start=open`` the messages start right after the handshake response, without a
    "go": a client opening many connections gets messages on the first ones while it
    is still opening the rest (the ramp-up latency).
``/large?size=S&type=text|binary``
    Each text message the client sends is answered with one S-byte message.
``/frag?size=S&frag=F``
    Each client text message is answered with one S-byte text message in F-byte
    fragments.
``/sink``
    Count the client's data messages; a text message starting with ``sync`` is
    answered with ``count:<n>`` (data messages so far, syncs excluded).
``/idle``
    Complete the handshake and hold the connection.

The server answers a client close frame with its own and closes the socket.  It
writes ``ready <port>`` on stdout, then answers ``stats`` and ``reset`` lines on stdin
with one JSON line: the counts the runner checks against what the drivers report.

    python -m bench.feed --port 0
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import heapq
import json
import os
import random
import resource
import selectors
import socket
import sys
import time
import zlib
from collections import deque
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MESSAGE_SIZE = 128

_PREFIX = '{"e":"trade","s":"BTCUSDT","i":'
_SUFFIX = ',"p":"65000.10","q":"0.002","m":true,"pad":"'


def json_message(seq: int, stamp_field: str = "i") -> bytes:
    """A MESSAGE_SIZE-byte JSON object carrying ``seq`` (ASCII, like real feeds)."""
    head = _PREFIX.replace('"i":', f'"{stamp_field}":') + str(seq) + _SUFFIX
    return (head + "x" * (MESSAGE_SIZE - len(head) - 2) + '"}').encode()


def frame_header(opcode: int, length: int, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked server frame header (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    return frame_header(opcode, len(payload), fin, rsv1) + payload


def large_text(size: int) -> bytes:
    """``size`` bytes of valid UTF-8: JSON-ish ASCII with some 2- and 3-byte characters."""
    unit = ('{"city":"Zürich","price":"12,50 €","note":"naïve café"},' * 64).encode()
    out = bytearray()
    while len(out) < size:
        out += unit
    del out[size:]
    # Cut back to a character boundary and pad with ASCII.
    while out and (out[-1] & 0xC0) == 0x80:
        out.pop()
    if out and out[-1] >= 0xC0:
        out.pop()
    out += b" " * (size - len(out))
    return bytes(out)


class Cache:
    """Prebuilt payloads: built once per distinct request, shared by all connections."""

    def __init__(self) -> None:
        self._items: dict[tuple[object, ...], bytes] = {}

    def get(self, key: tuple[object, ...], build: object) -> bytes:
        blob = self._items.get(key)
        if blob is None:
            blob = self._items[key] = build()  # type: ignore[operator]
        return blob

    def feed(self, count: int, deflate: bool) -> bytes:
        def build() -> bytes:
            if not deflate:
                return b"".join(frame(0x1, json_message(i)) for i in range(count))
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            parts = []
            for i in range(count):
                data = compressor.compress(json_message(i)) + compressor.flush(zlib.Z_SYNC_FLUSH)
                parts.append(frame(0x1, data[:-4], rsv1=True))
            return b"".join(parts)

        return self.get(("feed", count, deflate), build)

    def large(self, size: int, kind: str) -> bytes:
        def build() -> bytes:
            if kind == "text":
                return frame(0x1, large_text(size))
            return frame(0x2, os.urandom(size))

        return self.get(("large", size, kind), build)

    def fragments(self, size: int, frag: int) -> bytes:
        def build() -> bytes:
            data = large_text(size)
            parts = []
            for start in range(0, size, frag):
                opcode = 0x1 if start == 0 else 0x0
                parts.append(frame(opcode, data[start : start + frag], fin=start + frag >= size))
            return b"".join(parts)

        return self.get(("frag", size, frag), build)


class Conn:
    """One client connection's state inside the loop."""

    __slots__ = (
        "deflate",
        "inbuf",
        "mode",
        "outq",
        "paced_left",
        "paced_period",
        "params",
        "pending",
        "received",
        "skip",
        "sock",
        "upgraded",
        "want_write",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outq: deque[memoryview] = deque()
        self.upgraded = False
        self.mode = ""
        self.params: dict[str, str] = {}
        self.deflate = False
        self.received = 0
        self.want_write = False
        self.paced_left = 0
        # A large client frame's payload is discarded as it arrives instead of being
        # buffered: ``skip`` bytes remain, then ``pending`` (opcode, fin) completes.
        self.skip = 0
        self.pending = (0, 0)
        self.paced_period = 0.0


class FeedServer:
    def __init__(self, port: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(65535)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.cache = Cache()
        self.scratch = bytearray(1 << 20)
        # (due time, tie-breaker, connection): a heap, earliest first.
        self.paced: list[tuple[float, int, Conn]] = []
        self.paced_seq = 0
        self.stats = dict.fromkeys(
            ("accepted", "upgraded", "open", "sent_messages", "received_messages", "closed"), 0
        )

    # -- loop ----------------------------------------------------------------------
    def run(self) -> None:
        print(f"ready {self.port}", flush=True)
        while True:
            timeout = None
            if self.paced:
                timeout = max(0.0, self.paced[0][0] - time.monotonic())
                # epoll rounds timeouts up to whole milliseconds: wait the last stretch
                # with a finer sleep so paced messages leave on time.
                if timeout < 0.002:
                    if timeout > 0:
                        time.sleep(timeout)
                    timeout = 0
            for key, events in self.sel.select(timeout):
                if key.data is None:
                    self.accept()
                elif key.data == "stdin":
                    if not self.control():
                        return
                else:
                    conn: Conn = key.data
                    if events & selectors.EVENT_WRITE:
                        self.flush(conn)
                    if events & selectors.EVENT_READ:
                        self.read(conn)
            if self.paced:
                self.send_paced()

    def control(self) -> bool:
        line = sys.stdin.readline()
        command = line.strip()
        if not line or command == "quit":
            return False
        if command == "reset":
            for name in ("accepted", "upgraded", "sent_messages", "received_messages", "closed"):
                self.stats[name] = 0
        print(json.dumps(self.stats), flush=True)
        return True

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and friends: leave the rest in the backlog
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock)
            self.sel.register(sock, selectors.EVENT_READ, conn)
            self.stats["accepted"] += 1

    def drop(self, conn: Conn) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            return
        conn.sock.close()
        if conn.upgraded:
            self.stats["open"] -= 1
        self.stats["closed"] += 1
        conn.paced_left = 0  # a heap entry of a dropped connection is skipped

    # -- writing -------------------------------------------------------------------
    def write(self, conn: Conn, data: bytes) -> None:
        conn.outq.append(memoryview(data))
        self.flush(conn)

    def flush(self, conn: Conn) -> None:
        outq = conn.outq
        while outq:
            try:
                sent = conn.sock.send(outq[0])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.drop(conn)
                return
            if sent == len(outq[0]):
                outq.popleft()
            else:
                outq[0] = outq[0][sent:]
                break
        want = bool(outq)
        if want != conn.want_write:
            conn.want_write = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.modify(conn.sock, events, conn)

    # -- reading -------------------------------------------------------------------
    def read(self, conn: Conn) -> None:
        try:
            if conn.skip:
                # Discarded payload: read into one reusable buffer, no allocation.
                n = conn.sock.recv_into(self.scratch, min(conn.skip, len(self.scratch)))
                if n:
                    conn.skip -= n
                    if not conn.skip:
                        self.frame_done(conn, *conn.pending, b"")
                    return
                data = b""
            else:
                data = conn.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        conn.inbuf += data
        if not conn.upgraded:
            self.handshake(conn)
        if conn.upgraded:
            self.frames(conn)

    def handshake(self, conn: Conn) -> None:
        end = conn.inbuf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(conn.inbuf[:end]).decode("latin-1")
        del conn.inbuf[: end + 4]
        lines = head.split("\r\n")
        target = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(
            hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()
        )
        parts = urlsplit(target)
        conn.mode = parts.path.strip("/") or "idle"
        conn.params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
        )
        offer = headers.get("sec-websocket-extensions", "")
        if conn.params.get("deflate") == "1" and "permessage-deflate" in offer:
            conn.deflate = True
            response += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        self.write(conn, response + b"\r\n")
        conn.upgraded = True
        self.stats["upgraded"] += 1
        self.stats["open"] += 1
        if conn.mode == "paced" and conn.params.get("start") == "open":
            self.go(conn)  # queued after the 101 response, so it can't overtake it

    def frames(self, conn: Conn) -> None:
        """Parse the client's masked frames; unmask only the short ones."""
        buf = conn.inbuf
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            offset = pos + 2
            if length == 126:
                if len(buf) - offset < 2:
                    break
                length = int.from_bytes(buf[offset : offset + 2], "big")
                offset += 2
            elif length == 127:
                if len(buf) - offset < 8:
                    break
                length = int.from_bytes(buf[offset : offset + 8], "big")
                offset += 8
            opcode = first & 0x0F
            fin = first & 0x80
            if len(buf) - offset < 4 + length:
                if length > 65536 and opcode in (0x0, 0x2) and len(buf) - offset >= 4:
                    conn.skip = length - (len(buf) - offset - 4)
                    conn.pending = (opcode, fin)
                    buf.clear()
                    return
                break
            key = buf[offset : offset + 4]
            offset += 4
            head = b""
            if opcode in (0x1, 0x8, 0x9) and length:
                n = min(length, 16)
                head = bytes(b ^ key[i % 4] for i, b in enumerate(buf[offset : offset + n]))
            pos = offset + length
            if not self.frame_done(conn, opcode, fin, head):
                return
        del buf[:pos]

    def frame_done(self, conn: Conn, opcode: int, fin: int, head: bytes) -> bool:
        """Act on one whole client frame; False once the connection is gone."""
        if opcode == 0x8:
            self.write(conn, frame(0x8, head[:2]))
            self.flush(conn)
            self.drop(conn)
            return False
        if opcode == 0x9:
            self.write(conn, frame(0xA, head))
        elif opcode == 0x1 and head.startswith(b"sync"):
            self.write(conn, frame(0x1, b"count:%d" % conn.received))
        elif opcode in (0x0, 0x1, 0x2) and fin:
            if conn.mode == "sink":
                conn.received += 1
                self.stats["received_messages"] += 1
            elif opcode == 0x1:
                self.go(conn)
        return True

    # -- what each mode sends ------------------------------------------------------
    def go(self, conn: Conn) -> None:
        params = conn.params
        if conn.mode == "feed":
            count = int(params["count"])
            self.write(conn, self.cache.feed(count, conn.deflate))
            self.stats["sent_messages"] += count
        elif conn.mode == "large":
            self.write(conn, self.cache.large(int(params["size"]), params.get("type", "text")))
            self.stats["sent_messages"] += 1
        elif conn.mode == "frag":
            size = int(params["size"])
            self.write(conn, self.cache.fragments(size, int(params.get("frag", "64"))))
            self.stats["sent_messages"] += 1
        elif conn.mode == "paced" and not conn.paced_left:
            conn.paced_left = int(params["count"])
            conn.paced_period = 1.0 / float(params["rate"])
            self.schedule(conn, time.monotonic() + random.random() * conn.paced_period)

    def schedule(self, conn: Conn, due: float) -> None:
        self.paced_seq += 1
        heapq.heappush(self.paced, (due, self.paced_seq, conn))

    def send_paced(self) -> None:
        now = time.monotonic()
        paced = self.paced
        while paced and paced[0][0] <= now:
            due, _, conn = heapq.heappop(paced)
            if not conn.paced_left:
                continue
            conn.paced_left -= 1
            payload = json_message(time.monotonic_ns(), "ts")
            self.write(conn, frame(0x1, payload))
            self.stats["sent_messages"] += 1
            if conn.paced_left:
                # A late message is sent late; the schedule keeps its planned times.
                self.schedule(conn, due + conn.paced_period)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description="wspool benchmark feed server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_fd_limit()
    FeedServer(args.port).run()


if __name__ == "__main__":
    main()
