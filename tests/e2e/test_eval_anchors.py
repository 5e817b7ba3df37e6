"""Issue #10 on the real node: an anchor-only drift is the judge's. The chart's evaluator (as in
test_eval_cluster.py) reads a policy's anchors from the ConfigMap its ``anchors.configMapRef``
names and re-judges them every few seconds through the scripted judge. The judge then changes
(a new snapshot behind the same name: it fails many good answers, the anchors' as the agent's)
while the agent does not: the evaluator turns JudgeDrift True with an Event, counts an alarm of
kind "judge", and the production alarm that follows is put on the judge too — Degraded stays
False (AlarmAttributedToJudge), no alarm of kind "agent". The contrast: the agent's answers get
worse while the anchors stay steady — Degraded True, attributed to the agent, kind "agent".

No operator and no task pod: the records are POSTed to the evaluator for AgentTask objects whose
status the test sets to Succeeded, as test_eval_cluster.py does for its bulk.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from . import _wait
from ._tasks import doubles
from .test_eval_cluster import (
    _alarms,
    _apply,
    _bulk,
    _condition,
    _judge,
    _status,
    _wait_judged,
    evaluator,
    judge,
)
from .test_operator import crds

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "evaluator", "judge"]  # fixtures, used by name

# 30 anchors, 24 good answers: enough to tell a moved judge (the detector's rule wants 30 for
# "steady"), few enough that a run costs the shared cores little.
ANCHORS = [{"instructions": f"Summarise ticket {i}.",
            "answer": "Done. TRUTH:PASS" if i < 24 else "No. TRUTH:FAIL",
            "expected": {"pass": i < 24}} for i in range(30)]


def _configure(api: client.ApiClient, core: client.CoreV1Api, ns: str, judge_url: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "golden"}, "data": {
        "anchors.jsonl": "\n".join(json.dumps(a) for a in ANCHORS) + "\n"}})
    custom = client.CustomObjectsApi(api)
    _apply(custom, ns, "rubrics", "Rubric", "r", {
        "instructions": "Pass an answer that does what the task asked.",
        "verdict": {"kind": "pass_fail"}})
    _apply(custom, ns, "judges", "Judge", "j", _judge(judge_url, "50"))
    _apply(custom, ns, "evaluationpolicies", "EvaluationPolicy", "main", {
        "selector": {"matchLabels": {"evaluated": "yes"}}, "rubricRef": {"name": "r"},
        "judgeRef": {"name": "j"}, "sampling": {"rate": "1"},
        "detector": {"baselinePassRate": "0.9", "shift": "0.4", "falseAlarmEvery": 100},
        "anchors": {"configMapRef": {"name": "golden", "key": "anchors.jsonl"},
                    "every": "10s"}})


def _drift(api: client.ApiClient, ns: str, want: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        status = _status(api, ns, "main")
        return status if _condition(status, "JudgeDrift") == want else None
    return _wait.until(seen, 120, f"policy main's JudgeDrift condition to be {want}", 1.0)


def _reason(status: dict[str, Any], kind: str) -> str:
    return next(c["reason"] for c in status["conditions"] if c["type"] == kind)


def _in_control(api: client.ApiClient, core: client.CoreV1Api, ns: str, pod: str,
                judge_url: str, scripted: ScriptedJudge) -> None:
    """The anchors' baseline from the ConfigMap, and good answers judged good: no alarm."""
    scripted.reset(JudgeScript())  # reads the TRUTH markers right, every time
    _configure(api, core, ns, judge_url)
    status = _drift(api, ns, "False")  # the first run: the baseline, read from the ConfigMap
    assert status["anchorPassRate"] == 0.8 and _reason(status, "JudgeDrift") == "AnchorsSteady"
    _bulk(api, core, ns, pod, "steady", 10, "evaluated", "main", "TRUTH:PASS")
    status = _wait_judged(api, ns, "main", 10)
    assert status["passRate"] == 1.0 and _condition(status, "Degraded") == "False"
    assert _alarms(core, ns, pod, "main", "agent") == _alarms(core, ns, pod, "main", "judge") == 0


def _anchor_runs(scripted: ScriptedJudge) -> int:
    """How many times the judge was asked about the first anchor: the runs so far."""
    return sum(ANCHORS[0]["instructions"] in c["body"] for c in scripted.calls)


def test_a_judge_that_moved_on_the_anchors_is_blamed_not_the_agent(
        evaluator: str, judge: tuple[str, ScriptedJudge], api: client.ApiClient,
        core: client.CoreV1Api, namespace: str) -> None:
    ns, (judge_url, scripted) = namespace, judge
    _in_control(api, core, ns, evaluator, judge_url, scripted)

    # The judge moves, the agent does not: good answers, the anchors' among them, now fail
    # six times in ten. The next anchor run (within 10 s) shows it.
    scripted.reset(JudgeScript(sensitivity=0.4, seed=5))
    status = _drift(api, ns, "True")
    assert _reason(status, "JudgeDrift") == "AnchorsMoved" and status["anchorPassRate"] < 0.6
    assert _alarms(core, ns, evaluator, "main", "judge") == 1
    assert _alarms(core, ns, evaluator, "main", "agent") == 0
    def event() -> list[str] | None:  # posted after the status that turned JudgeDrift True
        events = core.list_namespaced_event(
            ns, field_selector="involvedObject.name=main,reason=JudgeDrift").items
        return [e.type for e in events] or None
    assert _wait.until(event, 30, "the JudgeDrift Event on policy main", 0.5) == ["Warning"]

    # The agent's answers are as good as before; the moved judge fails many: the detector
    # alarms, and the alarm is put on the judge.
    _bulk(api, core, ns, evaluator, "moved", 30, "evaluated", "main", "TRUTH:PASS")

    def alarmed() -> dict[str, Any] | None:
        status = _status(api, ns, "main")
        return status if (status.get("alarms") or 0) >= 1 else None
    status = _wait.until(alarmed, 120, "the detector's alarm on the moved judge's verdicts", 1.0)
    assert _condition(status, "Degraded") == "False", status
    assert _reason(status, "Degraded") == "AlarmAttributedToJudge"
    assert _alarms(core, ns, evaluator, "main", "agent") == 0
    assert _alarms(core, ns, evaluator, "main", "judge") >= 2


def test_an_agent_that_moved_under_steady_anchors_is_blamed(
        evaluator: str, judge: tuple[str, ScriptedJudge], api: client.ApiClient,
        core: client.CoreV1Api, namespace: str) -> None:
    ns, (judge_url, scripted) = namespace, judge
    _in_control(api, core, ns, evaluator, judge_url, scripted)
    # A second run, as steady as the first: the judge reads the anchors as before.
    _wait.until(lambda: _anchor_runs(scripted) >= 2, 60, "a second anchor run", 0.5)
    _bulk(api, core, ns, evaluator, "worse", 20, "evaluated", "main", "TRUTH:FAIL")
    _wait.until(lambda: _condition(_status(api, ns, "main"), "Degraded") == "True", 120,
                "the policy's Degraded condition after the agent's drop", 1.0)
    status = _status(api, ns, "main")
    [degraded] = [c for c in status["conditions"] if c["type"] == "Degraded"]
    assert degraded["reason"] == "DriftAlarm", degraded
    assert "attributed to the agent (the anchors are steady)" in degraded["message"], degraded
    assert _condition(status, "JudgeDrift") == "False" and status["anchorPassRate"] == 0.8
    assert _alarms(core, ns, evaluator, "main", "agent") >= 1
    assert _alarms(core, ns, evaluator, "main", "judge") == 0
