"""``wspool top URL ...``: a refreshing table with one row per connection.

On a terminal (stdout) it takes the whole screen (the alternate screen, plain ANSI
sequences, no curses), fits the table to the window and reads single keys from a
terminal stdin (``s`` next sort column, ``r`` reverse, ``q`` quit).  Otherwise it
prints a plain snapshot every ``--interval`` seconds (a totals line, a header line,
one whitespace-separated row per connection, a blank line) or, with ``--jsonl``, one
JSON object per connection per interval.

Rates are differences of ``conn.stats`` counters (``messages_in``, ``bytes_in``)
between two samples; the RTT is ``stats.last_rtt`` (measured by keepalive pings, so
it needs ``--ping-interval``); the age is the time since ``stats.last_message_at``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

from wspool.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    connect_all,
    error_text,
    human_bytes,
    is_terminal,
    label_key,
    options_from_args,
    terminal_size,
)
from wspool.exceptions import WebSocketConfigurationException
from wspool.pool import Connection, ConnectionState, Pool
from wspool.protocol.trace import enableTrace

try:  # POSIX: keys are read from a terminal stdin in cbreak mode
    import termios
    import tty
except ImportError:  # pragma: no cover (Windows: the table without keys)
    termios = None  # type: ignore[assignment]
    tty = None  # type: ignore[assignment]

#: ``--sort`` values, in the order the ``s`` key cycles through them.
SORTS = ("msgs", "bytes", "rtt", "age", "reconnects", "label")

_ALT_SCREEN_ON = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_ALT_SCREEN_OFF = "\x1b[?25h\x1b[?1049l"
_HOME = "\x1b[H"
_ERASE_REST = "\x1b[K"
_ERASE_BELOW = "\x1b[J"
_REVERSE = "\x1b[7m"
_NORMAL = "\x1b[0m"


@dataclass(slots=True)
class Row:
    """One connection at one sample."""

    label: str
    url: str
    state: str
    msg_rate: float
    byte_rate: float
    rtt: float | None  # seconds
    age: float | None  # seconds since the last message
    reconnects: int
    queue: int
    messages: int
    bytes: int
    errors: int

    def sort_value(self, sort: str) -> Any:
        """Bigger is shown first (except labels, in numeric order)."""
        if sort == "msgs":
            return self.msg_rate
        if sort == "bytes":
            return self.byte_rate
        if sort == "rtt":
            return -1.0 if self.rtt is None else self.rtt
        if sort == "age":
            # No message yet is the stalest of all.
            return float("inf") if self.age is None else self.age
        if sort == "reconnects":
            return self.reconnects
        return label_key(self.label)


class Sampler:
    """Per-connection rates between two calls of :meth:`sample`."""

    def __init__(self, connections: list[Connection]) -> None:
        self.connections = connections
        self.errors: dict[str, int] = {}
        self.last_error = ""
        self.started = time.monotonic()
        self._last: dict[int, tuple[float, int, int]] = {}

    def sample(self) -> list[Row]:
        now = time.monotonic()
        wall = time.time()
        rows = []
        for conn in self.connections:
            stats = conn.stats
            messages, received = stats.messages_in, stats.bytes_in
            t0, m0, b0 = self._last.get(id(conn), (self.started, 0, 0))
            self._last[id(conn)] = (now, messages, received)
            span = now - t0
            label = str(conn.label)
            last = stats.last_message_at
            rows.append(
                Row(
                    label=label,
                    url=conn.url,
                    state=conn.state.value,
                    msg_rate=(messages - m0) / span if span > 0 else 0.0,
                    byte_rate=(received - b0) / span if span > 0 else 0.0,
                    rtt=stats.last_rtt,
                    age=None if last is None else max(0.0, wall - last),
                    reconnects=stats.reconnects,
                    queue=conn.queue_depth,
                    messages=messages,
                    bytes=received,
                    errors=self.errors.get(label, 0),
                )
            )
        return rows


def sort_rows(rows: list[Row], sort: str, reverse: bool) -> list[Row]:
    """Largest first (labels: c1, c2, ...); ``reverse`` flips it."""
    descending = sort != "label"
    return sorted(rows, key=lambda r: r.sort_value(sort), reverse=descending != reverse)


def _totals(rows: list[Row]) -> dict[str, Any]:
    return {
        "connections": len(rows),
        "open": sum(1 for r in rows if r.state == ConnectionState.OPEN.value),
        "msg_s": sum(r.msg_rate for r in rows),
        "bytes_s": sum(r.byte_rate for r in rows),
        "messages": sum(r.messages for r in rows),
        "reconnects": sum(r.reconnects for r in rows),
        "errors": sum(r.errors for r in rows),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 100 else f"{seconds / 60:.0f}m"


_COLUMNS = "{:<8} {:<12} {:>8} {:>8} {:>9} {:>7} {:>6} {:>6} {:>5}  {}"


def render_screen(
    rows: list[Row], sort: str, reverse: bool, size: tuple[int, int], last_error: str
) -> list[str]:
    """The lines of one full-screen frame, cut to ``size`` (columns, lines)."""
    columns, lines = size
    t = _totals(rows)
    arrow = "asc" if (sort == "label") != reverse else "desc"
    header = (
        f"wspool top  {t['open']}/{t['connections']} open  {t['msg_s']:.1f} msg/s  "
        f"{human_bytes(t['bytes_s'])}B/s  {t['messages']} msgs  {t['reconnects']} reconnects  "
        f"{t['errors']} errors  sort: {sort} {arrow}  [s]ort [r]everse [q]uit"
    )
    titles = _COLUMNS.format(
        "LABEL", "STATE", "MSG/S", "BYTES/S", "RTT", "AGE", "RECON", "QUEUE", "ERR", "URL"
    )
    body = [
        _COLUMNS.format(
            r.label[:8],
            r.state,
            f"{r.msg_rate:.1f}",
            human_bytes(r.byte_rate),
            _ms(r.rtt),
            _age(r.age),
            r.reconnects,
            r.queue,
            r.errors,
            r.url,
        )
        for r in sort_rows(rows, sort, reverse)
    ]
    room = max(0, lines - 3)  # header, titles, footer
    footer = ""
    if len(body) > room:
        footer = f"... {len(body) - room} more rows (showing {room} of {len(body)})"
    elif last_error:
        footer = f"last error: {last_error}"
    out = [header, _REVERSE + titles[:columns].ljust(columns) + _NORMAL]
    out += body[:room]
    out.append(footer)
    return [line if line.startswith(_REVERSE) else line[:columns] for line in out[:lines]]


def _plain_snapshot(rows: list[Row], elapsed: float, sort: str, reverse: bool) -> list[str]:
    t = _totals(rows)
    lines = [
        f"time={elapsed:.1f} connections={t['connections']} open={t['open']} "
        f"msg_s={t['msg_s']:.1f} bytes_s={t['bytes_s']:.0f} messages={t['messages']} "
        f"reconnects={t['reconnects']} errors={t['errors']}",
        "label state msg_s bytes_s rtt_ms age_s reconnects queue errors url",
    ]
    for r in sort_rows(rows, sort, reverse):
        rtt = "-" if r.rtt is None else f"{r.rtt * 1000:.1f}"
        age = "-" if r.age is None else f"{r.age:.1f}"
        lines.append(
            f"{r.label} {r.state} {r.msg_rate:.1f} {r.byte_rate:.0f} {rtt} {age} "
            f"{r.reconnects} {r.queue} {r.errors} {r.url}"
        )
    lines.append("")
    return lines


def _jsonl(rows: list[Row], elapsed: float, sort: str, reverse: bool) -> list[str]:
    return [
        json.dumps(
            {
                "time": round(elapsed, 3),
                "conn": r.label,
                "url": r.url,
                "state": r.state,
                "msg_s": round(r.msg_rate, 3),
                "bytes_s": round(r.byte_rate, 1),
                "rtt": r.rtt,
                "age": None if r.age is None else round(r.age, 3),
                "reconnects": r.reconnects,
                "queue_depth": r.queue,
                "messages_in": r.messages,
                "bytes_in": r.bytes,
                "errors": r.errors,
            }
        )
        for r in sort_rows(rows, sort, reverse)
    ]


class Top:
    """One run of ``wspool top`` over connections already made."""

    def __init__(
        self,
        args: argparse.Namespace,
        connections: list[Connection],
        sampler: Sampler,
        console: Console,
        *,
        screen: bool,
        keys_fd: int | None,
    ) -> None:
        self.args = args
        self.connections = connections
        self.sampler = sampler
        self.console = console
        self.screen = screen
        self.keys_fd = keys_fd
        self.sort: str = args.sort
        self.reverse = False
        self.rows: list[Row] = []
        self.until: float | None = None  # time.monotonic() to stop at (wspool demo)
        self.resized = threading.Event()  # set by the SIGWINCH handler

    def all_ended(self) -> bool:
        return all(c.state is ConnectionState.CLOSED for c in self.connections)

    def draw(self) -> None:
        out = self.console.out
        if self.screen:
            size = terminal_size(out)
            lines = render_screen(self.rows, self.sort, self.reverse, size, self.sampler.last_error)
            frame = _HOME + "".join(line + _ERASE_REST + "\r\n" for line in lines[:-1])
            frame += lines[-1] + _ERASE_REST + _ERASE_BELOW if lines else _ERASE_BELOW
            with self.console.lock:
                self.console.write(out, frame)
            return
        elapsed = time.monotonic() - self.sampler.started
        make = _jsonl if self.args.jsonl else _plain_snapshot
        with self.console.lock:
            for line in make(self.rows, elapsed, self.sort, self.reverse):
                self.console.print(line)

    def key(self, char: str) -> bool:
        """Act on one key; ``False`` to quit."""
        if char in ("q", "Q"):
            return False
        if char == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        elif char == "S":
            self.sort = SORTS[(SORTS.index(self.sort) - 1) % len(SORTS)]
        elif char == "r":
            self.reverse = not self.reverse
        return True

    def loop(self, gone: threading.Event) -> int:
        """Sample and draw every interval until ``q``, ``-n`` frames, or (not on a
        screen) every connection ended; returns the exit status.

        On a screen the first frame comes at once; on a pipe after one interval, so
        even the first snapshot (``-n 1``) has rates to show.
        """
        frames = 0
        if not self.screen and not self._wait(gone):
            return EXIT_OK
        while True:
            self.rows = self.sampler.sample()
            self.draw()
            frames += 1
            if self.args.iterations is not None and frames >= self.args.iterations:
                return EXIT_ERROR if self.sampler.errors else EXIT_OK
            if not self.screen and self.all_ended():
                return EXIT_ERROR if self.sampler.errors else EXIT_OK
            if not self._wait(gone):
                return EXIT_OK

    def _wait(self, gone: threading.Event) -> bool:
        """Wait one interval, acting on keys; ``False`` to stop (``q``, the time of
        ``wspool demo`` is up, stdout's reader went away)."""
        deadline = time.monotonic() + self.args.interval
        if self.until is not None:
            if time.monotonic() >= self.until:
                return False
            deadline = min(deadline, self.until)
        while (remaining := deadline - time.monotonic()) > 0:
            if gone.is_set():
                return False
            if self.resized.is_set():
                self.resized.clear()
                self.draw()
            if self.keys_fd is None:
                time.sleep(min(remaining, 0.2))
                continue
            ready, _, _ = select.select([self.keys_fd], [], [], min(remaining, 0.2))
            if not ready:
                continue
            data = os.read(self.keys_fd, 64)
            if not data:
                self.keys_fd = None  # stdin closed: no more keys
                continue
            for char in data.decode("utf-8", "replace"):
                if not self.key(char):
                    return False
            self.draw()  # a new order at once, with the rates of the last sample
        return True


def top_callbacks(
    args: argparse.Namespace, console: Console, sampler: Sampler, *, screen: bool
) -> dict[str, Any]:
    """``on_open`` (sends ``--send``) and ``on_error`` (counted per connection; a line
    on stderr unless the table is on the screen, where it shows as the last line)."""

    def on_open(conn: Connection) -> None:
        for text in args.send:
            conn.send_text(text)

    def on_error(conn: Connection, error: BaseException) -> None:
        text = f"{conn.label} {conn.url}: {error_text(error, conn.url)}"
        with console.lock:
            sampler.errors[str(conn.label)] = sampler.errors.get(str(conn.label), 0) + 1
            sampler.last_error = text
            if not screen:
                console.error(f"wspool: {text}")
                if args.debug:
                    console.error("".join(traceback.format_exception(error)).rstrip("\n"))

    return {"on_open": on_open, "on_error": on_error}


def show(
    args: argparse.Namespace,
    connections: list[Connection],
    sampler: Sampler,
    console: Console,
    gone: threading.Event,
    *,
    screen: bool,
    until: float | None = None,
) -> tuple[int, list[Row]]:
    """Run the table until it ends (see :meth:`Top.loop`); restores the terminal
    whatever happens (Ctrl-C included).  Returns the status and the last rows."""
    out = console.out
    keys_fd: int | None = None
    saved: list[Any] | None = None
    if screen and termios is not None and is_terminal(sys.stdin):
        keys_fd = sys.stdin.fileno()
        saved = termios.tcgetattr(keys_fd)
        tty.setcbreak(keys_fd)  # keys one by one, no echo; Ctrl-C still interrupts
    top = Top(args, connections, sampler, console, screen=screen, keys_fd=keys_fd)
    top.until = until
    old_winch: Any = None
    winch = getattr(signal, "SIGWINCH", None)
    try:
        if screen:
            with console.lock:
                console.write(out, _ALT_SCREEN_ON)
            if winch is not None and threading.current_thread() is threading.main_thread():
                # A resized window is redrawn within a fifth of a second (_wait).
                old_winch = signal.signal(winch, lambda _n, _f: top.resized.set())
        status = top.loop(gone)
    finally:
        if old_winch is not None and winch is not None:
            signal.signal(winch, old_winch)
        if screen:
            with console.lock:
                console.write(out, _ALT_SCREEN_OFF)
        if saved is not None and keys_fd is not None:
            termios.tcsetattr(keys_fd, termios.TCSADRAIN, saved)
    return status, top.rows


def run_top(args: argparse.Namespace, urls: list[str], out: TextIO, err: TextIO) -> int:
    """``wspool top``; returns the exit status."""
    if args.interval <= 0:
        print(f"wspool: error: --interval must be > 0, not {args.interval}", file=err)
        return EXIT_USAGE
    screen = is_terminal(out)
    if args.debug and not screen:
        enableTrace(True)
    pool = Pool()
    gone = threading.Event()
    console = Console(out, err, on_gone=gone.set)
    sampler = Sampler([])
    try:
        connections = connect_all(
            pool,
            urls,
            options_from_args(args),
            **top_callbacks(args, console, sampler, screen=screen),
        )
    except WebSocketConfigurationException as exc:
        pool.close()
        print(f"wspool: error: {exc}", file=err)
        return EXIT_USAGE
    sampler.connections = connections
    rows: list[Row] = []
    try:
        status, rows = show(args, connections, sampler, console, gone, screen=screen)
        pool.close()
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):
            pool.close()
        status = EXIT_INTERRUPTED
    t = _totals(rows or sampler.sample())
    last = f"; last error: {sampler.last_error}" if sampler.last_error and screen else ""
    console.error(
        f"wspool top: {t['connections']} connections, {t['messages']} messages, "
        f"{t['reconnects']} reconnects, {t['errors']} errors{last}"
    )
    return status
