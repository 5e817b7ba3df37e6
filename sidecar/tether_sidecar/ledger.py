"""The spend ledger: reserve the worst case before a call, settle the truth after.

A reservation is a hold like a card pre-authorisation. ``reserve`` refuses when settled spend plus
every outstanding hold plus the new one would pass the hard limit (or the token cap), so however
many calls run at once, settled spend cannot pass the limit as long as each call's actual cost is
within its hold (the caller caps output tokens so that it is). All methods are synchronous and the
sidecar runs on one event loop, so check-and-hold is atomic without a lock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from tether_api import CostEnvelope, usd

from .errors import BudgetExceeded

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
    _open: dict[int, Reservation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def soft_passed(self) -> bool:
        soft = self.envelope.soft_limit_usd
        return soft is not None and self.spent_usd >= soft

    @property
    def hard_stopped(self) -> bool:
        return self.hard_hits > 0

    def reserve(self, amount: Decimal, tokens: int) -> Reservation:
        """Hold ``amount`` USD and ``tokens`` tokens, or raise BudgetExceeded."""
        hard = self.envelope.hard_limit_usd
        if self.spent_usd + self.reserved_usd + amount > hard:
            self.hard_hits += 1
            raise BudgetExceeded(
                f"hard limit {usd(hard)} USD: spent {usd(self.spent_usd)}, held for calls in "
                f"flight {usd(self.reserved_usd)}, this call may cost up to {usd(amount)}",
                spentUSD=usd(self.spent_usd),
                hardLimitUSD=usd(hard),
            )
        cap = self.envelope.max_tokens
        if cap is not None and self.tokens + self.reserved_tokens + tokens > cap:
            self.hard_hits += 1
            raise BudgetExceeded(
                f"token cap {cap}: used {self.tokens}, held {self.reserved_tokens}, this call "
                f"may use up to {tokens}",
                tokens=self.tokens,
                maxTokens=cap,
            )
        res = Reservation(next(self._ids), amount, tokens)
        self._open[res.id] = res
        self.reserved_usd += amount
        self.reserved_tokens += tokens
        return res

    def refuse(self) -> BudgetExceeded:
        """The breaker has tripped: count the refused call as a hard-limit hit."""
        self.hard_hits += 1
        return BudgetExceeded("the task's hard limit was reached; no further model calls",
                              spentUSD=usd(self.spent_usd))

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
        """Drop a hold for a call that cost nothing (refused or failed before the provider
        charged)."""
        self._close(res)

    def _close(self, res: Reservation) -> None:
        if self._open.pop(res.id, None) is None:
            raise RuntimeError(f"reservation {res.id} settled or released twice")
        self.reserved_usd -= res.usd
        self.reserved_tokens -= res.tokens

    @property
    def remaining_usd(self) -> Decimal:
        return self.envelope.hard_limit_usd - self.spent_usd - self.reserved_usd
