"""The ``wspool`` command line: connect to WebSocket URLs and print what arrives.

``wspool URL [URL ...]`` (or ``-f FILE``) opens every URL through one
:class:`wspool.Pool` and prints each received message as one line, ``LABEL MESSAGE``,
or one JSON object per line with ``--jsonl``.  Labels are ``c1``, ``c2``, ... in the
order the URLs were given (also with a single URL, so scripts need not care how many
there are).  The options map one to one onto :meth:`wspool.Pool.connect` options, so
every check (and its message) is the library's own.

Callbacks run on the pool's worker threads, several connections in parallel: every
line is written under one lock, so lines never interleave, and the message count
behind ``--count`` is kept under the same lock.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import ssl
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from wspool.exceptions import WebSocketConfigurationException, WebSocketException
from wspool.pool import Connection, Pool
from wspool.protocol.trace import enableTrace
from wspool.transport.proxy import parse_proxy_url

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EPILOG = """\
output:
  one line per message: "LABEL MESSAGE". Labels are c1, c2, ... in the order the
  URLs were given (also for a single URL). Text is printed as is, except that
  backslash, CR and LF are written as \\\\, \\r and \\n so one message is one line;
  binary messages are printed in hex (or base64 with --binary base64).
  --jsonl prints one JSON object per line instead: messages as
  {"conn", "url", "type": "text"|"binary", "data"} (binary data per --binary;
  with --json a text message that is JSON also gets "json", the parsed value) and
  events as {"conn", "url", "type": "open"|"close"|"error"|"reconnect", ...}.
  Errors go to stderr as "wspool: LABEL URL: message".

exit status:
  0    every connection ended cleanly, or --count messages arrived
  1    some connection failed (an error was reported)
  2    usage error (bad option or option value, malformed URL or header)
  130  interrupted (Ctrl-C): every connection is closed with a closing handshake
       and a summary is printed on stderr

examples:
  wspool wss://echo.example/ws --send hello --count 1
  wspool -f urls.txt --jsonl --reconnect
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wspool`` command."""
    parser = argparse.ArgumentParser(
        prog="wspool",
        description="Connect to WebSocket URLs (one shared wspool.Pool) and print every "
        "message received.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("urls", nargs="*", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read URLs from FILE, one per line ('#' starts a comment line); '-' is stdin",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    out.add_argument("--json", action="store_true", help="pretty-print text messages that are JSON")
    out.add_argument(
        "--binary",
        choices=("hex", "base64"),
        default="hex",
        help="how binary messages are printed (default: hex)",
    )
    out.add_argument(
        "--count", type=int, metavar="N", help="exit after N messages in total (all URLs)"
    )
    conn = parser.add_argument_group("connection")
    conn.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    conn.add_argument(
        "--subprotocol", action="append", default=[], metavar="NAME", help="offer (repeatable)"
    )
    conn.add_argument("--origin", help="Origin header value")
    conn.add_argument(
        "--insecure", action="store_true", help="do not verify the TLS certificate (wss://)"
    )
    conn.add_argument("--ca-file", metavar="PEM", help="trust the CA certificates in PEM")
    conn.add_argument(
        "--proxy",
        metavar="URL",
        help="proxy: http://[user:pass@]host:port or socks5[h]://, socks4[a]://",
    )
    conn.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="TEXT",
        help="text message sent on every open (repeatable, in order)",
    )
    conn.add_argument(
        "--reconnect", action="store_true", help="reconnect (with backoff) when a connection drops"
    )
    conn.add_argument(
        "--ping-interval", type=float, metavar="S", help="send a keepalive ping every S seconds"
    )
    conn.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offer permessage-deflate (default: on)",
    )
    conn.add_argument("--max-size", type=int, metavar="BYTES", help="largest message accepted")
    conn.add_argument(
        "--timeout", type=float, metavar="S", help="seconds allowed to open a connection"
    )
    parser.add_argument(
        "--debug", action="store_true", help="protocol trace on stderr, tracebacks on errors"
    )
    return parser


def _read_url_file(name: str) -> list[str]:
    """The URLs of a file: one per line, blank lines and '#' comment lines skipped."""
    if name == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(name, encoding="utf-8") as f:
            lines = f.read().splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def _split_header(value: str) -> str:
    """Check one ``--header`` value (``Name: value``); the library checks the rest."""
    name, sep, _ = value.partition(":")
    if not sep or not name.strip():
        raise WebSocketConfigurationException(
            f"--header {value!r} is not 'Name: value'; write it as --header 'X-Token: abc'"
        )
    return value


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :meth:`Pool.connect` options the command line asks for."""
    options: dict[str, Any] = {}
    if args.header:
        options["header"] = [_split_header(h) for h in args.header]
    if args.subprotocol:
        options["subprotocols"] = list(args.subprotocol)
    if args.origin is not None:
        options["origin"] = args.origin
    sslopt: dict[str, Any] = {}
    if args.insecure:
        sslopt.update(cert_reqs=ssl.CERT_NONE, check_hostname=False)
    if args.ca_file is not None:
        sslopt["ca_certs"] = args.ca_file
    if sslopt:
        options["sslopt"] = sslopt
    if args.proxy is not None:
        proxy = parse_proxy_url(args.proxy)
        options.update(
            http_proxy_host=proxy.host,
            http_proxy_port=proxy.port,
            http_proxy_auth=proxy.auth,
            proxy_type=proxy.type,
        )
    if args.reconnect:
        options["reconnect"] = True
    if args.ping_interval is not None:
        options["ping_interval"] = args.ping_interval
    if args.compression is not None:
        options["compression"] = "deflate" if args.compression else None
    if args.max_size is not None:
        options["max_size"] = args.max_size
    if args.timeout is not None:
        options["open_timeout"] = args.timeout
    return options


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _error_text(error: BaseException, url: str) -> str:
    """The error's own (redacted) message, without the URL the line already shows."""
    if isinstance(error, WebSocketException):
        text = error.message
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror  # no "[Errno N]" prefix
    else:
        text = str(error)
    text = text.removesuffix(f" [{url}]")
    return text or type(error).__name__


