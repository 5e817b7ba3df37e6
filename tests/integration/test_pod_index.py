"""The reconciler's pod index lagging behind the API server (podcache.py), on a real
kube-apiserver: no kopf watch feeds it here, so whatever the index shows is only what the
reconciler itself put in, the worst a slow watch can do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether_operator.ledger import POD_FINALIZER
from tether_operator.metrics import OperatorMetrics
from tether_operator.reconcile import Reconciler
from tether_operator.settings import OperatorSettings

from .conftest import Kubectl
from .test_task_lifecycle import Guard, ParkedKube, create, get

pytestmark = pytest.mark.cluster


@pytest.fixture
async def rec(kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    monkeypatch.setenv("KUBECONFIG", str(kubectl.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k = ParkedKube()
    # No Secret exists for the tasks' credentials: the guard is a seam (test_task_lifecycle.py).
    yield Reconciler(k, OperatorSettings(leader_election=False), OperatorMetrics(),
                     blocker=Guard())
    await k.close()


def pod_names(kubectl: Kubectl, ns: str, task: str) -> list[str]:
    return kubectl.ok("-n", ns, "get", "pods", "-l", f"tether.dev/task={task}", "-o",
                      "jsonpath={.items[*].metadata.name}").split()


async def test_a_pod_just_made_is_seen_by_the_next_pass_without_a_watch(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "index-own"
    await create(rec, namespace, name)
    await rec.reconcile(namespace, name)  # attempt 1: status written, pod created
    for _ in range(3):  # the passes its own writes wake: the pod is known, nothing is redone
        await rec.reconcile(namespace, name)
    status = (await get(rec, namespace, name))["status"]
    assert (status["attempt"], status["podName"], status.get("evictions", 0)) == (
        1, f"{name}-a1", 0)
    assert pod_names(kubectl, namespace, name) == [f"{name}-a1"]


async def test_a_restarted_operator_looks_up_the_pod_the_status_names(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "index-restart"
    await create(rec, namespace, name)
    for _ in range(2):
        await rec.reconcile(namespace, name)
    fresh = Reconciler(rec.kube, rec.settings, OperatorMetrics(), blocker=Guard())  # no index
    await fresh.reconcile(namespace, name)
    status = (await get(rec, namespace, name))["status"]
    assert (status["attempt"], status.get("evictions", 0)) == (1, 0)  # not counted lost
    assert [p["metadata"]["name"] for p in fresh.pods.of(namespace, name)] == [f"{name}-a1"]


async def test_the_resync_finds_a_pod_the_watch_never_said_was_deleted(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "index-ghost"
    await create(rec, namespace, name)
    for _ in range(2):
        await rec.reconcile(namespace, name)
    pod = f"{name}-a1"
    assert POD_FINALIZER in kubectl.ok("-n", namespace, "get", "pod", pod, "-o",
                                       "jsonpath={.metadata.finalizers}")
    kubectl.ok("-n", namespace, "patch", "pod", pod, "--type=json", "-p",
               '[{"op":"remove","path":"/metadata/finalizers"}]')
    kubectl.ok("-n", namespace, "delete", "pod", pod, "--grace-period=0", "--force",
               "--wait=true")
    assert [p["metadata"]["name"] for p in rec.pods.of(namespace, name)] == [pod]  # a ghost
    await rec.reconcile(namespace, name, verify=True)
    status = (await get(rec, namespace, name))["status"]
    assert (status["attempt"], status["evictions"]) == (2, 1)
    assert all(p["metadata"]["name"] != pod for p in rec.pods.of(namespace, name))


async def test_a_pod_made_before_whose_answer_was_lost_is_indexed_not_made_again(
        rec: Reconciler, kubectl: Kubectl, namespace: str) -> None:
    name = "index-lost"
    await create(rec, namespace, name)
    await rec.reconcile(namespace, name)  # attempt 1 written, its pod made
    fresh = Reconciler(rec.kube, rec.settings, OperatorMetrics(), blocker=Guard())  # no index
    t = await get(rec, namespace, name)
    assert "podName" not in t["status"]  # the pod's own event would have written it
    await fresh._start_pod(t, 1)  # the create answers 409: the pod is read and indexed
    assert [p["metadata"]["name"] for p in fresh.pods.of(namespace, name)] == [f"{name}-a1"]
    await fresh.reconcile(namespace, name)
    status = (await get(rec, namespace, name))["status"]
    assert (status["attempt"], status["podName"], status.get("evictions", 0)) == (
        1, f"{name}-a1", 0)
    assert pod_names(kubectl, namespace, name) == [f"{name}-a1"]
