"""``wspool -i URL``: one connection, typed lines sent, received messages printed.

The main thread reads stdin (``select`` then ``os.read``, so it also notices, within
a fifth of a second, that the server ended the connection while nobody types);
received messages are printed by the pool's workers.  Every line goes through the
console's lock, so a message arriving while a command echoes never splits a line.

Lines on stdout: ``> ...`` what was sent, ``< ...`` what arrived, ``* ...`` events.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import sys
import threading
import traceback
from typing import Any, TextIO

from wspool.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    error_text,
    escape,
    options_from_args,
)
from wspool.exceptions import WebSocketConfigurationException, WebSocketException
from wspool.pool import Connection, ConnectionState, Pool
from wspool.protocol.trace import enableTrace

HELP = """\
commands:
  TEXT                  send TEXT as a text message (//TEXT sends /TEXT)
  /ping [PAYLOAD]       send a ping; the pong is printed as "< [pong] PAYLOAD"
  /binary HEX           send the bytes HEX (e.g. /binary 00ff10) as a binary message
  /close [CODE [REASON]]  close with a closing handshake (default 1000), then exit
  /quit                 close (1000) and exit; so does end of input (Ctrl-D)
  /help                 this list"""


class Interactive:
    """The state of one interactive session; callbacks run on a worker."""

    def __init__(self, args: argparse.Namespace, stdin_fd: int, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.stdin_fd = stdin_fd
        self.ended = threading.Event()
        self.opened = threading.Event()
        self.console = Console(out, err, on_gone=self.ended.set)
        self.errors = 0
        self.conn: Connection | None = None

    # ------------------------------------------------------------ output

    def _binary(self, data: bytes) -> str:
        return data.hex() if self.args.binary == "hex" else base64.b64encode(data).decode()

    def _text(self, text: str) -> str:
        if self.args.json:
            try:
                return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except ValueError:
                pass
        return escape(text)

    # ------------------------------------------------------------ callbacks

    def on_open(self, conn: Connection) -> None:
        protocol = f" (subprotocol {conn.subprotocol})" if conn.subprotocol else ""
        self.console.print(f"* connected to {conn.url}{protocol}; /help lists the commands")
        for text in self.args.send:
            conn.send_text(text)
            self.console.print(f"> {self._text(text)}")
        self.opened.set()

    def on_message(self, _conn: Connection, message: str | bytes) -> None:
        if isinstance(message, str):
            self.console.print(f"< {self._text(message)}")
        else:
            self.console.print(f"< [binary] {self._binary(bytes(message))}")

    def on_ping(self, _conn: Connection, payload: bytes) -> None:
        self.console.print(f"< [ping] {_payload(payload)}")

    def on_pong(self, _conn: Connection, payload: bytes) -> None:
        self.console.print(f"< [pong] {_payload(payload)}")

    def on_error(self, conn: Connection, error: BaseException) -> None:
        with self.console.lock:
            self.errors += 1
            self.console.error(f"wspool: {conn.label} {conn.url}: {error_text(error, conn.url)}")
            if self.args.debug:
                self.console.error("".join(traceback.format_exception(error)).rstrip("\n"))

    def on_close(self, _conn: Connection, code: int, reason: str) -> None:
        if self.opened.is_set():  # a connection that never opened has its error line
            self.console.print(f"* closed {code} {escape(reason)}".rstrip())

    def on_reconnect(self, _conn: Connection) -> None:
        self.console.print("* reconnected")

    def on_done(self, _conn: Connection) -> None:
        self.ended.set()

    # ------------------------------------------------------------ input

    def command(self, line: str) -> bool:
        """Act on one input line; ``False`` once the session is closing."""
        conn = self.conn
        assert conn is not None
        if line.startswith("/") and not line.startswith("//"):
            name, _, rest = line[1:].partition(" ")
            return self._slash(conn, name, rest.strip())
        text = line[1:] if line.startswith("//") else line
        if self._send(conn.send_text, text):
            self.console.print(f"> {self._text(text)}")
        return True

    def _send(self, send: Any, *args: Any) -> bool:
        try:
            send(*args)
        except WebSocketException as exc:
            state = self.conn.state.value if self.conn is not None else "closed"
            self.console.error(f"wspool: not sent ({state}): {exc.message}")
            return False
        return True

    def _slash(self, conn: Connection, name: str, rest: str) -> bool:
        if name == "help":
            self.console.print(HELP)
        elif name == "ping":
            payload = rest.encode("utf-8")
            if len(payload) > 125:
                self.console.error("wspool: a ping payload is at most 125 bytes")
            elif self._send(conn.ping, payload):
                self.console.print(f"> [ping] {rest}".rstrip())
        elif name == "binary":
            try:
                data = bytes.fromhex(rest)
            except ValueError:
                self.console.error("wspool: /binary takes hex digits, e.g. /binary 00ff10")
                return True
            if self._send(conn.send_binary, data):
                self.console.print(f"> [binary] {self._binary(data)}")
        elif name in ("close", "quit"):
            code_text, _, reason = rest.partition(" ") if name == "close" else ("", "", "")
            try:
                code = int(code_text) if code_text else 1000
            except ValueError:
                self.console.error("wspool: usage: /close [CODE [REASON]], e.g. /close 1000 bye")
                return True
            try:
                conn.close(code, reason)
            except WebSocketConfigurationException as exc:
                self.console.error(f"wspool: {exc}")
                return True
            self.console.print(f"> [close] {code} {reason}".rstrip())
            return False
        else:
            self.console.error(f"wspool: unknown command /{name}; /help lists them")
        return True

    def read_lines(self) -> None:
        """Read stdin until EOF, ``/close``/``/quit`` or the connection's end."""
        buffer = b""
        while not self.ended.is_set():
            ready, _, _ = select.select([self.stdin_fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(self.stdin_fd, 65536)
            if not chunk:  # end of input: close like /quit
                last = buffer.decode("utf-8", "replace").rstrip("\r")
                if last and not self.command(last):
                    return  # the unterminated last line was /close or /quit
                conn = self.conn
                if conn is not None and conn.state is not ConnectionState.CLOSED:
                    conn.close()
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                if not self.command(raw.decode("utf-8", "replace").rstrip("\r")):
                    return


def run_interactive(args: argparse.Namespace, url: str, out: TextIO, err: TextIO) -> int:
    """The interactive mode; returns the exit status."""
    if args.debug:
        enableTrace(True)
    session = Interactive(args, sys.stdin.fileno(), out, err)
    pool = Pool()
    try:
        try:
            conn = pool.connect(
                url,
                label="c1",
                on_open=session.on_open,
                on_message=session.on_message,
                on_ping=session.on_ping,
                on_pong=session.on_pong,
                on_error=session.on_error,
                on_close=session.on_close,
                on_reconnect=session.on_reconnect,
                **options_from_args(args),
            )
        except WebSocketConfigurationException as exc:
            pool.close()
            print(f"wspool: error: {exc}", file=err)
            return EXIT_USAGE
        session.conn = conn
        conn.add_done_callback(session.on_done)
        # Lines typed before the connection opens wait in the terminal's buffer.
        while not session.opened.wait(0.2):
            if session.ended.is_set():
                break
        if session.opened.is_set():
            session.read_lines()
        while not session.ended.wait(0.2):
            pass
        conn.wait_closed(5.0)  # the last callbacks (on_close's line) have run
        pool.close()
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):
            pool.close()
        session.console.error("wspool: interrupted")
        return EXIT_INTERRUPTED
    return EXIT_ERROR if session.errors else EXIT_OK


def _payload(payload: bytes) -> str:
    try:
        return escape(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return payload.hex()
