"""pool/feed.py without sockets: the StreamFilter (dedupe across sources, sequence
gaps), the TokenBucket and the option value classes."""

from __future__ import annotations

import re

import pytest

from wspool import Heartbeat, RateLimit
from wspool.pool.feed import (
    DEDUPE_WINDOW,
    FeedOptions,
    StreamFilter,
    TokenBucket,
    coerce_subscribe,
    encode_payload,
    payloads_of,
)

A, B, C = 1, 2, 4


def feed(**options: object) -> FeedOptions:
    values: dict[str, object] = {
        "subscribe": None,
        "send_rate": None,
        "max_age": None,
        "stale_after": None,
        "heartbeat": None,
        "redundancy": 1,
        "alternates": (),
        "dedupe": None,
        "sequence": None,
    }
    values.update(options)
    return FeedOptions(**values)  # type: ignore[arg-type]


def two_sources() -> StreamFilter:
    """A and B both established (B caught up with A on key 0)."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.source_started(B)  # while B connects, A's keys are remembered
    assert stream.admit(0, A, "m0") == ["m0"]
    assert stream.admit(0, B, "m0") == []
    assert stream.held == 0
    return stream


def test_a_key_from_both_sessions_is_delivered_once_and_then_forgotten() -> None:
    stream = two_sources()
    assert stream.admit(1, A, "m1") == ["m1"]
    assert stream.remembered == 1
    assert stream.admit(1, B, "m1") == []
    assert stream.remembered == 0, "seen by every live source: nothing left to drop"
    assert stream.duplicates == 2


def test_a_repeat_on_the_same_session_is_a_duplicate_too() -> None:
    stream = two_sources()
    assert stream.admit("k", A, 1) == [1]
    assert stream.admit("k", A, 1) == []
    assert stream.remembered == 1, "B has not delivered it yet"
    assert stream.admit("k", B, 1) == []
    assert stream.remembered == 0


def test_a_single_source_remembers_nothing() -> None:
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    for key in range(1000):
        assert stream.admit(key, A, key) == [key]
    assert stream.remembered == 0


def test_a_joining_session_is_held_until_it_catches_up_so_order_is_kept() -> None:
    """The new session's first message (9) arrives before the old one's 8: 9 is held,
    8 goes out; the old one's 9 shows the new one is ahead: what it holds past 9 goes
    out, and from there the first arrival of each key wins."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    assert stream.admit(7, A, 7) == [7]
    stream.source_started(B)
    assert stream.admit(9, B, 9) == [], "held: A may still have 8 on the way"
    assert stream.admit(10, B, 10) == []
    assert stream.held == 2
    assert stream.admit(8, A, 8) == [8]
    assert stream.admit(9, A, 9) == [9, 10], "B holds 9: it is ahead, its 10 goes out"
    assert stream.held == 0
    assert stream.admit(11, B, 11) == [11]
    assert stream.admit(10, A, 10) == []
    assert stream.admit(11, A, 11) == []
    assert stream.source_ended(A) == []
    assert stream.admit(12, B, 12) == [12]


