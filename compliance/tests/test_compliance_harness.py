"""Tests of the compliance harness itself: report parsing, the echo loop, the server process.

Run with ``python -m pytest compliance/tests``.  The server test needs the Python 2.7
testsuite installed by ``compliance/run.py`` and is skipped without it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

import agents  # noqa: E402
import env27  # noqa: E402
import fuzzserver  # noqa: E402
import report  # noqa: E402

# ---------------------------------------------------------------------------- report


def _write_reports(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    index = {
        "wspool": {
            "1.1.1": {"behavior": "OK", "behaviorClose": "OK", "duration": 2},
            "9.1.6": {"behavior": "OK", "behaviorClose": "OK", "duration": 1500},
            "9.10.1": {"behavior": "INFORMATIONAL", "behaviorClose": "INFORMATIONAL"},
            "6.4.1": {
                "behavior": "NON-STRICT",
                "behaviorClose": "OK",
                "duration": 2000,
                "remoteCloseCode": 1007,
                "reportfile": "wspool_case_6_4_1.json",
            },
            "7.9.1": {
                "behavior": "OK",
                "behaviorClose": "WRONG CODE",
                "duration": 1,
                "remoteCloseCode": 1000,
                "reportfile": "wspool_case_7_9_1.json",
            },
        },
        "other-agent": {"1.1.1": {"behavior": "FAILED", "behaviorClose": "FAILED"}},
    }
    (outdir / "index.json").write_text(json.dumps(index))
    (outdir / "wspool_case_6_4_1.json").write_text(
        json.dumps({"description": "Fail fast on invalid UTF-8 | frames", "result": "late"})
    )
    (outdir / "wspool_case_7_9_1.json").write_text(
        json.dumps({"description": "Invalid close code 0", "expected": {"OK": []}})
    )


def test_case_ids_sort_numerically() -> None:
    ids = ["9.10.1", "9.2.1", "10.1.1", "1.1.10", "1.1.2"]
    assert sorted(ids, key=report.case_key) == ["1.1.2", "1.1.10", "9.2.1", "9.10.1", "10.1.1"]


def test_summary_counts_and_target(tmp_path: Path) -> None:
    _write_reports(tmp_path)
    results = report.load_results(tmp_path, "wspool")
    assert [r.id for r in results] == ["1.1.1", "6.4.1", "7.9.1", "9.1.6", "9.10.1"]
    summary = report.summarize(results)
    assert summary.total == 5
    assert summary.behaviors == {"OK": 3, "NON-STRICT": 1, "INFORMATIONAL": 1}
    assert summary.close_behaviors["WRONG CODE"] == 1
    assert summary.sections["9"] == {"OK": 1, "INFORMATIONAL": 1}
    # NON-STRICT misses the target; so does an OK case whose close behavior is wrong.
    assert [c.id for c in summary.failing] == ["6.4.1", "7.9.1"]
    assert summary.failing[0].description.startswith("Fail fast")
    assert summary.durations_ms == {"9.1.6": 1500}
    assert not summary.passed


def test_all_ok_or_informational_meets_target(tmp_path: Path) -> None:
    _write_reports(tmp_path)
    results = [r for r in report.load_results(tmp_path, "wspool") if r.passes]
    assert report.summarize(results).passed
    assert not report.summarize([]).passed  # no case run is no evidence


def test_markdown_lists_every_miss(tmp_path: Path) -> None:
    _write_reports(tmp_path)
    summary = report.summarize(report.load_results(tmp_path, "wspool"))
    text = report.render_markdown(
        summary, {"Command": "`x`"}, {"7.9.1": "client error: bad close code"}
    )
    assert "### 6.4.1: NON-STRICT / close OK" in text
    assert "Fail fast on invalid UTF-8 \\| frames" in text  # table-safe pipe
    assert "- Client saw: client error: bad close code" in text
    assert "| 9.1.6 | 1500 |" in text
    assert "| 9.3.1 | not run |" in text
    assert "| 6.x | 0 | 1 | 0 | 0 | 0 |" in text


def test_descriptions_lose_their_html() -> None:
    raw = "Send <b>RSV = 2</b>,<br><br>MESSAGE PARTS:<br>\nPART1 = ce"
    assert report.plain(raw) == "Send RSV = 2, MESSAGE PARTS: PART1 = ce"


def test_missing_index_says_what_happened(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="updateReports"):
        report.load_results(tmp_path, "wspool")


# ------------------------------------------------------------------------- echo loop


class _ScriptedConnection:
    """Plays a fixed list of received frames; records what the loop sends back."""

    def __init__(self, script: list[tuple[int, bytes] | BaseException]) -> None:
        self.script = script
        self.sent: list[tuple[bytes, int]] = []
        self.closed = False

    def recv_data(self) -> tuple[int, bytes]:
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def send(self, data: bytes, opcode: int) -> object:
        self.sent.append((data, opcode))
        return len(data)

    def close(self) -> object:
        self.closed = True
        return None


class _LibraryError(Exception):
    pass


def _client(conn: _ScriptedConnection) -> agents.Client:
    return agents.Client("test", "0", lambda url: conn, (_LibraryError,))


def test_echo_loop_echoes_with_same_opcode_until_close() -> None:
    """Autobahn's echo convention: text stays text (opcode 1), binary stays binary (2)."""
    conn = _ScriptedConnection([(1, b"hi"), (2, b"\x00\xff"), (8, b"\x03\xe8bye")])
    outcome = agents.run_case(_client(conn), "ws://127.0.0.1:1/runCase")
    assert conn.sent == [(b"hi", 1), (b"\x00\xff", 2)]
    assert outcome == agents.Outcome(agents.OutcomeKind.SERVER_CLOSE, 2, "code 1000 'bye'")
    assert conn.closed


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_LibraryError("invalid UTF-8"), agents.OutcomeKind.CLIENT_ERROR),
        (ConnectionResetError("reset"), agents.OutcomeKind.SOCKET_ERROR),
        (AttributeError("bug"), agents.OutcomeKind.UNEXPECTED),
    ],
)
def test_echo_loop_classifies_how_a_case_ended(error: Exception, kind: agents.OutcomeKind) -> None:
    conn = _ScriptedConnection([(1, b"a"), error])
    outcome = agents.run_case(_client(conn), "ws://127.0.0.1:1/runCase")
    assert outcome.kind is kind
    assert outcome.messages == 1
    assert conn.closed


