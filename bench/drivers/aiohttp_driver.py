"""aiohttp's client (``aiohttp.ClientSession.ws_connect``): one session for the run, a
task per connection, ``async for message in ws`` calling a plain Python callback per
data message.

aiohttp's compiled frame reader is used when its wheel ships it (it does on CPython
x86-64).  Library defaults otherwise (auto pong on, no heartbeat pings, text decoded
to ``str`` and so UTF-8 validated), except: the session's connector has no limit on
concurrent connections (``limit=0``; its default of 100 would queue the 101st
connect), ``max_msg_size`` is raised from 4 MiB so the 16 MiB messages fit, the close
handshake waits at most the suite's close timeout, and ``compress=15`` (a
permessage-deflate offer) only when the scenario asks for deflate.  ``sending`` runs
``threads`` asyncio tasks instead of threads, all on the one event loop.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bench.drivers import _async, _common

TEXT, BINARY, ERROR = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.ERROR


def _ws_timeout() -> dict[str, Any]:
    """The close-handshake timeout, in the form this aiohttp takes."""
    if hasattr(aiohttp, "ClientWSTimeout"):  # 3.11 and later
        return {"timeout": aiohttp.ClientWSTimeout(ws_close=_common.CLOSE_TIMEOUT)}
    return {"timeout": _common.CLOSE_TIMEOUT}  # 3.9, 3.10: a float, the close timeout


class _Fleet(_async.Fleet):
    def __init__(self, deflate: bool = False) -> None:
        super().__init__(deflate)
        # Made inside the running loop (fleets are), as aiohttp requires.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def serve(self, index: int, url: str, handler: _async.Handler) -> None:
        ws = await self.session.ws_connect(
            url,
            compress=15 if self.deflate else 0,
            max_msg_size=_common.BIG,
            **_ws_timeout(),
        )
        self.connected(index, ws)
        # The iteration ends at a close frame (or once closed); an ERROR message is a
        # failed connection (a protocol error, a lost socket, invalid UTF-8).
        async for message in ws:
            kind = message.type
            if kind is TEXT or kind is BINARY:
                handler(ws, message.data)
            elif kind is ERROR:
                raise RuntimeError(f"aiohttp reported {ws.exception()!r} on {url}")

    async def send(self, index: int, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.conns[index].send_str(data)
        else:
            await self.conns[index].send_bytes(data)

    async def close_one(self, conn: Any) -> None:
        await conn.close()

    async def close_all(self) -> None:
        """Close the connections, then the session (its connector's sockets)."""
        try:
            await super().close_all()
        finally:
            await self.session.close()


#: The scenarios are :mod:`bench.drivers._async`'s, run with this fleet.
FLEET = _Fleet
