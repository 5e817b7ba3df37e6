"""The ledger's promise: settled spend never passes the hard limit while each call's actual cost
is within its hold, whatever the interleaving of reserve, settle and release."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether_api import CostEnvelope
from tether_sidecar.errors import BudgetExceeded
from tether_sidecar.ledger import Ledger, Reservation


def envelope(hard: str = "1.00", soft: str | None = "0.50", max_tokens: int | None = None
             ) -> CostEnvelope:
    return CostEnvelope.model_validate(
        {"hardLimitUSD": hard, "softLimitUSD": soft, "maxTokens": max_tokens})


def test_refuses_a_hold_that_would_cross_the_hard_limit() -> None:
    ledger = Ledger(envelope())
    first = ledger.reserve(Decimal("0.60"), 10)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Decimal("0.41"), 10)
    assert "hard limit 1.000000 USD" in info.value.reason
    assert ledger.hard_hits == 1
    ledger.settle(first, Decimal("0.10"), 5, 5)
    ledger.reserve(Decimal("0.90"), 10)  # room again once the first settled below its hold


def test_soft_limit_is_reported_once_when_crossed() -> None:
    ledger = Ledger(envelope())
    crossings = [ledger.settle(ledger.reserve(Decimal("0.2"), 1), Decimal("0.2"), 1, 1)
                 for _ in range(4)]
    assert crossings == [False, False, True, False]
    assert ledger.soft_hits == 1 and ledger.soft_passed


def test_token_cap() -> None:
    ledger = Ledger(envelope(max_tokens=100))
    ledger.settle(ledger.reserve(Decimal(0), 60), Decimal(0), 50, 10)
    with pytest.raises(BudgetExceeded, match="token cap 100"):
        ledger.reserve(Decimal(0), 41)


def test_a_hold_cannot_be_closed_twice() -> None:
    ledger = Ledger(envelope())
    res = ledger.reserve(Decimal("0.1"), 1)
    ledger.release(res)
    with pytest.raises(RuntimeError):
        ledger.settle(res, Decimal("0.1"), 1, 1)


cents = st.integers(min_value=0, max_value=40).map(lambda c: Decimal(c) / 100)
ops = st.lists(st.tuples(st.sampled_from(["reserve", "settle", "release"]), cents,
                         st.floats(min_value=0.0, max_value=1.0)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(hard=st.integers(min_value=0, max_value=300).map(lambda c: Decimal(c) / 100), ops=ops)
def test_spend_never_passes_the_hard_limit(hard: Decimal, ops: list[tuple[str, Decimal, float]]
                                          ) -> None:
    ledger = Ledger(CostEnvelope(hard_limit_usd=hard))
    held: list[Reservation] = []
    for op, amount, fraction in ops:
        if op == "reserve":
            try:
                held.append(ledger.reserve(amount, 1))
            except BudgetExceeded:
                assert ledger.spent_usd + ledger.reserved_usd + amount > hard
        elif held:
            res = held.pop(int(fraction * (len(held) - 1)))
            if op == "settle":  # the actual cost is any amount up to the hold
                actual = (res.usd * Decimal(fraction)).quantize(Decimal("0.000001"))
                ledger.settle(res, actual, 1, 1)
            else:
                ledger.release(res)
        assert ledger.spent_usd <= hard
        assert ledger.spent_usd + ledger.reserved_usd <= hard
        assert ledger.reserved_usd == sum((r.usd for r in held), Decimal(0))
    for res in held:
        ledger.settle(res, res.usd, 1, 1)
    assert ledger.spent_usd <= hard
    assert ledger.reserved_usd == 0
