"""Retry state: exponential backoff with a cap and jitter, classes, side effects, time cap."""

from __future__ import annotations

import random

import pytest

from tether_api import CallRetry
from tether_sidecar.retry import Failure, RetryExhausted, RetryState, backoff, parse_retry_after


def policy(**kw: object) -> CallRetry:
    return CallRetry.model_validate({"jitter": 0.0, **kw})


def test_backoff_grows_and_is_capped() -> None:
    p = policy(initialInterval="100ms", backoffCoefficient=2.0, maximumInterval="500ms")
    rng = random.Random(1)
    assert [backoff(p, n, rng) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_stays_within_its_band() -> None:
    p = policy(initialInterval="1s", jitter=0.5)
    waits = [backoff(p, 1, random.Random(seed)) for seed in range(200)]
    assert min(waits) >= 0.5 and max(waits) <= 1.0
    assert max(waits) - min(waits) > 0.3  # it does spread


def test_retryable_failure_retries_until_max_attempts() -> None:
    state = RetryState(policy(maxAttempts=3), started=0.0)
    state = state.increment(Failure("503", "HTTP 503"), now=0.0, rng=random.Random(0))
    state = state.increment(Failure("timeout", "slow"), now=1.0, rng=random.Random(0))
    assert state.attempts == 3
    with pytest.raises(RetryExhausted) as info:
        state.increment(Failure("502", "HTTP 502"), now=2.0, rng=random.Random(0))
    assert info.value.error_class == "retryable_exhausted"
    assert [f.cls for f in info.value.state.history] == ["503", "timeout", "502"]


@pytest.mark.parametrize(("cls", "error_class"), [
    ("400", "non_retryable"), ("401", "non_retryable"), ("404", "non_retryable"),
    ("422", "non_retryable"), ("schema", "verification_failed"),
    ("fields", "verification_failed"), ("quota", "non_retryable"),
])
def test_non_retryable_classes_stop_at_once(cls: str, error_class: str) -> None:
    with pytest.raises(RetryExhausted) as info:
        RetryState(policy(), started=0.0).increment(Failure(cls, "x"), 0.0, random.Random(0))
    assert info.value.error_class == error_class


def test_retry_after_is_honoured_over_a_shorter_backoff() -> None:
    state = RetryState(policy(initialInterval="100ms"), started=0.0)
    state = state.increment(Failure("429", "slow down", retry_after=3.0), 0.0, random.Random(0))
    assert state.delay == 3.0


def test_max_elapsed_ends_retries_before_waiting_past_it() -> None:
    state = RetryState(policy(initialInterval="10s", maxElapsed="15s", maxAttempts=10),
                       started=0.0)
    with pytest.raises(RetryExhausted) as info:
        state.increment(Failure("503", "HTTP 503"), now=6.0, rng=random.Random(0))
    assert "maxElapsed" in info.value.reason


def test_side_effect_tool_is_not_retried_after_a_timeout() -> None:
    state = RetryState(policy(), started=0.0, side_effects=True)
    with pytest.raises(RetryExhausted) as info:
        state.increment(Failure("timeout", "timed out", reached=True), 0.0, random.Random(0))
    assert info.value.error_class == "non_retryable"
    assert "idempotencyHeader" in info.value.reason


def test_side_effect_tool_is_retried_when_the_request_never_arrived() -> None:
    state = RetryState(policy(), started=0.0, side_effects=True)
    nxt = state.increment(Failure("connection_refused", "refused", reached=False), 0.0,
                          random.Random(0))
    assert nxt.attempts == 2
    nxt = nxt.increment(Failure("503", "busy"), 0.0, random.Random(0))  # 503: not processed
    assert nxt.attempts == 3


def test_side_effect_tool_with_idempotency_key_is_retried() -> None:
    state = RetryState(policy(), started=0.0, side_effects=True, idempotent=True)
    assert state.increment(Failure("timeout", "t"), 0.0, random.Random(0)).attempts == 2


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
