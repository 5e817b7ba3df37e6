"""Retry state as an immutable value: each failure gives a new state or ends the call.

Modelled on urllib3's ``Retry``: ``RetryState.increment(failure)`` returns the next state with the
wait before the next attempt, or raises :class:`RetryExhausted` (the last failure chained as its
cause) when the policy says stop. No clock or sleep lives here; the caller passes ``now`` and does
the waiting, so tests drive it with plain numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from tether_api import CallRetry

__all__ = ["Failure", "RetryExhausted", "RetryState", "backoff"]

# Classes that say the server did not act on the request (RFC 9110 §15.5.20 for 429 and
# §15.6.4 for 503: "the server is currently unable to handle the request"); any other failure
# after the request was sent may have had its effect.
_NOT_PROCESSED = frozenset({"429", "503", "connection_refused"})


@dataclass(frozen=True)
class Failure:
    """One failed attempt. ``cls`` is an HTTP status as text or a failure class
    (timeout, connection, empty, malformed, schema, fields)."""

    cls: str
    reason: str
    reached: bool = True
    retry_after: float | None = None
    status: int | None = None

    @property
    def policy_class(self) -> str:
        return "connection" if self.cls == "connection_refused" else self.cls

    @property
    def may_have_acted(self) -> bool:
        return self.reached and self.cls not in _NOT_PROCESSED


class RetryExhausted(Exception):
    """No further attempt; ``error_class`` is retryable_exhausted, non_retryable or
    verification_failed."""

    def __init__(self, error_class: str, reason: str, state: RetryState) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason
        self.state = state


_VERIFICATION = frozenset({"empty", "malformed", "schema", "fields"})


def backoff(policy: CallRetry, retry_number: int, rng: random.Random) -> float:
    """Wait before retry ``retry_number`` (1-based): exponential, capped, then jittered down."""
    base = policy.seconds("initial_interval") * policy.backoff_coefficient ** (retry_number - 1)
    capped = min(base, policy.seconds("maximum_interval"))
    return capped * (1.0 - policy.jitter * rng.random())


@dataclass(frozen=True)
class RetryState:
    policy: CallRetry
    started: float
    side_effects: bool = False
    idempotent: bool = False
    attempts: int = 1
    history: tuple[Failure, ...] = field(default=())
    delay: float = 0.0

    def increment(self, failure: Failure, now: float, rng: random.Random) -> RetryState:
        history = (*self.history, failure)
        if not self.policy.is_retryable(failure.policy_class):
            kind = "verification_failed" if failure.cls in _VERIFICATION else "non_retryable"
            raise RetryExhausted(kind, failure.reason, replace(self, history=history))
        if self.side_effects and not self.idempotent and failure.may_have_acted:
            raise RetryExhausted(
                "non_retryable",
                f"{failure.reason}; not retried: the tool has side effects, the request may have "
                "reached it, and it takes no idempotency key (set idempotencyHeader)",
                replace(self, history=history),
            )
        if self.attempts >= self.policy.max_attempts:
            raise RetryExhausted(
                "retryable_exhausted",
                f"{failure.reason}; gave up after {self.attempts} attempts",
                replace(self, history=history),
            )
        delay = backoff(self.policy, self.attempts, rng)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        remaining = self.policy.seconds("max_elapsed") - (now - self.started)
        if delay > remaining:
            raise RetryExhausted(
                "retryable_exhausted",
                f"{failure.reason}; gave up after {self.attempts} attempts: the next wait "
                f"({delay:.2f}s) would pass maxElapsed ({self.policy.max_elapsed})",
                replace(self, history=history),
            )
        return replace(self, attempts=self.attempts + 1, history=history, delay=delay)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110 §10.2.3); HTTP-dates are read too."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
