"""The operator hands a task's sidecar its EvaluationPolicies (issue #10, step 1) against a real
kube-apiserver: the reconciler lists the namespace's policies when it makes a pod, sets
TETHER_EVALUATION on the sidecar of a task a policy selects and not on another's, takes a
policy edit into the next pod, and leaves out a policy tether_api refuses, with an Event.

No kubelet runs these pods (test_task_lifecycle.ParkedKube); everything else is the operator's
own code. Its own namespace: the policies here must not select the other tests' tasks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tether_api.sampling import sampled
from tether_operator.evaluation import ENV
from tether_operator.ledger import POD_FINALIZER
from tether_operator.metrics import OperatorMetrics
from tether_operator.reconcile import Reconciler
from tether_operator.settings import OperatorSettings

from .conftest import CaughtUp, Kubectl
from .invalid_eval import sample
from .test_task_lifecycle import Guard, ParkedKube, create, pod

pytestmark = pytest.mark.cluster
URL = "http://tether-evaluator.tether-system.svc:8080"
Body = dict[str, Any]


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A namespace of its own (``namespace`` first: the CRDs are installed)."""
    name = f"tether-evalenv-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", name)
    yield name
    for p in json.loads(kubectl.ok("-n", name, "get", "pods", "-o", "json"))["items"]:
        if POD_FINALIZER in (p["metadata"].get("finalizers") or []):
            kubectl("-n", name, "patch", "pod", p["metadata"]["name"], "--type=json",
                    "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
async def rec(kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    monkeypatch.setenv("KUBECONFIG", str(kubectl.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k = ParkedKube()
    settings = OperatorSettings(leader_election=False, evaluator_url=URL)
    yield CaughtUp(k, settings, OperatorMetrics(), blocker=Guard())
    await k.close()


def policy(kubectl: Kubectl, ns: str, name: str, rate: str, regex: str = "^(?!.*TODO)") -> None:
    body = sample("EvaluationPolicy")
    body["metadata"]["name"] = name
    body["spec"]["sampling"]["rate"] = rate
    body["spec"]["checks"][1]["regex"] = regex
    kubectl.ok("-n", ns, "apply", "--server-side", "-f", "-", stdin=json.dumps(body))


async def sidecar_env(rec: Reconciler, ns: str, name: str, team: str) -> tuple[str, Body | None]:
    """Create a task, reconcile until its first pod exists; its UID and TETHER_EVALUATION."""
    await create(rec, ns, name, labels={"team": team})
    for _ in range(2):  # admitted, then attempt 1's pod
        await rec.reconcile(ns, name)
    made = await pod(rec, ns, f"{name}-a1")
    env = {e["name"]: e.get("value") for e in made["spec"]["initContainers"][0].get("env", [])}
    agent_env = {e["name"] for e in made["spec"]["containers"][0]["env"]}
    assert ENV not in agent_env, "the agent must not see the evaluation settings"
    uid = made["metadata"]["ownerReferences"][0]["uid"]
    return uid, json.loads(env[ENV]) if ENV in env else None


async def test_a_selected_tasks_sidecar_gets_its_policies(rec: Reconciler, kubectl: Kubectl,
                                                          ns: str) -> None:
    policy(kubectl, ns, "triage", rate="0.5")  # the sample selects team=support
    uid, doc = await sidecar_env(rec, ns, "eval-yes", "support")
    assert doc is not None, "a task the policy selects got no TETHER_EVALUATION"
    assert doc["evaluatorURL"] == URL
    [entry] = doc["policies"]
    assert entry["name"] == "triage"
    assert entry["sampled"] is sampled(uid, "0.5")
    assert entry["include"] == {"failed": True, "retried": False}
    assert [c["name"] for c in entry["checks"]] == ["triage-shape", "no-placeholder"]

    _, other = await sidecar_env(rec, ns, "eval-no", "billing")
    assert other is None, "a task no policy selects got TETHER_EVALUATION"


async def test_a_policy_edit_reaches_the_next_pod(rec: Reconciler, kubectl: Kubectl,
                                                  ns: str) -> None:
    policy(kubectl, ns, "triage", rate="1")
    _, doc = await sidecar_env(rec, ns, "eval-all", "support")
    assert doc is not None and doc["policies"][0]["sampled"] is True
    policy(kubectl, ns, "triage", rate="0")  # no watch here: the listing itself is fresh
    _, doc = await sidecar_env(rec, ns, "eval-none", "support")
    assert doc is not None and doc["policies"][0]["sampled"] is False


async def test_a_policy_tether_api_refuses_is_left_out_with_an_event(
        rec: Reconciler, kubectl: Kubectl, ns: str) -> None:
    policy(kubectl, ns, "triage", rate="1")
    policy(kubectl, ns, "broken", rate="1", regex="(unclosed")  # CEL cannot check a regex
    _, doc = await sidecar_env(rec, ns, "eval-broken", "support")
    assert doc is not None and [p["name"] for p in doc["policies"]] == ["triage"]
    events = json.loads(kubectl.ok("-n", ns, "get", "events", "-o", "json",
                                   "--field-selector", "involvedObject.name=broken"))["items"]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "InvalidPolicy")]
    assert "spec.checks.1" in events[0]["message"]
    assert "does not compile" in events[0]["message"]
