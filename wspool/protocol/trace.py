"""Protocol trace: websocket-client's ``enableTrace`` on the ``wspool`` logger.

``wspool.enableTrace(True)`` attaches a handler (stderr by default) to the ``wspool``
logger, sets its level and turns on one module flag, :data:`enabled`.  The
sans-I/O core then logs, at DEBUG, one line per:

* header line of the opening request and of the server's response head, and of the
  ``CONNECT`` request and reply of an HTTP proxy (``ClientHandshake``,
  ``HttpConnectHandshake``);
* frame the core builds (``ClientProtocol``'s send methods and the replies it queues
  itself: pongs, close replies, the close frame of a failed connection);
* event ``ClientProtocol.receive_data`` returns: received data is traced once it is
  parsed, so a fragmented message is one line (reassembled, decompressed) unless
  frame events are on, in which case each data frame is one line.

Both I/O drivers (the blocking client and the pool's sessions) get the trace through
the core, with no code of their own.  Every line starts with the connection's URL
without credentials and an arrow (``>`` sent, ``<`` received, ``!`` a protocol
error), for example::

    ws://127.0.0.1:8765/chat > GET /chat HTTP/1.1
    ws://127.0.0.1:8765/chat > Authorization: <redacted>
    ws://127.0.0.1:8765/chat < HTTP/1.1 101 Switching Protocols
    ws://127.0.0.1:8765/chat > TEXT fin=1 len=5 'Hello'
    ws://127.0.0.1:8765/chat < TEXT fin=1 len=5 'Hello'

Frame lines give the opcode name, ``fin``, the payload length in bytes and a preview
of at most :data:`PREVIEW_LIMIT` bytes or characters (``...`` when cut).  A
compressed frame we send says ``deflated``: its length is the compressed one and its
preview is the message before compression (continuation frames of a compressed
message have no preview).  Received messages are shown as delivered (decompressed).

Credentials never appear: the values of ``Authorization``, ``Proxy-Authorization``,
``Cookie`` and ``Set-Cookie`` become :data:`REDACTED`, URLs come from
``WebSocketURL.redacted``, and user info in a ``Location`` header is masked.

Cost when off: the hot paths read :data:`enabled` once per call (a module attribute)
and do nothing else.  This module sits with the protocol layer (it imports only
``wspool.protocol`` leaves and the exceptions), so the core may import it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Final

from wspool.exceptions import WebSocketConfigurationException
from wspool.protocol.events import (
    CloseReceived,
    EndOfStream,
    Event,
    Fragment,
    Message,
    Ping,
    Pong,
    ProtocolError,
)
from wspool.protocol.frames import Opcode
from wspool.protocol.headers import CREDENTIAL_HEADERS

__all__ = ["PREVIEW_LIMIT", "REDACTED", "enableTrace", "is_tracing"]

logger = logging.getLogger("wspool")

#: Whether tracing is on.  The one thing the hot paths read; written only by
#: :func:`enableTrace`.
enabled: bool = False

#: What replaces the value of a credential header in the trace.
REDACTED: Final = "<redacted>"
#: Bytes (binary) or characters (text) of a payload shown in a frame line.
PREVIEW_LIMIT: Final = 64

SENT: Final = ">"
RECEIVED: Final = "<"

# The request's credential headers (shared with the redirect filter) plus the one a
# response carries.
_SECRET_HEADERS: Final = CREDENTIAL_HEADERS | {"set-cookie"}
# ``scheme://user:password@`` in a Location value.
_USERINFO_RE: Final = re.compile(r"(?<=://)[^/?#@]*@")

# The handler enableTrace added, whether it was already on the logger before (then
# it is not ours to remove), and the level the logger had before tracing.  Guarded by
# _lock so two threads toggling the trace never leave a stray handler behind.
_lock = threading.Lock()
_handler: logging.Handler | None = None
_handler_preexisting = False
_saved_level: int | None = None
_set_level: int | None = None


def enableTrace(
    traceable: bool, handler: logging.Handler | None = None, level: str | int = "DEBUG"
) -> None:
    """Turn the protocol trace on or off (websocket-client's ``enableTrace``).

    On: ``handler`` (default: a new ``logging.StreamHandler()`` on stderr, without a
    formatter so lines read plainly) is added to the ``wspool`` logger and the logger's
    level set to ``level`` (a name such as ``"DEBUG"``, any case, or a number).  Calling
    it again replaces the handler added before instead of adding a second one.  Off:
    the handler it added is removed and the logger gets back the level it had before
    tracing (unless something else changed the level since).

    Raises :class:`~wspool.exceptions.WebSocketConfigurationException` for an unknown
    level name.
    """
    global enabled, _handler, _handler_preexisting, _saved_level, _set_level
    with _lock:
        if not traceable:
            enabled = False
            _drop_handler()
            if _set_level is not None and logger.level == _set_level:
                logger.setLevel(_saved_level if _saved_level is not None else logging.NOTSET)
            _saved_level = _set_level = None
            return
        numeric = _level_number(level)
        new = handler if handler is not None else logging.StreamHandler()
        if new is not _handler:
            _drop_handler()
            _handler_preexisting = new in logger.handlers
            logger.addHandler(new)
            _handler = new
        if _set_level is None:
            _saved_level = logger.level
        logger.setLevel(numeric)
        _set_level = numeric
        enabled = True


def is_tracing() -> bool:
    """Whether :func:`enableTrace` turned the trace on (websocket-client's
    ``isEnabledForTrace``)."""
    return enabled


def _drop_handler() -> None:
    global _handler
    if _handler is not None and not _handler_preexisting:
        logger.removeHandler(_handler)
    _handler = None


def _level_number(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.upper())
        if number is not None:
            return number
    names = ", ".join(sorted(logging.getLevelNamesMapping(), key=logging.getLevelName))
    raise WebSocketConfigurationException(
        f"enableTrace level={level!r} is not a logging level: pass a number or one of {names}"
    )


# ------------------------------------------------------------- called by the core


def _emit(label: str | None, arrow: str, text: str) -> None:
    logger.debug("%s %s %s", label or "-", arrow, text)


def redact_header(name: str, value: str) -> str:
    """``value`` as the trace shows it: credentials replaced by :data:`REDACTED`."""
    lowered = name.lower()
    if lowered in _SECRET_HEADERS:
        return REDACTED
    if lowered == "location":
        return _USERINFO_RE.sub(REDACTED + "@", value)
    return value


def preview(data: str | bytes | bytearray | memoryview) -> str:
    """The repr of the first :data:`PREVIEW_LIMIT` bytes or characters of ``data``,
    followed by ``...`` when there was more."""
    head = data[:PREVIEW_LIMIT]
    shown = repr(head if isinstance(head, str | bytes) else bytes(head))
    return shown + "..." if len(data) > PREVIEW_LIMIT else shown


def http_head(
    label: str | None,
    arrow: str,
    start_line: str,
    headers: Iterable[tuple[str, str]],
    *,
    via: str | None = None,
) -> None:
    """One line for the start line and each header of an HTTP head, redacted.

    ``via`` names the proxy for the lines of a ``CONNECT`` exchange.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    prefix = f"({via}) " if via else ""
    _emit(label, arrow, prefix + start_line)
    for name, value in headers:
        _emit(label, arrow, f"{prefix}{name}: {redact_header(name, value)}")


def request_head(label: str | None, data: bytes, *, via: str | None = None) -> None:
    """Trace a serialized request head (``data`` as it goes on the wire)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    lines = [line for line in data.decode("latin-1").split("\r\n") if line]
    if not lines:
        return
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    http_head(label, SENT, lines[0], headers, via=via)


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode:#x}"


def _close_details(payload: bytes | bytearray | memoryview) -> str:
    if len(payload) < 2:
        return " no code"
    code = int.from_bytes(payload[:2], "big")
    reason = bytes(payload[2:]).decode("utf-8", "replace")
    return f" code={code} reason={preview(reason)}"


def frame(
    label: str | None,
    arrow: str,
    opcode: int,
    fin: bool,
    length: int,
    shown: str | bytes | bytearray | memoryview | None,
    *,
    note: str = "",
) -> None:
    """One frame line: opcode name, fin, payload length, ``note``, a preview of ``shown``.

    A close frame's ``shown`` is its payload, shown as code and reason.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    text = f"{_opcode_name(opcode)} fin={int(fin)} len={length}"
    if note:
        text += f" {note}"
    if shown is not None:
        if opcode == Opcode.CLOSE and not isinstance(shown, str):
            text += _close_details(shown)
        else:
            text += f" {preview(shown)}"
    _emit(label, arrow, text)


def _text_length(text: str) -> int:
    # isascii() is O(1) on CPython: only non-ASCII text pays for an encode.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def received(label: str | None, events: Sequence[Event]) -> None:
    """One line per event ``ClientProtocol.receive_data`` returned."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    for event in events:
        if isinstance(event, Message):
            data = event.data
            size = _text_length(data) if isinstance(data, str) else len(data)
            frame(label, RECEIVED, event.opcode, True, size, data)
        elif isinstance(event, Fragment):
            frame(label, RECEIVED, event.opcode, event.fin, len(event.data), event.data)
        elif isinstance(event, Ping | Pong):
            opcode = Opcode.PING if isinstance(event, Ping) else Opcode.PONG
            frame(label, RECEIVED, opcode, True, len(event.data), event.data)
        elif isinstance(event, CloseReceived):
            frame(label, RECEIVED, Opcode.CLOSE, True, len(event.payload), event.payload)
        elif isinstance(event, ProtocolError):
            _emit(label, "!", f"protocol error: {event.exc.message}")
        elif isinstance(event, EndOfStream):
            _emit(label, RECEIVED, f"end of stream ({'clean' if event.clean else 'unclean'})")
