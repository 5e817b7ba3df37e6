"""Anchors through the scripted judge: a judge whose behaviour changes shows on the anchors and
its drift is attributed to the judge; an agent that gets worse under a steady judge is the
agent's. The anchors go through the same judge path (journal, caps) as records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tether_eval.anchors import AnchorsError, parse_anchors
from tether_eval.service import Service
from tether_eval.status import policy_status
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record
from .test_judge import drain, ingest

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
DETECTOR = {"baselinePassRate": "0.9", "shift": "0.4", "falseAlarmEvery": 200}


def _anchors(directory: Path) -> Path:
    """40 anchors, 30 of them good answers: enough to tell a moved judge (min 30)."""
    lines = [json.dumps({"instructions": f"Summarise ticket {i}.",
                         "answer": "Done. TRUTH:PASS" if i < 30 else "No. TRUTH:FAIL",
                         "expected": {"pass": i < 30}}) for i in range(40)]
    path = directory / "anchors" / "golden" / "set.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return directory / "anchors"


def _cfg(jurl: str) -> dict[str, Any]:
    cfg = config_doc(jurl, detector=DETECTOR)
    cfg["policies"]["p1"]["spec"]["anchors"] = {
        "configMapRef": {"name": "golden", "key": "set.jsonl"}, "every": "6h"}
    return cfg


def _alarms(svc: Service, kind: str) -> float:
    return float(svc.metrics.alarms.labels("team-a", "p1", kind)._value.get())


async def _drift(svc: Service) -> dict[str, str]:
    status = policy_status(await svc.evaluator.facts("p1"), None, T0, 1)
    return {c["type"]: c["status"] for c in status["conditions"]} | {
        "anchorPassRate": str(status.get("anchorPassRate"))}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_judge_that_changed_on_the_anchors_too_is_blamed(
        service_factory: Any, tmp_path: Path) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(_cfg(jurl), anchors_dir=_anchors(tmp_path))
        assert await svc.evaluator.anchor_step(T0) == 1  # at start: the baseline
        assert await svc.evaluator.anchor_step(T0 + timedelta(hours=1)) == 0  # not due
        assert len(judge.calls) == 40
        assert (await _drift(svc))["JudgeDrift"] == "False"
        # The judge changes (a new model snapshot behind the same name): it now fails many
        # good answers, the anchors' among them.
        judge.reset(JudgeScript(sensitivity=0.4, seed=5))
        assert await svc.evaluator.anchor_step(T0 + timedelta(hours=6)) == 1
        assert (_alarms(svc, "judge"), _alarms(svc, "agent")) == (1, 0)
        drift = await _drift(svc)
        assert drift["JudgeDrift"] == "True" and float(drift["anchorPassRate"]) < 0.6
        # The production alarm that follows (good answers judged failing) is the judge's too.
        await ingest(svc, *(record(f"u{i:03d}") for i in range(40)))
        await drain(svc)
    assert (await svc.store.detector("p1"))[1] >= 1
    assert _alarms(svc, "agent") == 0 and _alarms(svc, "judge") >= 2
    assert (await _drift(svc))["Degraded"] == "False"  # the agent is not blamed
    [(_, passes0, n0, agreed0), (_, passes1, n1, _)] = await svc.store.anchor_runs("p1")
    assert (passes0, n0, agreed0) == (30, 40, 40) and n1 == 40 and passes1 < 24


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_an_agent_that_got_worse_under_steady_anchors_is_blamed(
        service_factory: Any, tmp_path: Path) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(_cfg(jurl), anchors_dir=_anchors(tmp_path))
        assert await svc.evaluator.anchor_step(T0) == 1
        assert await svc.evaluator.anchor_step(T0 + timedelta(hours=6)) == 1  # steady
        await ingest(svc, *(record(f"u{i:03d}", answer="No. TRUTH:FAIL") for i in range(40)))
        await drain(svc)
    assert (await svc.store.detector("p1"))[1] >= 1
    assert _alarms(svc, "agent") >= 1 and _alarms(svc, "judge") == 0
    drift = await _drift(svc)
    assert (drift["JudgeDrift"], drift["Degraded"]) == ("False", "True")
    assert svc.metrics.anchor_pass_rate.labels("team-a", "p1")._value.get() == 0.75


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_unreadable_anchors_are_named_in_the_condition(
        service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(_cfg("http://127.0.0.1:9"), anchors_dir=tmp_path / "none")
    assert await svc.evaluator.anchor_step(T0) == 0
    status = policy_status(await svc.evaluator.facts("p1"), None, T0, 1)
    [drift] = [c for c in status["conditions"] if c["type"] == "JudgeDrift"]
    assert (drift["status"], drift["reason"]) == ("Unknown", "AnchorsUnreadable")
    assert "ConfigMap golden key set.jsonl" in drift["message"]


def test_an_anchor_line_that_is_not_an_anchor_is_named() -> None:
    with pytest.raises(AnchorsError, match="line 2"):
        parse_anchors('{"instructions": "a", "answer": 1, "expected": {"pass": true}}\n'
                      '{"instructions": "b", "answer": 2}\n', "anchors of policy p1")
    with pytest.raises(AnchorsError, match="no anchors"):
        parse_anchors("\n", "anchors of policy p1")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_failed_anchor_judgements_are_not_counted_as_fails(
        service_factory: Any, tmp_path: Path) -> None:
    judge = ScriptedJudge(JudgeScript(malformed=1.0))  # an outage of sorts: no verdicts at all
    async with serving(judge.app()) as jurl:
        svc = await service_factory(_cfg(jurl), anchors_dir=_anchors(tmp_path))
        assert await svc.evaluator.anchor_step(T0) == 0
        assert judge.calls  # the judge was asked
    assert await svc.store.anchor_runs("p1") == []  # nothing to compare a later run with
    assert _alarms(svc, "judge") == 0