# ------------------------------------------------------- the pool client (wspool-pool)


class _CallbackError(_LibraryError):
    """Stands for wspool.CallbackError: a callback raised, ``original`` says what."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"on_message raised {original!r}")
        self.original = original


class _FakePoolConnection:
    """Plays a script through the callbacks Pool.connect was given, when waited on."""

    def __init__(self, callbacks: dict[str, object], script: list[tuple[object, ...]]) -> None:
        self.callbacks = callbacks
        self.script = script
        self.sent: list[str | bytes] = []
        self.open = True
        self.aborted = False

    def send(self, data: str | bytes) -> int:
        if not self.open:
            raise _LibraryError("Connection is already closed.")
        self.sent.append(data)
        return len(data)

    def wait_closed(self, timeout: float | None = None) -> bool:
        for step in self.script:
            kind, *args = step
            if kind == "hang":
                return self.aborted  # never closes until aborted
            if kind == "message":
                # As the pool does: a callback's exception goes to on_error, wrapped.
                try:
                    self.callbacks["on_message"](self, *args)  # type: ignore[operator]
                except Exception as exc:
                    self.callbacks["on_error"](self, _CallbackError(exc))  # type: ignore[operator]
            elif kind == "lost":
                self.open = False
            else:
                self.callbacks[f"on_{kind}"](self, *args)  # type: ignore[operator]
        self.script = []
        return True

    def abort(self) -> None:
        self.aborted = True
        self.callbacks["on_close"](self, 1006, "aborted")  # type: ignore[operator]


class _FakePool:
    def __init__(self, script: list[tuple[object, ...]], fail: BaseException | None = None) -> None:
        self.script = script
        self.fail = fail
        self.options: dict[str, object] = {}
        self.conn: _FakePoolConnection | None = None

    def connect(self, url: str, **options: object) -> _FakePoolConnection:
        if self.fail is not None:
            raise self.fail
        self.options = options
        self.conn = _FakePoolConnection(options, self.script)
        return self.conn


def _pool_case(pool: _FakePool, timeout: float = 5.0) -> agents.Outcome:
    return agents.run_pool_case(
        pool,
        "ws://127.0.0.1:1/runCase",
        case_timeout=timeout,
        error_types=(_LibraryError,),
        callback_error=_CallbackError,
        max_size=None,
        timeout=timeout,
    )


def test_pool_case_echoes_with_the_message_type_until_closed() -> None:
    """str goes back as str (text), bytes as bytes (binary): conn.send picks the opcode."""
    pool = _FakePool([("message", "hi"), ("message", b"\x00\xff"), ("close", 1000, "bye")])
    outcome = _pool_case(pool)
    assert pool.conn is not None and pool.conn.sent == ["hi", b"\x00\xff"]
    assert outcome == agents.Outcome(agents.OutcomeKind.SERVER_CLOSE, 2, "code 1000 'bye'")
    # The options of the blocking client, and the callbacks the case needs.
    assert pool.options["max_size"] is None and pool.options["timeout"] == 5.0
    assert {"on_message", "on_error", "on_close"} <= set(pool.options)


def test_pool_case_reports_the_error_that_failed_the_connection() -> None:
    """A protocol violation after a message whose echo lost the race to the failure
    (the known NON-STRICT shape of 3.2, 4.1.3, ...): both show in the detail."""
    pool = _FakePool(
        [
            ("lost",),
            ("message", "Hello"),
            ("error", _LibraryError("reserved opcode 0x5")),
            ("close", 1002, "reserved opcode 0x5"),
        ]
    )
    outcome = _pool_case(pool)
    assert outcome.kind is agents.OutcomeKind.CLIENT_ERROR
    assert outcome.messages == 1
    assert outcome.detail == (
        "_LibraryError: reserved opcode 0x5; echo failed: _LibraryError: Connection is "
        "already closed.; on_close code 1002 'reserved opcode 0x5'"
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionResetError("reset"), agents.OutcomeKind.SOCKET_ERROR),
        (AttributeError("bug"), agents.OutcomeKind.UNEXPECTED),
    ],
)
def test_pool_case_classifies_errors(error: Exception, kind: agents.OutcomeKind) -> None:
    outcome = _pool_case(_FakePool([("error", error), ("close", 1006, "")]))
    assert outcome.kind is kind
    assert str(error) in outcome.detail.strip().splitlines()[-1]


def test_pool_case_an_echo_that_fails_oddly_is_unexpected() -> None:
    """An echo that raises the library's own error (a close raced it) is only noted;
    one that raises anything else is a bug."""
    pool = _FakePool([("lost",), ("message", "a"), ("close", 1000, "")])
    outcome = _pool_case(pool)
    assert outcome.kind is agents.OutcomeKind.SERVER_CLOSE  # closed: the library's error
    assert "echo failed: _LibraryError" in outcome.detail

    class _BrokenConnection(_FakePoolConnection):
        def send(self, data: str | bytes) -> int:
            raise TypeError("send is broken")

    broken = _FakePool([("message", "a"), ("close", 1000, "")])
    broken.connect = lambda url, **options: _BrokenConnection(options, broken.script)  # type: ignore[method-assign]
    outcome = _pool_case(broken)
    assert outcome.kind is agents.OutcomeKind.UNEXPECTED
    assert outcome.detail.strip().splitlines()[-1] == "TypeError: send is broken"


def test_pool_case_that_never_closes_is_aborted_after_the_timeout() -> None:
    pool = _FakePool([("message", "a"), ("hang",)])
    outcome = _pool_case(pool, timeout=0.5)
    assert pool.conn is not None and pool.conn.aborted
    assert outcome.kind is agents.OutcomeKind.TIMEOUT
    assert outcome.detail == "not closed within 0.5 s, aborted; on_close code 1006 'aborted'"


def test_pool_case_without_on_close_is_a_pool_bug() -> None:
    outcome = _pool_case(_FakePool([("message", "a")]))
    assert outcome == agents.Outcome(agents.OutcomeKind.UNEXPECTED, 1, "closed without on_close")


def test_pool_case_connect_errors() -> None:
    outcome = _pool_case(_FakePool([], fail=_LibraryError("bad option")))
    assert outcome == agents.Outcome(
        agents.OutcomeKind.CLIENT_ERROR, 0, "connect: _LibraryError: bad option"
    )


def test_run_case_hands_the_case_to_the_clients_runner() -> None:
    seen: list[str] = []

    def runner(url: str) -> agents.Outcome:
        seen.append(url)
        if len(seen) > 1:
            raise KeyError("runner bug")
        return agents.Outcome(agents.OutcomeKind.SERVER_CLOSE, 3, "code 1000")

    def no_blocking_connect(url: str) -> agents.Connection:
        raise AssertionError("a client with a case_runner is not driven by the echo loop")

    client = agents.Client("test", "0", no_blocking_connect, (_LibraryError,), case_runner=runner)
    assert agents.run_case(client, "ws://x/runCase?case=1").messages == 3
    failed = agents.run_case(client, "ws://x/runCase?case=2")
    assert failed.kind is agents.OutcomeKind.UNEXPECTED and "runner bug" in failed.detail
    assert seen == ["ws://x/runCase?case=1", "ws://x/runCase?case=2"]


def _accept_key(key: str) -> str:
    import hashlib

    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def _read_client_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One masked client frame (RFC 6455 §5.2), short payloads only (< 126 bytes)."""
    while len(buf) < 6 or len(buf) < 6 + (buf[1] & 0x7F):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
    opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
    assert buf[1] & 0x80 and length < 126
    mask, payload = bytes(buf[2:6]), bytes(buf[6 : 6 + length])
    del buf[: 6 + length]
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _echo_test_server(listener: socket.socket, echoed: list[tuple[int, bytes]]) -> None:
    """Autobahn's shape in miniature: two messages, read their echoes, then close."""
    sock, _ = listener.accept()
    with sock:
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        request, rest = head.split(b"\r\n\r\n", 1)
        headers = dict(
            line.split(": ", 1) for line in request.decode().split("\r\n")[1:] if ": " in line
        )
        key = {k.lower(): v for k, v in headers.items()}["sec-websocket-key"]
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + _accept_key(key).encode()
            + b"\r\n\r\n"
        )
        # No extension accepted: the client's permessage-deflate offer is declined.
        sock.sendall(b"\x81\x02hi" + b"\x82\x02\x00\xff")
        buf = bytearray(rest)
        echoed.append(_read_client_frame(sock, buf))
        echoed.append(_read_client_frame(sock, buf))
        sock.sendall(b"\x88\x05\x03\xe8bye")
        echoed.append(_read_client_frame(sock, buf))  # the client's close reply


