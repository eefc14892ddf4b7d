"""websockets' asyncio client (``websockets.asyncio.client``): a task per connection,
``async for message in ws`` calling a plain Python callback per message.

Library defaults otherwise (keepalive pings included); ``compression=None`` unless the
scenario asks for deflate, and ``max_size=None`` (the 1 MiB default would refuse the
large messages).  For the same reason the cap on fragments per message (4096 by
default, set only through the ``WEBSOCKETS_MAX_FRAGMENTS`` environment variable, read at
import) is raised so the fragments scenario's 65,536 fragments fit.  ``sending`` runs
``threads`` asyncio tasks instead of threads, all on the one event loop.
"""

from __future__ import annotations

import os
from typing import Any

from bench.drivers import _async, _common

os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

# Imported after the fragment cap is set.
from websockets.asyncio.client import connect


class _Fleet(_async.Fleet):
    async def serve(self, index: int, url: str, handler: _async.Handler) -> None:
        ws = await connect(
            url,
            compression="deflate" if self.deflate else None,
            max_size=None,
            close_timeout=_common.CLOSE_TIMEOUT,
        )
        self.connected(index, ws)
        async for message in ws:  # ends quietly on a normal close, raises otherwise
            handler(ws, message)

    async def send(self, index: int, data: str | bytes) -> None:
        await self.conns[index].send(data)

    async def close_one(self, conn: Any) -> None:
        await conn.close()


#: The scenarios are :mod:`bench.drivers._async`'s, run with this fleet.
FLEET = _Fleet
