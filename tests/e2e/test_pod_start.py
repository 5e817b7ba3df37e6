"""A task whose pod cannot start, on the real node: the cause is a condition and an Event within
seconds, and the task fails after TETHER_OPERATOR_START_TIMEOUT_SECONDS (short here).

Two causes the kubelet reports in different places: a CA-bundle ConfigMap that does not exist
(a ConfigMap volume: only a FailedMount Event names it) and an agent image that cannot be
pulled (imagePullPolicy Never and a name no node has: the container waits in
ErrImageNeverPull). A missing credentials Secret never gets that far: guards.py fails the task
before a pod is made. The
operator runs as a child process, as in test_operator.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from ._cluster import Cluster
from ._tasks import Doubles, Tasks, agenttask, doubles, tasks
from .test_operator import Operator, crds

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "tasks"]  # fixtures used here by name

START_TIMEOUT = 20  # seconds: the operator fails a pod still blocked this long after creation
SEEN_WITHIN = 60.0  # generous for a busy shared node; the decision itself is on the next event


@pytest.fixture
def operator(cluster: Cluster, namespace: str, crds: None, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    monkeypatch.setenv("TETHER_OPERATOR_START_TIMEOUT_SECONDS", str(START_TIMEOUT))
    op = Operator(cluster, namespace, tmp_path)
    op.start()  # its environment is this process's, with the setting above
    yield op
    op.stop()
    print(op.log.read_text(errors="replace")[-20000:])


def condition(task: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (task.get("status") or {}).get("conditions") or []
                 if c["type"] == type_), {})


def task_events(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str]:
    found = core.list_namespaced_event(ns, field_selector=f"involvedObject.kind=AgentTask,"
                                                          f"involvedObject.name={name}")
    return {e.reason: e.message for e in found.items}


def blocked_then_failed(tasks: Tasks, core: client.CoreV1Api, ns: str, name: str,
                        reason: str, cause: str) -> None:
    blocked = tasks.wait(name, lambda s: any(
        c["type"] == "Ready" and c["reason"] == reason for c in s.get("conditions") or []),
        timeout=SEEN_WITHIN)
    assert cause in condition(blocked, "Ready")["message"], blocked["status"]
    assert blocked["status"]["phase"] == "Running"
    deadline = time.monotonic() + 30
    while reason not in (seen := task_events(core, ns, name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cause in seen.get(reason, ""), seen

    done = tasks.done(name, timeout=START_TIMEOUT + 90)
    st = done["status"]
    assert st["phase"] == "Failed" and cause in st["message"], st
    assert f"within {START_TIMEOUT} s" in st["message"]
    assert (condition(done, "Failed")["status"], condition(done, "Failed")["reason"]) == (
        "True", reason)
    assert condition(done, "Admitted")["status"] == "True"  # kept through the end


def test_a_missing_secret_is_named_and_fails_the_task_before_a_pod(
        operator: Operator, tasks: Tasks, doubles: Doubles, namespace: str,
        core: client.CoreV1Api) -> None:
    # guards.py reads the credentials Secret before any pod is made (issue #9): the task fails
    # at once, naming it, and no pod waits on a volume that cannot mount.
    body = agenttask("no-secret", doubles)
    body["spec"]["model"]["credentialsSecretRef"] = {"name": "absent-creds", "key": "api-key"}
    tasks.create(body)
    done = tasks.done("no-secret", timeout=SEEN_WITHIN)
    st = done["status"]
    assert st["phase"] == "Failed", st
    assert (condition(done, "Failed")["status"], condition(done, "Failed")["reason"]) == (
        "True", "CredentialsNotFound")
    assert "Secret absent-creds (named by spec.model.credentialsSecretRef)" in st["message"]
    assert "Secret absent-creds" in task_events(core, namespace, "no-secret").get(
        "CredentialsNotFound", ""), task_events(core, namespace, "no-secret")
    assert core.list_namespaced_pod(namespace).items == []


def test_a_missing_ca_bundle_config_map_is_named_and_fails_the_task(
        operator: Operator, tasks: Tasks, doubles: Doubles, namespace: str,
        core: client.CoreV1Api) -> None:
    # A ConfigMap volume that cannot mount: only a FailedMount Event names it.
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    body = agenttask("no-ca", doubles)
    body["spec"]["model"]["caBundle"] = {"configMapKeyRef": {"name": "absent-ca",
                                                             "key": "ca.pem"}}
    tasks.create(body)
    blocked_then_failed(tasks, core, namespace, "no-ca", "ConfigMapMissing",
                        'configmap "absent-ca" not found')


def test_an_image_that_cannot_be_pulled_is_named_and_fails_the_task(
        operator: Operator, tasks: Tasks, doubles: Doubles, namespace: str,
        core: client.CoreV1Api) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    body = agenttask("no-image", doubles)
    body["spec"]["agent"].update(image="tether.invalid/absent-agent:none",
                                 imagePullPolicy="Never")
    tasks.create(body)
    blocked_then_failed(tasks, core, namespace, "no-image", "ImagePullFailed",
                        "ErrImageNeverPull")
