"""Quick fan-in throughput check of wspool.Pool (not the full suite of issue 4).

A flat-out feed server runs in a child process: after the upgrade it writes COUNT
prebuilt 128-byte text frames to each connection.  The parent opens CONNECTIONS
connections through one Pool and counts messages in a Python callback.

    python bench/quick_fanin.py --connections 1000 --messages 2000
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import selectors
import socket
import subprocess
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PAYLOAD = (b'{"s":"BTCUSDT","p":"65000.10","q":"0.002","t":1700000000000,"x":"' + b"a" * 80)[
    :126
] + b'"}'
FRAME = bytes((0x81, 126)) + len(PAYLOAD).to_bytes(2, "big") + PAYLOAD


def serve(port: int, count: int) -> None:
    """The feed server (child process): one selectors loop, prebuilt frames."""
    blob = FRAME * count
    sel = selectors.DefaultSelector()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    heads: dict[socket.socket, bytes] = {}
    outgoing: dict[socket.socket, memoryview] = {}
    while True:
        for key, events in sel.select():
            if key.data is None:
                conn, _ = listener.accept()
                conn.setblocking(False)
                heads[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj  # type: ignore[assignment]
            if events & selectors.EVENT_READ:
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    sel.unregister(conn)
                    conn.close()
                    heads.pop(conn, None)
                    outgoing.pop(conn, None)
                    continue
                if data and conn not in outgoing:
                    heads[conn] += data
                    if b"\r\n\r\n" in heads[conn]:
                        key_line = next(
                            line
                            for line in heads[conn].split(b"\r\n")
                            if line.lower().startswith(b"sec-websocket-key")
                        )
                        accept = base64.b64encode(
                            hashlib.sha1(key_line.split(b":", 1)[1].strip() + GUID).digest()
                        )
                        outgoing[conn] = memoryview(
                            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                            + accept
                            + b"\r\n\r\n"
                            + blob
                        )
                        sel.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, "conn")
            if events & selectors.EVENT_WRITE and conn in outgoing:
                try:
                    sent = conn.send(outgoing[conn])
                except BlockingIOError:
                    sent = 0
                outgoing[conn] = outgoing[conn][sent:]
                if not len(outgoing[conn]):
                    sel.modify(conn, selectors.EVENT_READ, "conn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000, help="per connection")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.messages)
        return 0

    import logging

    import wspool

    # The feed server never answers the closing handshake: its timeouts are expected.
    logging.getLogger("wspool").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--messages", str(args.messages)]
    )
    try:
        time.sleep(0.5)
        counts = [[0] for _ in range(args.connections)]

        def on_message(conn: wspool.Connection, message: object) -> None:
            conn.label[0] += 1  # type: ignore[index]

        total = args.connections * args.messages
        with wspool.Pool(workers=args.workers) as pool:
            started = time.perf_counter()
            for counter in counts:
                pool.connect(
                    f"ws://127.0.0.1:{port}/",
                    label=counter,
                    on_message=on_message,
                    compression=None,
                    close_timeout=0.1,
                )
            got = 0
            while got < total and time.perf_counter() - started < 120:
                time.sleep(0.005)
                got = sum(c[0] for c in counts)
            elapsed = time.perf_counter() - started
        print(
            f"{args.connections} connections x {args.messages} messages of {len(PAYLOAD)} B: "
            f"{got}/{total} in {elapsed:.2f} s = {got / elapsed:,.0f} msg/s "
            f"(connect time included)"
        )
        return 0 if got == total else 1
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
