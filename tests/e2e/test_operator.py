"""The operator on a real cluster: AgentTasks run, resume after eviction, stop at the hard limit,
survive the operator being killed, and queue behind an AgentBudget.

Needs the real node (marker ``node``). The scripted model and the fault tool server (test
doubles, ``_tasks.py``) run in this process; the operator runs as a child process, one replica
the way its Deployment runs it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from . import _wait
from ._cluster import Cluster, apply_crds
from ._settings import settings
from ._tasks import (
    GROUP,
    VERSION,
    Doubles,
    Tasks,
    agent_answer,
    agenttask,
    doubles,
    steps_script,
    tasks,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["doubles", "tasks"]  # fixtures from _tasks.py, used here by name


@pytest.fixture(scope="module")
def crds(api: client.ApiClient) -> None:
    """The generated CRDs, applied as they are committed (created or replaced)."""
    apply_crds(api)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Operator:
    """One replica, run as a process the way its Deployment runs it (leader election on)."""

    def __init__(self, cluster: Cluster, namespace: str, logdir: Path, name: str = "operator"
                 ) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.log = logdir / f"{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig),
               "TETHER_OPERATOR_SIDECAR_IMAGE": settings().image("sidecar"),
               "TETHER_OPERATOR_IMAGE_PULL_POLICY": settings().image_pull_policy,
               "TETHER_OPERATOR_STATUS_POLL_SECONDS": "1",
               "TETHER_OPERATOR_BACKOFF_BASE_SECONDS": "1",
               "TETHER_OPERATOR_OPS_HOST": "127.0.0.1",
               "TETHER_OPERATOR_OPS_PORT": str(self.port),
               # The Lease in the test's namespace, with short timings: a killed leader's
               # successor waits LEASE_SECONDS for it, five times in the kill test.
               "TETHER_OPERATOR_LEASE_NAMESPACE": self.namespace,
               "TETHER_OPERATOR_LEASE_SECONDS": "4",
               "TETHER_OPERATOR_LEASE_DEADLINE_SECONDS": "3",
               "TETHER_OPERATOR_LEASE_RENEW_SECONDS": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tether_operator", "--namespace", self.namespace],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        """The ops port's answer to /healthz or /readyz; (0, {}) while nothing listens."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, {}

    def wait_role(self, role: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, body = self.probe("/readyz")
            if code == 200 and body.get("role") == role:
                return body
            time.sleep(0.3)
        raise AssertionError(f"{self.log.stem} not a ready {role} in {timeout}s: "
                             f"{self.probe('/readyz')}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else None


@pytest.fixture
def operator(cluster: Cluster, namespace: str, crds: None, tmp_path: Path,
             core: client.CoreV1Api) -> Iterator[Operator]:
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})  # real PSS admission
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    op = Operator(cluster, namespace, tmp_path)
    op.start()
    yield op
    op.stop()
    print(op.log.read_text(errors="replace")[-20000:])


def test_sample_task_succeeds_with_its_spend(operator: Operator, tasks: Tasks, doubles: Doubles,
                                             core: client.CoreV1Api, namespace: str) -> None:
    doubles.use(steps_script(4))
    tasks.create(agenttask("sample", doubles))
    task = tasks.done("sample")
    st = task["status"]
    assert st["phase"] == "Succeeded", st
    assert st["step"] == 4 and Decimal(st["spentUSD"]) > 0 and st["attempt"] == 1
    assert len(st["traceID"]) == 32 and st["lastCheckpoint"]["step"] == 4
    assert agent_answer(core, namespace, st["podName"]) == "FINAL after 4 steps"
    assert len(doubles.side_effects()) == 1
    requests = doubles.model_requests()
    assert all(r["authorization"] == "Bearer sk-e2e" for r in requests)  # the sidecar's key
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=sample")
    assert any(e.reason == "Succeeded" for e in events.items)


def test_eviction_resumes_from_the_checkpoint(operator: Operator, tasks: Tasks,
                                              doubles: Doubles, core: client.CoreV1Api,
                                              namespace: str) -> None:
    steps = 12
    doubles.use(steps_script(steps, delay=0.3))
    tasks.create(agenttask("baseline", doubles))
    base = tasks.done("baseline")["status"]
    base_requests, base_effects = len(doubles.model_requests()), len(doubles.side_effects())
    doubles.use(steps_script(steps, delay=0.3))

    tasks.create(agenttask("evicted", doubles))
    at = random.randint(2, steps - 5)  # leave steps to run after the live status shows it
    running = tasks.wait("evicted", lambda s: (s.get("step") or 0) >= at)["status"]
    core.create_namespaced_pod_eviction(running["podName"], namespace, {
        "metadata": {"name": running["podName"], "namespace": namespace}})
    st = tasks.done("evicted")["status"]
    assert st["phase"] == "Succeeded", st
    assert st["evictions"] == 1 and st["attempt"] == 2 and st.get("failures", 0) == 0
    assert agent_answer(core, namespace, st["podName"]) == f"FINAL after {steps} steps"
    assert len(doubles.side_effects()) == base_effects  # each side effect exactly once
    assert len(doubles.model_requests()) <= base_requests + 1  # at most the call in flight
    # Spend is not counted twice: at most one extra call's hold over the uninterrupted run.
    assert Decimal(st["spentUSD"]) <= Decimal(base["spentUSD"]) + Decimal("0.01")


