"""A task's life against a real kube-apiserver (issue #9): pods pinned until their figures are
recorded, deletion waiting for the final figures, live edits through the ConfigMap and the
budget holds, a budget created after its tasks, and the guards before a pod.

No kubelet runs these pods: ``ParkedKube`` gives each a node selector nothing matches (the
shared cluster has a node), binds it by the binding subresource when a test needs it "on a
node", and the test writes the pod status a kubelet would (the sidecar's summary as the
termination message). Everything else is the operator's own code on the real API server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml

from tether_operator import budgets, reconcile
from tether_operator.conditions import find
from tether_operator.kube import ApiError, Kube
from tether_operator.ledger import POD_FINALIZER
from tether_operator.metrics import OperatorMetrics
from tether_operator.reconcile import FINALIZER, Reconciler
from tether_operator.settings import OperatorSettings
from tether_operator.spec_sync import NUDGE_ANNOTATION

from .conftest import CaughtUp, Kubectl
from .test_operator_client import task

pytestmark = pytest.mark.cluster
Body = dict[str, Any]
API = "/apis/tether.dev/v1alpha1/namespaces"


class ParkedKube(Kube):
    """The operator's client, but its pods are never scheduled (a test seam on ``create``)."""

    async def create(self, obj: Body) -> Body | None:
        if obj["kind"] == "Pod":
            obj["spec"]["nodeSelector"] = {"tether.dev/test-parked": "no-such-node"}
        return await super().create(obj)


class Guard:
    def __init__(self) -> None:
        self.says: tuple[str, str] | None = None

    async def __call__(self, kube: Kube, t: Body) -> tuple[str, str] | None:
        return self.says


