"""websockets' threading client (``websockets.sync.client``): a thread per connection,
each iterating over its connection and calling a Python callback per message.

Library defaults otherwise, so each connection also has the library's own reader thread
and its keepalive (ping) thread; ``compression=None`` unless the scenario asks for
deflate, and ``max_size=None`` (the 1 MiB default would refuse the large messages).
For the same reason the cap on fragments per message (4096 by default, set only
through the ``WEBSOCKETS_MAX_FRAGMENTS`` environment variable, read at import) is raised
so the fragments scenario's 65,536 fragments fit.
``sending`` uses real threads (``send`` is thread-safe).
"""

from __future__ import annotations

import os
from typing import Any

from bench.drivers import _common, _threaded

os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

# Imported after the fragment cap is set.
from websockets.sync.client import connect


class _Fleet(_threaded.Fleet):
    def serve(self, index: int, url: str, handler: _threaded.Handler) -> None:
        ws = connect(
            url,
            compression="deflate" if self.deflate else None,
            max_size=None,
            close_timeout=_common.CLOSE_TIMEOUT,
        )
        self.connected(index, ws)
        for message in ws:  # ends quietly on a normal close, raises otherwise
            handler(ws, message)

    def send(self, index: int, data: str | bytes) -> None:
        self.conns[index].send(data)

    def close_one(self, conn: Any) -> None:
        conn.close()


#: The scenarios are :mod:`bench.drivers._threaded`'s, run with this fleet.
FLEET = _Fleet
