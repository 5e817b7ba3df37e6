"""One spend ledger per task across attempts (issue #9, findings 1, 4, 5): the pure decisions.

Each test is a step of a task's life as the operator observes it: the figures of a finished
attempt reach the status before the next pod, never go down, a pod without final figures is
charged its last live spend plus its holds, and the budget is released only once no pod can
still spend.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tether_operator import budgets
from tether_operator.decide import Observed, Plan, decide
from tether_operator.handlers import live_patch
from tether_operator.ledger import POD_FINALIZER, STATUS_FIELDS, at_least, settle
from tether_operator.settings import OperatorSettings

from .test_operator_pure import task, terminated

NOW = datetime(2026, 11, 24, 12, 0, 0)
S = OperatorSettings()
RUNNING = {"attempt": 1, "phase": "Running", "podName": "t1-a1", "failures": 0,
           "spentUSD": "0", "reservedUSD": "0"}


def pod(attempt: int, phase: str = "Running", *, summary: dict[str, Any] | None = None,
        deleting: bool = False, node: str | None = "node-1", **status: Any) -> dict[str, Any]:
    """A task pod as the operator created it: pinned by the attempt-figures finalizer."""
    meta: dict[str, Any] = {"name": f"t1-a{attempt}", "finalizers": [POD_FINALIZER],
                            "labels": {"tether.dev/attempt": str(attempt)}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T11:59:55Z"
    st: dict[str, Any] = {"phase": phase, **status}
    if phase in ("Succeeded", "Failed"):
        st.update(terminated(0 if phase == "Succeeded" else 1, summary))
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": st}


def plan_for(status: dict[str, Any], pods: list[dict[str, Any]],
             live: dict[str, Any] | None = None, **spec: Any) -> Plan:
    return decide(Observed(task(status, **spec), pods, NOW, live), S)


SPENT = {"phase": "Running", "spentUSD": "0.0375", "inputTokens": 300, "outputTokens": 30,
         "step": 3}


def test_a_failed_attempts_figures_reach_the_status_before_the_next_pod() -> None:
    plan = plan_for(RUNNING, [pod(1, "Failed", summary=SPENT)])
    assert plan.status["attempt"] == 2 and plan.status["failures"] == 1
    assert plan.status["spentUSD"] == "0.0375"  # today's _next_attempt dropped it
    assert (plan.status["inputTokens"], plan.status["outputTokens"]) == (300, 30)
    assert plan.unpin == ["t1-a1"]


def test_the_issues_tried_case_stops_at_the_limit_on_the_second_attempt() -> None:
    """Three $0.0125 calls then exit 1, hard limit $0.05: attempt 1 spends $0.0375; attempt 2's
    sidecar starts from that prior figure (contract 1), so its first call reaches the limit."""
    retry = {"pod": {"backoffLimit": 3}}
    plan = plan_for(RUNNING, [pod(1, "Failed", summary=SPENT)], retryPolicy=retry)
    status = {**RUNNING, **plan.status, "podName": "t1-a2"}
    assert status["spentUSD"] == "0.0375" and status["attempt"] == 2
    final = {"phase": "BudgetExceeded", "spentUSD": "0.05", "hardLimitUSD": "0.05"}
    plan = plan_for(status, [pod(1, "Failed", summary=SPENT),
                             pod(2, "Failed", summary=final)], retryPolicy=retry)
    assert plan.status["phase"] == "BudgetExceeded" and plan.status["spentUSD"] == "0.05"
    assert plan.release_budget and plan.unpin == ["t1-a1", "t1-a2"]


def test_status_spend_never_decreases() -> None:
    high = {**RUNNING, "spentUSD": "0.05", "inputTokens": 900}
    plan = plan_for(high, [pod(1, "Succeeded", summary={**SPENT, "spentUSD": "0.03"})])
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["spentUSD"] == "0.05" and plan.status["inputTokens"] == 900
    live = plan_for(high, [pod(1)], live={"phase": "BudgetExceeded", "spentUSD": "0.01"})
    assert live.status["spentUSD"] == "0.05"
    assert at_least({"spentUSD": "0.05"}, {"spentUSD": "0.040"}) == {"spentUSD": "0.05"}


def test_a_pod_without_final_figures_is_charged_its_live_spend_and_holds() -> None:
    status = {**RUNNING, "spentUSD": "0.02", "reservedUSD": "0.0125"}
    oom = pod(1, "Failed", summary=None)
    oom["status"]["initContainerStatuses"] = [{"name": "tether-sidecar", "state": {
        "terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    plan = plan_for(status, [oom])
    assert plan.status["spentUSD"] == "0.0325" and plan.status["reservedUSD"] == "0"
    charged = [e for e in plan.events if e[1] == "FiguresCharged"]
    assert len(charged) == 1 and "0.0125 USD of holds" in charged[0][2]
    unreadable = pod(1, "Failed", summary=None)
    unreadable["status"]["initContainerStatuses"] = [{"name": "tether-sidecar", "state": {
        "terminated": {"exitCode": 0, "message": "{trunc"}}}]
    assert plan_for(status, [unreadable]).status["spentUSD"] == "0.0325"


def test_a_pod_whose_sidecar_never_ran_is_charged_nothing() -> None:
    status = {**RUNNING, "spentUSD": "0.02", "reservedUSD": "0"}
    never = pod(1, "Pending", deleting=True, node=None)
    settled = settle(status, [never])
    assert settled.unpin == ["t1-a1"] and settled.notes == []
    assert "spentUSD" not in settled.figures


def test_a_deleted_pod_is_read_then_resumed_as_a_disruption() -> None:
    plan = plan_for(RUNNING, [pod(1, "Failed", summary=SPENT, deleting=True)])
    assert plan.status["attempt"] == 2 and plan.status["evictions"] == 1
    assert plan.status["failures"] == 0 and plan.status["spentUSD"] == "0.0375"
    assert plan.unpin == ["t1-a1"]
    still = plan_for(RUNNING, [pod(1, "Running", deleting=True)])
    assert still.requeue == 1.0 and still.unpin == [] and "attempt" not in still.status


def test_the_budget_is_released_only_with_the_final_figures() -> None:
    live = {"phase": "BudgetExceeded", "spentUSD": "0.049"}
    plan = plan_for(RUNNING, [pod(1)], live=live)
    assert plan.status["phase"] == "BudgetExceeded" and plan.delete_pods == ["t1-a1"]
    assert not plan.release_budget  # the pod may spend while it stops
    ended = {**RUNNING, **plan.status}
    final = {"phase": "BudgetExceeded", "spentUSD": "0.0512"}
    plan = plan_for(ended, [pod(1, "Failed", summary=final, deleting=True)])
    assert plan.release_budget and plan.status["spentUSD"] == "0.0512"
    assert plan.unpin == ["t1-a1"]


def test_an_edited_deadline_stops_a_running_pod() -> None:
    status = {**RUNNING, "startTime": "2026-11-24T11:00:00Z"}
    plan = plan_for(status, [pod(1)], activeDeadlineSeconds=60)
    assert plan.status["phase"] == "Failed" and plan.delete_pods == ["t1-a1"]
    assert ("Warning", "DeadlineExceeded") in [e[:2] for e in plan.events]
    later = plan_for(status, [pod(1)], activeDeadlineSeconds=3630)
    assert later.status["phase"] == "Running" and later.requeue == 30.0  # woken at the deadline


def test_retry_policy_pod_is_read_from_the_spec_each_time() -> None:
    status = {**RUNNING, "attempt": 3, "podName": "t1-a3", "failures": 2}
    failed = [pod(3, "Failed", summary=SPENT)]
    assert plan_for(status, failed).status["phase"] == "Failed"  # backoffLimit 2
    raised = plan_for(status, failed, retryPolicy={"pod": {"backoffLimit": 5}})
    assert raised.status["attempt"] == 4 and raised.status["phase"] == "Running"


def test_observed_generation_is_what_the_running_sidecar_enforces() -> None:
    t = task(RUNNING)
    t["metadata"]["generation"] = 4
    live = {"phase": "Running", "spentUSD": "0.01", "generation": 3, "hardLimitUSD": "2.00"}
    plan = decide(Observed(t, [pod(1)], NOW, live), S)
    assert plan.status["observedGeneration"] == 3 and plan.status["hardLimitUSD"] == "2.00"
    ended = decide(Observed(t, [pod(1, "Succeeded", summary=SPENT)], NOW, None,
                            accepted={"generation": 4, "hardLimitUSD": "3.00"}), S)
    assert ended.status["observedGeneration"] == 4 and ended.status["hardLimitUSD"] == "3.00"



def test_the_live_poll_never_lowers_the_status() -> None:
    seen = {"spentUSD": "0.05", "step": 4, "observedGeneration": 2, "hardLimitUSD": "1.00"}
    stale = {"phase": "Running", "spentUSD": "0.0375", "step": 3, "reservedUSD": "0.0125",
             "generation": 3, "hardLimitUSD": "0.50"}
    patch = live_patch(seen, stale)
    assert patch.pop("reservedUSD", None) == ("0.0125" if "reservedUSD" in STATUS_FIELDS
                                              else None)  # written once the schema has it
    assert patch == {"observedGeneration": 3, "hardLimitUSD": "0.50"}
    assert live_patch(seen, {"spentUSD": "0.0600", "step": 5}) == {"spentUSD": "0.0600",
                                                                    "step": 5}


def test_an_evicted_pod_that_exited_zero_is_resumed_not_succeeded() -> None:
    """An agent stopped by SIGTERM may exit 0; its pod, pinned, shows Succeeded."""
    evicted = pod(1, "Succeeded", summary=SPENT, deleting=True,
                  conditions=[{"type": "DisruptionTarget", "status": "True"}])
    plan = plan_for(RUNNING, [evicted])
    assert plan.status["phase"] == "Running" and plan.status["evictions"] == 1
    assert plan.status["spentUSD"] == "0.0375" and plan.unpin == ["t1-a1"]


def _budget(limit: str, *holds: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "team-a", "generation": 1},
            "spec": {"limitUSD": limit, "period": "Monthly", "selector": {}},
            "status": {"reservations": [{"task": u, "uid": u, "amountUSD": a}
                                        for u, a in holds]}}


def test_a_hold_grows_only_into_room_and_shrinks_freely() -> None:
    b = _budget("3.00", ("u-1", "1.00"), ("u-2", "1.50"))
    assert budgets.resize(b, "u-1", Decimal("2.00"), NOW) is None  # 0.50 left, needs 1.00
    grown = budgets.resize(b, "u-1", Decimal("1.50"), NOW)
    assert grown is not None and grown["remainingUSD"] == "0"
    shrunk = budgets.resize(b, "u-1", Decimal("0.25"), NOW)
    assert shrunk is not None and shrunk["remainingUSD"] == "1.25"
    assert budgets.resize(b, "u-9", Decimal("0.25"), NOW) is None  # no hold to resize


def test_a_running_task_is_held_even_past_a_late_budgets_limit() -> None:
    b = _budget("0.50")
    t = task(RUNNING)
    assert budgets.reserve(b, t, Decimal("1.00"), NOW) is None
    forced = budgets.reserve(b, t, Decimal("1.00"), NOW, force=True)
    assert forced is not None and budgets.held({"status": forced}, "u-1") == Decimal("1.00")
    exhausted = next(c for c in forced["conditions"] if c["type"] == "Exhausted")
    assert (exhausted["status"], exhausted["reason"]) == ("True", "FullyHeld")
