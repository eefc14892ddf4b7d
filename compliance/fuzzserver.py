"""Run the Autobahn fuzzingserver as a child process bound to 127.0.0.1.

``FuzzingServer`` is a context manager: the child is always terminated on exit, also
when the body raises (Ctrl-C included).  The child's stdout and stderr go to a log
file; the port it listens on comes back through a small file the launcher writes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["FuzzingServer", "FuzzingServerError"]

LAUNCHER = Path(__file__).resolve().with_name("fuzzingserver27.py")


class FuzzingServerError(RuntimeError):
    """The fuzzingserver did not start or died early."""


class FuzzingServer:
    """One fuzzingserver process serving ``cases`` minus ``exclude`` (patterns such as "1.*")."""

    def __init__(
        self,
        python27: str,
        site_dir: Path,
        workdir: Path,
        cases: list[str],
        exclude: list[str] | None = None,
        *,
        startup_timeout: float = 60.0,
    ) -> None:
        self.python27 = python27
        self.site_dir = site_dir
        self.workdir = workdir
        self.cases = cases
        self.exclude = exclude or []
        self.startup_timeout = startup_timeout
        self.spec_path = workdir / "fuzzingserver.json"
        self.port_path = workdir / "fuzzingserver.port"
        self.log_path = workdir / "fuzzingserver.log"
        self.outdir = workdir / "reports" / "clients"
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server and return its base URL (``ws://127.0.0.1:PORT``)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_path.unlink(missing_ok=True)
        spec = {
            # Port 0: the launcher binds an ephemeral port and reports it in port_path.
            "url": "ws://127.0.0.1:0",
            "outdir": str(self.outdir),
            "cases": self.cases,
            "exclude-cases": self.exclude,
            "exclude-agent-cases": {},
        }
        self.spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        cmd = [
            self.python27,
            "-u",
            str(LAUNCHER),
            str(self.site_dir),
            str(self.spec_path),
            str(self.port_path),
        ]
        with self.log_path.open("wb") as log:
            # A new session: Ctrl-C in the terminal reaches only us, and we stop the child
            # ourselves in stop(), after the reports were written.
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self.port_path.is_file():
            if self._proc.poll() is not None:
                raise FuzzingServerError(
                    f"the fuzzingserver exited with {self._proc.returncode} before listening; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise FuzzingServerError(
                    f"the fuzzingserver did not listen within {self.startup_timeout:.0f} s; "
                    f"see {self.log_path}"
                )
            time.sleep(0.05)
        port = int(self.port_path.read_text().strip())
        self.url = f"ws://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> FuzzingServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
