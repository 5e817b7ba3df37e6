"""The operator's pure layers: manifests, decisions from observed state, budget arithmetic."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tether_operator import budgets, manifests
from tether_operator.decide import Observed, decide
from tether_operator.settings import OperatorSettings

NOW = datetime(2026, 11, 24, 12, 0, 0)
S = OperatorSettings()


def task(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base = {
        "agent": {"image": "tether/agent:latest", "command": ["python", "-m", "agent"],
                  "env": [{"name": "MODE", "value": "x"}]},
        "task": {"instructions": "do it", "inputs": {"n": 1}},
        "model": {"provider": "openai", "name": "gpt-4o",
                  "credentialsSecretRef": {"name": "openai", "key": "api-key"}},
        "tools": [{"name": "search", "url": "http://tools/search"}],
        "costEnvelope": {"hardLimitUSD": "2.00"},
        "retryPolicy": {"pod": {"backoffLimit": 2}},
    }
    base.update(spec)
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": "t1", "namespace": "team-a", "uid": "u-1",
                         "resourceVersion": "7", "labels": {"team": "a"}},
            "spec": base, "status": status or {}}


def pod(attempt: int, phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"t1-a{attempt}", "labels": {manifests.LABEL_ATTEMPT:
                                                              str(attempt)}},
            "status": {"phase": phase, **status}}


def terminated(exit_code: int, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"containerStatuses": [{"name": "agent", "state": {"terminated": {
        "exitCode": exit_code, "reason": "Error" if exit_code else "Completed",
        "finishedAt": "2026-11-24T11:59:50Z"}}}]}
    if summary is not None:
        st["initContainerStatuses"] = [{"name": "tether-sidecar", "state": {"terminated": {
            "exitCode": 0, "message": json.dumps(summary)}}}]
    return st


# --- manifests -----------------------------------------------------------------------------

def test_pod_is_restricted_and_only_the_sidecar_holds_the_key() -> None:
    p = manifests.pod(task(), 2, S, 600)
    spec = p["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (sidecar,), (agent,) = spec["initContainers"], spec["containers"]
    assert sidecar["restartPolicy"] == "Always"  # native sidecar
    for c in (sidecar, agent):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert any(m["name"] == "model-credentials" for m in sidecar["volumeMounts"])
    assert [m["name"] for m in agent["volumeMounts"]] == ["agent-tmp"]  # /tmp; no key
    env = {e["name"]: e["value"] for e in agent["env"]}
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:8181/v1" and env["MODE"] == "x"
    assert "--attempt" in sidecar["command"] and "2" in sidecar["command"]
    assert spec["activeDeadlineSeconds"] == 600
    assert p["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_long_names_stay_dns_labels() -> None:
    t = task()
    t["metadata"]["name"] = "x" * 63
    names = manifests.object_names(t, 12)
    assert all(len(n) <= 63 for n in names.values())
    assert names["pod"] != manifests.object_names(t, 13)["pod"]


def test_config_map_carries_the_uid_for_the_trace() -> None:
    cm = manifests.config_map(task())
    assert "uid: u-1" in cm["data"]["agenttask.yaml"]


# --- decide --------------------------------------------------------------------------------

def plan_for(t: dict[str, Any], pods: list[dict[str, Any]], live: dict[str, Any] | None = None
             ) -> Any:
    return decide(Observed(t, pods, NOW, live), S)


def test_fresh_task_starts_attempt_one() -> None:
    plan = plan_for(task(), [])
    assert plan.create_pod == 1 and plan.status["attempt"] == 1


def test_running_pod_means_running() -> None:
    plan = plan_for(task({"attempt": 1, "phase": "Running", "podName": "t1-a1"}), [pod(1)])
    assert plan.create_pod is None and plan.status == {"phase": "Running"}  # as it is


def test_success_takes_the_sidecar_summary() -> None:
    summary = {"phase": "Running", "step": 9, "spentUSD": "0.42", "traceID": "abc"}
    plan = plan_for(task({"attempt": 1, "phase": "Running", "podName": "t1-a1"}),
                    [pod(1, "Succeeded", **terminated(0, summary))])
    assert plan.status["phase"] == "Succeeded" and plan.status["spentUSD"] == "0.42"
    assert plan.status["step"] == 9 and plan.release_budget


def test_failed_attempt_backs_off_then_fails_at_the_limit() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1", "failures": 0}
    plan = plan_for(task(st), [pod(1, "Failed", **terminated(1))])
    assert plan.status["attempt"] == 2 and plan.status["failures"] == 1
    assert plan.status["nextAttemptAt"] == "2026-11-24T12:00:00Z"  # finished 11:59:50 + 10 s
    st = {"attempt": 3, "phase": "Running", "podName": "t1-a3", "failures": 2}
    plan = plan_for(task(st), [pod(3, "Failed", **terminated(1))])
    assert plan.status["phase"] == "Failed" and "backoffLimit 2" in plan.status["message"]


def test_waits_for_the_backoff_before_the_next_pod() -> None:
    st = {"attempt": 2, "phase": "Running", "podName": "t1-a1", "failures": 1,
          "nextAttemptAt": "2026-11-24T12:00:30Z"}
    plan = plan_for(task(st), [pod(1, "Failed", **terminated(1))])
    assert plan.create_pod is None and plan.requeue == 30.0
    later = decide(Observed(task(st), [pod(1, "Failed", **terminated(1))],
                            NOW + timedelta(seconds=31)), S)
    assert later.create_pod == 2


def test_eviction_resumes_without_counting_a_failure() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1", "failures": 0}
    evicted = pod(1, "Failed", conditions=[{"type": "DisruptionTarget", "status": "True"}])
    plan = plan_for(task(st), [evicted])
    assert plan.status["attempt"] == 2 and plan.status["evictions"] == 1
    assert plan.status["failures"] == 0 and "nextAttemptAt" not in plan.status


def test_a_vanished_pod_is_a_disruption_and_a_terminating_one_is_waited_for() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1"}
    plan = plan_for(task(st), [])
    assert plan.status["attempt"] == 2 and plan.status["evictions"] == 1
    going = pod(1)
    going["metadata"]["deletionTimestamp"] = "2026-11-24T11:59:59Z"
    assert plan_for(task(st), [going]).requeue == 1.0


def test_budget_exceeded_from_the_summary_or_live_status() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1"}
    plan = plan_for(task(st), [pod(1, "Failed", **terminated(4, {"phase": "BudgetExceeded",
                                                                 "spentUSD": "2.00"}))])
    assert plan.status["phase"] == "BudgetExceeded"
    plan = plan_for(task(st), [pod(1)], live={"phase": "BudgetExceeded", "spentUSD": "1.99"})
    assert plan.status["phase"] == "BudgetExceeded" and plan.delete_pods == ["t1-a1"]


def test_terminal_task_stops_stragglers_and_releases_once_they_ended() -> None:
    plan = plan_for(task({"phase": "Failed", "attempt": 2}), [pod(2)])
    assert plan.delete_pods == ["t1-a2"] and not plan.release_budget  # it may still spend
    plan = plan_for(task({"phase": "Failed", "attempt": 2}), [pod(2, "Failed")])
    assert plan.delete_pods == [] and plan.release_budget


def test_deadline_over_fails_the_task() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1",
          "startTime": "2026-11-24T11:00:00Z"}
    plan = plan_for(task(st, activeDeadlineSeconds=60), [pod(1, "Failed", **terminated(1))])
    assert plan.status["phase"] == "Failed" and "activeDeadlineSeconds" in plan.status["message"]


# --- budgets -------------------------------------------------------------------------------

def budget(limit: str = "5.00", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "team-a", "generation": 1},
            "spec": {"selector": {"matchLabels": {"team": "a"}}, "period": "Daily",
                     "limitUSD": limit}, "status": status}


def test_holds_fit_until_the_limit_and_are_idempotent() -> None:
    b = budget()
    held = []
    for i in range(3):
        t = task()
        t["metadata"]["uid"] = f"u{i}"
        new = budgets.reserve(b, t, Decimal("2.00"), NOW)
        if new is None:
            break
        b = {**b, "status": new}
        held.append(t)
    assert len(held) == 2 and b["status"]["remainingUSD"] == "1.00"
    assert budgets.reserve(b, held[0], Decimal("2.00"), NOW) == budgets.with_totals(
        b, b["status"], NOW)  # taking it again changes nothing


def test_release_returns_the_unspent_part() -> None:
    b = budget()
    b = {**b, "status": budgets.reserve(b, task(), Decimal("2.00"), NOW)}
    after = budgets.release(b, "u-1", Decimal("0.35"), NOW)
    assert after is not None and (after["spentUSD"], after["reservedUSD"],
                                  after["remainingUSD"]) == ("0.35", "0", "4.65")
    assert budgets.release({**b, "status": after}, "u-1", Decimal("0.35"), NOW) is None


def test_period_rolls_over() -> None:
    b = budget(spentUSD="4.00", periodStart="2026-11-23T00:00:00Z")
    rolled = budgets.with_totals(b, b["status"], NOW)
    assert rolled["spentUSD"] == "0" and rolled["periodStart"] == "2026-11-24T00:00:00Z"


@pytest.mark.parametrize(("selector", "selected"), [
    ({"matchLabels": {"team": "a"}}, True), ({"matchLabels": {"team": "b"}}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "c"]}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False), ({}, True),
])
def test_selectors(selector: dict[str, Any], selected: bool) -> None:
    b = budget()
    b["spec"]["selector"] = selector
    assert budgets.selects(b, task()) is selected


def test_an_unreadable_summary_is_reported_not_taken_as_empty() -> None:
    st = {"attempt": 1, "phase": "Running", "podName": "t1-a1", "spentUSD": "0.30"}
    done = pod(1, "Succeeded", **terminated(0, {}))
    done["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = '{"step": 9, "sp'
    plan = plan_for(task(st), [done])
    assert plan.status["phase"] == "Succeeded" and "spentUSD" not in plan.status  # live kept
    assert "final summary was unreadable (not JSON" in plan.status["message"]
    assert "unreadable" in plan.events[0][2]


def test_task_inputs_reach_the_agent_as_the_sdk_reads_them(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # The pod's env was YAML flow text once, and the reference agent crashed parsing it.
    import tether_agent

    t = task()
    t["spec"]["task"]["inputs"] = {"service": "payments", "since": "2026-11-01",
                                   "ids": [1, 2], "nested": {"a": "x: y"}}
    env = {e["name"]: e["value"] for e in manifests.agent_env(t, 1)}
    monkeypatch.setenv("TETHER_TASK_INPUTS", env["TETHER_TASK_INPUTS"])
    monkeypatch.setenv("TETHER_TASK_INSTRUCTIONS", env["TETHER_TASK_INSTRUCTIONS"])
    assert tether_agent.task()[1] == t["spec"]["task"]["inputs"]


def test_task_pods_get_no_service_link_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Service called tether-sidecar in the task's namespace injects TETHER_SIDECAR_* names,
    # which the sidecar's settings refuse: the pod would never start.
    from tether_sidecar.settings import Settings

    monkeypatch.setenv("TETHER_SIDECAR_SERVICE_HOST", "10.96.0.20")
    with pytest.raises(ValueError, match="TETHER_SIDECAR_SERVICE_HOST"):
        Settings(task="t.yaml", state_dir="/s", secrets_dir="/x")
    assert manifests.pod(task(), 1, S, 600)["spec"]["enableServiceLinks"] is False
