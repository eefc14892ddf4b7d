"""Reconnect policy: exponential backoff with full jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
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
    errors); any other refusal ends the connection.  A TLS failure (an untrusted,
    expired or misnamed certificate, a protocol mismatch) ends it too, since retrying
    cannot fix a configuration, unless ``retry_tls_errors`` is set (for servers
    whose certificate is being replaced, say).
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
    retry_tls_errors: bool = False

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "reset_after"):
            _check_number(name, getattr(self, name), ">= 0", lambda v: v >= 0)
        _check_number("factor", self.factor, ">= 1", lambda v: v >= 1)
        if not isinstance(self.retry_tls_errors, bool):
            raise WebSocketConfigurationException(
                f"reconnect retry_tls_errors must be True or False, not {self.retry_tls_errors!r}"
            )
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0
        ):
            raise WebSocketConfigurationException(
                f"reconnect max_attempts must be an int >= 0 or None, not {attempts!r}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 for the first retry)."""
        initial, factor, ceiling = self.initial_delay, self.factor, self.max_delay
        if initial < ceiling:
            # initial * factor ** attempt, computed only while it stays under the cap
            # (compared in logarithms), so a large factor or attempt never overflows.
            if initial == 0 or factor == 1:
                ceiling = initial
            elif attempt * math.log(factor) < math.log(ceiling / initial):
                ceiling = initial * factor**attempt
        return (rng or random).uniform(0.0, ceiling)


def _check_number(name: str, value: object, bound: str, ok: Callable[[float], bool]) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not ok(value)
    ):
        raise WebSocketConfigurationException(
            f"reconnect {name} must be a number {bound}, not {value!r}"
        )


def coerce_reconnect(value: object) -> ReconnectPolicy | None:
    """The ``reconnect=`` option: ``True``/``False``/``None``, a number (the initial
    delay, websocket-client style; 0 means no reconnect), a dict of policy fields, or a
    ReconnectPolicy."""
    if value is None or value is False:
        return None
    if value is True:
        return ReconnectPolicy()
    if isinstance(value, ReconnectPolicy):
        return value
    if isinstance(value, int | float):
        if math.isnan(value) or value < 0:
            raise WebSocketConfigurationException(
                f"reconnect must be a delay in seconds >= 0 (0: no reconnect), not {value!r}"
            )
        if value == 0:
            return None
        return ReconnectPolicy(initial_delay=float(value), max_delay=max(30.0, float(value)))
    if isinstance(value, dict):
        known = ReconnectPolicy.__dataclass_fields__
        unknown = [key for key in value if key not in known]
        if unknown:
            raise WebSocketConfigurationException(
                f"reconnect has unknown field(s) {', '.join(map(repr, unknown))}; the fields "
                f"are {', '.join(known)}"
            )
        return ReconnectPolicy(**value)
    raise WebSocketConfigurationException(
        f"reconnect must be a bool, a delay in seconds, a dict or a ReconnectPolicy, "
        f"not {value!r} ({type(value).__name__})"
    )
