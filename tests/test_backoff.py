"""Unit tests of wspool.pool.backoff: ReconnectPolicy's full-jitter delays and the
``reconnect=`` option's coercion (``coerce_reconnect``).

Delays are drawn from a seeded ``random.Random`` (or one pinned to the ends of its
range), so nothing here depends on the clock or on luck.
"""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

import wspool
from wspool.exceptions import WebSocketConfigurationException
from wspool.pool.backoff import ReconnectPolicy, coerce_reconnect

DRAWS = 2000  # samples per (policy, attempt): ample to see both ends of the range
NAN = float("nan")


class _Top(random.Random):
    """A generator whose every draw is the top of its range: delay() == its ceiling."""

    def random(self) -> float:
        return 1.0


class _Bottom(random.Random):
    """A generator whose every draw is the bottom of its range: delay() == 0."""

    def random(self) -> float:
        return 0.0


def ceiling(policy: ReconnectPolicy, attempt: int) -> float:
    """The bound of full jitter: min(max_delay, initial_delay * factor ** attempt)."""
    return min(policy.max_delay, policy.initial_delay * policy.factor**attempt)


# ------------------------------------------------------------------ defaults


def test_defaults() -> None:
    policy = ReconnectPolicy()
    assert policy.initial_delay == 0.5
    assert policy.factor == 2.0
    assert policy.max_delay == 30.0
    assert policy.max_attempts is None
    assert policy.reset_after == 10.0
    assert policy.on_normal_close is True
    assert policy.retry_statuses == frozenset({408, 425, 429, 500, 502, 503, 504})
    assert isinstance(policy.retry_statuses, frozenset)


def test_policy_is_a_frozen_value() -> None:
    policy = ReconnectPolicy(initial_delay=1.0)
    assert policy == ReconnectPolicy(initial_delay=1.0)
    assert hash(policy) == hash(ReconnectPolicy(initial_delay=1.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.initial_delay = 2.0  # type: ignore[misc]
    assert wspool.ReconnectPolicy is ReconnectPolicy


# ------------------------------------------------------------------ delays


POLICIES = [
    ReconnectPolicy(),
    ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
    ReconnectPolicy(initial_delay=1.0, factor=3.0, max_delay=100.0),
    ReconnectPolicy(initial_delay=2.0, factor=1.0, max_delay=5.0),
    ReconnectPolicy(initial_delay=10.0, max_delay=4.0),  # capped from the first attempt
]


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_every_delay_is_within_full_jitter_bounds(policy: ReconnectPolicy) -> None:
    """Full jitter: the n-th delay is uniform in [0, min(max_delay, initial * factor**n)],
    so the draws fill that whole range, from near 0 to near the bound."""
    rng = random.Random(8)
    for attempt in range(12):
        top = ceiling(policy, attempt)
        draws = [policy.delay(attempt, rng) for _ in range(DRAWS)]
        assert all(0.0 <= d <= top for d in draws), (attempt, top, min(draws), max(draws))
        assert min(draws) < 0.01 * top
        assert max(draws) > 0.99 * top
        assert 0.45 * top < sum(draws) / DRAWS < 0.55 * top  # uniform: the mean is half


def test_the_bound_grows_by_factor_per_attempt_up_to_max_delay() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, factor=2.0, max_delay=30.0)
    bounds = [policy.delay(attempt, _Top()) for attempt in range(10)]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert [policy.delay(attempt, _Bottom()) for attempt in range(10)] == [0.0] * 10
    tripled = ReconnectPolicy(initial_delay=1.0, factor=3.0, max_delay=50.0)
    assert [tripled.delay(a, _Top()) for a in range(5)] == [1.0, 3.0, 9.0, 27.0, 50.0]


def test_factor_one_keeps_the_bound_and_zero_initial_delay_retries_at_once() -> None:
    constant = ReconnectPolicy(initial_delay=2.0, factor=1.0)
    assert {constant.delay(a, _Top()) for a in range(20)} == {2.0}
    immediate = ReconnectPolicy(initial_delay=0.0)
    rng = random.Random(1)
    assert {immediate.delay(a, rng) for a in range(20)} == {0.0}


def test_the_cap_holds_for_any_attempt_count() -> None:
    """Counting attempts for hours never makes the bound exceed max_delay."""
    policy = ReconnectPolicy()
    rng = random.Random(3)
    for attempt in (20, 64, 65, 1000, 10**6):
        assert policy.delay(attempt, _Top()) == policy.max_delay
        assert 0.0 <= policy.delay(attempt, rng) <= policy.max_delay


def test_the_cap_holds_with_a_large_factor() -> None:
    policy = ReconnectPolicy(factor=1e6)
    assert policy.delay(100, _Top()) == policy.max_delay


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = ReconnectPolicy()
    first = [policy.delay(a % 8, random.Random(42)) for a in range(50)]
    again = [policy.delay(a % 8, random.Random(42)) for a in range(50)]
    assert first == again
    seeded = random.Random(7)
    shared = [policy.delay(a, seeded) for a in range(8)]
    assert len(set(shared)) == 8  # one generator: each draw moves it on


def test_without_a_generator_delays_come_from_the_random_module() -> None:
    policy = ReconnectPolicy()
    state = random.getstate()
    try:
        random.seed(5)
        drawn = [policy.delay(a) for a in range(8)]
        random.seed(5)
        assert drawn == [policy.delay(a) for a in range(8)]
    finally:
        random.setstate(state)
    assert all(0.0 <= d <= ceiling(policy, a) for a, d in enumerate(drawn))


# ------------------------------------------------------------------ policy validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_delay", -1),
        ("initial_delay", -0.001),
        ("initial_delay", "1"),
        ("initial_delay", None),
        ("max_delay", -5.0),
        ("max_delay", "30"),
        ("reset_after", -2),
        ("factor", 0.5),
        ("factor", 0),
        ("factor", "2"),
        ("max_attempts", -1),
    ],
)
def test_invalid_fields_are_refused_naming_field_and_value(field: str, value: object) -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        ReconnectPolicy(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_non_numeric_max_attempts_is_a_configuration_error() -> None:
    with pytest.raises(WebSocketConfigurationException, match=r"max_attempts.*'3'"):
        ReconnectPolicy(max_attempts="3")  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["initial_delay", "max_delay", "reset_after", "factor"])
