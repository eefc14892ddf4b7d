"""Hostile input: seeded, reproducible fuzzing of every parser that reads peer bytes.

Valid frames, response heads and proxy replies are mutated (bit flips, truncation,
duplication, splicing, random insertions, extreme lengths) and fed in random chunks
to the protocol core (with and without permessage-deflate), the handshake response
parser, the HTTP head parser, the proxy reply parsers, and, through real sockets,
to both front ends (``wspool.connect`` and ``Pool().connect``).

What must hold for every input: only events or wspool exceptions come out, never
another exception type; no case takes long; buffered bytes stay within ``max_size``
plus a frame header (the core) or the header limits (the HTTP parser).

The default run is a few seconds.  ``WSPOOL_FUZZ_ITERATIONS=100000`` runs that many
cases per sans-I/O target (and a fiftieth of that per real-socket target);
``WSPOOL_FUZZ_SEED`` changes the base seed (default: fixed, so the suite is
reproducible).  Every assertion message names the case's seed: replay it with
``WSPOOL_FUZZ_REPLAY=<seed> pytest tests/test_fuzz.py -k <test>``.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
from wsserver import encode_frame as server_frame

import wspool
from wspool.exceptions import (
    WebSocketException,
    WebSocketMessageTooBigException,
    WebSocketProtocolException,
)
from wspool.protocol import ClientProtocol, DeflateOptions, ProtocolError
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Fragment,
    Message,
    Ping,
    Pong,
)
from wspool.protocol.handshake import ClientHandshake, accept_key, build_request
from wspool.protocol.http import ResponseHeadParser
from wspool.transport.proxy import HttpConnectHandshake, Socks4Handshake, Socks5Handshake

pytestmark = [
    pytest.mark.usefixtures("no_thread_leaks", "no_fd_leaks"),
    # a long run (WSPOOL_FUZZ_ITERATIONS) outlasts the suite's 60 s per test
    pytest.mark.timeout(60 + int(os.environ.get("WSPOOL_FUZZ_ITERATIONS", "0")) // 50),
]

ITERATIONS = int(os.environ.get("WSPOOL_FUZZ_ITERATIONS", "0"))
BASE_SEED = int(os.environ.get("WSPOOL_FUZZ_SEED", "20261202"))
#: One seed to replay (as printed by a failure): every target then runs that case only.
REPLAY = os.environ.get("WSPOOL_FUZZ_REPLAY")
#: Real-socket cases per front end: a few by default, ITERATIONS / 50 in a long run
#: (each case is a TCP connection and a handshake, far slower than a sans-I/O case).
SOCKET_CASES = max(12, ITERATIONS // 50)
EVENT_TYPES = (Message, Fragment, Ping, Pong, CloseReceived, ProtocolError, EndOfStream)
#: The largest frame header: 2 + 8 length bytes + 4 mask bytes.
MAX_FRAME_HEADER = 14
#: A control frame may carry 125 bytes whatever max_size says (RFC 6455 §5.5).
MAX_CONTROL = 125
#: Wall-clock bound on one sans-I/O case (generous: CI machines are slow).
CASE_TIME_LIMIT = 2.0


def iterations(default: int) -> int:
    return ITERATIONS or default


def seeds(name: str, default: int) -> Iterator[int]:
    """The seeds of one target's cases: reproducible, distinct per target."""
    if REPLAY is not None:
        yield int(REPLAY)
        return
    salt = zlib.crc32(name.encode())
    count = SOCKET_CASES if name.startswith("socket") else iterations(default)
    for i in range(count):
        yield BASE_SEED + salt + i


# ------------------------------------------------------------------ mutations