@pytest.fixture(scope="module", autouse=True)
def _unpinned_at_the_end(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """No operator runs after these tests: drop what they pinned (a task's budget-release, a
    pod's attempt-figures), or the session's namespace would never finish deleting."""
    yield
    for ref in kubectl.ok("-n", namespace, "get", "agenttasks", "-o", "name").split():
        kubectl.ok("-n", namespace, "patch", ref, "--type=merge", "-p",
                   '{"metadata":{"finalizers":null}}')
    pods = json.loads(kubectl.ok("-n", namespace, "get", "pods", "-o", "json"))["items"]
    for p in pods:
        if POD_FINALIZER in (p["metadata"].get("finalizers") or []):
            kubectl("-n", namespace, "patch", "pod", p["metadata"]["name"], "--type=json",
                    "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')


@pytest.fixture
async def rec(kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    monkeypatch.setenv("KUBECONFIG", str(kubectl.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k = ParkedKube()
    settings = OperatorSettings(leader_election=False, backoff_base_seconds=0)
    yield CaughtUp(k, settings, OperatorMetrics(), blocker=Guard())
    await k.close()


async def create(rec: Reconciler, ns: str, name: str, hard: str = "1.00",
                 labels: dict[str, str] | None = None) -> None:
    body = task(name)
    body["metadata"]["labels"] = labels or {}
    body["spec"]["costEnvelope"]["hardLimitUSD"] = hard
    await rec.kube.request("POST", f"{API}/{ns}/agenttasks", body)


async def budget(rec: Reconciler, ns: str, name: str, limit: str, team: str) -> None:
    await rec.kube.request("POST", f"{API}/{ns}/agentbudgets", {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentBudget", "metadata": {"name": name},
        "spec": {"limitUSD": limit, "period": "Monthly",
                 "selector": {"matchLabels": {"team": team}}}})


async def get(rec: Reconciler, ns: str, name: str) -> Body:
    got = await rec.kube.get_task(ns, name)
    assert got is not None, f"agenttask {name} is gone"
    return got


async def pod(rec: Reconciler, ns: str, name: str) -> Body:
    got: Body = await rec.kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    return got


async def pinned(rec: Reconciler, ns: str, name: str) -> bool:
    """Whether the pod is there and still pinned (the pod GC may remove an unpinned pod of a
    node that does not exist at any moment)."""
    try:
        found = await pod(rec, ns, name)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return POD_FINALIZER in (found["metadata"].get("finalizers") or [])


async def bind(rec: Reconciler, ns: str, name: str) -> None:
    await rec.kube.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "tether-parked-node"}})


async def end_pod(rec: Reconciler, ns: str, name: str, summary: Body | None,
                  exit_code: int = 1) -> None:
    """Write the status a kubelet writes when the agent exits and the sidecar stops."""
    term = {"exitCode": 0, "reason": "Completed", "startedAt": "2026-11-30T06:00:00Z",
            "finishedAt": "2026-11-30T06:00:09Z"}
    sidecar = {**term, **({"message": json.dumps(summary)} if summary else {})}
    agent = {**term, "exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}
    status = {"phase": "Failed" if exit_code else "Succeeded",
              "initContainerStatuses": [{"name": "tether-sidecar", "image": "s", "imageID": "",
                                         "ready": False, "restartCount": 0,
                                         "state": {"terminated": sidecar}}],
              "containerStatuses": [{"name": "agent", "image": "a", "imageID": "",
                                     "ready": False, "restartCount": 0,
                                     "state": {"terminated": agent}}]}
    await rec.kube.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                           {"status": status}, "application/merge-patch+json")


async def hold(rec: Reconciler, ns: str, name: str, uid: str) -> Decimal | None:
    return budgets.held(await rec.kube.get_budget(ns, name), uid)


async def test_figures_reach_the_status_before_the_pod_is_unpinned(
        rec: Reconciler, namespace: str) -> None:
    name = "life-ledger"
    await create(rec, namespace, name, hard="0.05")
    await rec.reconcile(namespace, name)  # admitted (no budget), attempt 1's pod created
    await rec.reconcile(namespace, name)
    first = await pod(rec, namespace, f"{name}-a1")
    assert POD_FINALIZER in first["metadata"]["finalizers"]
    await end_pod(rec, namespace, f"{name}-a1", {"phase": "Running", "spentUSD": "0.0375",
                                                 "inputTokens": 300, "outputTokens": 30})
    await rec.reconcile(namespace, name)
    status = (await get(rec, namespace, name))["status"]
    assert (status["spentUSD"], status["inputTokens"], status["attempt"]) == ("0.0375", 300, 2)
    assert POD_FINALIZER not in ((await pod(rec, namespace, f"{name}-a1"))["metadata"].get(
        "finalizers") or [])
    await rec.reconcile(namespace, name)  # attempt 2 starts from the ledger
    assert (await get(rec, namespace, name))["status"]["attempt"] == 2
    assert (await pod(rec, namespace, f"{name}-a2"))["metadata"]["name"] == f"{name}-a2"
    await rec.reconcile(namespace, name)  # the new pod's event: its name is recorded
    assert (await get(rec, namespace, name))["status"]["podName"] == f"{name}-a2"


async def test_deletion_waits_for_the_final_figures_then_releases(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "life-delete"
    await budget(rec, namespace, "del-b", "5.00", "del")
    await create(rec, namespace, name, labels={"team": "del"})
    for _ in range(3):  # finalizer, hold, pod
        await rec.reconcile(namespace, name)
    uid = (await get(rec, namespace, name))["metadata"]["uid"]
    assert await hold(rec, namespace, "del-b", uid) == Decimal("1.00")
    await bind(rec, namespace, f"{name}-a1")  # "on a node": only its kubelet can end it
    kubectl.ok("-n", namespace, "delete", "agenttask", name, "--wait=false")
    assert await rec.reconcile(namespace, name) is not None  # waiting for the figures
    going = await pod(rec, namespace, f"{name}-a1")
    assert going["metadata"].get("deletionTimestamp")  # deleted gracefully, still pinned
    assert await hold(rec, namespace, "del-b", uid) == Decimal("1.00")
    await end_pod(rec, namespace, f"{name}-a1", {"phase": "Running", "spentUSD": "0.31"},
                  exit_code=143)  # spend during its termination is in the summary
    assert await rec.reconcile(namespace, name) is None
    b = (await rec.kube.get_budget(namespace, "del-b"))["status"]
    assert (b["spentUSD"], b["reservedUSD"], b["reservations"]) == ("0.31", "0", [])
    assert await rec.kube.get_task(namespace, name) is None
    assert not await pinned(rec, namespace, f"{name}-a1")  # free to go (or gone)


async def test_a_deletion_past_the_wait_is_charged_the_whole_hold(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "life-delete-late"
    rec.settings = rec.settings.model_copy(update={"deletion_wait_seconds": 0})
    await budget(rec, namespace, "late-b", "5.00", "late")
    await create(rec, namespace, name, labels={"team": "late"})
    for _ in range(3):
        await rec.reconcile(namespace, name)
    await bind(rec, namespace, f"{name}-a1")
    kubectl.ok("-n", namespace, "delete", "agenttask", name, "--wait=false")
    assert await rec.reconcile(namespace, name) is None
    b = (await rec.kube.get_budget(namespace, "late-b"))["status"]
    assert (b["spentUSD"], b["reservations"]) == ("1.00", [])
    reasons = kubectl.ok("-n", namespace, "get", "events", "--field-selector",
                         f"involvedObject.name={name}", "-o", "jsonpath={.items[*].reason}")
    assert "FiguresNotReported" in reasons.split()


async def test_live_edits_reach_the_config_map_once_the_budgets_hold_them(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name, cm = "life-edit", "life-edit-task"
    await budget(rec, namespace, "edit-b", "1.50", "edit")
    await create(rec, namespace, name, labels={"team": "edit"})
    for _ in range(3):
        await rec.reconcile(namespace, name)
    uid = (await get(rec, namespace, name))["metadata"]["uid"]

    def limit_in_cm() -> str:
        doc = yaml.safe_load(json.loads(kubectl.ok("-n", namespace, "get", "cm", cm,
                                                   "-o", "json"))["data"]["agenttask.yaml"])
        return str(doc["spec"]["costEnvelope"]["hardLimitUSD"])

    def edit(hard: str) -> None:
        kubectl.ok("-n", namespace, "patch", "agenttask", name, "--type=merge", "-p",
                   json.dumps({"spec": {"costEnvelope": {"hardLimitUSD": hard}}}))

    edit("2.00")  # more than the budget can hold: refused, the old limit stays
    await rec.reconcile(namespace, name)
    t = await get(rec, namespace, name)
    cond = find(t["status"]["conditions"], "EditApplied")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "BudgetCannotHold")
    assert limit_in_cm() == "1.00" and await hold(rec, namespace, "edit-b", uid) == Decimal(1)
    assert t["status"]["hardLimitUSD"] == "1.00"
    edit("1.20")  # fits: held first, then written
    await rec.reconcile(namespace, name)
    assert limit_in_cm() == "1.20" and await hold(rec, namespace, "edit-b", uid) == Decimal(
        "1.20")
    assert find((await get(rec, namespace, name))["status"]["conditions"],
                "EditApplied")["status"] == "True"  # type: ignore[index]
    await bind(rec, namespace, f"{name}-a1")
    edit("0.50")  # lowered: written at once, the hold shrinks once the sidecar enforces it
    await rec.reconcile(namespace, name)
    assert limit_in_cm() == "0.50" and await hold(rec, namespace, "edit-b", uid) == Decimal(
        "1.20")
    t = await get(rec, namespace, name)
    # The running pod is touched, so its kubelet refreshes the mounted file now, not within
    # its periodic sync (up to a minute); the annotation names the generation sent.
    pod = json.loads(kubectl.ok("-n", namespace, "get", "pod", f"{name}-a1", "-o", "json"))
    assert pod["metadata"]["annotations"][NUDGE_ANNOTATION] == str(t["metadata"]["generation"])
    await rec.kube.patch_task_status(namespace, name, {"hardLimitUSD": "0.50"},
                                     t["metadata"]["resourceVersion"])  # as the live poll
    await rec.reconcile(namespace, name)
    assert await hold(rec, namespace, "edit-b", uid) == Decimal("0.50")


async def test_a_budget_created_after_its_tasks_counts_them(
        rec: Reconciler, namespace: str) -> None:
    name = "life-late-budget"
    await create(rec, namespace, name, labels={"team": "after"})
    for _ in range(2):
        await rec.reconcile(namespace, name)
    await budget(rec, namespace, "after-b", "0.50", "after")  # less than the task's limit
    await rec.refresh_budget(await rec.kube.get_budget(namespace, "after-b"))
    t = await get(rec, namespace, name)
    assert FINALIZER in t["metadata"]["finalizers"]
    b = (await rec.kube.get_budget(namespace, "after-b"))["status"]
    assert budgets.held({"status": b}, t["metadata"]["uid"]) == Decimal("1.00")
    assert find(b["conditions"], "Exhausted")["status"] == "True"  # type: ignore[index]


async def test_a_guard_fails_the_task_or_makes_it_wait(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    guard = rec.blocker
    assert isinstance(guard, Guard)
    guard.says = ("StaleObjects", "configmap life-guard-task is owned by another AgentTask")
    await create(rec, namespace, "life-guard")
    await rec.reconcile(namespace, "life-guard")
    assert await rec.reconcile(namespace, "life-guard") == 2.0
    t = await get(rec, namespace, "life-guard")
    ready = find(t["status"]["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "StaleObjects"
    assert kubectl("-n", namespace, "get", "pod", "life-guard-a1").returncode != 0
    guard.says = ("CredentialsNotAllowed", "secret s lacks tether.dev/model-credentials")
    await rec.reconcile(namespace, "life-guard")
    t = await get(rec, namespace, "life-guard")
    failed = find(t["status"]["conditions"], "Failed")
    assert t["status"]["phase"] == "Failed"
    assert failed is not None and failed["reason"] == "CredentialsNotAllowed"
    reasons = kubectl.ok("-n", namespace, "get", "events", "--field-selector",
                         "involvedObject.name=life-guard", "-o", "jsonpath={.items[*].reason}")
    assert "CredentialsNotAllowed" in reasons.split()


async def test_pods_of_a_task_that_is_gone_are_unpinned(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "life-gone"
    await create(rec, namespace, name)
    for _ in range(2):
        await rec.reconcile(namespace, name)
    kubectl.ok("-n", namespace, "delete", "agenttask", name, "--wait=true")  # no budget
    kubectl.ok("-n", namespace, "wait", f"pod/{name}-a1", "--timeout=60s",
               "--for=jsonpath={.metadata.deletionTimestamp}")  # collected, held by its pin
    assert POD_FINALIZER in (await pod(rec, namespace, f"{name}-a1"))["metadata"]["finalizers"]
    await rec.reconcile(namespace, name)  # as the pod's event wakes it
    assert kubectl("-n", namespace, "get", "pod", f"{name}-a1").returncode != 0  # unpinned


async def test_an_edited_deadline_stops_the_running_pod(
        rec: Reconciler, kubectl: Kubectl, namespace: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = "life-deadline"
    await create(rec, namespace, name)
    for _ in range(2):
        await rec.reconcile(namespace, name)
    started = (await get(rec, namespace, name))["status"]["startTime"]
    kubectl.ok("-n", namespace, "patch", "agenttask", name, "--type=merge", "-p",
               json.dumps({"spec": {"activeDeadlineSeconds": 60}}))
    later = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=61)
    monkeypatch.setattr(reconcile, "_now", lambda: later)  # the reconciler's clock
    await rec.reconcile(namespace, name)
    t = await get(rec, namespace, name)
    failed = find(t["status"]["conditions"], "Failed")
    assert t["status"]["phase"] == "Failed"
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert (await pod(rec, namespace, f"{name}-a1"))["metadata"].get("deletionTimestamp")