class _Run:
    """What one run of the command prints and counts; callbacks run on workers."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.messages = 0
        self.errors = 0
        self.reconnects = 0
        self.ended = 0
        self.total = 0
        self.count_reached = False

    # ------------------------------------------------------------ output

    def _write(self, stream: TextIO, line: str) -> None:
        # Called with self.lock held: one line at a time from every worker.
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (e.g. piped into head): stop quietly.  The stream
            # now points at /dev/null, so the interpreter's flush at exit does not
            # report the broken pipe either (the recipe of Python's signal docs).
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            self.done.set()

    def _event(self, conn: Connection, kind: str, **fields: Any) -> None:
        if self.args.jsonl:
            record = {"conn": self.label(conn), "url": conn.url, "type": kind, **fields}
            with self.lock:
                self._write(self.out, json.dumps(record, ensure_ascii=False))

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
            return f"{self.label(conn)} {_escape(message)}"
        data = bytes(message)
        shown = data.hex() if self.args.binary == "hex" else base64.b64encode(data).decode()
        if self.args.jsonl:
            return json.dumps(
                {"conn": self.label(conn), "url": conn.url, "type": "binary", "data": shown}
            )
        return f"{self.label(conn)} {shown}"

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
            self._write(self.out, line)
            if self.args.count is not None and self.messages >= self.args.count:
                self.count_reached = True
                self.done.set()

    def on_error(self, conn: Connection, error: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self._write(
                self.err, f"wspool: {self.label(conn)} {conn.url}: {_error_text(error, conn.url)}"
            )
            if self.args.debug:
                text = "".join(traceback.format_exception(error)).rstrip("\n")
                self._write(self.err, text)
        self._event(conn, "error", error=type(error).__name__, message=_error_text(error, conn.url))

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
            if self.ended >= self.total:
                self.done.set()

    def summary(self) -> str:
        with self.lock:
            return (
                f"wspool: interrupted: {self.messages} messages, "
                f"{self.reconnects} reconnects, {self.errors} errors"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see ``wspool --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    urls = list(args.urls)
    if args.file is not None:
        try:
            urls += _read_url_file(args.file)
        except OSError as exc:
            parser.error(f"cannot read -f {args.file}: {exc.strerror or exc}")
    if not urls:
        parser.error("give at least one URL (or -f FILE)")
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, not {args.count}")
    if args.debug:
        enableTrace(True)
    run = _Run(args, sys.stdout, sys.stderr)
    pool = Pool()
    try:
        try:
            options = options_from_args(args)
            connections: list[Connection] = []
            for url in urls:
                conn = pool.connect(
                    url,
                    label=f"c{len(connections) + 1}",
                    on_open=run.on_open,
                    on_message=run.on_message,
                    on_error=run.on_error,
                    on_close=run.on_close,
                    on_reconnect=run.on_reconnect,
                    **options,
                )
                connections.append(conn)
        except WebSocketConfigurationException as exc:
            if args.debug:
                traceback.print_exc()
            pool.close()
            print(f"wspool: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        run.total = len(connections)
        for conn in connections:
            conn.add_done_callback(run.ended_one)
        # A bounded wait in a loop: Ctrl-C (KeyboardInterrupt) lands between waits.
        while not run.done.wait(0.2):
            pass
        pool.close()
    except KeyboardInterrupt:
        # A second Ctrl-C stops waiting for the closing handshakes.
        with contextlib.suppress(KeyboardInterrupt):
            pool.close()
        print(run.summary(), file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.count_reached:
        return EXIT_OK
    return EXIT_ERROR if run.errors else EXIT_OK
