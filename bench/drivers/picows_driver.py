"""picows (Cython, asyncio): a ``WSListener`` per connection whose ``on_ws_frame`` turns
frames into messages for a plain Python callback, and a task per connection awaiting
``wait_disconnected`` (so failures are seen).

picows hands over frames, not messages: text is decoded with
``get_payload_as_utf8_text`` (which validates UTF-8), and fragmented messages are joined
here from their CONTINUATION frames (the joined text is then decoded, strictly).
``max_frame_size`` is raised from its 10 MiB default so 16 MiB frames fit; auto ping is
left off (its default) and auto pong on.  picows has no permessage-deflate, so fan-in with
deflate is unsupported.  ``sending`` runs ``threads`` asyncio tasks instead of threads;
``WSTransport.send`` never waits (it buffers without bound), so each task runs its sends
back to back and the sync reply is what bounds the time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.drivers import _async, _common

TEXT, BINARY, CONTINUATION, CLOSE = (
    WSMsgType.TEXT,
    WSMsgType.BINARY,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
)


class _Listener(WSListener):
    """Frames to messages for one connection."""

    def __init__(self, handler: _async.Handler) -> None:
        super().__init__()
        self.handler = handler
        self.parts: bytearray | None = None  # a fragmented message so far
        self.text = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == TEXT:
            if frame.fin:
                self.handler(transport, frame.get_payload_as_utf8_text())
            else:
                self.text = True
                self.parts = bytearray(frame.get_payload_as_memoryview())
        elif kind == BINARY:
            if frame.fin:
                self.handler(transport, frame.get_payload_as_bytes())
            else:
                self.text = False
                self.parts = bytearray(frame.get_payload_as_memoryview())
        elif kind == CONTINUATION:
            parts = self.parts
            if parts is None:
                raise RuntimeError("CONTINUATION frame without a message to continue")
            parts += frame.get_payload_as_memoryview()
            if frame.fin:
                self.parts = None
                self.handler(transport, parts.decode("utf-8") if self.text else bytes(parts))
        elif kind == CLOSE:
            # The server's answer to our close (or its own close): finish the handshake.
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()


class _Fleet(_async.Fleet):
    async def serve(self, index: int, url: str, handler: _async.Handler) -> None:
        transport, _ = await ws_connect(
            lambda: _Listener(handler),
            url,
            max_frame_size=_common.BIG,
            enable_auto_ping=False,
        )
        self.connected(index, transport)
        # Raises what made picows drop the connection (a callback's exception, a
        # protocol error); returns when the peer closed it.
        await transport.wait_disconnected()
        if not self.closing:
            self.error("connection closed by the server")

    async def send(self, index: int, data: str | bytes) -> None:
        if isinstance(data, str):
            self.conns[index].send(TEXT, data.encode())
        else:
            self.conns[index].send(BINARY, data)

    async def close_one(self, conn: Any) -> None:
        conn.send_close(WSCloseCode.OK)
        try:
            await asyncio.wait_for(conn.wait_disconnected(), _common.CLOSE_TIMEOUT)
        finally:
            conn.disconnect(graceful=False)


#: The scenarios are :mod:`bench.drivers._async`'s, run with this fleet.
FLEET = _Fleet
#: No permessage-deflate: the compressed fan-in is reported as unsupported.
DEFLATE = False
