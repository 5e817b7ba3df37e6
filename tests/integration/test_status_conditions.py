"""Task and budget status as the operator writes it, against a real kube-apiserver: conditions
merged by type under server-side apply (Admitted survives completion, lastTransitionTime moves
only on a transition), always conditional on the resourceVersion read, and AgentBudget
conditions the CRD's schema accepts. Time is the reconciler's clock, set by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tether_operator import budgets, reconcile
from tether_operator.conditions import find
from tether_operator.decide import Observed, Plan, decide, iso
from tether_operator.handlers import poll_live
from tether_operator.kube import Conflict, Kube
from tether_operator.metrics import OperatorMetrics
from tether_operator.reconcile import Reconciler
from tether_operator.settings import OperatorSettings

from .conftest import CaughtUp, Kubectl
from .test_operator_client import task

pytestmark = pytest.mark.cluster
Body = dict[str, Any]
T0 = datetime(2026, 11, 30, 6, 0, 0)


@pytest.fixture
async def rec(kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    monkeypatch.setenv("KUBECONFIG", str(kubectl.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k = Kube()
    yield CaughtUp(k, OperatorSettings(leader_election=False), OperatorMetrics())
    await k.close()


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        monkeypatch.setattr(reconcile, "_now", lambda: self.now)


async def fresh(rec: Reconciler, ns: str, name: str) -> Body:
    got = await rec.kube.get_task(ns, name)
    assert got is not None
    return got


def succeeded_pod(name: str) -> Body:
    return {"metadata": {"name": f"{name}-a1", "labels": {"tether.dev/attempt": "1"}},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "agent", "state": {
                "terminated": {"exitCode": 0, "reason": "Completed"}}}]}}


async def test_admitted_survives_completion_and_times_move_only_on_transitions(
        rec: Reconciler, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, name = Clock(monkeypatch), "conditions-life"
    await rec.kube.request("POST", f"/apis/tether.dev/v1alpha1/namespaces/{namespace}"
                           "/agenttasks", task(name))
    t = await fresh(rec, namespace, name)
    requeue, admission = await rec.book.admit(t)
    assert requeue is None and [c["type"] for c in admission] == ["Admitted"]
    await rec._write(t, {"phase": "Pending"}, admission)  # as the first status write does
    admitted = find((await fresh(rec, namespace, name))["status"]["conditions"], "Admitted")
    assert admitted is not None and admitted["lastTransitionTime"] == iso(T0)

    clock.now = T0 + timedelta(minutes=1)  # the first decision: Ready=False, starting
    t = await fresh(rec, namespace, name)
    await rec._apply(t, Plan(status={"phase": "Running", "attempt": 1}, conditions=[
        {"type": "Ready", "status": "False", "reason": "PodStarting", "message": "x"}]))
    clock.now = T0 + timedelta(minutes=2)  # same status, a new reason: no transition
    t = await fresh(rec, namespace, name)
    await rec._apply(t, Plan(conditions=[
        {"type": "Ready", "status": "False", "reason": "ImagePullFailed", "message": "y"}]))
    ready = find((await fresh(rec, namespace, name))["status"]["conditions"], "Ready")
    assert ready is not None and (ready["reason"], ready["lastTransitionTime"]) == (
        "ImagePullFailed", iso(T0 + timedelta(minutes=1)))

    clock.now = T0 + timedelta(minutes=3)
    t = await fresh(rec, namespace, name)
    await rec._apply(t, decide(Observed(t, [succeeded_pod(name)], clock.now), rec.settings))
    done = await fresh(rec, namespace, name)
    conds = {c["type"]: c for c in done["status"]["conditions"]}
    assert conds["Admitted"] == admitted  # not restated, kept as it was
    assert (conds["Ready"]["status"], conds["Ready"]["lastTransitionTime"]) == (
        "True", iso(clock.now))
    assert conds["Complete"]["status"] == "True" and done["status"]["phase"] == "Succeeded"
    assert conds["Complete"]["observedGeneration"] == done["metadata"]["generation"]
    managers = {(m["manager"], m["operation"], m.get("subresource"))
                for m in done["metadata"]["managedFields"]}
    assert ("tether-operator", "Apply", "status") in managers


async def test_every_status_write_is_conditional(rec: Reconciler, namespace: str) -> None:
    name = "conditions-stale"
    await rec.kube.request("POST", f"/apis/tether.dev/v1alpha1/namespaces/{namespace}"
                           "/agenttasks", task(name))
    stale = await fresh(rec, namespace, name)
    await rec._write(stale, {"phase": "Pending"}, [])
    with pytest.raises(Conflict):  # written from a stale read: refused, read again
        await rec._write(stale, {"phase": "Running"}, [])
    with pytest.raises(Conflict):  # the podName write after a pod is created, too
        await rec._write(stale, {"podName": f"{name}-a1"}, [])
    seen = (await fresh(rec, namespace, name))["status"]
    assert seen["phase"] == "Pending" and "podName" not in seen


async def test_budget_conditions_are_written_and_accepted(rec: Reconciler, kubectl: Kubectl,
                                                          namespace: str) -> None:
    kubectl.ok("-n", namespace, "apply", "-f", "-", stdin=(
        "apiVersion: tether.dev/v1alpha1\nkind: AgentBudget\nmetadata: {name: soft}\n"
        "spec: {period: Daily, limitUSD: '2.00', softLimitPercent: 50,\n"
        "       selector: {matchLabels: {budget-test: soft}}}\n"))
    budget = await rec.kube.get_budget(namespace, "soft")
    await rec.refresh_budget(budget)  # as on the budget's own event: conditions at once
    first = (await rec.kube.get_budget(namespace, "soft"))["status"]
    assert find(first["conditions"], "SoftLimitReached")["status"] == "False"  # type: ignore[index]
    t = {"metadata": {"name": "x", "namespace": namespace, "uid": "uid-x"}}
    got = await rec.book.cas(await rec.kube.get_budget(namespace, "soft"), lambda b: (
        budgets.reserve(b, t, Decimal("1.50"), reconcile._now())))
    assert got
    status = (await rec.kube.get_budget(namespace, "soft"))["status"]
    assert find(status["conditions"], "SoftLimitReached")["status"] == "True"  # type: ignore[index]
    assert rec.metrics.budget_soft_limit.labels(namespace, "soft")._value.get() == 1
    events = kubectl.ok("-n", namespace, "get", "events", "--field-selector",
                        "involvedObject.kind=AgentBudget,involvedObject.name=soft",
                        "-o", "jsonpath={.items[*].reason}")
    assert "SoftLimitReached" in events.split()


class _SidecarStatus(BaseHTTPRequestHandler):
    """A running sidecar's ops port as the live poll sees it: GET /status."""

    def do_GET(self) -> None:
        body = json.dumps({"phase": "Running", "step": 3, "spentUSD": "0.25"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


async def test_live_poll_writes_only_onto_the_status_it_saw(rec: Reconciler,
                                                             namespace: str) -> None:
    name = "conditions-live"
    await rec.kube.request("POST", f"/apis/tether.dev/v1alpha1/namespaces/{namespace}"
                           "/agenttasks", task(name))
    stale = await fresh(rec, namespace, name)
    await rec._write(stale, {"phase": "Running", "podName": "p"}, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SidecarStatus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rec.settings = rec.settings.model_copy(update={"sidecar_ops_port": server.server_port})
    rec.pod_ips[(namespace, "p")] = "127.0.0.1"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            rec.tasks[(namespace, name)] = {"phase": "Running", "podName": "p",
                                            "resourceVersion": stale["metadata"]["resourceVersion"]}
            await poll_live(rec, http, resync=False)  # seen before the write: not applied
            assert (await fresh(rec, namespace, name))["status"]["spentUSD"] == "0"  # default
            current = await fresh(rec, namespace, name)
            rec.tasks[(namespace, name)]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await poll_live(rec, http, resync=False)
    finally:
        server.shutdown()
        server.server_close()
    live = (await fresh(rec, namespace, name))["status"]
    assert (live["spentUSD"], live["step"]) == ("0.25", 3)
