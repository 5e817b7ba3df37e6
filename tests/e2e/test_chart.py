"""The Helm chart on the real cluster, as a user gets it: `helm package` makes the .tgz and
`helm install` of that package runs two operator replicas under the chart's own RBAC and Pod
Security "restricted"; one leads, one stands by; an AgentTask succeeds with its spend; when the
leading pod is deleted mid-task the standby takes over and finishes it.

Needs the real node (marker ``node``) and the images where its runtime finds them
(TETHER_E2E_IMAGE_* and TETHER_E2E_LOAD_IMAGES). The replicas' ops ports are read through the
API server's pod proxy, so the test machine need not reach pod IPs (it cannot on kind). The
model and tool doubles run in this process, as in test_operator.py (_tasks.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from . import _tools, _wait
from ._cluster import REPO_ROOT, Cluster
from ._settings import E2ESettings
from ._tasks import Doubles, Tasks, agenttask, doubles, steps_script

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["doubles"]  # a fixture from _tasks.py, used here by name

CHART = REPO_ROOT / "charts" / "tether"
SELECTOR = "app.kubernetes.io/component=operator"
OPS_PORT = 8000


@pytest.fixture
def namespace(core: client.CoreV1Api, real_node: str) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security "restricted" (the operator pods and the agent
    pods must both pass). Named `namespace` so that conftest collects its logs on failure."""
    wait_schedulable(core, real_node)
    name = f"chart-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={
        "tether.dev/e2e": "true", "pod-security.kubernetes.io/enforce": "restricted"})))
    _wait.until(lambda: any(sa["metadata"]["name"] == "default" for sa in
                            plain(core, core.list_namespaced_service_account(name))["items"]),
                30, f"the default ServiceAccount in {name}")
    yield name
    core.delete_namespace(name)


def wait_schedulable(core: client.CoreV1Api, node: str, timeout: float = 900) -> None:
    """A benchmark may cordon the real node for a few minutes: wait it out, do not touch it."""
    _wait.until(lambda: not plain(core, core.read_node(node))["spec"].get("unschedulable"),
                timeout, f"node {node} to be schedulable (cordoned by someone else)", interval=5)


def plain(core: client.CoreV1Api, obj: object) -> dict[str, Any]:
    """A client model as the API's JSON (camelCase dicts): no Optional at every step."""
    doc: dict[str, Any] = core.api_client.sanitize_for_serialization(obj)
    return doc


