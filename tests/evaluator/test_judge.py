"""Judging through the scripted judge: majority vote, malformed verdicts, the cost caps."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tether_eval.config import RubricSpec
from tether_eval.detect import Cusum
from tether_eval.ingest import selection
from tether_eval.judge import vote
from tether_eval.record import Record
from tether_eval.service import Service
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record

RUBRIC = RubricSpec.model_validate({"instructions": "x", "verdict": {"kind": "pass_fail"}})


async def drain(svc: Service) -> None:
    """Judge until nothing can be leased (bounded: a loop that never ends fails the test)."""
    for _ in range(1000):
        if not await svc.evaluator.step():
            return
    raise AssertionError("the judging queue did not drain in 1000 steps")


async def ingest(svc: Service, *docs: dict[str, Any]) -> None:
    """Store records as POST /v1/records does (validated, redacted, selected), minus HTTP."""
    for doc in docs:
        rec, stored = await svc.ingest.redact(Record.model_validate(doc))
        await svc.store.put_record(stored, "{}", selection(rec, svc.config),
                                   svc.ingest.terminal_on_arrival)


def test_the_majority_of_samples_decides_and_a_failed_sample_is_never_a_pass() -> None:
    ok = {"pass": True, "score": 0.9, "reason": "good"}
    bad = {"pass": False, "score": 0.2, "reason": "bad"}
    assert vote([ok, bad, ok], RUBRIC, "h", "j").verdict == "pass"
    assert vote([bad, bad, ok], RUBRIC, "h", "j").verdict == "fail"
    row = vote([ok, {"failed": "malformed_verdict", "reason": "prose"}, ok], RUBRIC, "h", "j")
    assert (row.verdict, row.score) == ("judge_failed", None)
    scored = RubricSpec.model_validate({"instructions": "x", "verdict": {
        "kind": "score", "passThreshold": "0.5"}})
    assert vote([{**bad, "score": 0.6}], scored, "h", "j").verdict == "pass"


@pytest.mark.parametrize("reply", [
    "The answer is fine.", '```json\n{"pass": true, "score": 1, "reason": "ok"}\n```',
    '{"pass": "true", "score": 0.9, "reason": "ok"}', '{"pass": true, "score": "0.9", '
    '"reason": "ok"}', '{"pass": true, "score": 1.5, "reason": "ok"}',
    '{"pass": true, "score": 0.9}', '{"pass": true, "score": 0.9, "reason": "ok", "x": 1}',
    '[true]', '{"pass": 1, "score": 0.9, "reason": "ok"}'])
async def test_anything_but_the_verdict_schema_is_malformed(service_factory: Any,
                                                             reply: str) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    client = svc.evaluator.judges["j1"]
    doc = {"choices": [{"message": {"role": "assistant", "content": reply}}]}
    failure = client._verdict(doc)
    assert not isinstance(failure, dict)
    assert failure.cls == "malformed"


async def test_samples_are_voted_with_seeds_and_temperature_zero(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript(sensitivity=1.0, specificity=1.0, seed=1))
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, samples=3))
        await ingest(svc, record("u1"), record("u2", answer="Nope. TRUTH:FAIL"))
        await drain(svc)
    verdicts = {v[0]: v[2] for v in await svc.store.verdicts("p1")}
    assert verdicts == {"u1": "pass", "u2": "fail"}
    bodies = [json.loads(c["body"]) for c in judge.calls]
    assert len(bodies) == 6
    assert {b["temperature"] for b in bodies} == {0}
    assert sorted(b["seed"] for b in bodies) == [7, 7, 8, 8, 9, 9]
    assert sorted(c["call"] for c in judge.calls)[:3] == ["u1/1/p1/0", "u1/1/p1/1", "u1/1/p1/2"]


async def test_malformed_verdicts_are_retried_then_judge_failed(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript(malformed=1.0))
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, max_attempts=3))
        await ingest(svc, record("u1"))
        await drain(svc)
    [(_, _, verdict, score, reason)] = await svc.store.verdicts("p1")
    assert (verdict, score) == ("judge_failed", None)
    assert reason.startswith("malformed_verdict:")
    assert len(judge.calls) == 3
    assert (await svc.store.tally("p1")).passed == 0
    assert await svc.store.detector("p1") == (None, 0)  # not evidence for the detector


async def test_a_call_over_the_per_call_cap_is_refused_unsent(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, per_call="0.0001"))
        await ingest(svc, record("u1"))
        await drain(svc)
    [(_, _, verdict, _, reason)] = await svc.store.verdicts("p1")
    assert verdict == "judge_failed" and reason.startswith("cost_cap:")
    assert judge.calls == []


async def test_the_daily_cap_stops_judging_and_records_wait(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, per_call="0.003", per_day="0.003"))
        await ingest(svc, *(record(f"u{i}") for i in range(20)))
        await drain(svc)
        client = svc.evaluator.judges["j1"]
        judged = len(await svc.store.verdicts("p1"))
        spent = await svc.store.spent("j1", client.day)
        assert 1 <= judged < 20
        assert await svc.store.pending() == 20 - judged
        assert len(judge.calls) == judged  # the refused call never left
        assert spent <= Decimal("0.003")
        assert svc.evaluator.capped == {"j1": (client.day, "team-a")}
        assert svc.metrics.cap_reached.labels("team-a", "j1")._value.get() == 1
        cost = svc.metrics.judge_cost.labels("team-a", "j1")._value.get()
        assert cost == pytest.approx(float(spent))  # the metric counts what the store charged
        assert await svc.evaluator.step() == 0  # still capped: nothing leased


async def test_included_tasks_are_judged_but_kept_out_of_the_sampled_rate(
        service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl))
        failed = record("u2", sampled=False, outcome="no_answer", answer=None)
        await ingest(svc, record("u1"), failed)
        await drain(svc)
    assert len(await svc.store.verdicts("p1")) == 2  # both judged
    tally = await svc.store.tally("p1")
    assert tally.passed + tally.failed == 1  # the sample: u1 alone
    state, _ = await svc.store.detector("p1")
    assert state is not None and Cusum.from_dict(json.loads(state)).samples == 1


def test_a_judges_malformed_verdict_is_retried_by_default_a_tools_is_not() -> None:
    from tether_api.evaluation import JudgeRetry
    from tether_api.policy import CallRetry

    assert JudgeRetry().is_retryable("malformed")
    assert "malformed" not in JudgeRetry().non_retryable
    assert not CallRetry().is_retryable("malformed")  # AgentTask calls and tools: unchanged
    assert JudgeRetry().is_retryable("429") and not JudgeRetry().is_retryable("401")


async def test_the_default_judge_retry_policy_retries_malformed_verdicts(
        service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript(malformed=1.0))
    async with serving(judge.app()) as jurl:
        cfg = config_doc(jurl)
        # Only the waits set (short, for the test): retryOn/nonRetryable are the Judge's defaults.
        cfg["judges"]["j1"]["retryPolicy"] = {"maxAttempts": 3, "initialInterval": "1ms",
                                              "maximumInterval": "5ms"}
        svc = await service_factory(cfg)
        await ingest(svc, record("u1"))
        await drain(svc)
    [(_, _, verdict, _, reason)] = await svc.store.verdicts("p1")
    assert verdict == "judge_failed" and reason.startswith("malformed_verdict:")
    assert len(judge.calls) == 3  # retried, where a tool's malformed result is sent once