def test_too_small_envelope_ends_in_budget_exceeded_with_checkpoint_kept(
        operator: Operator, tasks: Tasks, doubles: Doubles, core: client.CoreV1Api,
        namespace: str) -> None:
    doubles.use(steps_script(20))
    tasks.create(agenttask("tight", doubles, hard="0.015"))
    st = tasks.done("tight")["status"]
    assert st["phase"] == "BudgetExceeded", st
    assert Decimal(st["spentUSD"]) <= Decimal("0.015")
    assert st["lastCheckpoint"]["step"] >= 1
    pvcs = core.list_namespaced_persistent_volume_claim(namespace).items
    assert [p.metadata.name for p in pvcs] == ["tight-state"]  # the checkpoint is kept


def test_operator_killed_five_times_mid_reconcile(operator: Operator, tasks: Tasks,
                                                  doubles: Doubles, core: client.CoreV1Api,
                                                  namespace: str) -> None:
    doubles.use(steps_script(10, delay=0.2))
    tasks.create(agenttask("sturdy", doubles))
    rng = random.Random()
    for _ in range(5):
        time.sleep(rng.uniform(0.2, 2.0))
        operator.kill()
        operator.start()
    operator.wait_role("leader")  # the successor took the dead one's Lease over
    st = tasks.done("sturdy")["status"]
    assert st["phase"] == "Succeeded", st
    pods = core.list_namespaced_pod(namespace, label_selector="tether.dev/task=sturdy").items
    attempts = [p.metadata.labels["tether.dev/attempt"] for p in pods]
    assert len(attempts) == len(set(attempts)) == st["attempt"]  # one pod per attempt
    assert st["step"] == 10 and Decimal(st["spentUSD"]) > 0


def test_second_replica_takes_over(operator: Operator, tasks: Tasks, doubles: Doubles,
                                   core: client.CoreV1Api, api: client.ApiClient,
                                   namespace: str, tmp_path: Path) -> None:
    """Two replicas: one leads, one stands by (both ready); the leader is SIGKILLed mid-task;
    the standby takes the Lease over and finishes the task: one pod, status intact. Then a
    clean SIGTERM hands the Lease back to the restarted first replica."""
    operator.wait_role("leader")
    standby = Operator(operator.cluster, namespace, tmp_path, "standby")
    standby.start()
    try:
        assert "standing by" in standby.wait_role("standby")["reason"]
        assert standby.probe("/healthz")[0] == 200
        doubles.use(steps_script(10, delay=0.3))
        tasks.create(agenttask("handover", doubles))
        before = tasks.wait("handover", lambda s: (s.get("step") or 0) >= 3)["status"]
        operator.kill()
        standby.wait_role("leader", timeout=30)
        st = tasks.done("handover")["status"]
        assert st["phase"] == "Succeeded", st
        assert st["attempt"] == 1 and st["step"] == 10 and st["podName"] == before["podName"]
        assert Decimal(st["spentUSD"]) >= Decimal(before["spentUSD"]) > 0
        pods = core.list_namespaced_pod(namespace, label_selector="tether.dev/task=handover")
        assert [p.metadata.name for p in pods.items] == [before["podName"]]  # no duplicate
        lease = client.CoordinationV1Api(api).read_namespaced_lease("tether-operator",
                                                                      namespace)
        assert lease.spec.lease_transitions >= 1
        operator.start()
        operator.wait_role("standby")
        assert standby.stop() == 0  # SIGTERM: a clean stop that hands the Lease back
        operator.wait_role("leader", timeout=30)
    finally:
        standby.stop()
        print(standby.log.read_text(errors="replace")[-8000:])


def test_budget_admits_what_fits_and_queues_the_rest(
        operator: Operator, tasks: Tasks, doubles: Doubles, api: client.ApiClient,
        namespace: str) -> None:
    doubles.use(steps_script(3, delay=0.5))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "agentbudgets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget",
        "metadata": {"name": "team"},
        "spec": {"selector": {"matchLabels": {"team": "a"}}, "period": "Daily",
                 "limitUSD": "3.00", "onExhausted": "Queue"}})
    names = [f"q{i}" for i in range(10)]
    for name in names:
        tasks.create(agenttask(name, doubles, hard="1.00", labels={"team": "a"}))
    most = 0
    deadline = time.monotonic() + 400
    core = client.CoreV1Api(api)
    while time.monotonic() < deadline:
        live = [p for p in core.list_namespaced_pod(namespace).items
                if p.status.phase in ("Pending", "Running")]
        most = max(most, len(live))  # pods alive at once: never more than the budget holds
        phases = [(tasks.get(n).get("status") or {}).get("phase") for n in names]
        if all(p == "Succeeded" for p in phases):
            break
        time.sleep(0.3)
    assert all((tasks.get(n).get("status") or {}).get("phase") == "Succeeded" for n in names)
    assert most <= 3
    spent = sum(Decimal(tasks.get(n)["status"]["spentUSD"]) for n in names)
    assert spent <= Decimal("3.00")

    seen: list[dict[str, Any]] = []

    def settled() -> dict[str, Any] | None:
        seen.append(custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "agentbudgets", "team")["status"])
        done = not seen[-1]["reservations"] and Decimal(seen[-1]["spentUSD"]) == spent
        return seen[-1] if done else None
    # The budget's status is written after the tasks' own, when the operator next counts the
    # budget (a resync at the latest): wait for that, then every cent is there exactly once.
    try:
        budget = _wait.until(settled, 90, f"budget team to count {spent} spent, none reserved")
    except _wait.WaitTimeout as exc:
        raise AssertionError(f"{exc}; its last status: {seen[-1]}") from exc
    assert Decimal(budget["reservedUSD"]) == 0
