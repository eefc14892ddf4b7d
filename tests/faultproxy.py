"""A fault-injecting TCP proxy and a sequence-numbering stream server, for the fault
tests (``test_faults.py``) and the soak command (``python -m bench.soak``).

Written independently of ``wspool`` (nothing is imported from it).

:class:`FaultProxy` listens on 127.0.0.1 and forwards every accepted connection (a
*link*) to an upstream host:port, on one selectors thread.  Faults are set per link or
for all links, and a default :class:`Mode` applies to links accepted later:

* ``Mode(delay=s)``: hold every chunk ``s`` seconds before forwarding it;
* ``Mode(split=True)``: forward one byte per write (1-byte TCP segments);
* ``Mode(blackhole={"up", "down"})``: read and drop the bytes of that direction
  ("up" is client -> server, "down" server -> client);
* :meth:`FaultProxy.cut`: close both ends after ``after`` more downstream bytes (a cut
  in the middle of a frame);
* :meth:`FaultProxy.reset`: abort both ends with RST (SO_LINGER 0, then close);
* :meth:`FaultProxy.refuse`: new connections are closed at once (``how="close"``) or the
  listener is closed (``how="unlisten"``: the client gets ECONNREFUSED) until
  :meth:`FaultProxy.accept_again` (or :meth:`FaultProxy.normal`, which also clears
  every mode).

Counters (``accepted``, ``refused``, ``upstream_failed``, ``closed``) count links; each
link remembers the request path of its WebSocket handshake, so a test finds the link
of a given client connection (``proxy.links(path="/c7")``).

:func:`stream_handler` is a ``WSServer`` handler that streams ``"<cid>:<sid>:<seq>"``
text messages: ``cid`` is the request path without its slash, ``sid`` a session id new
for every connection (unique across server processes: it starts with the pid) and
``seq`` counts from 0 within the session.  It answers pings, so keepalive works.
:func:`serve_main` runs such a server as a process of its own (``python
tests/faultproxy.py --port N``): it prints its port, and on SIGTERM prints how many
messages each session was sent (JSON) and exits at once without closing handshakes.

Example::

    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        pool.connect(f"{proxy.url}/c1")
        proxy.set_mode(Mode(blackhole=frozenset({"down"})), path="/c1")
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

__all__ = [
    "FaultProxy",
    "LinkInfo",
    "Mode",
    "StreamStats",
    "serve_main",
    "stream_handler",
]

_CHUNK = 65536
_HIGH_WATER = 1 << 20  # stop reading a side while this much waits for the other


@dataclass(frozen=True)
class Mode:
    """How a link forwards bytes (see the module docstring)."""

    delay: float = 0.0
    split: bool = False
    blackhole: frozenset[str] = frozenset()


NORMAL = Mode()


@dataclass(frozen=True)
class LinkInfo:
    """A snapshot of one link."""

    id: int
    path: str | None
    mode: Mode
    opened_at: float
    closed: bool
    bytes_up: int
    bytes_down: int


class _Pipe:
    """One direction of a link: bytes read from ``src`` waiting to go to ``dst``."""

    __slots__ = ("cut_left", "delayed", "dst", "eof", "name", "out", "src", "total")

    def __init__(self, name: str, src: socket.socket, dst: socket.socket) -> None:
        self.name = name
        self.src = src
        self.dst = dst
        self.out = bytearray()
        self.delayed: list[tuple[float, bytes]] = []  # in arrival order, due times rise
        self.eof = False
        self.total = 0  # bytes forwarded
        self.cut_left: int | None = None  # close the link after this many more bytes


class _Link:
    def __init__(
        self, link_id: int, client: socket.socket, upstream: socket.socket, mode: Mode
    ) -> None:
        self.id = link_id
        self.client = client
        self.upstream = upstream
        self.mode = mode
        self.opened_at = time.monotonic()
        self.closed = False
        self.path: str | None = None
        self._head = b""
        self.up = _Pipe("up", client, upstream)
        self.down = _Pipe("down", upstream, client)
        self.masks: dict[socket.socket, int] = {client: 0, upstream: 0}

    def sniff(self, data: bytes) -> None:
        """Remember the handshake's request path from the first client bytes."""
        if self.path is not None or len(self._head) > 8192:
            return
        self._head += data
        line, sep, _ = self._head.partition(b"\r\n")
        if sep:
            parts = line.split(b" ")
            self.path = parts[1].decode("latin-1") if len(parts) >= 2 else ""

    def info(self) -> LinkInfo:
        return LinkInfo(
            self.id,
            self.path,
            self.mode,
            self.opened_at,
            self.closed,
            self.up.total,
            self.down.total,
        )


