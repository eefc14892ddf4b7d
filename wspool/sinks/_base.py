"""The engine-independent part of a sink: records, the bounded buffer, the sender thread.

A sink turns every message handed to :meth:`Sink.on_message` into a :class:`Record`
(label, per-label sequence, receive time, data, dedupe id), keeps it in a bounded
buffer and lets one sender thread write batches to the engine.  The buffer counts the
batch being written too, so at most ``buffer`` records are held in memory.  A full
buffer blocks the caller: on a Pool worker that stops the connection's callbacks,
and the Pool's own backpressure then pauses reading its socket (docs/architecture.md,
invariant 4).  Nothing is dropped: a record leaves the buffer only once the engine
confirmed it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, urlsplit

from wspool.exceptions import WebSocketException
from wspool.pool.backoff import ReconnectPolicy

__all__ = ["EngineConnection", "Record", "Sink", "SinkClosedError", "SinkError", "redacted_url"]

log = logging.getLogger("wspool")

#: The default reconnect schedule of a sink's engine connection.
DEFAULT_RECONNECT = ReconnectPolicy(initial_delay=0.1, factor=2.0, max_delay=5.0)


#: Bytes asked of the socket per read by an engine client.
READ_SIZE = 256 * 1024


class EngineConnection:
    """The socket part both engine clients share: one blocking TCP connection
    (TCP_NODELAY), whole writes, and a read buffer (``_buf`` from ``_pos``) that the
    client's own parser consumes.  Every failure is an OSError naming ``url``
    (already redacted), which the sink's sender treats as "reconnect"."""

    def __init__(self, host: str, port: int, url: str, timeout: float) -> None:
        self.url = url
        self._buf = bytearray()
        self._pos = 0
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise OSError(f"cannot connect to {url}: {exc}") from exc
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._sock.close()
            raise

    def close(self) -> None:
        """Closes the socket."""
        self._sock.close()

    def _write_now(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise OSError(f"lost the connection to {self.url} while writing: {exc}") from exc

    def _fill(self) -> None:
        """Read once more into the buffer; what was consumed (before ``_pos``) goes."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        try:
            chunk = self._sock.recv(READ_SIZE)
        except OSError as exc:
            raise OSError(f"lost the connection to {self.url} while reading: {exc}") from exc
        if not chunk:
            raise OSError(f"{self.url} closed the connection")
        self._buf += chunk


class SinkError(WebSocketException):
    """An engine refused a record or could not be reached; the message names its URL.

    A WebSocketException like everything wspool raises, though no WebSocket is
    involved: ``except wspool.WebSocketException`` still catches all of wspool."""


class SinkClosedError(SinkError):
    """A record was handed to a sink that is closed (or stopped while it waited)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One message on its way to an engine.

    ``label`` names the connection (``str(conn.label)``, or its URL without a label),
    ``seq`` counts the records of that label from 1, ``ts`` is the receive time
    (``time.time()``), ``data`` the message as delivered (``str`` for text, ``bytes``
    for binary) and ``id`` the dedupe id (the sink's ``key`` function, else
    ``"<label>:<seq>"``).
    """

    label: str
    seq: int
    ts: float
    data: str | bytes
    id: str

    @property
    def type(self) -> str:
        """``"text"`` or ``"binary"``."""
        return "text" if isinstance(self.data, str) else "binary"

    @property
    def payload(self) -> bytes:
        """The data as bytes (text encoded as UTF-8)."""
        return self.data.encode("utf-8") if isinstance(self.data, str) else self.data


def redacted_url(parts: SplitResult) -> str:
    """The URL without its password, for messages and logs."""
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.password is not None and parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    elif parts.password is not None or parts.username:
        # A lone user part may be a token (nats://TOKEN@host): hidden too.
        netloc = f"***@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    return value


class Sink:
    """The base of every sink: a bounded buffer written in batches by one thread.

    Use :meth:`on_message` as a Pool ``on_message`` callback (or call :meth:`write`
    with a label of your own), then :meth:`close` to flush.  Subclasses implement
    :meth:`_connect`, :meth:`_disconnect` and :meth:`_write`.

    ``batch`` is the most records written at once, ``buffer`` the most held (waiting
    or being written; ``batch <= buffer``), ``key`` an optional function of the
    message giving its dedupe id, ``reconnect`` the backoff between attempts to reach
    the engine (a :class:`wspool.ReconnectPolicy`; ``max_attempts`` is ignored: a
    sink never gives up while it holds records), ``timeout`` the seconds one engine
    operation may take before the connection is dropped and the batch sent again.
    """

    #: The URL schemes a subclass accepts.
    schemes: tuple[str, ...] = ()

    def __init__(
        self,
        url: str,
        *,
        batch: int,
        buffer: int,
        key: Callable[[str | bytes], str] | None = None,
        reconnect: ReconnectPolicy | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in self.schemes or not parts.hostname:
            raise ValueError(
                f"{type(self).__name__} needs a {' or '.join(s + '://' for s in self.schemes)}"
                f"host:port URL, not {url!r}"
            )
        try:
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}: {exc}") from None
        self.batch = _positive_int("batch", batch)
        self.buffer = _positive_int("buffer", buffer)
        if batch > buffer:
            raise ValueError(f"batch ({batch}) must not exceed buffer ({buffer})")
        if key is not None and not callable(key):
            raise ValueError(f"key must be a function of the message or None, not {key!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self._parts = parts
        #: The engine URL with the password hidden: what messages and logs show.
        self.url = redacted_url(parts)
        self._key = key
        self._reconnect = reconnect or DEFAULT_RECONNECT
        self.timeout = float(timeout)
        # _cond guards everything below; the sender thread and writers meet on it.
        self._cond = threading.Condition()
        self._queue: deque[Record] = deque()
        self._inflight = 0  # records taken by the sender, not yet confirmed
        self._seqs: dict[str, int] = {}
        self._closing = False  # no new records; the sender drains, then exits
        self._stopped = False  # the sender gave up (close timeout) or exited
        self._counts: dict[str, float] = dict.fromkeys(
            ("records_in", "written", "batches", "retries", "reconnects", "errors"), 0
        )
        self._blocked = 0.0
        self._blocked_now = 0  # writers waiting for room
        self._connected = False
        self._last_error: str | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"wspool-sink {self.url}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ producers

    def on_message(self, conn: Any, message: str | bytes) -> None:
        """A Pool ``on_message`` callback: writes ``message`` under the connection's
        label (``str(conn.label)``, or ``conn.url`` when it has none).  Blocks while
        the buffer is full."""
        label = conn.label
        self.write(str(conn.url) if label is None else str(label), message)

    def write(self, label: str, data: str | bytes) -> Record:
        """Buffers one record for ``label`` and returns it; blocks while the buffer is
        full.  Raises :class:`SinkClosedError` once the sink is closed."""
        if not isinstance(data, str | bytes | bytearray | memoryview):
            raise TypeError(f"a sink writes str or bytes, not {type(data).__name__}")
        if not isinstance(data, str | bytes):
            data = bytes(data)
        key = self._key(data) if self._key is not None else None
        if key is not None and not isinstance(key, str):
            raise TypeError(f"the sink's key function must return str, not {key!r}")
        if key is not None:
            self._check_id(key)
        with self._cond:
            if self._closing:
                raise SinkClosedError(f"the sink to {self.url} is closed")
            if len(self._queue) + self._inflight >= self.buffer:
                began = time.monotonic()
                self._blocked_now += 1
                try:
                    while len(self._queue) + self._inflight >= self.buffer:
                        if self._stopped:
                            raise SinkClosedError(
                                f"the sink to {self.url} stopped before this record "
                                f"of {label!r} could be buffered"
                            )
                        self._cond.wait()
                finally:
                    self._blocked_now -= 1
                    self._blocked += time.monotonic() - began
            # Sequence and append under one lock hold: records of a label queue in
            # sequence order even when several threads write that label.
            seq = self._seqs.get(label, 0) + 1
            self._seqs[label] = seq
            record = Record(label, seq, time.time(), data, key or f"{label}:{seq}")
            self._queue.append(record)
            self._counts["records_in"] += 1
            self._cond.notify_all()
        return record

    def _check_id(self, key: str) -> None:
        """Refuses a dedupe id the engine cannot carry (subclasses)."""

    # ------------------------------------------------------------------ control

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every buffered record is confirmed; False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                if self._stopped:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Refuses new records, flushes the buffer (waiting at most ``timeout``
        seconds), then stops the sender and its engine connection.

        Returns True when everything was written.  Records still held after the
        timeout are not written: the error log and :meth:`stats` (``buffered``) say
        how many."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        flushed = self.flush(timeout)
        with self._cond:
            self._stopped = True
            left = len(self._queue) + self._inflight
            self._cond.notify_all()
        self._thread.join(None if timeout is None else max(timeout, self.timeout) + 1.0)
        if left:
            log.error("sink to %s closed with %d record(s) not written", self.url, left)
        return flushed and not left

    def stats(self) -> dict[str, Any]:
        """Counters: ``records_in`` (accepted), ``written`` (confirmed by the engine),
        ``batches`` (written), ``retries`` (batches sent again), ``reconnects``
        (engine connections made after the first), ``errors`` (engine failures),
        ``buffered`` (held now), ``blocked`` (writers waiting for room now),
        ``blocked_seconds`` (time writers spent waiting), ``connected`` and
        ``last_error``."""
        with self._cond:
            data: dict[str, Any] = {k: int(v) for k, v in self._counts.items()}
            data["buffered"] = len(self._queue) + self._inflight
            data["blocked"] = self._blocked_now
            data["blocked_seconds"] = self._blocked
            data["connected"] = self._connected
            data["last_error"] = self._last_error
        return data

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ------------------------------------------------------------------ engine hooks

    def _connect(self) -> None:
        """Opens the engine connection (sender thread); raises on failure."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Drops the engine connection, quietly (sender thread)."""
        raise NotImplementedError

    def _write(self, records: list[Record], done: list[bool]) -> None:
        """Writes ``records`` pipelined, setting ``done[i]`` as the engine confirms
        record i.  Raises :class:`OSError` when the connection failed (it is opened
        again) and :class:`SinkError` when the engine refused a record."""
        raise NotImplementedError

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        attempt = 0
        ever_connected = False
        pending: list[Record] = []
        while True:
            with self._cond:
                if not pending:
                    while not self._queue and not self._stopped:
                        if self._closing and not self._inflight:
                            break
                        self._cond.wait()
                    if self._stopped or not self._queue:
                        break
                    take = min(self.batch, len(self._queue))
                    pending = [self._queue.popleft() for _ in range(take)]
                    self._inflight = take
                elif self._stopped:
                    break
            try:
                if not self._connected:
                    self._connect()
                    with self._cond:
                        self._connected = True
                        if ever_connected:
                            self._counts["reconnects"] += 1
                    ever_connected = True
                done = [False] * len(pending)
                try:
                    self._write(pending, done)
                finally:
                    pending = self._confirm(pending, done)
                if attempt:
                    log.warning("sink: %s works again after %d retries", self.url, attempt)
                attempt = 0
            except (OSError, SinkError) as exc:
                lost = isinstance(exc, OSError)
                message = str(exc) if self.url in str(exc) else f"{self.url}: {exc}"
                with self._cond:
                    self._counts["errors"] += 1
                    self._counts["retries"] += 1
                    self._last_error = message
                    if lost:
                        self._connected = False
                if lost:
                    self._disconnect()
                delay = self._reconnect.delay(attempt)
                attempt += 1
                # The first failure of an outage is a warning, its retries are debug
                # lines: a long outage must not flood the log.
                log.log(
                    logging.WARNING if attempt == 1 else logging.DEBUG,
                    "sink: %s; %d record(s) held, retrying in %.2fs",
                    message,
                    len(pending),
                    delay,
                )
                with self._cond:
                    if not self._stopped:
                        self._cond.wait(delay)
            except Exception:
                # A bug, not an engine failure: keep the records, report loudly,
                # and back off as for an engine failure rather than spin.
                log.exception("sink to %s: unexpected error in the sender", self.url)
                with self._cond:
                    self._counts["errors"] += 1
                    if not self._stopped:
                        self._cond.wait(self._reconnect.max_delay)
        self._disconnect()
        with self._cond:
            self._connected = False
            self._stopped = True
            self._cond.notify_all()

    def _confirm(self, pending: list[Record], done: list[bool]) -> list[Record]:
        """Drops the confirmed records from the batch; returns the rest, in order."""
        rest = [record for record, ok in zip(pending, done, strict=True) if not ok]
        written = len(pending) - len(rest)
        with self._cond:
            self._counts["written"] += written
            if not rest:
                self._counts["batches"] += 1
            self._inflight = len(rest)
            self._cond.notify_all()
        return rest
