"""Edit semantics on a real kube-apiserver (issue #9, docs/operator.md "Editing a task").

The fields that define the task (what it is asked, its model, the agent's code, its volume) are
fixed once it has started: the CRD's CEL transition rules refuse the edit, naming the field and
saying to create a new AgentTask instead. While the task is still Pending (waiting for
admission) the same edit is accepted; live and next-attempt fields are accepted at any time.
The rules read ``oldSelf.status.phase``, so the tests set the phase through the status
subresource as the operator does.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tether_api import EDITS, IMMUTABLE_MESSAGE

from .conftest import Kubectl
from .invalid_tasks import BASE_TASK

pytestmark = pytest.mark.cluster

Spec = dict[str, Any]

# One edit per immutable field, each a real change of that field alone.
IMMUTABLE_EDITS: dict[str, Callable[[Spec], None]] = {
    "task": lambda s: s["task"].update(instructions="Something else."),
    "model": lambda s: s["model"].update(name="gpt-4.1"),
    "agent.image": lambda s: s["agent"].update(image="tether/agent:0.2.0"),
    "agent.command": lambda s: s["agent"].update(command=["python", "-m", "other"]),
    "agent.args": lambda s: s["agent"].update(args=["--fast"]),
    "agent.env": lambda s: s["agent"].update(env=[{"name": "MODE", "value": "b"}]),
    "checkpoint": lambda s: s.update(checkpoint={"enabled": False}),
}

# Edits of fields applied live or from the next attempt: accepted on a running task.
ACCEPTED_EDITS: dict[str, Callable[[Spec], None]] = {
    "costEnvelope": lambda s: s["costEnvelope"].update(hardLimitUSD="3.00"),
    "retryPolicy.pod": lambda s: s["retryPolicy"].update(pod={"backoffLimit": 5}),
    "activeDeadlineSeconds": lambda s: s.update(activeDeadlineSeconds=600),
    "tools": lambda s: s["tools"].append({"name": "fetch", "url": "http://tools:8081/fetch"}),
    "retryPolicy.calls": lambda s: s["retryPolicy"]["calls"].update(maxAttempts=2),
    "contextBudget": lambda s: s.update(contextBudget={"compactAt": 0.5}),
    "observability": lambda s: s.update(observability={"toolIO": "none"}),
    "agent.resources": lambda s: s["agent"].update(resources={"limits": {"memory": "1Gi"}}),
    "agent.imagePullPolicy": lambda s: s["agent"].update(imagePullPolicy="Never"),
}


def test_every_field_of_the_edit_table_is_exercised() -> None:
    immutable = {f for f, kind in EDITS.items() if kind == "immutable"}
    assert set(IMMUTABLE_EDITS) == immutable
    assert set(ACCEPTED_EDITS) == set(EDITS) - immutable


def _task(kubectl: Kubectl, namespace: str, phase: str | None) -> str:
    body = copy.deepcopy(BASE_TASK)
    name = f"edit-{uuid.uuid4().hex[:8]}"
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["agent"]["command"] = ["python", "-m", "agent"]
    kubectl.ok("create", "-f", "-", stdin=yaml.safe_dump(body))
    if phase is not None:
        kubectl.ok("-n", namespace, "patch", "agenttask", name, "--subresource=status",
                   "--type=merge", "-p", json.dumps({"status": {"phase": phase}}))
    return name


def _edit(kubectl: Kubectl, namespace: str, name: str, change: Callable[[Spec], None]) -> Any:
    """Replace the task with ``change`` applied to its spec, as `kubectl edit` would."""
    task = json.loads(kubectl.ok("-n", namespace, "get", "agenttask", name, "-o", "json"))
    change(task["spec"])
    return kubectl("-n", namespace, "replace", "-f", "-", stdin=json.dumps(task))


@pytest.mark.parametrize("field", sorted(IMMUTABLE_EDITS))
@pytest.mark.parametrize("phase", ["Running", "Succeeded"])
def test_an_immutable_field_of_a_started_task_is_refused_naming_it(
        kubectl: Kubectl, namespace: str, field: str, phase: str) -> None:
    name = _task(kubectl, namespace, phase)
    out = _edit(kubectl, namespace, name, IMMUTABLE_EDITS[field])
    assert out.returncode != 0, f"the API server let spec.{field} change on a {phase} task"
    assert f"spec.{field}: Forbidden: {IMMUTABLE_MESSAGE}" in out.stderr, out.stderr


@pytest.mark.parametrize("field", sorted(IMMUTABLE_EDITS))
@pytest.mark.parametrize("phase", [None, "Pending"], ids=["no-status", "Pending"])
def test_an_immutable_field_of_a_task_not_started_may_change(
        kubectl: Kubectl, namespace: str, field: str, phase: str | None) -> None:
    name = _task(kubectl, namespace, phase)
    out = _edit(kubectl, namespace, name, IMMUTABLE_EDITS[field])
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("field", sorted(ACCEPTED_EDITS))
def test_a_live_or_next_attempt_field_of_a_running_task_may_change(
        kubectl: Kubectl, namespace: str, field: str) -> None:
    name = _task(kubectl, namespace, "Running")
    out = _edit(kubectl, namespace, name, ACCEPTED_EDITS[field])
    assert out.returncode == 0, out.stderr
    task = json.loads(kubectl.ok("-n", namespace, "get", "agenttask", name, "-o", "json"))
    assert task["metadata"]["generation"] == 2  # the spec did change


def test_status_writes_and_labels_of_a_running_task_are_accepted(
        kubectl: Kubectl, namespace: str) -> None:
    name = _task(kubectl, namespace, "Running")
    kubectl.ok("-n", namespace, "label", "agenttask", name, "team=payments")
    kubectl.ok("-n", namespace, "patch", "agenttask", name, "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": {"phase": "Succeeded", "step": 4}}))


def test_the_rules_stay_within_the_cel_cost_budget_on_a_large_task(
        kubectl: Kubectl, namespace: str) -> None:
    # The equality checks walk the whole field: a task of ~1 MB (inputs, instructions, env)
    # must still take status writes and live edits, and refuse an immutable one by its rule,
    # not by a cost-limit error.
    body = copy.deepcopy(BASE_TASK)
    body["metadata"] = {"name": "large", "namespace": namespace}
    body["spec"]["task"] = {"instructions": "x" * 100_000,
                            "inputs": {f"k{i}": "v" * 200 for i in range(4000)}}
    body["spec"]["agent"]["env"] = [{"name": f"E{i}", "value": "v" * 100} for i in range(300)]
    kubectl.ok("create", "-f", "-", stdin=json.dumps(body))
    for status in ({"phase": "Running"}, {"step": 3}):
        kubectl.ok("-n", namespace, "patch", "agenttask", "large", "--subresource=status",
                   "--type=merge", "-p", json.dumps({"status": status}))
    kubectl.ok("-n", namespace, "patch", "agenttask", "large", "--type=merge", "-p",
               json.dumps({"spec": {"costEnvelope": {"hardLimitUSD": "3.00"}}}))
    out = kubectl("-n", namespace, "patch", "agenttask", "large", "--type=merge", "-p",
                  json.dumps({"spec": {"task": {"inputs": {"k1": "changed"}}}}))
    assert out.returncode != 0
    assert f"spec.task: Forbidden: {IMMUTABLE_MESSAGE}" in out.stderr, out.stderr[-500:]