def test_wspool_pool_client_runs_a_case_on_a_real_pool() -> None:
    """The real thing, in miniature and without Autobahn: a Pool connection echoes text
    as text and binary as binary, replies to the close, and the case ends on on_close."""
    import threading

    client = agents.load_client("wspool-pool", 10.0)
    assert client.agent == "wspool-pool"  # the name the reports are filed under
    listener = socket.create_server(("127.0.0.1", 0))
    echoed: list[tuple[int, bytes]] = []
    server = threading.Thread(target=_echo_test_server, args=(listener, echoed), daemon=True)
    server.start()
    try:
        port = listener.getsockname()[1]
        outcome = agents.run_case(client, f"ws://127.0.0.1:{port}/runCase?case=1")
    finally:
        client.shutdown()
        server.join(10)
        listener.close()
    assert outcome == agents.Outcome(agents.OutcomeKind.SERVER_CLOSE, 2, "code 1000 'bye'")
    assert echoed[:2] == [(1, b"hi"), (2, b"\x00\xff")]
    assert echoed[2][0] == 8 and echoed[2][1][:2] == b"\x03\xe8"  # close 1000 echoed
    client.shutdown()  # idempotent: run.py calls it once more on some paths


# ------------------------------------------------------------------------ run.py


def test_each_client_has_its_own_report_document() -> None:
    """Another client's full run must not overwrite docs/compliance.md (wspool's)."""
    import run

    assert run.default_doc("wspool", True) == run.DEFAULT_DOC
    docs = HERE.parent / "docs"
    assert run.default_doc("wspool-pool", True) == docs / "compliance-wspool-pool.md"
    assert run.default_doc("websocket-client", True).name == "compliance-websocket-client.md"
    assert run.default_doc("wspool", False) == run.WORKDIR / "compliance.md"
    assert run.default_doc("wspool-pool", False) == run.WORKDIR / "compliance-wspool-pool.md"
    assert set(agents.CLIENTS) >= {"wspool", "wspool-pool", "websocket-client"}


