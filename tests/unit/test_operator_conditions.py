"""Conditions by the API conventions, a pod that cannot start, and AgentBudget conditions:
the pure parts (conditions.py, decide.py, budgets.py) on shapes as the API server returns them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tether_operator import budgets
from tether_operator.conditions import find, merge, spend_conditions, want
from tether_operator.decide import Observed, decide, iso
from tether_operator.podstart import start_blocker
from tether_operator.settings import OperatorSettings

from .test_operator_pure import NOW, S, budget, plan_for, pod, task, terminated

Body = dict[str, Any]
LATER = NOW + timedelta(minutes=5)
RUNNING = {"attempt": 1, "phase": "Running", "podName": "t1-a1"}


def waiting(reason: str, message: str, *, init: bool, created: str = iso(NOW)) -> Body:
    """A Pending pod with one container waiting, as the kubelet reports it."""
    p = pod(1, "Pending")
    p["metadata"]["creationTimestamp"] = created
    p["spec"] = {"nodeName": "tether-node"}
    where = "initContainerStatuses" if init else "containerStatuses"
    other = "containerStatuses" if init else "initContainerStatuses"
    p["status"][where] = [{"name": "tether-sidecar" if init else "agent", "ready": False,
                           "state": {"waiting": {"reason": reason, "message": message}}}]
    p["status"][other] = [{"name": "agent" if init else "tether-sidecar", "ready": False,
                           "state": {"waiting": {"reason": "PodInitializing"}}}]
    return p


# --- merge: lastTransitionTime moves only on a transition; unnamed types are kept ---------

def test_a_new_reason_is_not_a_transition_but_a_new_status_is() -> None:
    first = merge([], [want("Ready", False, "PodStarting", "starting")], NOW, 1)
    same = merge(first, [want("Ready", False, "ImagePullFailed", "no image")], LATER, 2)
    assert same[0]["lastTransitionTime"] == iso(NOW) and same[0]["reason"] == "ImagePullFailed"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [want("Ready", True, "PodReady", "up")], LATER, 2)
    assert flipped[0]["lastTransitionTime"] == iso(LATER)


def test_completion_keeps_admitted() -> None:
    admitted = merge([], [want("Admitted", True, "Reserved", "held")], NOW, 1)
    plan = plan_for(task({**RUNNING, "conditions": admitted}),
                    [pod(1, "Succeeded", **terminated(0, {"spentUSD": "0.1"}))])
    merged = merge(admitted, plan.conditions, LATER, 1)
    assert find(merged, "Admitted") == admitted[0]
    assert {c["type"]: c["status"] for c in merged} == {
        "Admitted": "True", "Complete": "True", "Failed": "False", "Ready": "True",
        "Progressing": "False", "BudgetExceeded": "False"}


def test_ready_follows_the_pods_ready_condition() -> None:
    up = pod(1, "Running", conditions=[{"type": "Ready", "status": "True"}])
    plan = plan_for(task(RUNNING), [up])
    assert find(plan.conditions, "Ready") == want("Ready", True, "PodReady",
                                                  "pod t1-a1 is running, its harness ready")
    assert find(plan_for(task(RUNNING), [pod(1, "Pending")]).conditions,
                "Ready")["reason"] == "PodStarting"  # type: ignore[index]


def test_soft_limit_on_the_task_from_its_spend() -> None:
    spec = {"costEnvelope": {"hardLimitUSD": "2.00", "softLimitUSD": "1.00"}}
    assert spend_conditions(spec, {"spentUSD": "1.00"})[0]["status"] == "True"
    assert spend_conditions(spec, {"spentUSD": "0.99"})[0]["status"] == "False"
    assert spend_conditions({"costEnvelope": {"hardLimitUSD": "2"}}, {}) == []


# --- a pod that cannot start ---------------------------------------------------------------

SECRET = ('secret "openai" not found')
NEVER = ('Container image "example.invalid/agent:x" is not present with pull policy of Never')


@pytest.mark.parametrize(("shape", "reason", "words"), [
    (waiting("CreateContainerConfigError", SECRET, init=True), "SecretMissing",
     "container tether-sidecar: CreateContainerConfigError: secret \"openai\" not found"),
    (waiting("ErrImageNeverPull", NEVER, init=False), "ImagePullFailed",
     "container agent: ErrImageNeverPull: Container image"),
    (waiting("ImagePullBackOff", "Back-off pulling image", init=True), "ImagePullFailed",
     "ImagePullBackOff"),
    (waiting("InvalidImageName", "bad", init=False), "ImagePullFailed", "InvalidImageName"),
    (waiting("CreateContainerConfigError", 'configmap "x" not found', init=False),
     "ConfigMapMissing", "configmap"),
])
def test_the_cause_is_named(shape: Body, reason: str, words: str) -> None:
    found = start_blocker(shape)
    assert found is not None and found[0] == reason and words in found[1]


def test_an_unbound_claim_is_a_cause_and_initialising_is_not() -> None:
    p = pod(1, "Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}])
    assert start_blocker(p) is not None and start_blocker(p)[0] == "VolumeNotBound"  # type: ignore[index]
    assert start_blocker(waiting("ContainerCreating", "", init=True)) is None


def test_blocked_pod_gets_condition_and_one_event_then_fails_at_the_deadline() -> None:
    blocked = waiting("CreateContainerConfigError", SECRET, init=True)
    plan = plan_for(task(RUNNING), [blocked])
    ready = find(plan.conditions, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "SecretMissing")
    assert [e[:2] for e in plan.events] == [("Warning", "SecretMissing")]
    assert SECRET in plan.events[0][2]
    assert plan.requeue == OperatorSettings().start_timeout_seconds  # a timer for the deadline
    seen = merge([], plan.conditions, NOW, 1)
    again = plan_for(task({**RUNNING, "conditions": seen}), [blocked])
    assert again.events == [] and plan.status.get("phase") == "Running"
    old = waiting("CreateContainerConfigError", SECRET, init=True,
                  created=iso(NOW - timedelta(seconds=OperatorSettings().start_timeout_seconds)))
    done = plan_for(task({**RUNNING, "conditions": seen}), [old])
    assert done.status["phase"] == "Failed" and done.delete_pods == ["t1-a1"]
    assert SECRET in done.status["message"] and not done.release_budget  # once it is gone
    assert find(done.conditions, "Failed")["reason"] == "SecretMissing"  # type: ignore[index]


def test_start_timeout_setting_refuses_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_OPERATOR_START_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValueError, match="start_timeout_seconds"):
        OperatorSettings()
    monkeypatch.setenv("TETHER_OPERATOR_START_TIMEOUT_SECONDS", "7.5")
    assert OperatorSettings().start_timeout_seconds == 7.5


# --- AgentBudget: SoftLimitReached and Exhausted --------------------------------------------

def test_budget_soft_limit_and_exhausted() -> None:
    b = budget()
    b["spec"]["softLimitPercent"] = 50
    held = budgets.reserve(b, task(), Decimal("2.00"), NOW)
    assert held is not None
    assert find(held["conditions"], "SoftLimitReached")["status"] == "False"  # type: ignore[index]
    t2 = task()
    t2["metadata"]["uid"] = "u-2"
    both = budgets.reserve({**b, "status": held}, t2, Decimal("2.00"), LATER)
    assert both is not None
    soft = find(both["conditions"], "SoftLimitReached")
    assert soft is not None and (soft["status"], soft["lastTransitionTime"]) == ("True",
                                                                           iso(LATER))
    assert find(both["conditions"], "Exhausted")["status"] == "False"  # type: ignore[index]


def test_overspent_budget_is_exhausted_and_remaining_is_clamped() -> None:
    b = budget(spentUSD="7.00", periodStart="2026-11-24T00:00:00Z")  # limit lowered to 5
    totals = budgets.with_totals(b, b["status"], NOW)
    exhausted = find(totals["conditions"], "Exhausted")
    assert totals["remainingUSD"] == "0"
    assert exhausted is not None and (exhausted["status"], exhausted["reason"]) == (
        "True", "LimitSpent")


def test_a_secret_volume_that_cannot_mount_is_named_from_the_pods_event() -> None:
    # What the kubelet does (seen on the real node): containers wait in PodInitializing and
    # only a FailedMount Event names the Secret.
    initialising = waiting("PodInitializing", "", init=True)
    event = {"type": "Warning", "reason": "FailedMount", "lastTimestamp": iso(NOW),
             "message": 'MountVolume.SetUp failed for volume "model-credentials" : '
                        'secret "model-creds" not found'}
    plan = decide(Observed(task(RUNNING), [initialising], NOW, None, [event]), S)
    ready = find(plan.conditions, "Ready")
    assert ready is not None and ready["reason"] == "SecretMissing"
    assert 'secret "model-creds" not found' in plan.events[0][2]
    unknown = plan_for(task(RUNNING), [initialising])
    assert unknown.events == [] and unknown.requeue == S.status_poll_seconds  # looks again


def test_a_pod_on_a_node_is_looked_at_again_less_often_as_it_ages_and_one_waiting_for_room_not(
        ) -> None:
    young = waiting("PodInitializing", "", init=True)
    assert plan_for(task(RUNNING), [young]).requeue == S.status_poll_seconds
    old = waiting("PodInitializing", "", init=True, created=iso(NOW - timedelta(minutes=2)))
    assert plan_for(task(RUNNING), [old]).requeue == 30.0
    ancient = waiting("PodInitializing", "", init=True, created=iso(NOW - timedelta(hours=1)))
    assert plan_for(task(RUNNING), [ancient]).requeue == 60.0
    unscheduled = pod(1, "Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                                 "reason": "Unschedulable"}])
    assert plan_for(task(RUNNING), [unscheduled]).requeue is None
