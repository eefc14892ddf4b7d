"""wspool's blocking client (``wspool.connect``): a thread per connection, each running
a ``recv`` loop that calls a Python callback per message (the websocket-client pattern
without WebSocketApp).  Compression is off unless the scenario asks for deflate, and
``max_size`` is raised above the 16 MiB default so the largest messages fit."""

from __future__ import annotations

from typing import Any

import wspool
from bench.drivers import _common, _threaded


class _Fleet(_threaded.Fleet):
    def serve(self, index: int, url: str, handler: _threaded.Handler) -> None:
        ws = wspool.connect(
            url,
            compression="deflate" if self.deflate else None,
            max_size=_common.BIG,
            close_timeout=_common.CLOSE_TIMEOUT,
        )
        self.connected(index, ws)
        for message in ws:  # ends at the server's close frame
            handler(ws, message)

    def send(self, index: int, data: str | bytes) -> None:
        self.conns[index].send(data)

    def close_one(self, conn: Any) -> None:
        conn.close()


#: The scenarios are :mod:`bench.drivers._threaded`'s, run with this fleet.
FLEET = _Fleet
