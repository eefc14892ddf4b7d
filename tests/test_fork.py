"""os.fork() in a program with a live Pool (docs/reliability.md, "fork").

The child gets the Pool object but none of its threads.  The documented behaviour:
the child can use wspool as usual (wspool.connect, a new Pool); the inherited pool
refuses new connections with a message saying to create a new Pool, and closing it
(explicitly or at the child's exit) sends nothing on the parent's sockets and waits
for nothing.  The parent's connections carry on untouched.  Run in a subprocess:
forking the test runner itself, with its threads, is not what is being tested.
"""

from __future__ import annotations

from helpers import run_python

_SCRIPT = r"""
import os, sys, threading, time
from wsserver import WSServer, echo_handler
import wspool

server = WSServer(echo_handler).start()
got = []
parent_open = threading.Event()
pool = wspool.Pool(workers=2)
conn = pool.connect(server.url, on_open=lambda c: parent_open.set(),
                    on_message=lambda c, m: got.append(m))
assert parent_open.wait(5)
pid = os.fork()
if pid == 0:
    ws = wspool.connect(server.url, timeout=5)
    ws.send("child blocking")
    print("child blocking:", ws.recv(), flush=True)
    ws.close()
    with wspool.Pool(workers=1) as fresh:
        done = threading.Event()
        answer = []
        fresh.connect(server.url, on_open=lambda c: c.send("child pool"),
                      on_message=lambda c, m: (answer.append(m), done.set()))
        print("child pool:", done.wait(5), answer, flush=True)
    try:
        pool.connect(server.url)
    except wspool.WebSocketConfigurationException as exc:
        print("inherited connect refused:", "new Pool" in str(exc), flush=True)
    started = time.monotonic()
    pool.close()
    print("inherited close fast:", time.monotonic() - started < 0.5, flush=True)
    sys.exit(0)  # runs the exit hooks, which skip the inherited pool
_, status = os.waitpid(pid, 0)
conn.send("parent after fork")
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print("parent:", got, os.waitstatus_to_exitcode(status), flush=True)
pool.close()
server.stop()
"""


def test_fork_leaves_the_child_usable_and_the_parent_untouched() -> None:
    result = run_python(_SCRIPT, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "child blocking: child blocking",
        "child pool: True ['child pool']",
        "inherited connect refused: True",
        "inherited close fast: True",
        "parent: ['parent after fork'] 0",
    ], result.stdout + result.stderr
