"""The scenarios of test_alerts_operator.py (its docstring says what each simulates), and the
``Stack`` they drive: the release's namespace and operator, the Prometheus and the receiver.

Each alert is checked twice: Prometheus had it firing (its ALERTS series, so an alert that
fired and resolved while another was awaited still counts) and the firing notification reached
the receiver; then it is inactive in Prometheus and the resolved notification arrived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client

from .._obs import get_json, wait_for
from ._monitoring import Receiver
from ._settings import settings
from ._slow_admission import slow_admission
from ._tasks import GROUP, VERSION, Doubles, Tasks, agenttask, steps_script

__all__ = ["ALERT_S", "Stack", "leadership", "tasks_and_budget"]

ALERT_S = 120.0  # bound of each wait for an alert's state or notification
# The reference agent, which after the refused call waits to be stopped (the operator deletes
# the pod on BudgetExceeded) and then takes 5 s, as one writing a checkpoint does: the sidecar,
# and its hard-limit hit, stay scraped for a few seconds after the refusal.
SLOW_STOP = """\
import signal, sys, time
from tether_examples.reference_agent import main
def stop(*_):
    time.sleep(5)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
main([])
signal.signal(signal.SIGTERM, stop)
signal.pause()
"""
COPY_LABEL = "e2e.tether.dev/copy"


@dataclass
class Stack:
    namespace: str
    operator: str  # the Deployment, the Service (the scrape job) and the Lease
    prom: str
    receiver: Receiver
    host: str  # where the doubles (and the slow webhook) listen
    seen: dict[str, dict[str, float]] = field(default_factory=dict)  # seconds, per alert

    @property
    def release(self) -> dict[str, str]:
        return {"job": self.operator, "namespace": self.namespace}

    def _query(self, promql: str) -> list[Any]:
        result: list[Any] = get_json(f"{self.prom}/api/v1/query?query={quote(promql)}")[
            "data"]["result"]
        return result

    def fires(self, name: str, since: float, **labels: str) -> None:
        """Firing in Prometheus since ``since``, and notified with ``labels`` (the operator's
        alerts name the release's job and namespace, the others their task or budget)."""
        window = f"{int(time.monotonic() - since) + 2}s"
        firing = f'max_over_time(ALERTS{{alertname="{name}", alertstate="firing"}}[{window}])'
        wait_for(lambda: self._query(firing) or None, ALERT_S, f"{name} firing in Prometheus")
        got, _ = self.receiver.wait_firing(name, ALERT_S, after=since, **labels)
        self.seen[name] = {"notified": got - since}

    def resolves(self, name: str, since: float) -> None:
        active = f'ALERTS{{alertname="{name}"}}'
        wait_for(lambda: not self._query(active) or None, ALERT_S, f"{name} inactive")
        got, alert = self.receiver.wait_resolved(name, ALERT_S, after=since)
        assert alert["endsAt"] > alert["startsAt"], alert
        self.seen[name]["resolvedNotified"] = got - since


def agent(*command: str) -> dict[str, Any]:
    return {**settings().container("agent"), "command": list(command)}


def tasks_and_budget(stack: Stack, api: client.ApiClient, core: client.CoreV1Api,
                     doubles: Doubles) -> None:
    """Soft and hard limit, budget nearly spent, a failed task, then the backlog within the
    failure's window."""
    ns, custom, tasks = stack.namespace, client.CustomObjectsApi(api), Tasks(api, stack.namespace)
    core.create_namespaced_secret(ns, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agentbudgets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget", "metadata": {"name": "spend"},
        "spec": {"selector": {"matchLabels": {"budget": "spend"}}, "period": "Daily",
                 "limitUSD": "0.05", "onExhausted": "Queue"}})
    doubles.use(steps_script(60, delay=0.2))
    start = time.monotonic()
    tasks.create(agenttask("limits", doubles, labels={"budget": "spend"},
                           agent=agent("python", "-c", SLOW_STOP),
                           costEnvelope={"hardLimitUSD": "0.015", "softLimitUSD": "0.004"}))
    tasks.create(agenttask("fails", doubles, agent=agent("python", "-c", "raise SystemExit(3)"),
                           retryPolicy={"pod": {"backoffLimit": 0}}))
    stack.fires("TetherTaskSoftLimitReached", start, namespace=ns, task="limits")
    stack.fires("TetherTaskHardLimitReached", start, namespace=ns, task="limits")
    stack.fires("TetherTasksFailing", start, namespace=ns)
    stack.fires("TetherBudgetNearlySpent", start, namespace=ns, budget="spend")
    assert tasks.done("limits")["status"]["phase"] == "BudgetExceeded"
    assert tasks.done("fails")["status"]["phase"] == "Failed"
    raised = time.monotonic()
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "agentbudgets", "spend",
                                          {"spec": {"limitUSD": "100.00"}})
    stack.resolves("TetherBudgetNearlySpent", raised)
    stack.resolves("TetherTaskSoftLimitReached", start)  # the pod is gone
    stack.resolves("TetherTaskHardLimitReached", start)
    backlog(stack, api, tasks, doubles)
    stack.resolves("TetherTasksFailing", start)  # the failure is older than the window