def _extreme_length(rng: random.Random, data: bytearray) -> None:
    """Overwrite a frame length field (somewhere) with an extreme value."""
    if len(data) < 2:
        return
    pos = rng.randrange(0, len(data) - 1)
    choice = rng.randrange(4)
    if choice == 0:
        data[pos + 1 : pos + 2] = bytes([127]) + rng.choice(
            [
                b"\xff" * 8,
                b"\x7f" + b"\xff" * 7,
                b"\x00" * 7 + b"\x01",
                (1 << 32).to_bytes(8, "big"),
            ]
        )
    elif choice == 1:
        data[pos + 1 : pos + 2] = bytes([126]) + rng.choice([b"\xff\xff", b"\x00\x00", b"\x00\x7d"])
    elif choice == 2:
        data[pos + 1] = rng.choice([125, 126, 127, 0xFF, 0x80])
    else:
        data[pos] ^= 0x70  # RSV bits


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four random mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        if kind == 0 and out:  # flip bits
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:  # truncate
            del out[rng.randrange(len(out)) :]
        elif kind == 2 and out:  # duplicate a slice
            a = rng.randrange(len(out))
            b = min(len(out), a + rng.randint(1, 64))
            out[a:a] = out[a:b] * rng.randint(1, 3)
        elif kind == 3:  # splice with another corpus item
            other = rng.choice(corpus)
            cut = rng.randint(0, len(out))
            out = out[:cut] + other[rng.randint(0, len(other)) :]
        elif kind == 4:  # insert random bytes
            at = rng.randint(0, len(out))
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 5:
            _extreme_length(rng, out)
        elif kind == 6 and out:  # delete a slice
            a = rng.randrange(len(out))
            del out[a : a + rng.randint(1, 16)]
        else:  # replace a byte with a boundary value
            if out:
                out[rng.randrange(len(out))] = rng.choice([0, 0x7F, 0x80, 0xFF, 0x0D, 0x0A])
    return bytes(out)


