"""Demo: wspool's blocking client against a local echo server.

Starts the stdlib WebSocket test server from ``tests/wsserver.py`` on 127.0.0.1,
then connects with ``wspool.connect`` and exchanges text, binary, a compressed
message, a ping and a closing handshake, printing what happens.

    python examples/echo_demo.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from wsserver import WSServer

import wspool


def main() -> None:
    with WSServer() as server:
        print(f"echo server listening on {server.url}")
        with wspool.connect(server.url, timeout=10) as ws:
            print(f"connected: status {ws.status}, extensions {ws.extensions or 'none'}")
            ws.send("hello, wspool")
            print(f"text   -> {ws.recv()!r}")
            ws.send(bytes(range(8)))
            print(f"binary -> {ws.recv()!r}")
            big = "market data " * 10_000
            started = time.perf_counter()
            ws.send(big)
            echoed = ws.recv()
            elapsed = (time.perf_counter() - started) * 1000
            print(f"large  -> {len(echoed)} characters back in {elapsed:.1f} ms")
            print(f"          intact: {echoed == big}")
            ws.ping(b"are you there")
            opcode, data = ws.recv_data(control_frame=True)
            print(f"ping   -> {wspool.Opcode(opcode).name} {data!r}")
        print(f"closed cleanly: close status {ws.close_status}")


if __name__ == "__main__":
    main()