def backlog(stack: Stack, api: client.ApiClient, tasks: Tasks, doubles: Doubles) -> None:
    names = [f"burst-{i}" for i in range(6)]
    custom = client.CustomObjectsApi(api)
    with slow_admission(api, stack.host, stack.namespace, names, delay=4.0) as webhook:
        start = time.monotonic()
        for name in names:  # agents that would run for 10 minutes: deleted first
            tasks.create(agenttask(name, doubles, agent=agent(
                "python", "-c", "import time; time.sleep(600)")))
        stack.fires("TetherOperatorBacklog", start, **stack.release)
        assert webhook.asked >= 1
        emptied = time.monotonic()
        for name in names:
            custom.delete_namespaced_custom_object(GROUP, VERSION, stack.namespace,
                                                   "agenttasks", name)
    stack.resolves("TetherOperatorBacklog", emptied)


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _scale(apps: client.AppsV1Api, stack: Stack, replicas: int) -> None:
    apps.patch_namespaced_deployment_scale(stack.operator, stack.namespace,
                                           {"spec": {"replicas": replicas}})


def _operator_pods(core: client.CoreV1Api, ns: str) -> list[Any]:
    pods: list[Any] = core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=operator").items
    return pods


def leadership(stack: Stack, api: client.ApiClient, core: client.CoreV1Api) -> None:
    """Down (scaled to 0), NoLeader (a foreign Lease holder), TwoLeaders (an unelected copy)."""
    apps, leases = client.AppsV1Api(api), client.CoordinationV1Api(api)
    ns, name = stack.namespace, stack.operator
    start = time.monotonic()
    _scale(apps, stack, 0)
    stack.fires("TetherOperatorDown", start, **stack.release)
    wait_for(lambda: not _operator_pods(core, ns) or None, 120, f"the pods of {name} gone")
    leases.delete_namespaced_lease(name, ns)  # handed back by the stopped replica
    leases.create_namespaced_lease(ns, {"metadata": {"name": name}, "spec": {
        "holderIdentity": "foreign-replica_0", "leaseDurationSeconds": 3600,
        "acquireTime": _micro_now(), "renewTime": _micro_now(), "leaseTransitions": 0}})
    back = time.monotonic()
    _scale(apps, stack, 1)
    stack.resolves("TetherOperatorDown", back)
    stack.fires("TetherOperatorNoLeader", back, **stack.release)
    freed = time.monotonic()
    leases.delete_namespaced_lease(name, ns)
    stack.resolves("TetherOperatorNoLeader", freed)
    copy = time.monotonic()
    apps.create_namespaced_deployment(ns, unelected_copy(api, ns, name))
    stack.fires("TetherOperatorTwoLeaders", copy, **stack.release)
    removed = time.monotonic()
    apps.delete_namespaced_deployment(f"{name}-unelected", ns)
    stack.resolves("TetherOperatorTwoLeaders", removed)


def unelected_copy(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    """The chart's operator Deployment with leader election off, one replica, its pods
    labelled apart (their own ReplicaSet) but still selected by the chart's Service."""
    apps = client.AppsV1Api(api)
    chart: dict[str, Any] = api.sanitize_for_serialization(
        apps.read_namespaced_deployment(name, ns))
    template = chart["spec"]["template"]
    [container] = template["spec"]["containers"]
    container["env"] = [{"name": e["name"], "value": "false"}
                        if e["name"] == "TETHER_OPERATOR_LEADER_ELECTION" else e
                        for e in container["env"]]
    labels = {**template["metadata"]["labels"], COPY_LABEL: "unelected"}
    selector = {**chart["spec"]["selector"]["matchLabels"], COPY_LABEL: "unelected"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{name}-unelected", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": labels}, "spec": template["spec"]}}}
