"""Errors raised by the pool's user callbacks, wrapped with where they happened.

:class:`CallbackError` lives here until the pool's public API joins the exception
hierarchy in :mod:`wspool.exceptions`.
"""

from __future__ import annotations

import traceback

from wspool.exceptions import WebSocketException
from wspool.protocol.events import bounded_repr

__all__ = ["CallbackError", "DispatcherStoppedError"]


class CallbackError(WebSocketException):
    """A user callback raised; the connection stays up (DESIGN.md, invariant 7).

    ``original`` is the callback's exception (also chained as ``__cause__``),
    ``callback`` the callback's name (``"on_message"``), ``event_repr`` a bounded repr
    of the event it was handling (``None`` when there was no event), ``label`` the
    connection's label.  :meth:`format` renders the full traceback of ``original``.
    """

    def __init__(
        self,
        *,
        url: str | None,
        label: object,
        callback: str,
        event: object,
        original: BaseException,
    ) -> None:
        self.original = original
        self.callback = callback
        self.label = label
        self.event_repr = None if event is None else bounded_repr(event)
        parts = [f"{callback} raised {bounded_repr(original)}"]
        if url:
            parts.append(f"for {url}")
        if label is not None:
            parts.append(f"[label {bounded_repr(label)}]")
        if self.event_repr is not None:
            parts.append(f"on {self.event_repr}")
        super().__init__(" ".join(parts), url=url)
        self.__cause__ = original

    def __str__(self) -> str:
        # the URL is already part of the message; the base class would append it again
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only __init__: rebuild through a helper so the error survives pickling
        return (
            _rebuild_callback_error,
            (self.url, self.label, self.callback, self.event_repr, self.original),
        )

    def format(self, *, locals: bool = False) -> str:
        """The message, then the full traceback of ``original`` (with its own chain).

        ``locals=True`` adds each frame's local variables (their reprs): helpful when
        debugging, but they may contain secrets, so it is off by default.
        """
        exc = self.original
        tb = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=locals)
        return f"{self}\n" + "".join(tb.format())


def _rebuild_callback_error(
    url: str | None,
    label: object,
    callback: str,
    event_repr: str | None,
    original: BaseException,
) -> CallbackError:
    error = CallbackError(url=url, label=label, callback=callback, event=None, original=original)
    if event_repr is not None:
        error.event_repr = event_repr
        error.args = (f"{error.message} on {event_repr}",)
    return error


class DispatcherStoppedError(WebSocketException, RuntimeError):
    """Work was handed to a dispatcher that has stopped (or is stopping); it cannot run.

    Create a new dispatcher (or pool) instead of reusing a stopped one.
    """
