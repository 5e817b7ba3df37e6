"""A record that arrives before the evaluator has read its policy is judged once the policy is
read (issue #11): the records the policy selects are queued then, and at every start — never a
record already judged for it, never one from before the policy or outside the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tether_eval.backfill import since
from tether_eval.config import EvalConfig
from tether_eval.redaction import Redactor
from tether_eval.service import Service
from tether_eval.store import Store
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record, settings
from .test_judge import drain, ingest


def without_policies(cfg: dict[str, Any]) -> dict[str, Any]:
    """The configuration the evaluator had read before the policy existed."""
    return {**cfg, "policies": {}}


def late_records() -> list[dict[str, Any]]:
    """u1 in the sample, u2 not but it did not answer (include.failed), u3 neither."""
    return [record("u1"), record("u2", sampled=False, outcome="no_answer", answer=None),
            record("u3", sampled=False)]


async def test_a_policy_read_after_its_records_arrived_judges_them(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        cfg = config_doc(jurl)
        svc = await service_factory(without_policies(cfg))
        await ingest(svc, *late_records())
        await drain(svc)
        assert await svc.store.pending() == 0  # stored, named p1, but p1 unknown: nothing
        svc.reconfigure(EvalConfig.model_validate(cfg))  # the next turn reads p1
        assert svc.evaluator.wake.is_set()
        await drain(svc)
        whys = dict(await svc.store._tx(lambda tx: tx.run(
            "SELECT uid, why FROM verdicts WHERE policy = 'p1'")))
        assert whys == {"u1": "sampled", "u2": "failed"}
        calls = len(judge.calls)
        # A later change to the policy's sampling looks again, and judges nothing twice.
        retried = config_doc(jurl, include={"failed": True, "retried": True})
        svc.reconfigure(EvalConfig.model_validate(retried))
        await drain(svc)
    assert len(judge.calls) == calls
    assert len(await svc.store.verdicts("p1")) == 2


async def test_a_restart_with_the_policy_judges_what_came_before_it(
        service_factory: Any, tmp_path: Path, db_url: str, redactor: Redactor) -> None:
    """Read the policy, killed before its records were queued: the next start queues them."""
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        cfg = config_doc(jurl)
        before = await Service.open(settings(tmp_path, db_url, without_policies(cfg)),
                                    redactor, environ={})
        try:
            await ingest(before, *late_records())
        finally:
            await before.close()
        after = await service_factory(cfg)
        await drain(after)
        assert {v[0] for v in await after.store.verdicts("p1")} == {"u1", "u2"}
        calls = len(judge.calls)
        again = await service_factory(cfg)  # a steady-state start queues nothing new
        await drain(again)
    assert len(judge.calls) == calls == 2


async def test_a_record_older_than_the_policy_is_not_taken_up(service_factory: Any) -> None:
    """A policy deleted and made again under the same name starts from its creation."""
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        cfg = config_doc(jurl)
        svc = await service_factory(without_policies(cfg))
        await ingest(svc, record("u1"))
        made = EvalConfig.model_validate(cfg)
        later = made.policies["p1"].model_copy(
            update={"created": datetime.now(UTC) + timedelta(hours=1)})
        svc.reconfigure(made.model_copy(update={"policies": {"p1": later}}))
        await drain(svc)
    assert judge.calls == [] and await svc.store.pending() == 0


async def test_the_store_takes_up_the_final_attempt_by_its_phase(db_url: str) -> None:
    """In a cluster: a task that ended Failed while its policy was unknown is queued as failed
    when the policy (with include.failed) is read; an older attempt's record never is."""
    store = await Store.open(db_url)
    try:
        await store.put_record(record("u1", sampled=False), "{}", [])
        await store.set_terminal("u1", 1, "Failed", [])  # nobody included it then
        await store.put_record(record("u2"), "{}", [])
        await store.put_record(record("u2", attempt=2), "{}", [])
        await store.set_terminal("u2", 2, "Succeeded", [])

        def why(body: dict[str, Any], phase: str | None) -> str | None:
            return "failed" if phase == "Failed" else "sampled"
        assert await store.queue_unqueued("p1", "2000-01-01", why) == 2
        rows = {(c.uid, c.attempt, c.why) for c in await store.claim("a", 1.0, 60.0, 9)}
        assert rows == {("u1", 1, "failed"), ("u2", 2, "sampled")}
        assert await store.queue_unqueued("p1", "2000-01-01", why) == 0  # queued once
        assert await store.queue_unqueued("other", "2000-01-01", why) == 0  # not named
    finally:
        await store.close()


def test_the_window_is_the_later_of_creation_and_the_backfill_period() -> None:
    policy = EvalConfig.model_validate(config_doc("http://127.0.0.1:9")).policies["p1"]
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert since(policy, 3600, now) == "2026-11-30T11:00:00+00:00"
    made = policy.model_copy(update={"created": datetime(2026, 11, 30, 11, 30, tzinfo=UTC)})
    assert since(made, 3600, now) == "2026-11-30T11:30:00+00:00"
    assert since(made, 60, now) == "2026-11-30T11:59:00+00:00"