def test_two_sessions_joining_at_once_are_taken_one_after_the_other() -> None:
    """The established session ends while two join: the oldest carries on, the other
    still joins it, so the one ahead cannot overtake (the 29 -> 31 -> 30 of a stream
    that rotated while a replacement was still opening)."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    assert stream.admit(27, A, 27) == [27]
    stream.source_started(B)
    stream.source_started(C)
    assert stream.admit(28, B, 28) == []
    assert stream.admit(31, C, 31) == []
    assert stream.source_ended(A) == [28], "B, the oldest joiner, carries on"
    assert stream.admit(29, B, 29) == [29]
    assert stream.admit(32, C, 32) == [], "C is still held: it is ahead of B"
    assert stream.admit(30, B, 30) == [30]
    assert stream.admit(31, B, 31) == [31, 32], "B reached C's first: C caught up"
    assert stream.admit(33, C, 33) == [33]
    assert stream.admit(32, B, 32) == []


def test_a_joining_session_that_catches_up_overlaps_from_there() -> None:
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.admit(0, A, 0)
    stream.source_started(B)
    for key in range(1, 5):
        stream.admit(key, A, key)
    assert stream.admit(4, B, 4) == [], "behind A: a duplicate, and it caught up"
    assert stream.held == 0
    assert stream.admit(5, B, 5) == [5], "first arrival wins from here on"
    assert stream.admit(5, A, 5) == []


def test_when_the_old_session_ends_first_what_the_new_one_held_goes_out_in_order() -> None:
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.admit(1, A, 1)
    stream.source_started(B)
    assert stream.admit(3, B, 3) == []
    assert stream.admit(4, B, 4) == []
    assert stream.admit(2, A, 2) == [2]
    assert stream.source_ended(A) == [3, 4]
    assert stream.admit(5, B, 5) == [5]


def test_when_a_source_ends_keys_the_others_completed_are_forgotten() -> None:
    stream = two_sources()
    for key in range(1, 11):
        stream.admit(key, B, key)  # B ahead: A never delivers these
    assert stream.remembered == 10
    stream.source_ended(A)
    assert stream.remembered == 0


def test_keys_only_the_ended_source_saw_are_kept_for_the_slower_one() -> None:
    stream = two_sources()
    stream.admit("late", A, "late")  # A ahead; B still to deliver it
    stream.source_ended(A)
    assert stream.admit("late", B, "late") == [], "B's copy is still recognised"


def test_the_memory_is_bounded_by_the_window() -> None:
    stream = two_sources()
    for key in range(1, DEDUPE_WINDOW + 100):
        stream.admit(key, A, key)  # B never delivers anything
    assert stream.remembered == DEDUPE_WINDOW
    assert stream.admit(1, B, 1) == [1], "the oldest keys were forgotten first"


def test_a_session_that_never_catches_up_is_not_held_without_bound() -> None:
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.admit("a", A, "a")
    stream.source_started(B)
    released: list[object] = []
    for key in range(DEDUPE_WINDOW):
        released += stream.admit(key, B, key)
    assert released == list(range(DEDUPE_WINDOW)), "released in order at the bound"
    assert stream.held == 0


def test_sequence_gaps_and_regressions() -> None:
    stream = StreamFilter(feed(sequence=int))
    assert stream.gap(5) is None, "the first number sets the start"
    assert stream.gap(6) is None
    assert stream.gap(9) == 7, "7 and 8 are missing"
    assert stream.gap(10) is None
    assert stream.gap(4) == 11, "a regression: the stream went back"
    assert stream.gap(5) is None


def test_token_bucket_starts_full_and_refills_at_the_rate() -> None:
    bucket = TokenBucket(RateLimit(10, burst=3))
    assert bucket.tokens == 3
    bucket.tokens -= 3
    assert bucket.wait_for_one() == pytest.approx(0.1)
    bucket.refill(bucket._stamp + 0.05)
    assert bucket.tokens == pytest.approx(0.5)
    bucket.refill(bucket._stamp + 10)
    assert bucket.tokens == 3, "never above burst"
    for _ in range(10):
        bucket.take_control()
    assert bucket.tokens == -3, "control frames go into debt, at most burst deep"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RateLimit(0), "per_second must be a number > 0"),
        (lambda: RateLimit(5, burst=0), "burst must be an int >= 1"),
        (lambda: Heartbeat(0), "interval must be a number of seconds > 0"),
        (lambda: Heartbeat(5, timeout=-1), "timeout must be a number of seconds > 0"),
        (lambda: Heartbeat(5, payload=3), "a payload must be str, bytes, dict or list"),  # type: ignore[arg-type]
        (lambda: Heartbeat(5, reply=3), "reply must be str, bytes"),  # type: ignore[arg-type]
    ],
)
def test_option_values_check_themselves(make: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()  # type: ignore[operator]


def test_heartbeat_matchers() -> None:
    assert Heartbeat(1).matcher()("pong")
    assert not Heartbeat(1).matcher()("pong!")
    pattern = Heartbeat(1, reply=re.compile(r'\{"op":"pong"')).matcher()
    assert pattern('{"op":"pong","ts":1}')
    assert not pattern(b'{"op":"pong"}'), "a text pattern does not match binary"
    assert Heartbeat(1, reply=lambda m: m.startswith("p")).matcher()("pong")
    assert Heartbeat(1).deadline == 1 and Heartbeat(1, timeout=0.5).deadline == 0.5


def test_payloads() -> None:
    assert encode_payload("a") == ("a", True)
    assert encode_payload(b"\x00") == (b"\x00", False)
    assert encode_payload({"op": "sub"}) == ('{"op":"sub"}', True)
    assert coerce_subscribe({"op": "sub"}) == ({"op": "sub"},)
    assert coerce_subscribe([[1, 2]]) == ([1, 2],), "a JSON array goes inside a list"
    assert payloads_of(lambda conn: "one", None) == [("one", True)]
    assert payloads_of(lambda conn: None, None) == []
    with pytest.raises(TypeError, match="not float"):
        coerce_subscribe([1.5])


def test_a_joiner_ahead_from_the_start_goes_first() -> None:
    """Two sessions open at once; the joining one gets 3 and 4 before the established
    one's first message, 4: the joiner leads from its first message (the 4, 3, 5 of a
    redundant stream whose standby subscribed first)."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.source_started(B)
    assert stream.admit(3, B, 3) == [3]
    assert stream.admit(4, B, 4) == [4]
    assert stream.admit(4, A, 4) == [], "A caught up: a duplicate"
    assert stream.admit(5, A, 5) == [5]
    assert stream.admit(5, B, 5) == []


def test_when_sessions_open_together_the_first_to_deliver_leads() -> None:
    """A was established first but B delivers first (1), then A's 2: the order is
    B's, and A joins B (the 2, 1, 3 of two sessions opened at once)."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    stream.source_started(B)
    assert stream.admit(1, B, 1) == [1], "nothing was delivered yet: B leads"
    assert stream.admit(2, A, 2) == [], "A joins: held"
    assert stream.admit(2, B, 2) == [2]
    assert stream.held == 0, "B delivered a key A holds: A is in step"
    assert stream.admit(3, A, 3) == [3]
    assert stream.admit(3, B, 3) == []


def test_later_a_quiet_successor_keeps_the_lead() -> None:
    """After the leader ended, the session that took over follows on from what was
    delivered even before it delivers anything itself; a newer joiner that is ahead
    waits for it (46, 47, 48, never 46, 48, 47)."""
    stream = StreamFilter(feed(dedupe=lambda m: m))
    stream.source_started(A)
    assert stream.admit(46, A, 46) == [46]
    stream.source_started(B)
    assert stream.source_ended(A) == []  # B takes over, holding nothing yet
    stream.source_started(C)
    assert stream.admit(48, C, 48) == [], "C is ahead: held"
    assert stream.admit(47, B, 47) == [47]
    assert stream.admit(48, B, 48) == [48]
    assert stream.admit(49, C, 49) == [49], "C caught up"
