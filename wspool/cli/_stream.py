"""``wspool URL ...``: print every message received, one line each (or JSON lines),
with a live status line at the bottom of stderr when stderr is a terminal.

Callbacks run on the pool's worker threads, several connections in parallel: every
line is written through one :class:`~wspool.cli._common.Console`, and the message
count behind ``--count`` is kept under its lock, so no line is printed past it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import threading
import traceback
from typing import Any, TextIO

from wspool.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    RateMeter,
    StatusTicker,
    connect_all,
    error_text,
    escape,
    is_terminal,
    options_from_args,
)
from wspool.exceptions import WebSocketConfigurationException
from wspool.pool import Connection, ConnectionState, Pool
from wspool.protocol.trace import enableTrace


class StreamRun:
    """What one run of the command prints and counts; callbacks run on workers."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.done = threading.Event()
        self.console = Console(out, err, on_gone=self.done.set)
        self.lock = self.console.lock
        self.messages = 0
        self.errors = 0
        self.reconnects = 0
        self.ended = 0
        self.connections: list[Connection] = []
        self.count_reached = False
        self._rate = RateMeter()

    # ------------------------------------------------------------ output

    def _event(self, conn: Connection, kind: str, **fields: Any) -> None:
        if self.args.jsonl:
            record = {"conn": self.label(conn), "url": conn.url, "type": kind, **fields}
            self.console.print(json.dumps(record, ensure_ascii=False))

    def label(self, conn: Connection) -> str:
        # Given to Pool.connect, so it is set before any callback can run.
        return str(conn.label)

    def _format(self, conn: Connection, message: str | bytes) -> str:
        if isinstance(message, str):
            parsed: Any = None
            is_json = False
            if self.args.json:
                try:
                    parsed = json.loads(message)
                    is_json = True
                except ValueError:
                    pass
            if self.args.jsonl:
                record: dict[str, Any] = {
                    "conn": self.label(conn),
                    "url": conn.url,
                    "type": "text",
                    "data": message,
                }
                if is_json:
                    record["json"] = parsed
                return json.dumps(record, ensure_ascii=False)
            if is_json:
                return f"{self.label(conn)} {json.dumps(parsed, indent=2, ensure_ascii=False)}"
            return f"{self.label(conn)} {escape(message)}"
        data = bytes(message)
        shown = data.hex() if self.args.binary == "hex" else base64.b64encode(data).decode()
        if self.args.jsonl:
            return json.dumps(
                {"conn": self.label(conn), "url": conn.url, "type": "binary", "data": shown}
            )
        return f"{self.label(conn)} {shown}"

    def status_text(self) -> str:
        """The live status line: connections up/total, msg/s, counters."""
        connections = list(self.connections)
        up = sum(1 for c in connections if c.state is ConnectionState.OPEN)
        received = sum(c.stats.messages_in for c in connections)
        rate = self._rate.add(received)
        with self.lock:
            messages, reconnects, errors = self.messages, self.reconnects, self.errors
        return (
            f"wspool: {up}/{len(connections)} up  {rate:.1f} msg/s  {messages} messages  "
            f"{reconnects} reconnects  {errors} errors"
        )

    # ------------------------------------------------------------ callbacks

    def on_open(self, conn: Connection) -> None:
        self._event(conn, "open", subprotocol=conn.subprotocol)
        for text in self.args.send:
            conn.send_text(text)

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        line = self._format(conn, message)
        with self.lock:
            if self.count_reached:
                return  # past --count: the pool is closing, print nothing more
            self.messages += 1
            self.console.print(line)
            if self.args.count is not None and self.messages >= self.args.count:
                self.count_reached = True
                self.done.set()

    def on_error(self, conn: Connection, error: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self.console.error(
                f"wspool: {self.label(conn)} {conn.url}: {error_text(error, conn.url)}"
            )
            if self.args.debug:
                text = "".join(traceback.format_exception(error)).rstrip("\n")
                self.console.error(text)
        self._event(conn, "error", error=type(error).__name__, message=error_text(error, conn.url))

    def on_close(self, conn: Connection, code: int, reason: str) -> None:
        self._event(conn, "close", code=code, reason=reason)

    def on_reconnect(self, conn: Connection) -> None:
        with self.lock:
            self.reconnects += 1
        self._event(conn, "reconnect")

    def ended_one(self, _conn: Connection) -> None:
        # add_done_callback: the connection ended for good (no more reconnects).
        with self.lock:
            self.ended += 1
            if self.ended >= len(self.connections):
                self.done.set()

    def summary(self) -> str:
        with self.lock:
            return (
                f"wspool: interrupted: {self.messages} messages, "
                f"{self.reconnects} reconnects, {self.errors} errors"
            )


def run_stream(args: argparse.Namespace, urls: list[str], out: TextIO, err: TextIO) -> int:
    """The plain mode; returns the exit status."""
    if args.debug:
        enableTrace(True)
    run = StreamRun(args, out, err)
    pool = Pool()
    ticker: StatusTicker | None = None
    try:
        try:
            options = options_from_args(args)
            # Filled as connections are made: ended_one compares against its length,
            # and done callbacks are added only once every connection exists.
            connections = connect_all(
                pool,
                urls,
                options,
                on_open=run.on_open,
                on_message=run.on_message,
                on_error=run.on_error,
                on_close=run.on_close,
                on_reconnect=run.on_reconnect,
            )
        except WebSocketConfigurationException as exc:
            if args.debug:
                traceback.print_exc()
            pool.close()
            print(f"wspool: error: {exc}", file=err)
            return EXIT_USAGE
        run.connections = connections
        for conn in connections:
            conn.add_done_callback(run.ended_one)
        if args.status and is_terminal(err):
            ticker = StatusTicker(run.console, run.status_text).start()
        # A bounded wait in a loop: Ctrl-C (KeyboardInterrupt) lands between waits.
        while not run.done.wait(0.2):
            pass
        if ticker is not None:
            ticker.stop()
        pool.close()
    except KeyboardInterrupt:
        if ticker is not None:
            ticker.stop()
        # A second Ctrl-C stops waiting for the closing handshakes.
        with contextlib.suppress(KeyboardInterrupt):
            pool.close()
        run.console.error(run.summary())
        return EXIT_INTERRUPTED
    if run.count_reached:
        return EXIT_OK
    return EXIT_ERROR if run.errors else EXIT_OK