def operator_pods(core: client.CoreV1Api, ns: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = plain(
        core, core.list_namespaced_pod(ns, label_selector=SELECTOR))["items"]
    return pods


@dataclass
class Release:
    name: str
    namespace: str
    cluster: Cluster
    helm: str

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [self.helm, "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace,
             *args], capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
        return out


def package(helm: str, dest: Path) -> Path:
    """``helm package charts/tether`` into dest: the .tgz a user installs."""
    out = subprocess.run([helm, "package", str(CHART), "--destination", str(dest)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"helm package {CHART}: {out.stderr}"
    (tgz,) = dest.glob("tether-*.tgz")
    return tgz


def chart_values(settings: E2ESettings, namespace: str) -> dict[str, Any]:
    """The images as TETHER_E2E_IMAGE_* name them, two replicas watching only the namespace."""
    prefix = settings.image_prefix.rstrip("/")
    policy = settings.image_pull_policy
    return {
        "image": {"repository": f"{prefix}/operator", "tag": settings.image_tag,
                  "pullPolicy": policy},
        "replicas": 2,
        "watchNamespaces": [namespace],  # leave other tests' tasks to their own operators
        "sidecarImage": {"repository": f"{prefix}/sidecar", "tag": settings.image_tag},
        "operator": {"settings": {"image_pull_policy": policy, "status_poll_seconds": 1,
                                  "backoff_base_seconds": 1}},
        "podLabels": {"tether.dev/e2e": "operator"},  # conftest's log collection selects it
    }


@pytest.fixture
def release(cluster: Cluster, namespace: str, core: client.CoreV1Api, tmp_path: Path,
            e2e_settings: E2ESettings) -> Iterator[Release]:
    rel = Release(namespace, namespace, cluster, _tools.helm())
    tgz = package(rel.helm, tmp_path / "package")
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(chart_values(e2e_settings, namespace)))
    rel.run("install", rel.name, str(tgz), "-f", str(path), "--wait", "--timeout", "3m")
    try:
        yield rel
    finally:
        for pod in operator_pods(core, namespace):
            name = pod["metadata"]["name"]
            print(f"--- {name}\n{str(core.read_namespaced_pod_log(name, namespace))[-6000:]}")
        rel.run("uninstall", rel.name, "--wait", "--timeout", "2m")


def probe(core: client.CoreV1Api, ns: str, pod: str, path: str) -> tuple[int, Any]:
    """An operator replica's ops port through the API server's pod proxy: (status, body as
    JSON, or text for /metrics); (0, None) while the proxy cannot reach it."""
    try:
        # Not preloaded: the client would turn a JSON body into the repr of a dict.
        resp: Any = core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{OPS_PORT}", ns, path.lstrip("/"), _preload_content=False,
            _request_timeout=10)
        status, body = resp.status, resp.data.decode()
    except client.ApiException as exc:
        status, body = exc.status, exc.body or ""
    if path == "/metrics" and status == 200:
        return status, body
    try:
        doc = json.loads(body)
    except ValueError:
        return 0, None  # the proxy's own plain-text error: the pod does not answer yet
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return 0, None  # the proxy's own error (no endpoint, connection refused)
    return status, doc


def roles(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    """{role: pod} of the ready, running replicas."""
    found: dict[str, str] = {}
    for pod in operator_pods(core, ns):
        if pod["metadata"].get("deletionTimestamp") or not pod.get("status", {}).get("podIP"):
            continue
        code, body = probe(core, ns, pod["metadata"]["name"], "/readyz")
        if code == 200:
            found[body["role"]] = pod["metadata"]["name"]
    return found


def leader_and_standby(core: client.CoreV1Api, ns: str, timeout: float = 120
                       ) -> dict[str, str]:
    def both() -> dict[str, str] | None:
        found = roles(core, ns)
        return found if found.keys() == {"leader", "standby"} else None
    return _wait.until(both, timeout, f"one leader and one standby in {ns}", interval=1)


def leader_metric(core: client.CoreV1Api, ns: str, pod: str) -> float:
    code, text = probe(core, ns, pod, "/metrics")
    assert code == 200, code
    found = re.search(r"^tether_operator_leader ([0-9.]+)$", text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


def refusals(core: client.CoreV1Api, ns: str) -> list[str]:
    """Operator log lines where the API server refused a call: RBAC the chart forgot."""
    lines = []
    for pod in operator_pods(core, ns):
        log = str(core.read_namespaced_pod_log(pod["metadata"]["name"], ns))
        lines += [ln for ln in log.splitlines() if "403" in ln or "forbidden" in ln.lower()]
    return lines


def test_chart_install_runs_tasks_and_fails_over(
        release: Release, doubles: Doubles, core: client.CoreV1Api, api: client.ApiClient,
        namespace: str) -> None:
    # Installed: one replica leads (holds the Lease), the other stands by; both are Ready.
    replicas = leader_and_standby(core, namespace)
    leader, standby = replicas["leader"], replicas["standby"]
    assert leader_metric(core, namespace, leader) == 1
    assert leader_metric(core, namespace, standby) == 0
    lease = plain(core, client.CoordinationV1Api(api).read_namespaced_lease(
        f"{release.name}-tether-operator", namespace))
    assert lease["spec"]["holderIdentity"].startswith(leader + "_")
    pdb = plain(core, client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(
        f"{release.name}-tether-operator", namespace))
    assert pdb["spec"]["minAvailable"] == 1

    # The sample task, under the chart's RBAC and PSS restricted.
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="model-creds", labels={
            "tether.dev/model-credentials": "true"}), string_data={"api-key": "sk-e2e"}))
    tasks = Tasks(api, namespace)
    doubles.use(steps_script(4))
    tasks.create(agenttask("sample", doubles))
    st = tasks.done("sample", timeout=180)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["step"] == 4 and Decimal(st["spentUSD"]) > 0 and st["attempt"] == 1

    # The leading pod is deleted mid-task: the standby takes over and finishes the task.
    doubles.use(steps_script(10, delay=0.4))
    tasks.create(agenttask("handover", doubles))
    before = tasks.wait("handover", lambda s: (s.get("step") or 0) >= 2, timeout=120)["status"]
    t0 = time.monotonic()
    core.delete_namespaced_pod(leader, namespace)
    # The stopping leader hands the Lease back; the standby or the Deployment's replacement
    # (maxSurge 1: it starts at once) takes it, whichever asks first.
    successor = _wait.until(lambda: roles(core, namespace).get("leader"), 60,
                            f"a new leader after {leader} was deleted", interval=0.5)
    takeover = time.monotonic() - t0
    assert successor != leader
    st = tasks.done("handover", timeout=180)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 1 and st["step"] == 10 and st["podName"] == before["podName"]
    pods = plain(core, core.list_namespaced_pod(namespace,
                                                label_selector="tether.dev/task=handover"))
    assert [p["metadata"]["name"] for p in pods["items"]] == [before["podName"]]  # no second
    # Two replicas again, one of them leading, neither of them the deleted pod.
    after = leader_and_standby(core, namespace)
    assert after["leader"] == successor and after["standby"] != leader
    lease = plain(core, client.CoordinationV1Api(api).read_namespaced_lease(
        f"{release.name}-tether-operator", namespace))
    assert lease["spec"]["holderIdentity"].startswith(successor + "_")
    assert lease["spec"]["leaseTransitions"] >= 1
    print(f"{successor} led {takeover:.1f} s after the leader's pod was deleted")

    assert refusals(core, namespace) == []
