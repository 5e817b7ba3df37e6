"""The spend ledger: reserve the worst case before a call, settle the truth after.

A reservation is a hold like a card pre-authorisation. Two refusals, which are not alike:

* **the hard limit** (:class:`BudgetExceeded`, 402): settled spend plus this call's hold alone
  passes the hard limit (or the token cap), so the call can never fit. This trips the breaker:
  every later call is refused and the task stops ``BudgetExceeded``.
* **contention** (:class:`BudgetContended`, 429): the call would fit, but not beside the holds of
  the calls in flight. :meth:`Ledger.reserve_waiting` waits (bounded) for holds to settle and
  tries again; if it still does not fit the call is refused as retryable and the breaker stays
  as it was — a burst of calls with large ``max_tokens`` must not end a task that has spent
  almost nothing (issue #9, finding 3).

Either way settled spend cannot pass the limit however many calls run at once, as long as each
call's actual cost is within its hold (the caller caps output tokens so that it is, and charges
the hold when it cannot know the cost: :mod:`spend`). Check-and-hold is synchronous and the
sidecar runs on one event loop, so it is atomic without a lock.

The envelope can change while the task runs (a live edit of ``spec.costEnvelope``):
:meth:`Ledger.apply` swaps it and trips the breaker when the new hard limit is already spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from tether_api import CostEnvelope, usd

from .errors import BudgetContended, BudgetExceeded

__all__ = ["Ledger", "Reservation"]


@dataclass(frozen=True)
class Reservation:
    id: int
    usd: Decimal
    tokens: int


@dataclass
class Ledger:
    envelope: CostEnvelope
    spent_usd: Decimal = Decimal(0)
    reserved_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    reserved_tokens: int = 0
    soft_hits: int = 0
    hard_hits: int = 0
    contended: int = 0
    tripped: bool = False
    _open: dict[int, Reservation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def soft_passed(self) -> bool:
        soft = self.envelope.soft_limit_usd
        return soft is not None and self.spent_usd >= soft

    @property
    def over_limit(self) -> bool:
        """Spend already past the hard limit or the token cap (possible after a live edit)."""
        cap = self.envelope.max_tokens
        return (self.spent_usd > self.envelope.hard_limit_usd
                or (cap is not None and self.tokens > cap))

    def reserve(self, amount: Decimal, tokens: int) -> Reservation:
        """Hold ``amount`` USD and ``tokens`` tokens, or raise BudgetExceeded (never fits: the
        breaker trips) or BudgetContended (fits, but not beside the holds in flight)."""
        if self.tripped:
            raise self.refuse()
        hard, cap = self.envelope.hard_limit_usd, self.envelope.max_tokens
        if self.spent_usd + amount > hard:
            self.tripped = True
            self.hard_hits += 1
            raise BudgetExceeded(
                f"hard limit {usd(hard)} USD: spent {usd(self.spent_usd)}, this call may cost "
                f"up to {usd(amount)}", spentUSD=usd(self.spent_usd), hardLimitUSD=usd(hard))
        if cap is not None and self.tokens + tokens > cap:
            self.tripped = True
            self.hard_hits += 1
            raise BudgetExceeded(
                f"token cap {cap}: used {self.tokens}, this call may use up to {tokens}",
                tokens=self.tokens, maxTokens=cap)
        if self.spent_usd + self.reserved_usd + amount > hard or (
                cap is not None and self.tokens + self.reserved_tokens + tokens > cap):
            raise BudgetContended(
                f"hard limit {usd(hard)} USD: spent {usd(self.spent_usd)}, held for calls in "
                f"flight {usd(self.reserved_usd)}, this call may cost up to {usd(amount)}; it "
                "fits once calls in flight settle: retry", spentUSD=usd(self.spent_usd),
                reservedUSD=usd(self.reserved_usd), hardLimitUSD=usd(hard))
        res = Reservation(next(self._ids), amount, tokens)
        self._open[res.id] = res
        self.reserved_usd += amount
        self.reserved_tokens += tokens
        return res

    async def reserve_waiting(self, amount: Decimal, tokens: int, wait: float) -> Reservation:
        """:meth:`reserve`, waiting up to ``wait`` seconds while only other calls' holds are
        in the way (re-checked each time a hold closes or the envelope changes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            freed = self._freed  # taken before the check: a release after it wakes us
            try:
                return self.reserve(amount, tokens)
            except BudgetContended:
                left = deadline - loop.time()
                if left <= 0:
                    self.contended += 1
                    raise
            # Timing out is not the refusal: one last check above decides.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), left)

    def refuse(self) -> BudgetExceeded:
        """The breaker has tripped: count the refused call as a hard-limit hit."""
        self.hard_hits += 1
        return BudgetExceeded("the task's hard limit was reached; no further model calls",
                              spentUSD=usd(self.spent_usd),
                              hardLimitUSD=usd(self.envelope.hard_limit_usd))

    def settle(
        self, res: Reservation, cost: Decimal, input_tokens: int, output_tokens: int
    ) -> bool:
        """Turn a hold into spend. Returns True when this settlement crossed the soft limit."""
        before = self.soft_passed
        self._close(res)
        self.spent_usd += cost
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        crossed = self.soft_passed and not before
        if crossed:
            self.soft_hits += 1
        return crossed

    def release(self, res: Reservation) -> None:
        """Drop a hold for a call that provably cost nothing (it never left the pod)."""
        self._close(res)

    def apply(self, envelope: CostEnvelope) -> bool:
        """Enforce a new envelope from now on; returns True when this tripped the breaker
        (the new hard limit or token cap is already spent)."""
        self.envelope = envelope
        self._wake()  # a raised limit may let waiting calls in; a lowered one refuses them
        if self.over_limit and not self.tripped:
            self.tripped = True
            return True
        return False

    def _close(self, res: Reservation) -> None:
        if self._open.pop(res.id, None) is None:
            raise RuntimeError(f"reservation {res.id} settled or released twice")
        self.reserved_usd -= res.usd
        self.reserved_tokens -= res.tokens
        self._wake()

    def _wake(self) -> None:
        self._freed.set()
        self._freed = asyncio.Event()

    @property
    def remaining_usd(self) -> Decimal:
        return self.envelope.hard_limit_usd - self.spent_usd - self.reserved_usd
