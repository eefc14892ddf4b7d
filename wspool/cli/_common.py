"""What the ``wspool`` modes share: connection options, URL lists, exit statuses, the
console every line is written through (with the live status line of a terminal) and
rate meters."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from wspool.exceptions import WebSocketConfigurationException, WebSocketException
from wspool.pool import Connection, Pool
from wspool.transport.proxy import parse_proxy_url

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Erase the whole current line of a terminal and put the cursor at its start.
ERASE_LINE = "\r\x1b[K"


def add_url_arguments(parser: argparse.ArgumentParser) -> None:
    """``URL ...`` and ``-f FILE``."""
    parser.add_argument("urls", nargs="*", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read URLs from FILE, one per line ('#' starts a comment line); '-' is stdin",
    )


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that map onto :meth:`wspool.Pool.connect` options (every mode)."""
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
        "--ping-interval",
        type=float,
        metavar="S",
        help="send a keepalive ping every S seconds (this also measures the RTT)",
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


def read_url_file(name: str) -> list[str]:
    """The URLs of a file: one per line, blank lines and '#' comment lines skipped."""
    if name == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(name, encoding="utf-8") as f:
            lines = f.read().splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def collect_urls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The URLs given as arguments then those of ``-f FILE``; a usage error if none."""
    urls = list(args.urls)
    if args.file is not None:
        try:
            urls += read_url_file(args.file)
        except OSError as exc:
            parser.error(f"cannot read -f {args.file}: {exc.strerror or exc}")
    if not urls:
        parser.error("give at least one URL (or -f FILE)")
    return urls


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


def escape(text: str) -> str:
    """Text on one line: backslash, CR and LF written as ``\\\\``, ``\\r``, ``\\n``."""
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def error_text(error: BaseException, url: str) -> str:
    """The error's own (redacted) message, without the URL the line already shows."""
    if isinstance(error, WebSocketException):
        text = error.message
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror  # no "[Errno N]" prefix
    else:
        text = str(error)
    text = text.removesuffix(f" [{url}]")
    return text or type(error).__name__


def label_key(label: str) -> tuple[str, int]:
    """Sort key of ``c1``, ``c2``, ... ``c10`` in numeric order."""
    match = re.fullmatch(r"(\D*)(\d+)", label)
    if match is None:
        return (label, -1)
    return (match.group(1), int(match.group(2)))


def is_terminal(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def same_terminal(a: TextIO, b: TextIO) -> bool:
    """Whether both streams are the same terminal (stdout and stderr of a shell)."""
    if not (is_terminal(a) and is_terminal(b)):
        return False
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino, sa.st_rdev) == (sb.st_dev, sb.st_ino, sb.st_rdev)


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """``(columns, lines)`` of the terminal ``stream`` is; 80x24 when it does not say."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return (80, 24)
    return (size.columns or 80, size.lines or 24)


def connect_all(
    pool: Pool, urls: list[str], options: dict[str, Any], **callbacks: Any
) -> list[Connection]:
    """Connect every URL with labels ``c1``, ``c2``, ... (in URL order)."""
    connections: list[Connection] = []
    for url in urls:
        label = f"c{len(connections) + 1}"
        connections.append(pool.connect(url, label=label, **callbacks, **options))
    return connections


class Console:
    """Every line the command writes goes through here, under one lock.

    Workers print messages and errors in parallel: one lock keeps lines whole.  On a
    terminal a status line may sit at the bottom of stderr (:meth:`set_status`); a line
    written to stderr, or to a stdout that is the same terminal, first erases it and
    then draws it again, so the status never lands inside a message line.

    ``lock`` is re-entrant so a caller can hold it around a count and its line.  A
    reader that went away (``wspool URL | head -1``) calls ``on_gone`` once.
    """

    def __init__(
        self, out: TextIO, err: TextIO, *, on_gone: Callable[[], object] | None = None
    ) -> None:
        self.out = out
        self.err = err
        self.lock = threading.RLock()
        self.on_gone = on_gone
        self._status: str | None = None  # the text drawn now (None: no status line)
        self._shared = same_terminal(out, err)

    def write(self, stream: TextIO, text: str) -> bool:
        """Write and flush ``text`` as is (the caller holds :attr:`lock`); ``False``
        once the reader went away."""
        try:
            stream.write(text)
            stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (e.g. piped into head): stop quietly.  The stream
            # now points at /dev/null, so the interpreter's flush at exit does not
            # report the broken pipe either (the recipe of Python's signal docs).
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            if self.on_gone is not None:
                self.on_gone()
            return False
        return True

    def _line(self, stream: TextIO, line: str) -> None:
        with self.lock:
            status = self._status
            covers = status is not None and (stream is self.err or self._shared)
            if covers:
                self.write(self.err, ERASE_LINE)
            self.write(stream, line + "\n")
            if covers and status is not None:
                self.write(self.err, status)

    def print(self, line: str) -> None:
        """One line on stdout."""
        self._line(self.out, line)

    def error(self, line: str) -> None:
        """One line on stderr."""
        self._line(self.err, line)

    def set_status(self, text: str) -> None:
        """Draw (or redraw) the status line on stderr, cut to the terminal's width so
        it never wraps (a wrapped line could not be erased with one CR)."""
        columns, _ = terminal_size(self.err)
        text = text[: max(1, columns - 1)]
        with self.lock:
            self._status = text
            self.write(self.err, ERASE_LINE + text)

    def clear_status(self) -> None:
        """Erase the status line and stop drawing it."""
        with self.lock:
            if self._status is not None:
                self._status = None
                self.write(self.err, ERASE_LINE)


class RateMeter:
    """Events per second of a growing counter, over the last ``window`` seconds."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, value: int, now: float | None = None) -> float:
        """Record the counter's value now; returns the rate over the window."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, value))
        # Keep one sample older than the window: the rate spans the whole window.
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()
        t0, v0 = samples[0]
        if now <= t0:
            return 0.0
        return (value - v0) / (now - t0)


class StatusTicker:
    """Redraws a status line about four times a second on a daemon thread."""

    def __init__(self, console: Console, text: Callable[[], str], interval: float = 0.25) -> None:
        self.console = console
        self.text = text
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wspool-status", daemon=True)

    def start(self) -> StatusTicker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.console.set_status(self.text())
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop redrawing and erase the line (before a summary or the shell prompt)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self.console.clear_status()


def human_bytes(value: float) -> str:
    """``1.2k``, ``3.4M``: a byte count or rate in four or five characters."""
    if abs(value) < 1000:
        return f"{value:.0f}"
    for unit in ("k", "M"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.1f}{unit}"
    return f"{value / 1000:.1f}G"
