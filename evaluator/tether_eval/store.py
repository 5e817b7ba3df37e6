"""The evaluator's store: records, the judging queue and journal, verdicts, detector state, spend.

Async over :mod:`store_sql`: every operation is one transaction run on the store's own thread,
and returns only once committed — so an acknowledged record, a journalled judge answer or an
applied verdict survives a kill at any later instant. What makes judging exactly-once:

* a record and its queue rows are inserted in one transaction, idempotent on ``(uid, attempt)``;
* a queue row is leased before it is worked on (:meth:`Store.claim`); an evaluator that starts
  again under the same instance name takes back its own leases at once, another one waits for
  the lease to run out;
* each judge call is journalled before it leaves (``sent``) and its parsed, redacted answer
  when it returns (``answered``) (:meth:`Store.journal_send`, :meth:`Store.journal_answer`), so a
  restart re-uses every answer it has and re-sends only a call lost in flight — charging that
  lost call its hold, as the sidecar charges a call it lost sight of;
* the verdict, the detector's new state and the queue row's ``done`` are one transaction
  (:meth:`Store.apply`): the detector sees each verdict once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from .store_sql import Backend, Tx, connect, migrate

__all__ = ["Claim", "JournalEntry", "Store", "Tally", "VerdictRow"]

T = TypeVar("T")
Key = tuple[str, int, str]  # uid, attempt, policy


@dataclass(frozen=True)
class Claim:
    uid: str
    attempt: int
    policy: str
    body: dict[str, Any]
    why: str = "sampled"  # sampled, or included: failed, retried

    @property
    def key(self) -> Key:
        return (self.uid, self.attempt, self.policy)


@dataclass(frozen=True)
class JournalEntry:
    state: str  # sent (just now), answered
    answer: dict[str, Any] | None
    sends: int
    orphaned: bool  # a previous send was lost in flight (its hold was charged now)
    orphan_hold: Decimal = Decimal(0)  # what was charged for it


@dataclass(frozen=True)
class VerdictRow:
    verdict: str  # pass, fail, judge_failed
    score: float | None
    reason: str
    rubric_hash: str
    judge: str
    why: str = "sampled"


@dataclass(frozen=True)
class Tally:
    passed: int
    failed: int
    judge_failed: int
    score_sum: float


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store:
    def __init__(self, backend: Backend, thread: ThreadPoolExecutor) -> None:
        self._db, self._thread = backend, thread

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect (on the store's thread: the connection belongs to it) and migrate."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tether-eval-store")
        loop = asyncio.get_running_loop()
        backend = await loop.run_in_executor(thread, connect, url)
        await loop.run_in_executor(thread, migrate, backend)
        return cls(backend, thread)

    @property
    def kind(self) -> str:
        return self._db.kind

    async def _tx(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._db.transaction, fn)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=True)

    # --- records ------------------------------------------------------------------------

    async def put_record(self, rec: dict[str, Any], stratum: str,
                         queue: Sequence[tuple[str, str]]) -> bool:
        """Store a validated record (JSON document) and its queue rows ``(policy, why)``;
        False when ``(uid, attempt)`` was stored before (nothing changes)."""
        uid, attempt = rec["uid"], rec["attempt"]

        def put(tx: Tx) -> bool:
            new = tx.run(
                "INSERT INTO records (uid, attempt, namespace, task, outcome, redaction_ok, "
                "stratum, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                # A placeholder for a task that sent none gives way to its real record.
                "ON CONFLICT (uid, attempt) DO UPDATE SET outcome = excluded.outcome, "
                "redaction_ok = excluded.redaction_ok, stratum = excluded.stratum, "
                "body = excluded.body, received_at = excluded.received_at "
                "WHERE records.outcome = 'no_record' AND excluded.outcome <> 'no_record' "
                "RETURNING uid",
                (uid, attempt, rec["namespace"], rec["task"], rec["outcome"],
                 int(rec["redaction"]["ok"]), stratum, json.dumps(rec), _now()))
            if not new:
                return False
            tx.run("INSERT INTO tasks (uid, attempt) VALUES (?, ?) ON CONFLICT (uid) DO UPDATE "
                   "SET attempt = excluded.attempt WHERE excluded.attempt > tasks.attempt",
                   (uid, attempt))
            for ref in rec["policies"]:
                tx.run("INSERT INTO record_policies (uid, attempt, policy, redaction_ok) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (uid, attempt, policy) DO UPDATE SET "
                       "redaction_ok = excluded.redaction_ok",
                       (uid, attempt, ref["name"], int(rec["redaction"]["ok"])))
            latest = int(tx.run(f"SELECT attempt FROM tasks WHERE uid = ?{tx.for_update}",
                                (uid,))[0][0])
            # The latest attempt's record wins: an older one is stored, not judged.
            state = "pending" if attempt == latest else "superseded"
            if state == "pending":
                tx.run("UPDATE queue SET state = 'superseded', lease_owner = NULL, "
                       "lease_until = NULL WHERE uid = ? AND attempt < ? AND state = 'pending'",
                       (uid, attempt))
            for policy, why in queue:
                tx.run("INSERT INTO queue (uid, attempt, policy, state, why) "
                       "VALUES (?, ?, ?, ?, ?)", (uid, attempt, policy, state, why))
            return True
        return await self._tx(put)

    async def record(self, uid: str, attempt: int) -> dict[str, Any] | None:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT body FROM records WHERE uid = ? AND attempt = ?", (uid, attempt)))
        return json.loads(rows[0][0]) if rows else None

    async def latest_attempt(self, uid: str) -> int | None:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT attempt FROM tasks WHERE uid = ?", (uid,)))
        return int(rows[0][0]) if rows else None

    # --- the queue ----------------------------------------------------------------------

    async def release_own(self, owner: str) -> int:
        """At start: leases this instance held before a restart are free again."""
        return await self._tx(lambda tx: tx.count(
            "UPDATE queue SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = ? AND state = 'pending'", (owner,)))

    async def claim(self, owner: str, now: float, lease: float, limit: int,
                    policies: Sequence[str] | None = None) -> list[Claim]:
        """Lease up to ``limit`` pending rows, oldest first, of ``policies`` only when given
        (rows of a policy no longer configured, or of a capped judge, stay queued)."""
        if policies is not None and not policies:
            return []
        only = (f" AND q.policy IN ({', '.join('?' * len(policies))})" if policies is not None
                else "")

        def claim(tx: Tx) -> list[Claim]:
            rows = tx.run(
                "SELECT q.uid, q.attempt, q.policy, r.body, q.why FROM queue q JOIN records r "
                "ON r.uid = q.uid AND r.attempt = q.attempt WHERE q.state = 'pending' AND "
                f"(q.lease_until IS NULL OR q.lease_until < ?){only} "
                "ORDER BY r.received_at LIMIT ?", (now, *(policies or ()), limit))
            out = []
            for uid, attempt, policy, body, why in rows:
                if tx.count("UPDATE queue SET lease_owner = ?, lease_until = ? WHERE uid = ? AND "
                            "attempt = ? AND policy = ? AND state = 'pending' AND "
                            "(lease_until IS NULL OR lease_until < ?)",
                            (owner, now + lease, uid, attempt, policy, now)) == 1:
                    out.append(Claim(uid, int(attempt), policy, json.loads(body), why))
            return out
        return await self._tx(claim)

    async def unlease(self, key: Key) -> None:
        """Give a leased row back (judging it waits, e.g. for the next day's judge budget)."""
        await self._tx(lambda tx: tx.count(
            "UPDATE queue SET lease_owner = NULL, lease_until = NULL WHERE uid = ? AND "
            "attempt = ? AND policy = ? AND state = 'pending'", key))

    async def pending(self) -> int:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT COUNT(*) FROM queue WHERE state = 'pending'"))
        return int(rows[0][0])

    # --- the judge journal and spend ------------------------------------------------------

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

    async def spent(self, judge: str, day: str) -> Decimal:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT usd FROM judge_spend WHERE judge = ? AND day = ?", (judge, day)))
        return Decimal(rows[0][0]) if rows else Decimal(0)

    async def sends(self) -> dict[tuple[str, int, str, int], int]:
        rows = await self._tx(lambda tx: tx.run(
            "SELECT uid, attempt, policy, sample, sends FROM judge_calls"))
        return {(r[0], int(r[1]), r[2], int(r[3])): int(r[4]) for r in rows}

    # --- verdicts and the detector --------------------------------------------------------

    async def apply(self, claim: Claim, namespace: str, stratum: str, v: VerdictRow,
                    update: Callable[[str | None], tuple[str, bool]] | None) -> bool:
        """Store the verdict, advance the policy's detector (``update(old state JSON) ->
        (new state JSON, alarm)``; None: not fed) and close the queue row, in one transaction.
        Returns whether the detector alarmed."""
        def apply(tx: Tx) -> bool:
            new = tx.run(
                "INSERT INTO verdicts (uid, attempt, policy, namespace, stratum, verdict, score, "
                "reason, rubric_hash, judge, why, judged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?) ON CONFLICT (uid, attempt, policy) DO NOTHING RETURNING uid",
                (*claim.key, namespace, stratum, v.verdict, v.score, v.reason, v.rubric_hash,
                 v.judge, v.why, _now()))
            tx.run("UPDATE queue SET state = 'done', lease_owner = NULL, lease_until = NULL "
                   "WHERE uid = ? AND attempt = ? AND policy = ?", claim.key)
            if not new or update is None:
                return False
            rows = tx.run(f"SELECT state, alarms FROM detectors WHERE policy = ?{tx.for_update}",
                          (claim.policy,))
            state, alarm = update(rows[0][0] if rows else None)
            tx.run("INSERT INTO detectors (policy, state, alarms) VALUES (?, ?, ?) ON CONFLICT "
                   "(policy) DO UPDATE SET state = excluded.state, alarms = detectors.alarms + "
                   "excluded.alarms", (claim.policy, state, int(alarm)))
            return alarm
        return await self._tx(apply)

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


def _add_spend(tx: Tx, judge: str, day: str, usd: Decimal) -> None:
    if not usd:
        return
    rows = tx.run(f"SELECT usd FROM judge_spend WHERE judge = ? AND day = ?{tx.for_update}",
                  (judge, day))
    total = (Decimal(rows[0][0]) if rows else Decimal(0)) + usd
    tx.run("INSERT INTO judge_spend (judge, day, usd) VALUES (?, ?, ?) ON CONFLICT (judge, day) "
           "DO UPDATE SET usd = excluded.usd", (judge, day, str(total)))
