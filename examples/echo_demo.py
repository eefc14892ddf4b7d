"""The blocking client: one connection in your own thread, with ``wspool.connect``.

By default it starts the embedded demo feed (``wspool.demofeed``, on 127.0.0.1) and
talks to its ``/echo`` path: text, binary, a large message, a ping and the closing
handshake, printing what happens; then it reads a few ticks from ``/ticker`` with a
``for message in ws`` loop.  With a URL it runs the echo part against that server.
Exit status 0 means every echo came back intact.

    python examples/echo_demo.py
    python examples/echo_demo.py --url wss://echo.example.org/
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import wspool
from wspool.demofeed import DemoFeed


def echo(url: str) -> bool:
    """Exchange messages with the echo server at ``url``; whether all came back."""
    intact = True
    with wspool.connect(url, timeout=10) as ws:
        print(f"connected: status {ws.status}, extensions {ws.extensions or 'none'}")
        ws.send("hello, wspool")  # str: a text frame
        reply = ws.recv()
        intact &= reply == "hello, wspool"
        print(f"text   -> {reply!r}")
        ws.send(bytes(range(8)))  # bytes: a binary frame
        reply = ws.recv()
        intact &= reply == bytes(range(8))
        print(f"binary -> {reply!r}")
        big = "market data " * 10_000
        started = time.perf_counter()
        ws.send(big)
        echoed = ws.recv()
        elapsed = (time.perf_counter() - started) * 1000
        intact &= echoed == big
        print(f"large  -> {len(echoed)} characters back in {elapsed:.1f} ms")
        print(f"          intact: {echoed == big}")
        ws.ping(b"are you there")
        opcode, data = ws.recv_data(control_frame=True)
        print(f"ping   -> {wspool.Opcode(opcode).name} {data!r}")
    print(f"closed cleanly: close status {ws.close_status}")
    return intact and ws.close_status == 1000


def read_ticks(url: str, count: int) -> int:
    """Subscribe on the demo feed's /ticker and iterate over ``count`` ticks."""
    seen = 0
    with wspool.connect(url, timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "ticker", "symbols": ["BTC-USD"]}))
        for message in ws:  # ends when the server closes; we break first
            data = json.loads(message)
            if data["type"] != "ticker":
                print(f"ack    -> {message}")
                continue
            seen += 1
            print(f"tick   -> {data['symbol']} #{data['seq']} {data['price']:.2f}")
            if seen == count:
                break
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an echo server (default: the embedded demo feed)")
    parser.add_argument("--demo", action="store_true", help="use the demo feed (the default)")
    parser.add_argument("--ticks", type=int, default=3, help="ticks to read from /ticker (3)")
    args = parser.parse_args(argv)
    if args.url and not args.demo:
        return 0 if echo(args.url) else 1
    with DemoFeed(rate=20) as feed:
        print(f"demo feed at {feed.url}")
        ok = echo(feed.url + "/echo")
        ok &= read_ticks(feed.url + "/ticker", args.ticks) == args.ticks
    print("demo: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
