"""The evaluator's store: records, the judging queue and journal, verdicts, detector state, spend.

Async over :mod:`store_sql`: every operation is one transaction run on the store's own thread,
and returns only once committed — so an acknowledged record, a journalled judge answer or an
applied verdict survives a kill at any later instant. What makes judging exactly-once:

* a record and its queue rows are inserted in one transaction, idempotent on ``(uid, attempt)``
  (only a better outcome replaces a stored record: :meth:`Store.put_record`);
* a queue row is leased only once its task is terminal and it is the task's final attempt
  (:meth:`Store.set_terminal`), and before it is worked on (:meth:`Store.claim`); an evaluator
  that starts again under the same instance name takes back its own leases at once, another
  one waits for the lease to run out;
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
from typing import Any, TypeVar

from .store_journal import JournalEntry, StoreJournal
from .store_reads import StoreReads, Tally
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
    phase: str | None = None  # the AgentTask's final phase (None: judged without a cluster)

    @property
    def key(self) -> Key:
        return (self.uid, self.attempt, self.policy)


@dataclass(frozen=True)
class VerdictRow:
    verdict: str  # pass, fail, judge_failed
    score: float | None
    reason: str
    rubric_hash: str
    judge: str
    why: str = "sampled"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store(StoreJournal, StoreReads):
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

    async def put_record(self, rec: dict[str, Any], labels: str,
                         queue: Sequence[tuple[str, str]], terminal: bool = False) -> bool:
        """Store a validated record (JSON document, its labels as JSON) and its queue rows
        ``(policy, why)``; False when ``(uid, attempt)`` was stored before and this record does
        not replace it (nothing changes). ``terminal``: the task is known to be over on arrival
        (no cluster to say so), so its record may be judged at once."""
        uid, attempt = rec["uid"], rec["attempt"]

        def put(tx: Tx) -> bool:
            new = tx.run(
                "INSERT INTO records (uid, attempt, namespace, task, outcome, redaction_ok, "
                "labels, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                # A better outcome replaces a worse one of the same attempt, never the reverse:
                # a placeholder gives way to any record, no_answer/budget_exceeded (a sidecar
                # stopped inside the attempt) to the answer it gave after its restart.
                "ON CONFLICT (uid, attempt) DO UPDATE SET outcome = excluded.outcome, "
                "redaction_ok = excluded.redaction_ok, labels = excluded.labels, "
                "body = excluded.body, received_at = excluded.received_at "
                f"WHERE {_RANK.format('records')} < {_RANK.format('excluded')} RETURNING uid",
                (uid, attempt, rec["namespace"], rec["task"], rec["outcome"],
                 int(rec["redaction"]["ok"]), labels, json.dumps(rec), _now()))
            if not new:
                return False
            # The replaced record's unjudged rows go: the new record's selection stands.
            tx.run("DELETE FROM queue WHERE uid = ? AND attempt = ? AND state = 'pending'",
                   (uid, attempt))
            tx.run("INSERT INTO tasks (uid, attempt, terminal) VALUES (?, ?, ?) ON CONFLICT (uid) "
                   "DO UPDATE SET attempt = CASE WHEN excluded.attempt > tasks.attempt THEN "
                   "excluded.attempt ELSE tasks.attempt END, terminal = CASE WHEN "
                   "excluded.terminal > tasks.terminal THEN 1 ELSE tasks.terminal END",
                   (uid, attempt, int(terminal)))
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
                _supersede(tx, uid, attempt)
            for policy, why in queue:
                tx.run("INSERT INTO queue (uid, attempt, policy, state, why) VALUES (?, ?, ?, ?, "
                       "?) ON CONFLICT (uid, attempt, policy) DO NOTHING",
                       (uid, attempt, policy, state, why))
            return True
        return await self._tx(put)

    async def set_terminal(self, uid: str, attempt: int, phase: str,
                           include_failed: Sequence[str] = ()) -> bool:
        """The task ended in ``phase`` at ``attempt`` (its AgentTask says so): its latest
        record may be judged, older attempts' rows are superseded, and for a task that did not
        succeed, the policies in ``include_failed`` queue its record as ``failed``. Returns
        False when this was known already (nothing changes)."""
        def mark(tx: Tx) -> bool:
            changed = tx.run(
                "INSERT INTO tasks (uid, attempt, phase, terminal) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (uid) DO UPDATE SET attempt = CASE WHEN excluded.attempt > "
                "tasks.attempt THEN excluded.attempt ELSE tasks.attempt END, phase = "
                "excluded.phase, terminal = 1 WHERE tasks.terminal = 0 OR tasks.phase IS NULL "
                "OR tasks.phase <> excluded.phase OR tasks.attempt < excluded.attempt "
                "RETURNING attempt", (uid, attempt, phase))
            if not changed:
                return False
            latest = int(changed[0][0])
            _supersede(tx, uid, latest)
            if phase != "Succeeded":
                for policy in include_failed:
                    tx.run("INSERT INTO queue (uid, attempt, policy, state, why) SELECT p.uid, "
                           "p.attempt, p.policy, 'pending', 'failed' FROM record_policies p "
                           "JOIN records r ON r.uid = p.uid AND r.attempt = p.attempt WHERE "
                           "p.uid = ? AND p.attempt = ? AND p.policy = ? AND r.redaction_ok = 1 "
                           "AND r.outcome <> 'no_record' ON CONFLICT (uid, attempt, policy) DO "
                           "NOTHING", (uid, latest, policy))
            return True
        return await self._tx(mark)

    async def queue_unqueued(self, policy: str, since: str,
                             why: Callable[[dict[str, Any], str | None], str | None]) -> int:
        """Queue for ``policy`` the latest-attempt records received at or after ``since`` that
        name it, have text, and have no queue row for it; ``why(body, phase)`` says why, or
        None to leave one out (:mod:`backfill`). One transaction; returns how many."""
        def queue(tx: Tx) -> int:
            rows = tx.run(
                "SELECT r.uid, r.attempt, r.body, t.phase FROM record_policies p JOIN records r "
                "ON r.uid = p.uid AND r.attempt = p.attempt JOIN tasks t ON t.uid = r.uid AND "
                "t.attempt = r.attempt WHERE p.policy = ? AND r.redaction_ok = 1 AND "
                "r.outcome <> 'no_record' AND r.received_at >= ? AND NOT EXISTS (SELECT 1 FROM "
                "queue q WHERE q.uid = r.uid AND q.attempt = r.attempt AND q.policy = p.policy) "
                # A verdict always closes its queue row; checked too, never judged twice.
                "AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.uid = r.uid AND v.attempt = "
                "r.attempt AND v.policy = p.policy) ORDER BY r.received_at", (policy, since))
            queued = 0
            for uid, attempt, body, phase in rows:
                reason = why(json.loads(body), phase)
                if reason is not None:
                    queued += tx.count(
                        "INSERT INTO queue (uid, attempt, policy, state, why) VALUES (?, ?, ?, "
                        "'pending', ?) ON CONFLICT (uid, attempt, policy) DO NOTHING",
                        (uid, attempt, policy, reason))
            return queued
        return await self._tx(queue)

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
                "SELECT q.uid, q.attempt, q.policy, r.body, q.why, t.phase FROM queue q JOIN "
                "records r ON r.uid = q.uid AND r.attempt = q.attempt JOIN tasks t ON t.uid = "
                "q.uid AND t.attempt = q.attempt WHERE q.state = 'pending' AND t.terminal = 1 "
                f"AND (q.lease_until IS NULL OR q.lease_until < ?){only} "
                "ORDER BY r.received_at LIMIT ?", (now, *(policies or ()), limit))
            out = []
            for uid, attempt, policy, body, why, phase in rows:
                if tx.count("UPDATE queue SET lease_owner = ?, lease_until = ? WHERE uid = ? AND "
                            "attempt = ? AND policy = ? AND state = 'pending' AND "
                            "(lease_until IS NULL OR lease_until < ?)",
                            (owner, now + lease, uid, attempt, policy, now)) == 1:
                    out.append(Claim(uid, int(attempt), policy, json.loads(body), why, phase))
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

    async def add_anchor_run(self, policy: str, run_at: str, passes: int, n: int,
                             agreed: int) -> None:
        """One re-judging of the policy's anchor set: passes of n, agreed with expected."""
        await self._tx(lambda tx: tx.run(
            "INSERT INTO anchor_runs (policy, run_at, pass_rate, passes, n, agreed) VALUES "
            "(?, ?, ?, ?, ?, ?) ON CONFLICT (policy, run_at) DO NOTHING",
            (policy, run_at, passes / n if n else 0.0, passes, n, agreed)))

    # --- verdicts and the detector --------------------------------------------------------

    async def apply(self, claim: Claim, namespace: str, stratum: str, v: VerdictRow,
                    update: Callable[[str | None], tuple[str, bool]] | None) -> bool:
        """Store the verdict, advance the policy's detector (``update(old state JSON) ->
        (new state JSON, alarm)``; None: not fed) and close the queue row, in one transaction.
        Returns whether the detector alarmed."""
        def apply(tx: Tx) -> bool:
            new = tx.run(
                "INSERT INTO verdicts (uid, attempt, policy, namespace, stratum, verdict, score, "
                "reason, rubric_hash, judge, why, judged_at, phase) VALUES (?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, ?, ?) ON CONFLICT (uid, attempt, policy) DO NOTHING RETURNING uid",
                (*claim.key, namespace, stratum, v.verdict, v.score, v.reason, v.rubric_hash,
                 v.judge, v.why, _now(), claim.phase))
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


# Which record of one attempt stands: the better outcome (see put_record).
_RANK = ("(CASE {0}.outcome WHEN 'no_record' THEN 0 WHEN 'answered' THEN 2 ELSE 1 END)")


def _supersede(tx: Tx, uid: str, latest: int) -> None:
    tx.run("UPDATE queue SET state = 'superseded', lease_owner = NULL, lease_until = NULL "
           "WHERE uid = ? AND attempt < ? AND state = 'pending'", (uid, latest))