def test_markdown_title_names_the_client(tmp_path: Path) -> None:
    _write_reports(tmp_path)
    summary = report.summarize(report.load_results(tmp_path, "wspool"))
    assert report.render_markdown(summary, {}, {}).startswith("# Autobahn testsuite compliance\n")
    titled = report.render_markdown(summary, {}, {}, title=report.TITLE + ": wspool-pool")
    assert titled.startswith("# Autobahn testsuite compliance: wspool-pool\n")


def test_each_front_ends_document_shows_the_others_verdict(tmp_path: Path) -> None:
    import run

    _write_reports(tmp_path)
    summary = report.summarize(report.load_results(tmp_path, "wspool"))
    metadata = {"Date": "2026-12-02 02:20 UTC", "Wall time": "660 s for 517 cases"}
    pool_doc = tmp_path / "compliance-wspool-pool.md"
    pool_doc.write_text(report.render_markdown(summary, metadata, {}))
    assert report.doc_verdict(pool_doc) == "**not met** (2 cases) (2026-12-02 02:20 UTC, 517 cases)"
    assert report.doc_verdict(tmp_path / "missing.md") is None

    line = "[compliance-wspool-pool.md](compliance-wspool-pool.md), target met"
    page = report.render_markdown(summary, {}, {}, other_runs={"The Pool's run": line})
    assert f"- **The Pool's run**: {line}\n" in page
    # Only the documents in docs/ link to each other; a subset's report does not.
    assert run.other_runs("wspool", run.WORKDIR / "compliance.md") == {}
    docs = run.DEFAULT_DOC.parent
    ((pool_label, pool_line),) = run.other_runs("wspool", run.DEFAULT_DOC).items()
    assert pool_label == "The Pool's run"
    assert pool_line.startswith("[compliance-wspool-pool.md](compliance-wspool-pool.md)")
    ((label, _),) = run.other_runs("wspool-pool", docs / "compliance-wspool-pool.md").items()
    assert label == "The blocking client's run"


