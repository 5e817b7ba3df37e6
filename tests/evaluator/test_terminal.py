"""Judging waits for the task's end, and a better record of an attempt replaces a worse one —
on SQLite and PostgreSQL alike (the store), and over real HTTP (the answers)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tether_eval.store import Store
from tether_eval.store_sql import MIGRATIONS, connect, migrate
from tether_examples._serve import serving

from .conftest import config_doc, record

NO_ANSWER: dict[str, Any] = {"sampled": False, "outcome": "no_answer", "answer": None}


async def test_an_answer_replaces_no_answer_never_the_reverse(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        # The sidecar stopped inside the attempt (its SIGTERM record), then answered after its
        # restart: the answer stands, and the included-as-failed row goes with the old record.
        assert await store.put_record(record("u1", **NO_ANSWER), "{}", [("p1", "failed")])
        assert await store.put_record(record("u1", sampled=False), "{}", []) is True
        assert (await store.record("u1", 1) or {})["outcome"] == "answered"
        assert await store.pending() == 0
        assert await store.put_record(record("u1", **NO_ANSWER), "{}", []) is False
        assert await store.put_record(record("u1", sampled=False), "{}", []) is False  # same
        assert await store.put_record(record("u1", answer="other"), "{}", []) is False
        assert (await store.record("u1", 1) or {})["answer"] == "Done. TRUTH:PASS"
        over = record("u2", outcome="budget_exceeded", answer=None)
        assert await store.put_record(over, "{}", [("p1", "sampled")])
        assert await store.put_record(record("u2"), "{}", [("p1", "sampled")]) is True
        assert (await store.record("u2", 1) or {})["outcome"] == "answered"
        assert await store.pending() == 1  # u2's row, for the answer now
    finally:
        await store.close()


async def test_a_record_is_judged_once_its_task_is_terminal(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        await store.put_record(record("u1"), "{}", [("p1", "sampled")])
        assert await store.claim("a", now=1.0, lease=60.0, limit=5) == []  # still running
        assert await store.set_terminal("u1", 1, "Succeeded") is True
        assert await store.set_terminal("u1", 1, "Succeeded") is False  # known already
        [claim] = await store.claim("a", now=1.0, lease=60.0, limit=5)
        assert (claim.uid, claim.phase, claim.why) == ("u1", "Succeeded", "sampled")
    finally:
        await store.close()


async def test_the_final_phase_includes_a_failed_task_and_the_final_attempt_wins(
        db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        # Answered, not in the sample, but the task Failed (e.g. its verification): included.
        await store.put_record(record("u1", sampled=False), "{}", [])
        assert await store.set_terminal("u1", 1, "Failed", ["p1", "p2"]) is True
        [claim] = await store.claim("a", now=1.0, lease=60.0, limit=5)
        assert (claim.policy, claim.why, claim.phase) == ("p1", "failed", "Failed")
        # A task that succeeded is not included; one whose record is not the final attempt's
        # waits for that attempt's record (or its no_record placeholder).
        await store.put_record(record("u2", sampled=False), "{}", [])
        await store.set_terminal("u2", 1, "Succeeded", ["p1"])
        await store.put_record(record("u3"), "{}", [("p1", "sampled")])
        await store.set_terminal("u3", 2, "Succeeded")
        assert await store.claim("b", now=1.0, lease=60.0, limit=5) == []
        assert await store.put_record(record("u3", attempt=2), "{}", [("p1", "sampled")])
        [late] = await store.claim("b", now=1.0, lease=60.0, limit=5)
        assert (late.uid, late.attempt) == ("u3", 2)
    finally:
        await store.close()


async def test_a_version_1_store_migrates_with_its_queue_still_judgeable(db_url: str) -> None:
    backend = connect(db_url)
    try:
        def v1(tx: Any) -> None:
            tx.run("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            tx.run("INSERT INTO schema_version (version) VALUES (1)")
            for ddl in MIGRATIONS[0]:
                tx.run(ddl)
            tx.run("INSERT INTO records (uid, attempt, namespace, task, outcome, redaction_ok, "
                   "stratum, body, received_at) VALUES ('u1', 1, 'team-a', 't', 'answered', 1, "
                   "'{}', ?, 'x')", (json.dumps(record("u1")),))
            tx.run("INSERT INTO tasks (uid, attempt) VALUES ('u1', 1)")
            tx.run("INSERT INTO queue (uid, attempt, policy, state, why) VALUES "
                   "('u1', 1, 'p1', 'pending', 'sampled')")
        backend.transaction(v1)
        assert migrate(backend) == len(MIGRATIONS) == 2
        assert backend.transaction(lambda tx: tx.run("SELECT labels FROM records")) == [("{}",)]
    finally:
        backend.close()
    store = await Store.open(db_url)
    try:
        [claim] = await store.claim("a", now=1.0, lease=60.0, limit=5)
        assert (claim.uid, claim.phase) == ("u1", None)
    finally:
        await store.close()


async def test_over_http_a_replacement_is_201_and_a_repeat_200(service_factory: Any) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    async with serving(svc.app()) as url, aiohttp.ClientSession() as http:
        for doc, status in ((record("u1", **NO_ANSWER), 201), (record("u1"), 201),
                            (record("u1"), 200), (record("u1", **NO_ANSWER), 200)):
            async with http.post(url + "/v1/records", json=doc) as r:
                assert r.status == status, (doc["outcome"], await r.text())
    assert (await svc.store.record("u1", 1) or {})["outcome"] == "answered"