def chunks(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """``data`` cut at random points (sometimes whole, sometimes byte by byte)."""
    mode = rng.randrange(4)
    if mode == 0 or not data:
        yield data
        return
    pos = 0
    while pos < len(data):
        # byte by byte only for short inputs: keeps every case fast
        size = 1 if mode == 1 and len(data) < 4096 else rng.randint(1, max(1, len(data) // 3))
        yield data[pos : pos + size]
        pos += size


# ------------------------------------------------------------ the protocol core


def _deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(wbits=-15)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692 §7.2.1: drop the empty block's tail


def frame_corpus(rng: random.Random, deflate: bool) -> list[bytes]:
    text = "héllo wörld ✓ ".encode()
    items = [
        server_frame(1, b"hello"),
        server_frame(2, rng.randbytes(200)),
        server_frame(2, rng.randbytes(70000)),
        server_frame(1, text * 20, fin=False) + server_frame(0, text, fin=True),
        server_frame(2, b"ab", fin=False) + server_frame(9, b"ping") + server_frame(0, b"cd"),
        server_frame(9, b"p" * 125),
        server_frame(10, b""),
        server_frame(8, (1000).to_bytes(2, "big") + b"bye"),
        server_frame(8, b""),
        server_frame(1, b"\xce\xbb" * 10),
    ]
    if deflate:
        items += [
            server_frame(1, _deflate(text * 50), rsv1=True),
            server_frame(2, _deflate(b"\0" * 50000), rsv1=True),
            server_frame(1, _deflate(b"abc")[:3], rsv1=True, fin=False)
            + server_frame(0, _deflate(b"abc")[3:], fin=True),
        ]
    return items


def make_core(deflate: bool, max_size: int, frame_events: bool = False) -> ClientProtocol:
    codec = DeflateOptions().accept([], max_size=max_size) if deflate else None
    return ClientProtocol(max_size=max_size, deflate=codec, frame_events=frame_events)


def check_core_case(seed: int, deflate: bool) -> None:
    rng = random.Random(seed)
    corpus = frame_corpus(random.Random(seed & 0xFF), deflate)
    max_size = rng.choice([0, 10, 1000, 65536, 200000])
    proto = make_core(deflate, max_size, frame_events=rng.random() < 0.2)
    stream = b"".join(rng.choice(corpus) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.9:
        stream = mutate(rng, stream, corpus)
    started = time.monotonic()
    failed = False
    for piece in [*chunks(rng, stream), *([b""] if rng.random() < 0.5 else [])]:
        try:
            events = proto.receive_data(piece)
            proto.data_to_send()
        except WebSocketException:
            # only a send after close may raise; receive_data never should
            raise AssertionError(f"seed {seed}: receive_data raised") from None
        except Exception as exc:
            raise AssertionError(
                f"seed {seed}: {type(exc).__name__} from the core: {exc!r}"
            ) from exc
        for event in events:
            assert isinstance(event, EVENT_TYPES), f"seed {seed}: {event!r}"
            # after a ProtocolError only the end of the stream may still be reported
            assert not failed or isinstance(event, EndOfStream), (
                f"seed {seed}: event {event!r} after a ProtocolError"
            )
            if isinstance(event, ProtocolError):
                assert isinstance(event.exc, WebSocketProtocolException), f"seed {seed}: {event!r}"
                failed = True
            elif isinstance(event, Message | Fragment):
                assert len(event.data) <= max_size, f"seed {seed}: message over max_size"
        assert len(proto._buffer) <= max(max_size, MAX_CONTROL) + MAX_FRAME_HEADER, (
            f"seed {seed}: {len(proto._buffer)} bytes buffered with max_size={max_size}"
        )
        # (the counter may pass max_size by the piece that made the core fail)
        assert failed or proto._rx_size <= max_size, f"seed {seed}: message assembly over max_size"
    assert time.monotonic() - started < CASE_TIME_LIMIT, f"seed {seed}: too slow"


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_core_fuzz(deflate: bool) -> None:
    for seed in seeds(f"core-{deflate}", 600):
        check_core_case(seed, deflate)


def test_core_random_bytes() -> None:
    """Pure noise, fed in random chunks, with and without compression."""
    for seed in seeds("core-noise", 400):
        rng = random.Random(seed)
        proto = make_core(rng.random() < 0.5, rng.choice([0, 100, 1 << 20]))
        for piece in chunks(rng, rng.randbytes(rng.randint(1, 3000))):
            events = proto.receive_data(piece)
            assert all(isinstance(e, EVENT_TYPES) for e in events), f"seed {seed}: {events!r}"
            bound = max(proto.max_size or 0, MAX_CONTROL) + MAX_FRAME_HEADER
            assert len(proto._buffer) <= bound, f"seed {seed}"


@pytest.mark.parametrize("length", [1 << 63 | 5, (1 << 63) - 1, 1 << 40, 16 * 1024 * 1024 + 1])
def test_core_extreme_length_fails_at_once(length: int) -> None:
    """A header announcing more than max_size fails before any payload is buffered."""
    proto = ClientProtocol()
    events = proto.receive_data(bytes([0x82, 127]) + length.to_bytes(8, "big") + b"x" * 100)
    assert len(events) == 1 and isinstance(events[-1], ProtocolError), events
    assert len(proto._buffer) == 0


def test_core_deflate_bomb_memory_bounded() -> None:
    """64 MiB of zeros compressed to ~64 KiB: inflating stops at max_size, memory stays small."""
    max_size = 256 * 1024
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"".join(comp.compress(b"\0" * (1 << 20)) for _ in range(64)) + comp.flush(
        zlib.Z_SYNC_FLUSH
    )
    frame = server_frame(2, bomb[:-4], rsv1=True)
    proto = make_core(True, max_size)
    tracemalloc.start()
    try:
        events = []
        for pos in range(0, len(frame), 4096):
            events += proto.receive_data(frame[pos : pos + 4096])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(events[-1], ProtocolError), events
    assert isinstance(events[-1].exc, WebSocketMessageTooBigException)
    assert peak < 8 * max_size, f"peak {peak} bytes while inflating a bomb with max_size={max_size}"


def test_core_fragment_flood_memory_bounded() -> None:
    """Endless continuation frames: the message is refused once it passes max_size."""
    max_size = 512 * 1024
    proto = ClientProtocol(max_size=max_size)
    piece = server_frame(0, b"z" * 60000, fin=False)
    tracemalloc.start()
    try:
        events = proto.receive_data(server_frame(2, b"a", fin=False))
        for _ in range(40):
            events += proto.receive_data(piece)
            if events:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(events[-1], ProtocolError), events
    assert isinstance(events[-1].exc, WebSocketMessageTooBigException)
    assert peak < 4 * max_size, f"peak {peak} bytes for a flood with max_size={max_size}"


# -------------------------------------------------------- the handshake response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _request(deflate: bool) -> object:
    return build_request(
        host="example.com",
        port=80,
        resource="/chat",
        secure=False,
        subprotocols=["chat"] if deflate else None,
        deflate=DeflateOptions() if deflate else None,
        key=KEY,
    )


def response_corpus() -> list[bytes]:
    ok = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n"
    )
    return [
        (ok + "\r\n").encode() + server_frame(1, b"first"),
        (
            ok + "Sec-WebSocket-Protocol: chat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n"
        ).encode(),
        b"HTTP/1.1 100 Continue\r\n\r\n" + (ok + "\r\n").encode(),
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\nWWW-Authenticate: Basic\r\n\r\nnope!",
        b"HTTP/1.1 302 Found\r\nLocation: ws://other.example/\r\n\r\n",
        b"HTTP/1.0 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\n\n",
    ]


def test_handshake_fuzz() -> None:
    corpus = response_corpus()
    for seed in seeds("handshake", 1500):
        rng = random.Random(seed)
        deflate = rng.random() < 0.5
        hs = ClientHandshake(
            _request(deflate),  # type: ignore[arg-type]
            max_size=rng.choice([None, 1000]),
            max_header_bytes=rng.choice([256, 4096, 65536]),
            max_headers=rng.choice([3, 128]),
        )
        hs.data_to_send()
        data = rng.choice(corpus)
        if rng.random() < 0.9:
            data = mutate(rng, data, corpus)
        started = time.monotonic()
        try:
            for piece in [*chunks(rng, data), b""]:
                if hs.receive_data(piece) is not None:
                    break
                assert len(hs._parser._buffer) <= hs._parser.max_header_bytes, f"seed {seed}"
        except WebSocketException:
            pass
        except Exception as exc:
            raise AssertionError(f"seed {seed}: {type(exc).__name__}: {exc!r}") from exc
        assert time.monotonic() - started < CASE_TIME_LIMIT, f"seed {seed}: too slow"


def test_http_head_parser_random_lines() -> None:
    """Heads built from random (often invalid) header lines, plus header-count floods."""
    alphabet = b"abcXYZ-_:; \t\r\n\x00\x7f\xff\x80=,\"'"
    for seed in seeds("http-head", 400):
        rng = random.Random(seed)
        lines = [b"HTTP/1.1 " + rng.choice([b"101", b"200", b"999", b"1x1", b"101 OK"])]
        for _ in range(rng.randint(0, 200)):
            lines.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30))))
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        parser = ResponseHeadParser(
            max_header_bytes=rng.choice([128, 2048]), skip_informational=rng.random() < 0.5
        )
        try:
            for piece in chunks(rng, data):
                if parser.feed(piece) is not None:
                    assert len(parser.response.headers) <= parser.max_headers  # type: ignore[union-attr]
                    break
                assert len(parser._buffer) <= parser.max_header_bytes, f"seed {seed}"
        except WebSocketException:
            pass
        except Exception as exc:
            raise AssertionError(f"seed {seed}: {type(exc).__name__}: {exc!r}") from exc


