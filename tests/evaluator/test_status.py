"""The EvaluationPolicy status the evaluator computes: counts, the Wilson interval, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from tether_eval.detect import Cusum
from tether_eval.status import PolicyFacts, policy_status
from tether_eval.store import Tally
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record
from .test_judge import drain, ingest

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def facts(**over: Any) -> PolicyFacts:
    values: dict[str, Any] = {
        "records": 10, "redaction_failures": 0, "samples": 5, "tally": Tally(4, 1, 0, 3.5),
        "cusum": Cusum.for_params(0.85, 0.05, 5000), "alarms": 0, "judge": "j1",
        "judge_spent_today": Decimal("0.0123456789"), "capped": False}
    values.update(over)
    return PolicyFacts(**values)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_counts_rates_and_conditions() -> None:
    status = policy_status(facts(), None, NOW, 3)
    assert (status["records"], status["samples"], status["judged"]) == (10, 5, 5)
    assert status["passRate"] == 0.8 and status["passRateLower"] < 0.8 < status["passRateUpper"]
    assert status["meanScore"] == 0.7 and status["judgeSpentTodayUSD"] == "0.012346"
    assert conditions(status) == {
        "Ready": ("True", "Judging"), "Degraded": ("False", "NoAlarm"),
        "JudgeDrift": ("Unknown", "NoAnchors"), "JudgeCapReached": ("False", "WithinCap"),
        "RedactionFailures": ("False", "AllRedacted")}
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}


def test_an_alarm_degrades_and_a_transition_time_moves_only_on_change() -> None:
    before = policy_status(facts(), None, NOW, 1)
    cusum = Cusum.for_params(0.85, 0.05, 5000)
    while not cusum.update(False):
        pass
    later = NOW + timedelta(hours=1)
    after = policy_status(facts(cusum=cusum, alarms=1, capped=True, redaction_failures=2),
                          before, later, 1)
    got = conditions(after)
    assert got["Degraded"] == ("True", "DriftAlarm")
    assert got["JudgeCapReached"] == ("True", "DailyCapReached")
    assert got["RedactionFailures"] == ("True", "RecordsNotRedacted")
    times = {c["type"]: c["lastTransitionTime"] for c in after["conditions"]}
    assert times["Degraded"] == "2026-11-30T13:00:00Z"
    assert times["Ready"] == "2026-11-30T12:00:00Z"  # unchanged status: time kept
    assert after["alarms"] == 1


def test_no_verdict_yet_leaves_the_rates_unset() -> None:
    status = policy_status(facts(tally=Tally(0, 0, 2, 0.0), cusum=None), None, NOW, 1)
    assert "passRate" not in status and "cusum" not in status and status["judged"] == 0


async def test_the_status_route_reports_what_is_stored(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl))
        failed = record("u9", answer=None, instructions=None, inputs=None,
                        redaction={"ok": False, "findings": {}, "engine": "sidecar"})
        await ingest(svc, record("u1"), record("u2", answer="No. TRUTH:FAIL"),
                     record("u3", sampled=False), failed)
        await drain(svc)
        async with serving(svc.app()) as url, aiohttp.ClientSession() as http:
            async with http.get(url + "/v1/policies/p1/status") as r:
                status = await r.json()
            async with http.get(url + "/v1/policies/nope/status") as r:
                assert r.status == 404
    assert (status["records"], status["samples"], status["judged"]) == (4, 2, 2)
    assert status["passRate"] == 0.5
    assert conditions(status)["RedactionFailures"] == ("True", "RecordsNotRedacted")
