"""The store's reads: counts, tallies, verdicts and spend for status, metrics and reports.

A mixin of :class:`store.Store` (each read is one transaction on the store's thread, as every
write is); kept apart so the writes that make judging exactly-once read on their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from .store_sql import Tx

__all__ = ["StoreReads", "Tally"]

T = TypeVar("T")


@dataclass(frozen=True)
class Tally:
    passed: int
    failed: int
    judge_failed: int
    score_sum: float


class StoreReads:
    async def _tx(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError  # the store's own (one thread, one connection)

    async def spent(self, judge: str, day: str) -> Decimal:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT usd FROM judge_spend WHERE judge = ? AND day = ?", (judge, day)))
        return Decimal(rows[0][0]) if rows else Decimal(0)

    async def sends(self) -> dict[tuple[str, int, str, int], int]:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT uid, attempt, policy, sample, sends FROM judge_calls"))
        return {(r[0], int(r[1]), r[2], int(r[3])): int(r[4]) for r in rows}

    async def counts(self, policy: str) -> dict[str, int]:
        """The policy's records, redaction failures, samples chosen and verdicts."""
        def counts(tx: Tx) -> dict[str, int]:
            rec = tx.run("SELECT COUNT(*), COALESCE(SUM(1 - redaction_ok), 0) FROM "
                         "record_policies WHERE policy = ?", (policy,))[0]
            chosen = tx.run("SELECT COUNT(*) FROM queue WHERE policy = ? AND state <> "
                            "'superseded'", (policy,))[0]
            return {"records": int(rec[0]), "redaction_failures": int(rec[1]),
                    "samples": int(chosen[0])}
        return await self._tx(counts)

    async def detector(self, policy: str) -> tuple[str | None, int]:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT state, alarms FROM detectors WHERE policy = ?", (policy,)))
        return (rows[0][0], int(rows[0][1])) if rows else (None, 0)

    async def tally(self, policy: str, stratum: str | None = None) -> Tally:
        """Verdicts on the random sample (tasks included as failed or retried are not in it)."""
        where, params = "policy = ? AND why = 'sampled'", [policy]
        if stratum is not None:
            where, params = where + " AND stratum = ?", [*params, stratum]
        rows = await self._tx(lambda tx: tx.run(
            f"SELECT verdict, COUNT(*), COALESCE(SUM(score), 0) FROM verdicts WHERE {where} "
            "GROUP BY verdict", params))
        by = {r[0]: (int(r[1]), float(r[2])) for r in rows}
        return Tally(by.get("pass", (0, 0.0))[0], by.get("fail", (0, 0.0))[0],
                     by.get("judge_failed", (0, 0.0))[0],
                     by.get("pass", (0, 0.0))[1] + by.get("fail", (0, 0.0))[1])

    async def verdicts(self, policy: str) -> list[tuple[str, int, str, float | None, str]]:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT uid, attempt, verdict, score, reason FROM verdicts WHERE policy = ? "
            "ORDER BY judged_at", (policy,)))
        return [(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows]

    async def failing(self, policy: str) -> list[dict[str, Any]]:
        """The policy's failed and judge_failed verdicts with their task and failed checks
        (reasons are stored redacted), oldest first: what ``tether eval report`` groups."""
        rows = await self._tx(lambda tx: tx.run(
            "SELECT v.uid, v.attempt, v.verdict, v.reason, r.task, r.body FROM verdicts v "
            "JOIN records r ON r.uid = v.uid AND r.attempt = v.attempt WHERE v.policy = ? AND "
            "v.verdict <> 'pass' ORDER BY v.judged_at", (policy,)))
        out = []
        for uid, attempt, verdict, reason, task, body in rows:
            doc = json.loads(body)
            checks = (doc.get("deterministic") or {}).get("checks") or []
            out.append({"uid": uid, "attempt": int(attempt), "verdict": verdict,
                        "reason": reason, "task": task, "namespace": doc["namespace"],
                        "instructions": doc.get("instructions"), "inputs": doc.get("inputs"),
                        "failedChecks": sorted(c["name"] for c in checks if not c["passed"])})
        return out

    async def dump_text(self) -> str:
        """Every text column of every table, for tests that look for what must not be there."""
        def dump(tx: Tx) -> str:
            out: list[str] = []
            for table in ("records", "queue", "judge_calls", "verdicts", "detectors"):
                out.extend(repr(row) for row in tx.run(f"SELECT * FROM {table}"))
            return "\n".join(out)
        return await self._tx(dump)

    async def anchor_runs(self, policy: str) -> list[tuple[str, int, int, int]]:
        """The policy's anchor runs ``(run_at, passes, n, agreed)``, oldest first: the first
        is the baseline the others are tested against."""
        rows = await self._tx(lambda tx: tx.run(
            "SELECT run_at, passes, n, agreed FROM anchor_runs WHERE policy = ? ORDER BY run_at",
            (policy,)))
        return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]