def test_nan_is_refused(field: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match=field):
        ReconnectPolicy(**{field: NAN})  # type: ignore[arg-type]


# ------------------------------------------------------------------ coerce_reconnect


@pytest.mark.parametrize("value", [None, False, 0, 0.0])
def test_off_values_mean_no_reconnect(value: object) -> None:
    """None/False, and 0 as in websocket-client's run_forever(reconnect=0)."""
    assert coerce_reconnect(value) is None


def test_true_is_the_default_policy() -> None:
    assert coerce_reconnect(True) == ReconnectPolicy()


def test_a_policy_is_used_as_it_is() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_attempts=3)
    assert coerce_reconnect(policy) is policy


@pytest.mark.parametrize(
    ("seconds", "initial", "cap"),
    [(5, 5.0, 30.0), (0.25, 0.25, 30.0), (30, 30.0, 30.0), (60, 60.0, 60.0)],
)
def test_seconds_are_the_initial_delay(seconds: float, initial: float, cap: float) -> None:
    """A number is the first delay (websocket-client style), backing off up to 30 s, or
    up to the number itself when that is longer."""
    policy = coerce_reconnect(seconds)
    assert policy == ReconnectPolicy(initial_delay=initial, max_delay=cap)
    assert policy is not None and type(policy.initial_delay) is float


def test_a_dict_holds_policy_fields() -> None:
    assert coerce_reconnect({}) == ReconnectPolicy()
    fields = {"initial_delay": 0.05, "max_delay": 0.2, "max_attempts": 2, "on_normal_close": False}
    assert coerce_reconnect(fields) == ReconnectPolicy(**fields)


#: Invalid ``reconnect=`` values and what the error message should quote.
INVALID = [
    pytest.param({"x": 1}, ["x"], id="unknown-field"),
    pytest.param({"initial_delay": -1}, ["initial_delay", "-1"], id="negative-field"),
    pytest.param({"factor": 0.5}, ["factor", "0.5"], id="small-factor"),
    pytest.param({"max_attempts": -1}, ["max_attempts", "-1"], id="negative-max-attempts"),
    pytest.param({"reset_after": "soon"}, ["reset_after", "'soon'"], id="text-field"),
]
WRONG_TYPES = [
    pytest.param("soon", id="str"),
    pytest.param("5", id="numeric-str"),
    pytest.param([1.0], id="list"),
    pytest.param(b"x", id="bytes"),
    pytest.param(1 + 2j, id="complex"),
    pytest.param(object(), id="object"),
]


@pytest.mark.parametrize(("value", "quoted"), INVALID)
def test_invalid_values_name_what_is_wrong(value: object, quoted: list[str]) -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        coerce_reconnect(value)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("reconnect")
    assert all(q in message for q in quoted), message


@pytest.mark.parametrize("value", WRONG_TYPES)
def test_values_of_a_wrong_type_are_configuration_errors(value: object) -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        coerce_reconnect(value)
    message = str(info.value)
    assert message.startswith("reconnect must be a bool, a delay in seconds")
    assert type(value).__name__ in message


@pytest.mark.parametrize("value", WRONG_TYPES)
def test_values_of_a_wrong_type_are_named_in_the_message(value: object) -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        coerce_reconnect(value)
    assert repr(value) in str(info.value)


def test_a_dict_with_a_non_string_key_names_the_key() -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        coerce_reconnect({1: 2})
    assert "1" in str(info.value).replace("reconnect", "")


def test_a_dict_with_a_text_max_attempts_names_field_and_value() -> None:
    with pytest.raises(WebSocketConfigurationException) as info:
        coerce_reconnect({"max_attempts": "3"})
    assert "max_attempts" in str(info.value) and "'3'" in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_a_negative_delay_is_refused(value: float) -> None:
    with pytest.raises(WebSocketConfigurationException, match=re.escape(repr(value))):
        coerce_reconnect(value)


def test_a_nan_delay_is_refused() -> None:
    with pytest.raises(WebSocketConfigurationException, match="nan"):
        coerce_reconnect(NAN)


def test_retry_tls_errors_is_a_flag() -> None:
    assert ReconnectPolicy().retry_tls_errors is False
    assert ReconnectPolicy(retry_tls_errors=True).retry_tls_errors is True
    with pytest.raises(WebSocketConfigurationException, match="retry_tls_errors"):
        ReconnectPolicy(retry_tls_errors="yes")  # type: ignore[arg-type]
