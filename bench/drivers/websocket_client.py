"""websocket-client (``import websocket``): one ``WebSocketApp.run_forever()`` thread per
connection, its ``on_message`` callback counting, which is how its users hold several
connections.  Default options (UTF-8 validation included: without wsaccel it is the
library's pure-Python validator); it has no message-size limit to raise.  It has no
permessage-deflate, so fan-in with deflate is unsupported.  ``sending`` uses real
threads (``WebSocketApp.send`` takes the socket's lock).
"""

from __future__ import annotations

from typing import Any

import websocket

from bench.drivers import _common, _threaded


class _Fleet(_threaded.Fleet):
    def serve(self, index: int, url: str, handler: _threaded.Handler) -> None:
        app = websocket.WebSocketApp(
            url,
            on_open=lambda app: self.connected(index, app),
            on_message=handler,
            on_error=lambda app, error: self.error(error),
        )
        # No reconnect (the default): a dropped connection ends the thread.
        app.run_forever()

    def send(self, index: int, data: str | bytes) -> None:
        if isinstance(data, str):
            self.conns[index].send(data)
        else:
            self.conns[index].send_bytes(data)

    def close_one(self, conn: Any) -> None:
        conn.close(timeout=_common.CLOSE_TIMEOUT)


#: The scenarios are :mod:`bench.drivers._threaded`'s, run with this fleet.
FLEET = _Fleet
#: No permessage-deflate: the compressed fan-in is reported as unsupported.
DEFLATE = False