def test_http_head_endless_interim_answers_bounded() -> None:
    """An endless stream of 100 Continue heads ends in an error, not in unbounded work."""
    parser = ResponseHeadParser(skip_informational=True, max_header_bytes=4096)
    with pytest.raises(WebSocketException):
        for _ in range(10000):
            parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n")


# --------------------------------------------------------------- proxy replies


def _proxy_case(
    seed: int,
    make: Callable[[], object],
    valid: list[bytes],
    drive: Callable[[object, bytes], bool],
) -> None:
    rng = random.Random(seed)
    handshake = make()
    data = rng.choice(valid)
    if rng.random() < 0.9:
        data = mutate(rng, data, valid)
    try:
        for piece in [*chunks(rng, data), b""]:
            if drive(handshake, piece):
                break
    except WebSocketException:
        pass
    except Exception as exc:
        raise AssertionError(f"seed {seed}: {type(exc).__name__}: {exc!r}") from exc


def test_http_connect_reply_fuzz() -> None:
    valid = [
        b"HTTP/1.1 200 Connection established\r\n\r\n" + server_frame(1, b"x"),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nVia: x\r\n\r\n",
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!",
    ]

    def drive(h: object, piece: bytes) -> bool:
        assert isinstance(h, HttpConnectHandshake)
        h.initial_bytes()
        return h.feed(piece)

    for seed in seeds("http-connect", 800):
        _proxy_case(
            seed,
            lambda: HttpConnectHandshake("example.com", 443, ("u", "p"), url="wss://example.com/"),
            valid,
            drive,
        )


def _socks5_drive(h: object, piece: bytes) -> bool:
    assert isinstance(h, Socks5Handshake)
    h.feed(piece)
    return h.done


def test_socks5_reply_fuzz() -> None:
    valid = [
        b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90",
        b"\x05\x02\x01\x00" + b"\x05\x00\x00\x03\x09localhost\x00\x50" + b"tail",
        b"\x05\x00" + b"\x05\x00\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50",
        b"\x05\xff",
        b"\x05\x02\x01\x01",
        b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00",
    ]

    def make() -> Socks5Handshake:
        h = Socks5Handshake("example.com", 80, ("user", "pw"), url="ws://example.com/")
        h.initial_bytes()
        return h

    for seed in seeds("socks5", 1500):
        _proxy_case(seed, make, valid, _socks5_drive)


