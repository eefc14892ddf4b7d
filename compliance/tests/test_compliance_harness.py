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