# ------------------------------------------------------------------------ the server


def _installed_python27() -> str | None:
    site_dir = HERE / ".autobahn27"
    if not (site_dir / env27.STAMP_NAME).is_file():
        return None
    try:
        return env27.find_python27()
    except env27.EnvironmentError27:
        return None


def _get_case_count(port: int) -> bytes:
    """A minimal RFC 6455 §4.1 handshake and one unmasked server frame, by hand."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /getCaseCount HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) < 2:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert rest[0] == 0x81  # FIN + text (§5.2); short payload, length in byte 2
        return rest[2 : 2 + rest[1]]


def test_fuzzingserver_listens_on_loopback_and_stops(tmp_path: Path) -> None:
    python27 = _installed_python27()
    if python27 is None:
        pytest.skip("run compliance/run.py once to install the Python 2.7 testsuite")
    server = fuzzserver.FuzzingServer(
        python27, HERE / ".autobahn27", tmp_path, ["1.1.1", "2.*"], exclude=["2.1*"]
    )
    with server:
        port = int(server.url.rsplit(":", 1)[1])
        assert server.url.startswith("ws://127.0.0.1:")
        assert _get_case_count(port) == b"9"  # 1.1.1 and 2.2 ... 2.9 (2.1, 2.10, 2.11 left out)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "Fuzzing Server" in server.log_path.read_text()
