"""The ledger's promise: settled spend never passes the hard limit while each call's actual cost
is within its hold, whatever the interleaving of reserve, settle and release."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether_api import CostEnvelope
from tether_sidecar.errors import BudgetContended, BudgetExceeded
from tether_sidecar.ledger import Ledger, Reservation


def envelope(hard: str = "1.00", soft: str | None = "0.50", max_tokens: int | None = None
             ) -> CostEnvelope:
    return CostEnvelope.model_validate(
        {"hardLimitUSD": hard, "softLimitUSD": soft, "maxTokens": max_tokens})


def test_a_call_that_can_never_fit_trips_the_breaker() -> None:
    ledger = Ledger(envelope())
    ledger.settle(ledger.reserve(Decimal("0.60"), 10), Decimal("0.60"), 5, 5)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Decimal("0.41"), 10)  # 0.60 spent + 0.41 alone passes 1.00
    assert "hard limit 1.000000 USD" in info.value.reason
    assert ledger.hard_hits == 1 and ledger.tripped
    with pytest.raises(BudgetExceeded):  # tripped: even a call that fits is refused
        ledger.reserve(Decimal("0.01"), 1)
    assert ledger.hard_hits == 2


def test_a_call_refused_only_for_other_holds_is_contended_not_the_limit() -> None:
    ledger = Ledger(envelope())
    first = ledger.reserve(Decimal("0.60"), 10)
    with pytest.raises(BudgetContended) as info:
        ledger.reserve(Decimal("0.41"), 10)  # fits alone, not beside the 0.60 held
    assert info.value.status == 429 and info.value.retry_after is not None
    assert "held for calls in flight 0.600000" in info.value.reason
    assert (ledger.hard_hits, ledger.tripped) == (0, False)
    ledger.settle(first, Decimal("0.10"), 5, 5)
    ledger.reserve(Decimal("0.90"), 10)  # room again once the first settled below its hold


def test_a_waiting_call_gets_its_hold_when_another_settles() -> None:
    async def run() -> Reservation:
        ledger = Ledger(envelope(hard="0.05", soft=None))
        held = [ledger.reserve(Decimal("0.02"), 1) for _ in range(2)]
        waiting = asyncio.ensure_future(ledger.reserve_waiting(Decimal("0.02"), 1, 30.0))
        await asyncio.sleep(0)
        assert not waiting.done()  # 0.04 held, 0.02 more would pass 0.05
        ledger.settle(held[0], Decimal("0.001"), 1, 1)
        return await waiting

    assert asyncio.run(run()).usd == Decimal("0.02")


def test_a_wait_is_bounded_and_ends_contended() -> None:
    async def run() -> None:
        ledger = Ledger(envelope(hard="0.05", soft=None))
        ledger.reserve(Decimal("0.04"), 1)
        with pytest.raises(BudgetContended):
            await ledger.reserve_waiting(Decimal("0.02"), 1, 0.01)
        assert (ledger.contended, ledger.tripped) == (1, False)

    asyncio.run(run())


def test_a_lowered_hard_limit_trips_at_once_and_a_raised_one_lets_waiters_in() -> None:
    async def run() -> None:
        ledger = Ledger(envelope(hard="0.05", soft=None))
        ledger.settle(ledger.reserve(Decimal("0.01"), 1), Decimal("0.01"), 1, 1)
        ledger.reserve(Decimal("0.03"), 1)
        waiting = asyncio.ensure_future(ledger.reserve_waiting(Decimal("0.02"), 1, 30.0))
        await asyncio.sleep(0)
        assert ledger.apply(envelope(hard="0.10", soft=None)) is False
        assert (await waiting).usd == Decimal("0.02")
        assert ledger.apply(envelope(hard="0.005", soft=None)) is True  # 0.01 spent: over at once
        with pytest.raises(BudgetExceeded):
            ledger.reserve(Decimal(0), 0)

    asyncio.run(run())


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
                assert ledger.tripped
            except BudgetContended:
                assert ledger.spent_usd + ledger.reserved_usd + amount > hard
                assert ledger.spent_usd + amount <= hard and not ledger.tripped
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
