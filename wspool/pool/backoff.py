"""Reconnect policy: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from wspool.exceptions import WebSocketConfigurationException

__all__ = ["ReconnectPolicy", "coerce_reconnect"]


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When and how fast a lost connection is opened again.

    The n-th attempt after a loss waits a uniformly random time in
    ``[0, min(max_delay, initial_delay * factor ** n)]`` ("full jitter"), so a fleet of
    connections dropped by one server restart does not come back in lockstep.  The
    attempt counter resets once a connection stayed open ``reset_after`` seconds.

    ``max_attempts`` bounds consecutive failed attempts (``None``: forever).
    ``on_normal_close`` also reconnects after the server closed with 1000/1001.
    ``retry_statuses`` are the handshake statuses worth retrying (rate limits, server
    errors); any other refusal ends the connection.
    """

    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_attempts: int | None = None
    reset_after: float = 10.0
    on_normal_close: bool = True
    retry_statuses: frozenset[int] = field(
        default_factory=lambda: frozenset({408, 425, 429, 500, 502, 503, 504})
    )

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "reset_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise WebSocketConfigurationException(
                    f"reconnect {name} must be >= 0, not {value!r}"
                )
        if not isinstance(self.factor, int | float) or self.factor < 1:
            raise WebSocketConfigurationException(
                f"reconnect factor must be >= 1, not {self.factor!r}"
            )
        if self.max_attempts is not None and self.max_attempts < 0:
            raise WebSocketConfigurationException(
                f"reconnect max_attempts must be >= 0 or None, not {self.max_attempts!r}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.initial_delay * self.factor ** min(attempt, 64))
        return (rng or random).uniform(0.0, ceiling)


def coerce_reconnect(value: object) -> ReconnectPolicy | None:
    """The ``reconnect=`` option: ``True``/``False``/``None``, a number (the initial
    delay, websocket-client style), a dict of policy fields, or a ReconnectPolicy."""
    if value is None or value is False:
        return None
    if value is True:
        return ReconnectPolicy()
    if isinstance(value, ReconnectPolicy):
        return value
    if isinstance(value, int | float):
        if value <= 0:
            return None
        return ReconnectPolicy(initial_delay=float(value), max_delay=max(30.0, float(value)))
    if isinstance(value, dict):
        try:
            return ReconnectPolicy(**value)
        except TypeError as exc:
            raise WebSocketConfigurationException(f"reconnect: {exc}") from exc
    raise WebSocketConfigurationException(
        f"reconnect must be a bool, a delay in seconds, a dict or a ReconnectPolicy, "
        f"not {type(value).__name__}"
    )
