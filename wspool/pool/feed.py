"""Feed-grade streams: the options and the per-stream state behind them.

A :class:`~wspool.pool.connection.Connection` is one logical stream over replaceable
sessions.  The options here make that seam useful to market-data users
(docs/feeds.md): ``subscribe`` (payloads sent on every open of every session),
``send_rate`` (a token bucket per session), ``max_age`` (make-before-break rotation),
``stale_after`` (a watchdog on data messages), ``heartbeat`` (an application-level
ping the feed answers), ``redundancy`` (several live sessions for one stream),
``dedupe`` (each message delivered once across sessions) and ``sequence`` with
``on_gap`` (gaps and regressions reported per stream).

This module is a stdlib-only leaf: it holds the option values and checks
(:class:`RateLimit`, :class:`Heartbeat`, :class:`FeedOptions`), the token bucket a
session paces its sends with (:class:`TokenBucket`), and the worker-side filter that
drops duplicates and checks sequences (:class:`StreamFilter`).  The orchestration of
sessions lives in connection.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEDUPE_WINDOW",
    "RECENT_KEYS",
    "FeedOptions",
    "Heartbeat",
    "Payload",
    "RateLimit",
    "StreamFilter",
    "TokenBucket",
    "coerce_heartbeat",
    "coerce_redundancy",
    "coerce_send_rate",
    "coerce_subscribe",
    "encode_payload",
    "payloads_of",
]

#: What ``subscribe`` and ``heartbeat`` send: str as text, bytes as binary, a dict or
#: list as JSON text.
Payload = str | bytes | dict[str, Any] | list[Any]

#: The keys of the last messages delivered are always remembered, also while one
#: session delivers alone: a new session may start with a message the stream already
#: delivered (a snapshot or the last tick sent again on subscribe).
RECENT_KEYS: Final = 16

#: At most this many keys are remembered for ``dedupe`` per stream (oldest forgotten
#: first).  Keys are forgotten as soon as every live session delivered them, so the
#: set only holds the skew between sessions; the bound is for what never converges
#: (a key only one session will ever see).
DEDUPE_WINDOW: Final = 4096


def encode_payload(payload: Payload) -> tuple[str | bytes, bool]:
    """``(data, is_text)`` for one payload; raises TypeError for anything else."""
    if isinstance(payload, str):
        return payload, True
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), False
    if isinstance(payload, dict | list):
        return json.dumps(payload, separators=(",", ":")), True
    raise TypeError(f"a payload must be str, bytes, dict or list, not {type(payload).__name__}")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket for one session's sends (``send_rate=``).

    ``per_second`` tokens are added each second, up to ``burst``; each message sent
    takes one.  A new session starts with ``burst`` tokens, so no (re)connect sends
    more than ``burst`` at once.  ``count_control``: pings and pongs take tokens too
    (some exchanges count every frame).
    """

    per_second: float
    burst: int = 1
    count_control: bool = False

    def __post_init__(self) -> None:
        rate = self.per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ValueError(f"per_second must be a number > 0, not {rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an int >= 1, not {self.burst!r}")
        if not isinstance(self.count_control, bool):
            raise ValueError(f"count_control must be True or False, not {self.count_control!r}")


HeartbeatReply = str | bytes | re.Pattern[str] | re.Pattern[bytes] | Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An application-level keepalive (``heartbeat=``) for feeds that want a text
    "ping" and answer "pong".

    Every ``interval`` seconds each session sends ``payload``; a message matching
    ``reply`` (equal to it, a compiled pattern that matches it, or a predicate that
    returns true) is the answer: it is consumed, never delivered.  No answer within
    ``timeout`` (default: ``interval``) and the session is replaced.  The predicate
    runs on the dispatcher thread for every message, so it must be quick.
    """

    interval: float
    payload: Payload = "ping"
    reply: HeartbeatReply = "pong"
    timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if value is None and name == "timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
        encode_payload(self.payload)
        reply = self.reply
        if not isinstance(reply, str | bytes | re.Pattern) and not callable(reply):
            raise ValueError(
                f"reply must be str, bytes, a compiled re pattern or a predicate, not {reply!r}"
            )

    @property
    def deadline(self) -> float:
        return self.interval if self.timeout is None else self.timeout

    def matcher(self) -> Callable[[Any], bool]:
        """The test for one received message's data."""
        reply = self.reply
        if isinstance(reply, str | bytes):
            return reply.__eq__
        if isinstance(reply, re.Pattern):
            pattern: re.Pattern[Any] = reply

            def matches(data: Any) -> bool:
                try:
                    return pattern.match(data) is not None
                except TypeError:  # a text pattern and a binary message, or the reverse
                    return False

            return matches
        return reply


Subscribe = tuple[Payload, ...] | Callable[[Any], Any]


def coerce_subscribe(value: object) -> Subscribe | None:
    """``subscribe=``: a payload, a list of payloads, or ``(conn) -> payloads``."""
    if value is None:
        return None
    if callable(value):
        return value
    items: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
    for item in items:
        encode_payload(item)  # TypeError names the bad one
    return tuple(items)