def test_socks4_reply_fuzz() -> None:
    valid = [
        b"\x00\x5a\x00\x50\x7f\x00\x00\x01",
        b"\x00\x5b" + b"\x00" * 6,
        b"\x04\x5a" + b"\x00" * 6 + b"more",
    ]

    def drive(h: object, piece: bytes) -> bool:
        assert isinstance(h, Socks4Handshake)
        h.feed(piece)
        return h.done

    for seed in seeds("socks4", 800):
        _proxy_case(
            seed, lambda: Socks4Handshake("example.com", 80, "id", url="ws://x/"), valid, drive
        )


# --------------------------------------------------- real sockets, both front ends


class RawServer:
    """A TCP server that answers each connection with a script of raw bytes.

    ``script(request_head) -> bytes`` gives what to send once the request head has
    arrived; the server then closes the connection (after a short grace so the client
    may answer a close frame).
    """

    def __init__(self, script: Callable[[bytes], bytes]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-raw-server")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/fuzz"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._serve(conn)
                except OSError:
                    pass  # the client gave up first: that is what some cases test
                except BaseException as exc:  # reported by stop()
                    self.errors.append(exc)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(3.0)
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
        conn.sendall(self.script(head))
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        conn.settimeout(0.2)
        while time.monotonic() < deadline:  # drain the client's close frame, if any
            try:
                if not conn.recv(4096):
                    break
            except TimeoutError:
                break

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.listener.close()
        assert not self._thread.is_alive()
        assert not self.errors, self.errors


def _key_of(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode()
    return ""


def socket_case_bytes(rng: random.Random, head: bytes) -> bytes:
    """The bytes one real-socket case sends: a 101 (maybe mutated) and mutated frames."""
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(_key_of(head))}\r\n\r\n"
    ).encode()
    corpus = frame_corpus(rng, deflate=False)
    frames = b"".join(rng.choice(corpus) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.8:
        frames = mutate(rng, frames, corpus)
    if rng.random() < 0.25:
        response = mutate(rng, response, response_corpus())
    return response + frames


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[bytes], bytes]], RawServer]]:
    made: list[RawServer] = []

    def factory(script: Callable[[bytes], bytes]) -> RawServer:
        server = RawServer(script)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.stop()


def test_blocking_client_socket_fuzz(
    raw_server: Callable[[Callable[[bytes], bytes]], RawServer],
) -> None:
    case_seed = [0]
    server = raw_server(lambda head: socket_case_bytes(random.Random(case_seed[0]), head))
    for seed in seeds("socket-connect", 0):
        case_seed[0] = seed
        started = time.monotonic()
        try:
            ws = wspool.connect(server.url, timeout=2, open_timeout=3, max_size=100000)
        except WebSocketException:
            continue
        except Exception as exc:
            raise AssertionError(
                f"seed {seed}: connect raised {type(exc).__name__}: {exc!r}"
            ) from exc
        try:
            for _ in range(50):
                ws.recv()
        except WebSocketException:
            pass
        except Exception as exc:
            raise AssertionError(f"seed {seed}: recv raised {type(exc).__name__}: {exc!r}") from exc
        finally:
            ws.close(timeout=1)
        assert time.monotonic() - started < 6, f"seed {seed}: the case took too long"


def test_pool_socket_fuzz(raw_server: Callable[[Callable[[bytes], bytes]], RawServer]) -> None:
    case_seed = [0]
    server = raw_server(lambda head: socket_case_bytes(random.Random(case_seed[0]), head))
    with wspool.Pool(workers=2, name="fuzz-pool") as pool:
        for seed in seeds("socket-pool", 0):
            case_seed[0] = seed
            errors: list[BaseException] = []

            def on_error(
                _conn: object, error: BaseException, errors: list[BaseException] = errors
            ) -> None:
                errors.append(error)

            conn = pool.connect(server.url, open_timeout=3, max_size=100000, on_error=on_error)
            ended = conn.wait_closed(8)
            if not ended:
                conn.abort()
                conn.wait_closed(1)
            assert ended, f"seed {seed}: the pool connection did not end"
            bad = [e for e in errors if not isinstance(e, WebSocketException)]
            assert not bad, f"seed {seed}: non-wspool errors {bad!r}"
