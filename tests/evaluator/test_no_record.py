"""A task that ended without a record is stored as no_record; its late real record replaces it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tether_eval.store import Store
from tether_eval.tasks import no_record

from .conftest import record

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def task(phase: str = "Succeeded", done: str | None = "2026-11-30T11:40:00Z",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "t1", "namespace": "team-a", "uid": "uid-1",
                         "labels": {"team": "support"} if labels is None else labels},
            "status": {"phase": phase, "completionTime": done, "attempt": 2}}


def policy(name: str = "p1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a"}, "spec": {
        "selector": {"matchLabels": {"team": "support"}}, "rubricRef": {"name": "r1"},
        "judgeRef": {"name": "j1"}, "sampling": {"rate": "1"}, **spec}}


def test_a_terminal_task_past_the_grace_gets_a_placeholder_naming_its_policies() -> None:
    doc = no_record(task(), [policy("p2"), policy("p1"), policy("bad", sampling={"rate": "2"})],
                    NOW, GRACE)
    assert doc is not None
    assert (doc["outcome"], doc["attempt"], doc["answer"]) == ("no_record", 2, None)
    assert doc["policies"] == [{"name": "p1", "sampled": True}, {"name": "p2", "sampled": True}]
    assert doc["finishedAt"] == "2026-11-30T11:40:00Z"


def test_no_placeholder_before_the_end_the_grace_or_a_selecting_policy() -> None:
    assert no_record(task(phase="Running", done=None), [policy()], NOW, GRACE) is None
    assert no_record(task(done="2026-11-30T11:55:00Z"), [policy()], NOW, GRACE) is None
    assert no_record(task(labels={"team": "sales"}), [policy()], NOW, GRACE) is None


async def test_a_late_record_replaces_the_placeholder_and_not_the_other_way(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        placeholder = record("u1", outcome="no_record", answer=None)
        assert await store.put_record(placeholder, "{}", []) is True
        real = record("u1")
        assert await store.put_record(real, "{}", [("p1", "sampled")], True) is True
        assert (await store.record("u1", 1) or {})["outcome"] == "answered"
        assert await store.pending() == 1
        assert await store.put_record(placeholder, "{}", []) is False
        assert (await store.record("u1", 1) or {})["outcome"] == "answered"
        assert (await store.counts("p1"))["records"] == 1
    finally:
        await store.close()