def payloads_of(subscribe: Subscribe, conn: object) -> list[tuple[str | bytes, bool]]:
    """The encoded payloads to send on one open (a callable is called now)."""
    if callable(subscribe):
        produced = subscribe(conn)
        if produced is None:
            return []
        items = produced if isinstance(produced, list | tuple) else [produced]
    else:
        items = subscribe
    return [encode_payload(item) for item in items]


def coerce_send_rate(value: object) -> RateLimit | None:
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a number of messages per second > 0, a wspool.RateLimit, or None")
    return RateLimit(float(value), 1)


def coerce_heartbeat(value: object) -> Heartbeat | None:
    if value is None or isinstance(value, Heartbeat):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a number of seconds > 0, a wspool.Heartbeat, or None")
    return Heartbeat(float(value))


def coerce_redundancy(value: object) -> int | tuple[str, ...]:
    """``redundancy=``: a number of live sessions (>= 1) or a list of other URLs."""
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(url, str) for url in value):
            raise TypeError("a non-empty list of ws:// or wss:// URLs")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError("an int >= 1 (live sessions per stream) or a list of other URLs")
    return value


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """The feed options of one ``Pool.connect``, checked (``PoolOptions.feed``);
    ``None`` there when none is given, so plain connections pay nothing."""

    subscribe: Subscribe | None
    send_rate: RateLimit | None
    max_age: float | None
    stale_after: float | None
    heartbeat: Heartbeat | None
    #: Live sessions per stream (the first URL plus ``alternates``, or copies of it).
    redundancy: int
    #: Other URLs for sessions 2, 3, ... (``redundancy=[...]``), as given.
    alternates: tuple[str, ...]
    dedupe: Callable[[Any], Hashable] | None
    sequence: Callable[[Any], int | None] | None

    @property
    def rotation_lead(self) -> float:
        """How long before ``max_age`` the replacement session starts opening."""
        assert self.max_age is not None
        return min(10.0, self.max_age / 4)

    @property
    def filters(self) -> bool:
        """Whether delivered messages go through a :class:`StreamFilter`."""
        return self.dedupe is not None or self.sequence is not None


