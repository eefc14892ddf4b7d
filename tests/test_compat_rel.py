"""websocket-client 1.9's documented snippets on rel, run under ``import wspool as
websocket``: the README's "Long-lived Connection", examples/rel_client.py and
examples.rst's "Dispatching Multiple WebSocketApps".  rel installs a SIGINT handler and
keeps global state, so each snippet runs in a Python process of its own (as the
scripts they are), with the real rel and with a stand-in of rel's shape
(compat_support), and is ended as the docs say: Ctrl-C, that is SIGINT, which the
snippet's rel.signal(2, rel.abort) turns into the end of rel.dispatch().  The checklist
of every doc section is at the top of test_websocket_client_compat.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from compat_support import Child, WSServerFactory, standin_rel, websocket_client_state
from helpers import ROOT
from wsserver import ServerConnection, WSServer, echo_handler

__all__ = ["standin_rel", "websocket_client_state"]  # fixtures, from compat_support


@pytest.fixture(params=["rel", "stand-in"])
def rel_path(request: pytest.FixtureRequest) -> tuple[Path, ...]:
    """The child's sys.path for ``import rel``: the real rel (installed), or the
    stand-in of compat_support ahead of it."""
    if request.param == "rel":
        pytest.importorskip("rel")
        return (ROOT,)
    standin: Path = request.getfixturevalue("standin_rel")
    return (standin, ROOT)


def _market_data(conn: ServerConnection) -> None:
    """Like the docs' market data feeds: an update naming the path, then silence (and
    the closing handshake when the client leaves)."""
    conn.send_message(f"update for {conn.request.path}")
    echo_handler(conn)


_README_LONG_LIVED = """
    import sys

    import wspool as websocket
    import _thread
    import time
    import rel

    def on_message(ws, message):
        print(message)

    def on_error(ws, error):
        print(error)

    def on_close(ws, close_status_code, close_msg):
        print("### closed ###")

    def on_open(ws):
        print("Opened connection")

    if __name__ == "__main__":
        websocket.enableTrace(True)
        ws = websocket.WebSocketApp(sys.argv[1] + "/v1/marketdata/BTCUSD",
                                  on_open=on_open,
                                  on_message=on_message,
                                  on_error=on_error,
                                  on_close=on_close)

        # Set dispatcher to automatic reconnection, 5 second reconnect delay if connection
        # closed unexpectedly
        ws.run_forever(dispatcher=rel, reconnect=5)
        rel.signal(2, rel.abort)  # Keyboard Interrupt
        rel.dispatch()
        print("dispatch returned")
"""


def test_readme_long_lived_connection(
    ws_server: WSServerFactory, rel_path: tuple[Path, ...]
) -> None:
    """README "Long-lived Connection": run_forever(dispatcher=rel, reconnect=5) returns
    at once, rel.signal(2, rel.abort) and rel.dispatch() run the loop; the callbacks
    print; Ctrl-C (SIGINT) aborts the loop and the script ends normally.  Changed: the
    URL (argv), and a last print after dispatch()."""
    server = ws_server(_market_data)
    with Child(_README_LONG_LIVED, server.url, pythonpath=rel_path) as child:
        child.wait_for("update for /v1/marketdata/BTCUSD")
        status = child.interrupt()
        out, err = child.out, child.err
    assert status == 0, f"exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert lines[:2] == ["Opened connection", "update for /v1/marketdata/BTCUSD"], out
    assert "dispatch returned" in lines
    assert "Traceback" not in err, err
    assert "GET /v1/marketdata/BTCUSD HTTP/1.1" in err  # enableTrace(True) -> stderr
    assert server.accepted == 1


_REL_CLIENT = """
    import sys

    import rel

    import wspool as websocket

    addr = sys.argv[1] + "/v1/marketdata/%s"

    if __name__ == "__main__":
        for symbol in ["BTCUSD", "ETHUSD", "ETHBTC"]:
            ws = websocket.WebSocketApp(addr % (symbol,), on_message=lambda w, m: print(m))
            ws.run_forever(dispatcher=rel{reconnect})
        rel.signal(2, rel.abort)  # Keyboard Interrupt
        rel.dispatch()
"""


def _three_feeds_on_one_loop(server: WSServer, rel_path: tuple[Path, ...], reconnect: str) -> None:
    code = _REL_CLIENT.replace("{reconnect}", reconnect)
    with Child(code, server.url, pythonpath=rel_path) as child:
        for symbol in ["BTCUSD", "ETHUSD", "ETHBTC"]:
            child.wait_for(f"update for /v1/marketdata/{symbol}")
        status = child.interrupt()
        out, err = child.out, child.err
    assert status == 0, f"exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    # Each once.  Not line by line: the three apps' callbacks run on the pool's workers
    # in parallel (websocket-client runs them all on rel's thread), so two print()s
    # may interleave their text and newline writes.
    assert out.count("update for ") == 3, out
    assert "Traceback" not in err, err
    assert sorted(r.path for r in server.requests) == [
        "/v1/marketdata/BTCUSD",
        "/v1/marketdata/ETHBTC",
        "/v1/marketdata/ETHUSD",
    ]


def test_example_rel_client(ws_server: WSServerFactory, rel_path: tuple[Path, ...]) -> None:
    """examples/rel_client.py: three apps on one rel loop, Ctrl-C ends it.  Changed:
    the URL (argv)."""
    _three_feeds_on_one_loop(ws_server(_market_data), rel_path, reconnect="")


def test_dispatching_multiple_websocketapps(
    ws_server: WSServerFactory, rel_path: tuple[Path, ...]
) -> None:
    """examples.rst "Dispatching Multiple WebSocketApps": the same with reconnect=3."""
    _three_feeds_on_one_loop(ws_server(_market_data), rel_path, reconnect=", reconnect=3")
