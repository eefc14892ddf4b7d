"""The ``wspool`` command line in a pseudo-terminal, as a person sees it: the live
status line, ``wspool top``'s full-screen table and its keys, and the interactive
mode (``-i``).  The child's output is fed through a small terminal model
(:class:`Screen`), so the tests check what would be on the screen, not byte strings
that happen to contain the right words."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import ROOT, WAIT, python_env
from wsserver import Opcode, PeerClosed, ServerConnection, WSServer, parse_close_payload

WSServerFactory = Callable[..., WSServer]

_CSI = re.compile(r"\x1b\[(\??)([\d;]*)([A-Za-z])")


class Screen:
    """Enough of a VT100 for wspool's output: printable text, CR, LF, erase to the end
    of the line (``ESC[K``), erase below (``ESC[J``), cursor home (``ESC[H``) and the
    alternate screen (``ESC[?1049h``/``l``).  Anything else is a test failure, so an
    unexpected sequence cannot hide in the output."""

    def __init__(self) -> None:
        self.main: list[str] = [""]
        self.alt: list[str] | None = None
        self.row = 0
        self.col = 0
        self._saved = (0, 0)

    @property
    def lines(self) -> list[str]:
        return self.alt if self.alt is not None else self.main

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                match = _CSI.match(text, i)
                assert match is not None, f"unknown escape sequence {text[i : i + 8]!r}"
                self._csi(match.group(1), match.group(2), match.group(3))
                i = match.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                while len(self.lines) <= self.row:
                    self.lines.append("")
            elif ch == "\x07" or ch == "\b":
                pass
            else:
                assert ch >= " ", f"control character {ch!r} in the output"
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + ch + line[self.col + 1 :]
                self.col += 1
            i += 1

    def _csi(self, private: str, params: str, final: str) -> None:
        lines = self.lines
        if private == "?":
            assert params in ("1049", "25") and final in "hl", (private, params, final)
            if params == "1049" and final == "h":
                self._saved = (self.row, self.col)
                self.alt, self.row, self.col = [""], 0, 0
            elif params == "1049":
                self.alt = None
                self.row, self.col = self._saved
            return
        if final == "K":
            lines[self.row] = lines[self.row][: self.col]
        elif final == "J":
            lines[self.row] = lines[self.row][: self.col]
            del lines[self.row + 1 :]
        elif final == "H":
            assert params == "", params
            self.row = self.col = 0
        elif final == "m":
            pass  # colours and reverse video: no text
        else:
            raise AssertionError(f"unexpected CSI {params}{final}")

    def text(self) -> str:
        return "\n".join(self.lines)


class Terminal:
    """``python -m wspool ARGS`` with stdin, stdout and stderr on a pseudo-terminal of
    ``rows`` x ``cols`` (stdout on a pipe instead with ``stdout_pipe``)."""

    def __init__(
        self, *args: str, rows: int = 30, cols: int = 120, stdout_pipe: bool = False
    ) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.raw = ""
        self.screen = Screen()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.child = subprocess.Popen(
            [sys.executable, "-m", "wspool", *args],
            stdin=self.slave,
            stdout=subprocess.PIPE if stdout_pipe else self.slave,
            stderr=self.slave,
            cwd=ROOT,
            env=python_env({"TERM": "xterm"}),
        )

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child is gone and the terminal is drained
            return False
        if not data:
            return False
        text = self._decoder.decode(data)
        self.raw += text
        self.screen.feed(text)
        return True

    def wait_for(self, predicate: Callable[[Screen], bool], what: str) -> None:
        """Read until ``predicate(screen)`` holds; fail, showing the screen, after WAIT."""
        deadline = time.monotonic() + WAIT
        while not predicate(self.screen):
            if time.monotonic() > deadline or not self._read(0.05):
                if predicate(self.screen):
                    return
                pytest.fail(f"{what} not on the screen:\n{self.screen.text()}\nraw: {self.raw!r}")

    def wait_text(self, text: str) -> None:
        self.wait_for(lambda screen: text in screen.text(), repr(text))

    def finish(self) -> int:
        """Wait for the child to exit, reading everything it wrote; its exit status."""
        try:
            self.child.wait(timeout=WAIT)
        finally:
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait()
        while select.select([self.master], [], [], 0)[0] and self._read(0):
            pass
        return self.child.returncode

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        if self.child.stdout is not None:
            self.child.stdout.close()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str, rows: int = 30, cols: int = 120, stdout_pipe: bool = False) -> Terminal:
        term = Terminal(*args, rows=rows, cols=cols, stdout_pipe=stdout_pipe)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def ticker(count: int | None, period: float) -> Callable[[ServerConnection], None]:
    """A handler that sends ``tick 0``, ``tick 1``, ... every ``period`` seconds (for
    good when ``count`` is None), answering the client's close whenever it comes."""

    def handler(conn: ServerConnection) -> None:
        i = 0
        deadline = time.monotonic() + 2 * WAIT
        while (count is None or i < count) and time.monotonic() < deadline:
            conn.send_message(f"tick {i}")
            i += 1
            try:
                message = conn.recv_message(timeout=period)
            except TimeoutError:
                continue
            except PeerClosed:
                return
            if message.opcode == Opcode.CLOSE:
                conn.send_close(1000)
                conn.close_tcp()
                return
        if count is not None:
            conn.close(1000)

    return handler


# ------------------------------------------------------------------ the status line


def test_status_line_never_splits_a_message_line(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    """stdout and stderr on one terminal: every message line is whole on the screen,
    the status line was drawn, and it is erased when the command ends."""
    server = ws_server(ticker(30, 0.02))
    term = terminal(server.url)
    assert term.finish() == 0, term.raw
    assert "wspool: " in term.raw and "/1 up" in term.raw and "msg/s" in term.raw
    assert term.screen.lines == [f"c1 tick {i}" for i in range(30)] + [""]


def test_status_line_with_stdout_on_a_pipe(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    server = ws_server(ticker(None, 0.02))
    term = terminal(server.url, "--count", "30", stdout_pipe=True)
    assert term.child.stdout is not None
    stdout = term.child.stdout.read().decode()
    assert term.finish() == 0, term.raw
    assert stdout.splitlines() == [f"c1 tick {i}" for i in range(30)]
    assert "1/1 up" in term.raw  # drawn on stderr while the messages went to the pipe
    assert term.screen.lines == [""]  # and erased at the end


def test_no_status_option(ws_server: WSServerFactory, terminal: Callable[..., Terminal]) -> None:
    server = ws_server(ticker(20, 0.01))
    term = terminal(server.url, "--no-status")
    assert term.finish() == 0, term.raw
    assert "msg/s" not in term.raw and "\x1b" not in term.raw
    assert term.screen.lines == [f"c1 tick {i}" for i in range(20)] + [""]


def test_ctrl_c_with_the_status_line_prints_the_summary_on_a_clean_line(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    server = ws_server(ticker(None, 0.05))
    term = terminal(server.url)
    term.wait_for(lambda s: "c1 tick 2" in s.text() and "1/1 up" in s.text(), "ticks and status")
    term.child.send_signal(signal.SIGINT)
    assert term.finish() == 130, term.raw
    summary = [line for line in term.screen.lines if line.startswith("wspool: interrupted")]
    assert len(summary) == 1 and re.fullmatch(
        r"wspool: interrupted: \d+ messages, 0 reconnects, 0 errors", summary[0]
    ), term.screen.text()
    assert not any("msg/s" in line for line in term.screen.lines)


# ------------------------------------------------------------------ wspool top


def _rows(screen: Screen) -> list[list[str]]:
    return [line.split() for line in screen.lines if re.match(r"c\d+ ", line)]


def test_top_fits_the_terminal_sorts_on_keys_and_quits(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    fast = ws_server(ticker(None, 0.01))
    slow = ws_server(ticker(None, 0.2))
    urls = [slow.url, fast.url, slow.url, slow.url]
    # 6 lines: header, column titles, 3 rows, footer.
    term = terminal("top", *urls, "--interval", "0.2", "--sort", "label", rows=6, cols=110)
    term.wait_for(
        lambda s: s.alt is not None and "4/4 open" in s.lines[0] and len(_rows(s)) == 3,
        "the table with 4 open connections",
    )
    screen = term.screen
    assert len(screen.lines) <= 6
    assert screen.lines[1].split()[:9] == [
        "LABEL",
        "STATE",
        "MSG/S",
        "BYTES/S",
        "RTT",
        "AGE",
        "RECON",
        "QUEUE",
        "ERR",
    ]
    assert [row[0] for row in _rows(screen)] == ["c1", "c2", "c3"]
    assert "1 more rows" in screen.lines[-1]
    assert all(line == line[:110] for line in screen.lines)
    # s: from label to msgs (msg/s, largest first): c2 (the fast feed) comes first.
    term.type("s")
    term.wait_for(
        lambda s: "sort: msgs" in s.lines[0] and bool(_rows(s)) and _rows(s)[0][0] == "c2",
        "c2 first when sorted by msg/s",
    )
    term.type("r")
    term.wait_for(lambda s: "sort: msgs asc" in s.lines[0], "the reversed order")
    term.type("q")
    assert term.finish() == 0, term.raw
    assert term.screen.alt is None  # back on the main screen
    assert any(line.startswith("wspool top: 4 connections, ") for line in term.screen.lines), (
        term.screen.text()
    )
    # The terminal's modes are restored: line editing and echo again.
    lflag = termios.tcgetattr(term.slave)[3]
    assert lflag & termios.ICANON and lflag & termios.ECHO


def test_top_redraws_when_the_window_is_resized(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    """--interval 30: only the resize (SIGWINCH) can redraw the table in time."""
    server = ws_server(ticker(None, 0.1))
    term = terminal("top", *[server.url] * 4, "--interval", "30", rows=6)
    term.wait_for(lambda s: s.alt is not None and len(_rows(s)) == 3, "3 rows of 4")
    assert "1 more rows (showing 3 of 4)" in term.screen.lines[-1]
    fcntl.ioctl(term.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 12, 120, 0, 0))
    term.child.send_signal(signal.SIGWINCH)
    term.wait_for(lambda s: len(_rows(s)) == 4, "all 4 rows after the resize")
    assert not any("more rows" in line for line in term.screen.lines)
    term.type("q")
    assert term.finish() == 0, term.raw


def test_top_shows_errors_in_the_footer(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    refused = f"ws://127.0.0.1:{free_port()}/x"
    term = terminal("top", refused, "--interval", "0.1")
    term.wait_for(lambda s: s.alt is not None and "last error: c1" in s.text(), "the error")
    assert "refused" in term.screen.text()
    term.child.send_signal(signal.SIGINT)
    assert term.finish() == 130, term.raw
    assert term.screen.alt is None
    assert "1 errors" in term.screen.text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ interactive


def recording_echo(closes: list[tuple[int | None, bytes]]) -> Callable[[ServerConnection], None]:
    """Echo data messages; record the client's close (code, reason) and answer it."""

    def handler(conn: ServerConnection) -> None:
        while True:
            try:
                opcode, data = conn.recv_message(timeout=WAIT)
            except PeerClosed:
                return
            if opcode == Opcode.CLOSE:
                closes.append(parse_close_payload(data))
                conn.send_close(1000)
                conn.close_tcp()
                return
            conn.send_message(data, opcode=opcode)

    return handler


def test_interactive_send_ping_binary_and_close_with_a_reason(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    closes: list[tuple[int | None, bytes]] = []
    server = ws_server(recording_echo(closes))
    term = terminal("-i", server.url)
    term.wait_text("* connected to ")
    term.type("hello there\n")
    term.wait_for(lambda s: "> hello there" in s.lines and "< hello there" in s.lines, "the echo")
    term.type("/ping abc\n")
    term.wait_for(lambda s: "> [ping] abc" in s.lines and "< [pong] abc" in s.lines, "the pong")
    term.type("/binary 00ff10\n")
    term.wait_for(lambda s: "< [binary] 00ff10" in s.lines, "the binary echo")
    term.type("//slash\n")
    term.wait_for(lambda s: "< /slash" in s.lines, "a text starting with /")
    term.type("/nope\n")
    term.wait_text("unknown command /nope")
    term.type("/close 1000 bye\n")
    assert term.finish() == 0, term.raw
    assert closes == [(1000, b"bye")]
    assert "> [close] 1000 bye" in term.screen.lines
    assert "* closed 1000" in term.screen.lines


def test_interactive_end_of_input_closes_with_a_handshake(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    closes: list[tuple[int | None, bytes]] = []
    server = ws_server(recording_echo(closes))
    term = terminal("-i", server.url)
    term.wait_text("* connected to ")
    term.type("\x04")  # Ctrl-D on an empty line: end of input
    assert term.finish() == 0, term.raw
    assert closes == [(1000, b"")]


def test_interactive_prints_what_the_server_sends_while_nobody_types(
    ws_server: WSServerFactory, terminal: Callable[..., Terminal]
) -> None:
    """Messages arrive from the pool's workers while the main thread waits for input;
    the server's close ends the session without a key pressed."""
    server = ws_server(ticker(3, 0.05))
    term = terminal("-i", server.url)
    assert term.finish() == 0, term.raw
    lines = term.screen.lines
    assert [line for line in lines if line.startswith("< ")] == ["< tick 0", "< tick 1", "< tick 2"]
    assert "* closed 1000" in lines