class FaultProxy:
    """The fault-injecting proxy; ``start()`` (or ``with``) runs it, ``stop()`` closes
    every socket and joins its thread."""

    def __init__(self, upstream: tuple[str, int], *, port: int = 0) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()  # guards the counters and the links table
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.refused = 0
        self.upstream_failed = 0
        self.closed = 0
        self._default = NORMAL
        self._refusing: str | None = None
        self._ids = itertools.count(1)
        self._links: dict[int, _Link] = {}
        self._timed: set[_Link] = set()  # links with held chunks or split mode (loop only)
        self._sel = selectors.DefaultSelector()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._listener: socket.socket | None = None
        self._listen(port)
        assert self._listener is not None
        self.port: int = self._listener.getsockname()[1]

    # ----------------------------------------------------------- public API

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"faultproxy-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> bool:
        """Close every link and the listener, join the thread; False if it hung."""
        if self._thread is None:
            self._close_everything()
            return True
        self._call(self._shutdown, wait=False)
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if not alive:
            self._close_everything()
        return not alive

    def links(self, *, path: str | None = None, open_only: bool = True) -> list[LinkInfo]:
        """Snapshots of the links (open ones only by default), oldest first."""
        with self._lock:
            found = [link.info() for link in self._links.values()]
        return [
            i for i in found if (path is None or i.path == path) and not (open_only and i.closed)
        ]

    def set_default(self, mode: Mode) -> None:
        """The mode of links accepted from now on."""
        self._default = mode

    def set_mode(self, mode: Mode, *, ids: Iterable[int] | None = None) -> None:
        """Change the mode of open links (all of them when ``ids`` is None)."""
        wanted = None if ids is None else set(ids)

        def run() -> None:
            for link in self._select(wanted):
                link.mode = mode
                self._update(link)

        self._call(run)

    def cut(self, after: int = 0, *, ids: Iterable[int] | None = None) -> None:
        """Close (FIN) both ends of links once ``after`` more bytes went downstream."""
        wanted = None if ids is None else set(ids)

        def run() -> None:
            for link in self._select(wanted):
                link.down.cut_left = after
                # bytes already buffered count against the budget
                self._enforce_cut(link)

        self._call(run)

    def reset(self, *, ids: Iterable[int] | None = None) -> None:
        """Abort links with RST on both ends."""
        wanted = None if ids is None else set(ids)

        def run() -> None:
            for link in self._select(wanted):
                self._close_link(link, rst=True)

        self._call(run)

    def refuse(self, how: str = "close") -> None:
        """Refuse new connections: ``"close"`` accepts and closes them at once,
        ``"unlisten"`` closes the listening socket (connects get ECONNREFUSED)."""
        if how not in ("close", "unlisten"):
            raise ValueError(f"refuse how must be 'close' or 'unlisten', not {how!r}")

        def run() -> None:
            self._refusing = how
            if how == "unlisten" and self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None

        self._call(run)

    def accept_again(self) -> None:
        """Stop refusing: listen again on the same port if needed."""

        def run() -> None:
            self._refusing = None
            if self._listener is None:
                self._listen(self.port)

        self._call(run)

    def normal(self, *, lift_black_holes: bool = True) -> None:
        """Back to normal: no fault on open links or new ones, accepting.

        A black hole dropped bytes: lifting it resumes the stream in the middle of
        whatever was dropped (a corrupt stream, as a real network never makes).  With
        ``lift_black_holes=False`` black-holed links stay so until their peers give up.
        """
        self._default = NORMAL

        def run() -> None:
            for link in self._select(None):
                if link.mode.blackhole and not lift_black_holes:
                    continue
                link.mode = NORMAL
                link.down.cut_left = None
                self._update(link)

        self._call(run)
        self.accept_again()

    def set_upstream(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "accepted": self.accepted,
                "refused": self.refused,
                "upstream_failed": self.upstream_failed,
                "closed": self.closed,
                "open": sum(1 for link in self._links.values() if not link.closed),
            }

    # ----------------------------------------------------------- loop thread

    def _call(self, fn: Callable[[], None], *, wait: bool = True) -> None:
        """Run ``fn`` on the proxy thread (which owns every socket); by default wait
        until it ran, so a fault is in place when the call returns."""
        if self._thread is None or not self._thread.is_alive():
            fn()
            return
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._commands.put(run)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if wait and threading.current_thread() is not self._thread:
            done.wait(5.0)

    def _select(self, wanted: set[int] | None) -> list[_Link]:
        return [
            link
            for link in list(self._links.values())
            if not link.closed and (wanted is None or link.id in wanted)
        ]

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(1024)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self._sel.register(listener, selectors.EVENT_READ, None)

    def _shutdown(self) -> None:
        self._stopping = True

    def _close_everything(self) -> None:
        for link in list(self._links.values()):
            self._close_link(link, rst=False)
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        while not self._stopping:
            timeout = self._next_timeout()
            for key, events in self._sel.select(timeout):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif key.data is None:
                    self._accept()
                else:
                    self._ready(key.data, key.fileobj, events)  # type: ignore[arg-type]
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                command()
            now = time.monotonic()
            for link in list(self._timed):
                self._release(link, now)
        # drain commands so no caller waits for nothing
        while True:
            try:
                self._commands.get_nowait()()
            except queue.Empty:
                break

    def _next_timeout(self) -> float | None:
        due: float | None = None
        for link in self._timed:
            if link.mode.split and (link.up.out or link.down.out):
                return 0.0005
            for pipe in (link.up, link.down):
                if pipe.delayed and (due is None or pipe.delayed[0][0] < due):
                    due = pipe.delayed[0][0]
        if due is None:
            return None
        return max(0.0, due - time.monotonic())

    def _accept(self) -> None:
        if self._listener is None:
            return
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if self._refusing is not None:
            with self._lock:
                self.refused += 1
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2.0)
        except OSError:
            with self._lock:
                self.upstream_failed += 1
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(next(self._ids), client, upstream, self._default)
        with self._lock:
            self.accepted += 1
            self._links[link.id] = link
        self._update(link)

    def _ready(self, link: _Link, sock: socket.socket, events: int) -> None:
        if link.closed:
            return
        if events & selectors.EVENT_READ:
            pipe = link.up if sock is link.client else link.down
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:  # reset by the peer: pass the reset on
                self._close_link(link, rst=True)
                return
            if data == b"":
                pipe.eof = True
            elif data:
                if pipe is link.up:
                    link.sniff(data)
                self._take(link, pipe, data)
        if events & selectors.EVENT_WRITE and not link.closed:
            for pipe in (link.up, link.down):
                if pipe.dst is sock:
                    self._flush(link, pipe)
        if not link.closed:
            self._finish_if_done(link)
        if not link.closed:
            self._update(link)

    def _take(self, link: _Link, pipe: _Pipe, data: bytes) -> None:
        if pipe.name in link.mode.blackhole:
            return
        if link.mode.delay > 0 or pipe.delayed:
            # Behind chunks still held (the delay may just have been switched off or
            # changed): the byte order of the stream must never change.
            due = time.monotonic() + link.mode.delay
            if pipe.delayed:
                due = max(due, pipe.delayed[-1][0])
            pipe.delayed.append((due, data))
            return
        pipe.out += data
        self._flush(link, pipe)

    def _release(self, link: _Link, now: float) -> None:
        for pipe in (link.up, link.down):
            while pipe.delayed and pipe.delayed[0][0] <= now:
                pipe.out += pipe.delayed.pop(0)[1]
            if pipe.out and not link.closed:
                self._flush(link, pipe)
        if not link.closed:
            self._finish_if_done(link)
        if not link.closed:
            self._update(link)

    def _flush(self, link: _Link, pipe: _Pipe) -> None:
        if not pipe.out or link.closed:
            return
        budget = len(pipe.out)
        if link.mode.split:
            budget = 1
        if pipe.cut_left is not None:
            budget = min(budget, pipe.cut_left)
        if budget > 0:
            try:
                sent = pipe.dst.send(pipe.out[:budget])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close_link(link, rst=True)
                return
            del pipe.out[:sent]
            pipe.total += sent
            if pipe.cut_left is not None:
                pipe.cut_left -= sent
        self._enforce_cut(link)

    def _enforce_cut(self, link: _Link) -> None:
        if link.down.cut_left is not None and link.down.cut_left <= 0:
            self._close_link(link, rst=False)

    def _finish_if_done(self, link: _Link) -> None:
        # An end that closed: once what it sent has been passed on, close the link.
        for pipe in (link.up, link.down):
            if pipe.eof and not pipe.out and not pipe.delayed:
                self._close_link(link, rst=False)
                return

    def _update(self, link: _Link) -> None:
        if link.closed:
            self._timed.discard(link)
            return
        if link.mode.split or link.up.delayed or link.down.delayed:
            self._timed.add(link)
        else:
            self._timed.discard(link)
        wanted = {link.client: 0, link.upstream: 0}
        for pipe in (link.up, link.down):
            if not pipe.eof and len(pipe.out) < _HIGH_WATER:
                wanted[pipe.src] |= selectors.EVENT_READ
            if pipe.out and not link.mode.split:
                wanted[pipe.dst] |= selectors.EVENT_WRITE
        for sock, mask in wanted.items():
            old = link.masks[sock]
            if mask == old:
                continue
            if old == 0:
                self._sel.register(sock, mask, link)
            elif mask == 0:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, mask, link)
            link.masks[sock] = mask

    def _close_link(self, link: _Link, *, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        self._timed.discard(link)
        for sock in (link.client, link.upstream):
            if link.masks[sock]:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._sel.unregister(sock)
                link.masks[sock] = 0
            with contextlib.suppress(OSError):
                if rst:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        link.up.out.clear()
        link.down.out.clear()
        link.up.delayed.clear()
        link.down.delayed.clear()
        with self._lock:
            self.closed += 1
            # keep closed links' snapshots for the counters, but not forever
            if len(self._links) > 4096:
                for key in [k for k, v in self._links.items() if v.closed][:2048]:
                    del self._links[key]


# --------------------------------------------------------------------- stream server


@dataclass
class StreamStats:
    """What the stream server sent: messages per session id, thread-safely."""

    sent: dict[str, int] = field(default_factory=dict)
    sessions: list[tuple[str, str]] = field(default_factory=list)  # (cid, sid) in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.sent)


_session_ids = itertools.count()


def stream_handler(
    stats: StreamStats, *, interval: float = 0.05, burst: int = 2
) -> Callable[[Any], None]:
    """A ``WSServer`` handler that sends ``burst`` messages every ``interval`` seconds
    (see the module docstring), answers pings and closes, and ends quietly when the
    client goes away or the server stops."""

    def handler(conn: Any) -> None:
        cid = (conn.request.path or "/").lstrip("/") or "anon"
        sid = f"{os.getpid()}.{next(_session_ids)}"
        with stats.lock:
            stats.sent[sid] = 0
            stats.sessions.append((cid, sid))
        sock = conn.sock
        seq = 0
        next_send = time.monotonic()
        try:
            while not conn.server.stopping.is_set():
                wait = max(0.0, next_send - time.monotonic())
                readable, _, _ = select.select([sock], [], [], wait)
                if readable:
                    if _serve_frame(conn):
                        return
                    continue
                sock.settimeout(5.0)
                for _ in range(burst):
                    conn.send_message(f"{cid}:{sid}:{seq}")
                    seq += 1
                    with stats.lock:
                        stats.sent[sid] = seq
                next_send += interval
        except (OSError, EOFError, ValueError):
            return  # the client (or a fault between us) went away: that is the test

    return handler


def _serve_frame(conn: Any) -> bool:
    """Read one client frame: answer a ping, echo a close; True when the session is over."""
    frame = conn.recv_frame(2.0)
    if frame.opcode == 0x9:
        conn.send_pong(frame.payload)
    elif frame.opcode == 0x8:
        with contextlib.suppress(OSError):
            conn.send_close_raw(frame.payload[:2])
        conn.close_tcp()
        return True
    return False


def serve_main(argv: list[str] | None = None) -> None:
    """Run a stream server as its own process (see the module docstring)."""
    import argparse

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from wsserver import WSServer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--burst", type=int, default=2)
    args = parser.parse_args(argv)
    stats = StreamStats()
    server = WSServer(
        stream_handler(stats, interval=args.interval, burst=args.burst), port=args.port
    )

    def report(_signum: int, _frame: object) -> None:
        sys.stdout.write(json.dumps({"sent": stats.snapshot()}) + "\n")
        sys.stdout.flush()
        os._exit(0)  # at once, no closing handshakes: a restart, as a crash would be

    signal.signal(signal.SIGTERM, report)
    server.start()
    sys.stdout.write(f"port {server.port}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    serve_main()
