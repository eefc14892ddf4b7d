"""wspool.Pool: many connections, one dispatcher thread, callbacks on a worker pool."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, Unpack

from wspool.exceptions import DispatcherThreadError, WebSocketConfigurationException
from wspool.opening import Opening
from wspool.options import PoolKeywords, pool_options
from wspool.pool.connection import Connection, ConnectionState
from wspool.pool.dispatcher import Dispatcher
from wspool.pool.workers import DispatcherExecutor, WorkerThreads

#: Where the Pool runs message callbacks: ``Pool(deliver=...)``.
DELIVERY_MODES = ("workers", "dispatcher")

__all__ = ["Pool"]

logger = logging.getLogger("wspool")


class Pool:
    """Holds many WebSocket connections on one dispatcher thread.

    Callbacks run on ``workers`` threads (or on ``executor`` if you pass one): those
    of one connection one at a time and in order, different connections in parallel.
    Threads start on first use; :meth:`close` (or leaving the ``with`` block) closes
    every connection with a closing handshake and stops them.

    ``deliver="dispatcher"`` runs every connection's callbacks on the dispatcher
    thread instead, at the end of the loop turn that read their messages: no thread
    hand-off, the lowest latency, for fast callbacks that never block.  A slow
    callback then delays every socket, keepalive pings included; the worker threads
    only resolve host names.  Still in order per connection; see docs/howto/executors.md.
    """

    def __init__(
        self,
        workers: int = 8,
        executor: Executor | None = None,
        *,
        name: str = "wspool",
        deliver: str = "workers",
    ) -> None:
        if deliver not in DELIVERY_MODES:
            raise WebSocketConfigurationException(
                f"deliver must be 'workers' (callbacks on the worker threads, the default) "
                f"or 'dispatcher' (inline on the dispatcher thread), not {deliver!r}"
            )
        if executor is None:
            if not isinstance(workers, int) or workers < 1:
                raise WebSocketConfigurationException(f"workers must be >= 1, not {workers!r}")
            executor = WorkerThreads(workers, thread_name_prefix=f"{name}-worker")
            self._owns_executor = True
        else:
            self._owns_executor = False
        self.executor: Executor = executor
        self.dispatcher = Dispatcher(name=f"{name}-dispatcher")
        self.deliver = deliver
        #: Where the connections' callbacks run: ``executor``, or the dispatcher itself.
        self.delivery_executor: Executor = (
            DispatcherExecutor(self.dispatcher) if deliver == "dispatcher" else executor
        )
        self.closing = False
        self._connections: list[Connection] = []
        self._lock = threading.Condition()
        self._closed = False
        # The process whose threads run this pool: after os.fork() the child has the
        # object but none of its threads (see close()).
        self._pid = os.getpid()
        _live_pools.add(self)

    @property
    def connections(self) -> list[Connection]:
        """The connections not yet closed for good."""
        with self._lock:
            return list(self._connections)

    def connect(
        self, url: str, *, label: object = None, **options: Unpack[PoolKeywords]
    ) -> Connection:
        """Open a connection in the background and return its handle at once.

        Callbacks (``on_open``, ``on_message``, ``on_error``, ``on_close``, ``on_ping``,
        ``on_pong``, ``on_data``, ``on_reconnect``) take websocket-client's signatures
        with the :class:`Connection` first.  Other options are those of
        :func:`wspool.connect`, with the same meaning and checks (one table:
        :data:`wspool.options.OPTIONS`), plus ``ping_interval``, ``ping_timeout``,
        ``ping_payload``, ``reconnect`` (``True``, a delay, a dict or a
        :class:`ReconnectPolicy`), ``max_queue`` and ``max_queue_bytes``.  ``timeout``
        bounds how long a write may make no progress before the connection is dropped
        (there is no blocking read to time out).  Every option is checked here, in the
        caller's thread: a bad one raises :class:`WebSocketConfigurationException`.
        """
        if self.closing or self._closed:
            raise WebSocketConfigurationException("this pool is closed: create a new one")
        if os.getpid() != self._pid:
            raise WebSocketConfigurationException(
                f"this pool belongs to process {self._pid}; after os.fork() create a new "
                "Pool in the child (the pool's threads did not come along)"
            )
        checked = pool_options(url, options)
        Opening(checked.connect).check_request()
        if isinstance(self.executor, WorkerThreads):
            self.executor.ensure_worker()
        connection = Connection(self, checked, label=label)
        with self._lock:
            self._connections.append(connection)
        self.dispatcher.call_soon(connection.start)
        _register_exit_hook()
        return connection

    # ConnectionOwner: what a Connection may ask of its pool.

    def connection_ended(self, connection: Connection) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._connections.remove(connection)
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        self.check_not_dispatcher("waiting for the pool's connections")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Short waits keep Ctrl-C responsive in the main thread.
                self._lock.wait(0.2 if remaining is None else min(0.2, remaining))
        return True

    def check_not_dispatcher(self, what: str) -> None:
        """Refuse a blocking wait on the dispatcher thread: it would wait for itself."""
        if self.dispatcher.in_dispatcher_thread():
            raise DispatcherThreadError(
                f"{what} from the dispatcher thread (an inline callback or a done "
                "callback) would wait forever for that thread: call conn.close(), which "
                "returns at once, and wait from another thread"
            )

    def stats(self) -> dict[str, Any]:
        """Totals over the live connections, plus each one's counters."""
        connections = self.connections
        per = [c.stats_dict() for c in connections]
        totals: dict[str, Any] = {
            "connections": len(per),
            "open": sum(1 for c in connections if c.state is ConnectionState.OPEN),
        }
        for key in ("messages_in", "bytes_in", "messages_out", "bytes_out", "reconnects"):
            totals[key] = sum(entry[key] for entry in per)
        totals["queue_depth"] = sum(entry["queue_depth"] for entry in per)
        # Backpressure: connections whose reading is paused now, pauses so far.
        totals["paused"] = sum(1 for entry in per if entry["paused"])
        totals["pauses"] = sum(entry["pauses"] for entry in per)
        # Feed-grade streams (docs/feeds.md).
        for key in ("rotations", "stale_replacements", "failovers", "duplicates_dropped", "gaps"):
            totals[key] = sum(entry[key] for entry in per)
        totals["per_connection"] = per
        return totals

    def run_forever(self) -> bool:
        """Block until every connection is closed for good; Ctrl-C closes them all.

        Returns ``True`` when interrupted by Ctrl-C, ``False`` when the connections
        ended on their own.
        """
        try:
            self.wait_for(lambda: not self._connections, None)
        except KeyboardInterrupt:
            logger.info("interrupted: closing %d connections", len(self._connections))
            self.close()
            return True
        return False

    def close(self, timeout: float | None = 5.0) -> None:
        """Close every connection (closing handshake), run the last callbacks, stop the
        threads.  Connections still open after ``timeout`` are dropped."""
        if self._closed:
            return
        self.check_not_dispatcher("Pool.close()")
        if os.getpid() != self._pid:
            # Inherited through os.fork(): its threads and connections are the parent's.
            # Nothing is sent (a close frame from here would break the parent's stream)
            # and nothing is waited for; the parent closes its connections itself.
            self.closing = self._closed = True
            return
        self.closing = True
        connections = self.connections
        deadline = None if timeout is None else time.monotonic() + timeout
        for connection in connections:
            try:
                connection.close()
            except Exception:
                logger.exception("closing %r failed", connection)
        if not self.wait_for(lambda: not self._connections, timeout):
            for connection in self.connections:
                connection.abort()
            self.wait_for(lambda: not self._connections, 1.0)
        # Let the last callbacks (on_close above all) run before the workers stop.
        for connection in connections:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            connection.drain(remaining)
        self._closed = True
        self.dispatcher.stop(timeout)
        if self._owns_executor:
            self.executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        inline = ", deliver='dispatcher'" if self.deliver == "dispatcher" else ""
        return f"<wspool.Pool {len(self._connections)} connections{inline}>"


_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _close_all_pools() -> None:
    for pool in list(_live_pools):
        try:
            pool.close(timeout=2.0)
        except Exception:
            logger.exception("closing %r at exit failed", pool)


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """Close live pools at interpreter exit, before their threads are stopped.

    threading runs its exit hooks in reverse order of registration, so registering
    after the first dispatcher started (which registers the dispatchers' hook) and
    after concurrent.futures (registered at import) makes this one run first:
    connections still get a closing handshake and their on_close.
    """
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    _exit_hook_registered = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(_close_all_pools)
    except RuntimeError:  # the interpreter is already shutting down
        pass