class TokenBucket:
    """Tokens for one session's sends (dispatcher and senders, under the session's
    ``send_lock``).  Starts full; may go below zero when control frames are counted,
    which delays the next data frames."""

    __slots__ = ("_burst", "_rate", "_stamp", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        self._rate = limit.per_second
        self._burst = float(limit.burst)
        self.tokens = self._burst
        self._stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self._burst, self.tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def take_control(self) -> None:
        """A ping or pong (``count_control``): it leaves at once and takes a token,
        into debt if need be, but never more than ``burst`` below zero, so data is
        not starved for long after a burst of control frames."""
        self.tokens = max(self.tokens - 1, -self._burst)

    def wait_for_one(self) -> float:
        """Seconds until one whole token is there (after :meth:`refill`)."""
        return max(0.0, (1.0 - self.tokens) / self._rate)


class StreamFilter:
    """Duplicates, order and sequence checks for one stream, on the worker that
    delivers it.

    Runs inside the connection's delivery (one worker at a time per connection,
    docs/architecture.md invariant 3), so it needs no lock.  Sessions are *sources*
    numbered by bit; the dispatcher queues a marker when a source starts delivering
    and when it ended, in order with its messages, so the filter's view of which
    sessions are live matches the order messages arrived in.

    Each source is in order, but two sources are not in step: a session that starts
    mid-stream (a replacement, a restarted standby) gets its first message while an
    older session may still have earlier ones on the way.  Delivering it at once
    would put message 9 before 8.  So a new source *joins* first: its messages are
    held until it delivers a key an established source already delivered (from there
    on the two overlap: first arrival wins, in order), or until every established
    source ended (then what it holds is delivered, in order, minus duplicates).  A
    source that is alone is established at once.  It also catches up the other way:
    when an established source delivers a key a joiner holds, the joiner is ahead:
    what it holds before that key goes out first, then the key, then the rest.  And
    before the stream delivered anything (sessions that opened together), the first
    source to deliver leads and the others join it.
    """

    __slots__ = (
        "_dedupe",
        "_delivering",
        "_expiring",
        "_joining",
        "_last",
        "_live",
        "_recent",
        "_seen",
        "_sequence",
        "duplicates",
    )

    def __init__(self, options: FeedOptions) -> None:
        self._dedupe = options.dedupe
        self._sequence = options.sequence
        self._live = 0  # bit mask of the established sources
        # The established sources that have delivered a message: one that has not is
        # no better placed than a joiner (see admit).
        self._delivering = 0
        # A joining source's bit -> what it holds, key -> item, in arrival order.
        self._joining: dict[int, dict[Hashable, Any]] = {}
        # key -> bit mask of the sources that delivered it (insertion order = age).
        self._seen: dict[Hashable, int] = {}
        self._recent: dict[Hashable, None] = {}  # the last RECENT_KEYS keys delivered
        self._last: int | None = None  # the last sequence number delivered
        self.duplicates = 0  # messages dropped as delivered already
        # Keys only ended sources delivered, kept one more source change for a slower
        # live source to repeat (then forgotten: no source will).
        self._expiring: list[Hashable] = []

    def source_started(self, bit: int) -> None:
        if self._live and self._dedupe is not None:
            self._joining[bit] = {}
        else:
            self._live |= bit

    def source_ended(self, bit: int) -> list[Any]:
        """The source's last message came before this; returns held messages that are
        now to be delivered (when no established source is left)."""
        self._joining.pop(bit, None)  # what it held, the established ones deliver
        self._live &= ~bit
        self._delivering &= ~bit
        released: list[Any] = []
        if not self._live and self._joining:
            # The oldest joiner carries on alone; the others still join it.
            released = self._establish(next(iter(self._joining)))
        live = self._live
        seen = self._seen
        if not live:
            seen.clear()
            self._expiring = []
            return released
        for key in self._expiring:
            mask = seen.get(key)
            if mask is not None and not mask & live:
                del seen[key]
        # Keys every remaining source has delivered are done; keys no live source
        # delivered may still come from a slower one: they expire at the next change.
        expiring = []
        for key, mask in list(seen.items()):
            if mask & live == live:
                del seen[key]
            elif not mask & live:
                expiring.append(key)
        self._expiring = expiring
        return released

    def admit(self, key: Hashable, bit: int, item: Any) -> list[Any]:
        """What to deliver now for ``item`` (key ``key``) from source ``bit``: usually
        ``[item]``, ``[]`` for a duplicate or a held message, more when held ones are
        released."""
        held = self._joining.get(bit)
        if held is not None and not self._recent and not self._live & self._delivering:
            # The stream has delivered nothing yet (sessions that opened together):
            # the first to deliver leads, the quiet ones join it instead.  Later, an
            # established source keeps the lead even while quiet: it follows on from
            # what was delivered, a joiner may not.
            del self._joining[bit]
            quiet = self._live
            self._live = self._delivering = bit
            while quiet:
                other = quiet & -quiet  # the lowest bit
                quiet &= ~other
                self._joining[other] = {}
            released = [item for k, item in held.items() if self._first(k, bit)]
            if self._first(key, bit):
                released.append(item)
            return released
        if held is None:
            self._delivering |= bit
            if not self._first(key, bit):
                return []
            if not self._joining:
                return [item]
            before, after = self._caught_up(key)
            return [*before, item, *after]
        if key in self._seen or key in self._recent:
            # It caught up with (or is behind) an established source: from here on
            # the two overlap and the first arrival of each key wins, in order.
            released = self._establish(bit)
            self._first(key, bit)
            return released
        held[key] = item
        if len(held) >= DEDUPE_WINDOW:
            return self._establish(bit)  # never caught up: no holding without bound
        return []

    def _caught_up(self, key: Hashable) -> tuple[list[Any], list[Any]]:
        """An established source just delivered ``key``: a joiner that holds it is
        ahead of that source, in step from ``key`` on.  Returns what the joiner holds
        before ``key`` (older than it: delivered first) and after it (the established
        source's copies of those become duplicates)."""
        before: list[Any] = []
        after: list[Any] = []
        for joiner, held in list(self._joining.items()):
            if key in held:
                past = False
                for held_key, held_item in self._joining.pop(joiner).items():
                    if held_key == key:
                        past = True
                    elif self._first(held_key, joiner):
                        (after if past else before).append(held_item)
                self._live |= joiner
                self._delivering |= joiner
        return before, after

    def _establish(self, bit: int) -> list[Any]:
        held = self._joining.pop(bit, {})
        self._live |= bit
        if held:
            self._delivering |= bit
        released = [item for key, item in held.items() if self._first(key, bit)]
        if self._joining:
            for key in list(held):
                before, after = self._caught_up(key)
                released += before + after
        return released

    def _first(self, key: Hashable, bit: int) -> bool:
        """Record that ``bit`` delivered ``key``; whether it is the first to."""
        seen = self._seen
        mask = seen.get(key)
        if mask is None:
            recent = self._recent
            if key in recent:
                self.duplicates += 1
                return False
            if len(recent) >= RECENT_KEYS:
                del recent[next(iter(recent))]
            recent[key] = None
            # Remember it while another source may deliver it too.
            if self._live & ~bit or self._joining:
                if len(seen) >= DEDUPE_WINDOW:
                    del seen[next(iter(seen))]
                seen[key] = bit
            return True
        self.duplicates += 1
        mask |= bit
        if mask & self._live == self._live and not self._joining:
            del seen[key]
        else:
            seen[key] = mask
        return False

    def gap(self, number: int) -> int | None:
        """The number expected instead of ``number``, or None when it follows on."""
        last, self._last = self._last, number
        if last is None or number == last + 1:
            return None
        return last + 1

    @property
    def remembered(self) -> int:
        return len(self._seen)

    @property
    def held(self) -> int:
        return sum(len(items) for items in self._joining.values())
