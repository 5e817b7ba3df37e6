"""The store on SQLite and PostgreSQL alike: idempotent records, leases, the journal, verdicts."""

from __future__ import annotations

import json
from decimal import Decimal

from tether_eval.store import Claim, Store, VerdictRow
from tether_eval.store_sql import MIGRATIONS, connect, migrate

from .conftest import record


async def test_a_record_is_stored_once_and_the_latest_attempt_wins(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        assert await store.put_record(record("u1"), "{}", [("p1", "sampled")], True) is True
        assert await store.put_record(record("u1", answer="changed"), "{}", [("p1", "x")]) is False
        assert (await store.record("u1", 1) or {})["answer"] == "Done. TRUTH:PASS"
        assert await store.put_record(record("u1", attempt=3), "{}", [("p1", "sampled")], True)
        assert await store.put_record(record("u1", attempt=2), "{}", [("p1", "sampled")], True)
        assert await store.latest_attempt("u1") == 3
        # Attempt 3 superseded 1's queued judgement; 2, older than 3, was never queued.
        [claim] = await store.claim("a", now=1.0, lease=60.0, limit=5)
        assert (claim.attempt, await store.pending()) == (3, 1)
    finally:
        await store.close()


async def test_migrations_are_applied_once_and_recorded(db_url: str) -> None:
    store = await Store.open(db_url)
    await store.close()
    backend = connect(db_url)
    try:
        assert migrate(backend) == len(MIGRATIONS)  # nothing left to apply: no error
        rows = backend.transaction(lambda tx: tx.run("SELECT version FROM schema_version"))
        assert rows == [(len(MIGRATIONS),)]
    finally:
        backend.close()


async def test_a_lease_keeps_others_out_until_it_runs_out_or_is_released(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        for i in range(3):
            await store.put_record(record(f"u{i}"), "{}", [("p1", "sampled")], True)
        mine = await store.claim("a", now=1000.0, lease=60.0, limit=2)
        assert [c.uid for c in mine] == ["u0", "u1"]
        theirs = await store.claim("b", now=1001.0, lease=60.0, limit=5)
        assert [c.uid for c in theirs] == ["u2"]  # a's two are leased
        assert await store.claim("b", now=1059.0, lease=60.0, limit=5) == []
        late = await store.claim("b", now=1062.0, lease=60.0, limit=5)  # all ran out
        assert sorted(c.uid for c in late) == ["u0", "u1", "u2"]
        assert await store.release_own("b") == 3
        assert await store.claim("a", now=1063.0, lease=60.0, limit=5, policies=[]) == []
        assert await store.claim("a", now=1063.0, lease=60.0, limit=5, policies=["p2"]) == []
        got = await store.claim("a", now=1063.0, lease=60.0, limit=5, policies=["p1", "p2"])
        assert len(got) == 3
    finally:
        await store.close()


async def test_the_journal_reuses_answers_and_charges_a_call_lost_in_flight(db_url: str) -> None:
    store = await Store.open(db_url)
    key = ("u1", 1, "p1")
    try:
        first = await store.journal_send(key, 0, Decimal("0.25"), "j1", "2026-11-30")
        assert (first.state, first.sends, first.orphaned) == ("sent", 1, False)
        # Killed before the answer was journalled: the next send is the lost call's retry.
        again = await store.journal_send(key, 0, Decimal("0.25"), "j1", "2026-11-30")
        assert (again.sends, again.orphaned) == (2, True)
        assert await store.spent("j1", "2026-11-30") == Decimal("0.25")
        verdict = {"pass": True, "score": 0.9, "reason": "fine"}
        await store.journal_answer(key, 0, verdict, Decimal("0.01"), "j1", "2026-11-30")
        done = await store.journal_send(key, 0, Decimal("0.25"), "j1", "2026-11-30")
        assert (done.state, done.answer, done.sends) == ("answered", verdict, 2)
        assert await store.spent("j1", "2026-11-30") == Decimal("0.26")
        assert await store.spent("j1", "2026-12-01") == Decimal(0)
    finally:
        await store.close()


async def test_a_verdict_feeds_the_detector_once(db_url: str) -> None:
    store = await Store.open(db_url)
    fed: list[str | None] = []

    def update(old: str | None) -> tuple[str, bool]:
        fed.append(old)
        n = json.loads(old)["n"] + 1 if old else 1
        return json.dumps({"n": n}), n == 1

    try:
        await store.put_record(record("u1"), "{}", [("p1", "sampled")], True)
        claim = Claim("u1", 1, "p1", record("u1"))
        row = VerdictRow("pass", 0.9, "fine", "sha256:x", "j1")
        assert await store.apply(claim, "team-a", "tier=gold", row, update) is True
        assert await store.apply(claim, "team-a", "tier=gold", row, update) is False
        assert fed == [None]
        assert await store.detector("p1") == ('{"n": 1}', 1)
        tally = await store.tally("p1")
        assert (tally.passed, tally.failed, tally.judge_failed) == (1, 0, 0)
        assert (await store.tally("p1", "tier=silver")).passed == 0
        assert await store.pending() == 0
    finally:
        await store.close()
