"""The store's judge journal and spend: each judge call written before it leaves and when its
answer is back (a mixin of :class:`store.Store`; the module docstring there says why this makes
judging exactly-once across kills).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from .store_sql import Tx

__all__ = ["JournalEntry", "StoreJournal"]

T = TypeVar("T")
Key = tuple[str, int, str]  # uid, attempt, policy


@dataclass(frozen=True)
class JournalEntry:
    state: str  # sent (just now), answered
    answer: dict[str, Any] | None
    sends: int
    orphaned: bool  # a previous send was lost in flight (its hold was charged now)
    orphan_hold: Decimal = Decimal(0)  # what was charged for it


class StoreJournal:
    async def _tx(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError  # the store's own (one thread, one connection)

    async def journal_send(self, key: Key, sample: int, hold: Decimal, judge: str,
                           day: str) -> JournalEntry:
        """Before a judge call: its answer if journalled (do not call), else mark it sent.
        A row still ``sent`` is a call lost in flight: its hold is charged to the day."""
        def send(tx: Tx) -> JournalEntry:
            rows = tx.run(f"SELECT state, answer, hold, sends FROM judge_calls WHERE uid = ? AND "
                          f"attempt = ? AND policy = ? AND sample = ?{tx.for_update}",
                          (*key, sample))
            if rows and rows[0][0] == "answered":
                return JournalEntry("answered", json.loads(rows[0][1]), int(rows[0][3]), False)
            orphaned = bool(rows) and rows[0][0] == "sent"
            lost = Decimal(rows[0][2]) if orphaned else Decimal(0)
            _add_spend(tx, judge, day, lost)
            tx.run("INSERT INTO judge_calls (uid, attempt, policy, sample, state, hold, sends) "
                   "VALUES (?, ?, ?, ?, 'sent', ?, 1) ON CONFLICT (uid, attempt, policy, sample) "
                   "DO UPDATE SET state = 'sent', hold = excluded.hold, "
                   "sends = judge_calls.sends + 1", (*key, sample, str(hold)))
            sends = int(rows[0][3]) + 1 if rows else 1
            return JournalEntry("sent", None, sends, orphaned, lost)
        return await self._tx(send)

    async def journal_answer(self, key: Key, sample: int, answer: dict[str, Any] | None,
                             cost: Decimal, judge: str, day: str) -> None:
        """After a judge call: its cost to the day's spend and, when it is final (a verdict,
        or a failure not retried), the answer; ``None`` leaves the sample to be sent again."""
        def done(tx: Tx) -> None:
            _add_spend(tx, judge, day, cost)
            state, doc = ("answered", json.dumps(answer)) if answer is not None else ("retry", None)
            tx.run("UPDATE judge_calls SET state = ?, answer = ? WHERE uid = ? AND attempt = ? "
                   "AND policy = ? AND sample = ?", (state, doc, *key, sample))
        await self._tx(done)


def _add_spend(tx: Tx, judge: str, day: str, usd: Decimal) -> None:
    if not usd:
        return
    rows = tx.run(f"SELECT usd FROM judge_spend WHERE judge = ? AND day = ?{tx.for_update}",
                  (judge, day))
    total = (Decimal(rows[0][0]) if rows else Decimal(0)) + usd
    tx.run("INSERT INTO judge_spend (judge, day, usd) VALUES (?, ?, ?) ON CONFLICT (judge, day) "
           "DO UPDATE SET usd = excluded.usd", (judge, day, str(total)))
