"""Every image built from images/*/Dockerfile runs its own entry point on the real node (the
evaluator, which serves until stopped, imports what its entry point loads).

Each runs as a pod with the image's pyproject-version tag and IfNotPresent (found in the
node's store, never pulled), with runAsNonRoot, which the kubelet enforces against the
image's own USER: an image defaulting to root would not start. A second container in
the Python images' pods prints the user and installed version the image gives a process.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from . import _wait

pytestmark = [pytest.mark.cluster, pytest.mark.node]

VERSION = tomllib.loads(
    (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]
WHOAMI = ["python3", "-c", "import importlib.metadata as m, os; "
          "print('uid', os.getuid(), 'gid', os.getgid(), 'tether', m.version('tether'))"]
_STUCK = {"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
          "CreateContainerError", "RunContainerError", "InvalidImageName"}


@dataclass(frozen=True)
class Case:
    image: str
    args: list[str]
    expect: str  # in the entry point's output
    python: bool = True


CASES = [
    Case("sidecar", ["--help"], "usage: tether-sidecar"),
    Case("operator", ["--help"], "usage: tether-operator"),
    Case("agent", ["--help"], "usage: tether-agent"),
    Case("scripted-model", ["--help"], "Scripted model server"),
    Case("fault-tools", ["--help"], "Fault-injecting tool server"),
    Case("local-path-provisioner", ["--help"], "local-path-provisioner", python=False),
]


def _ref(name: str) -> str:
    return f"docker.io/tether/{name}:{VERSION}"


def _container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": _ref(image), "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}, **extra}


def _pod(node: str, name: str, containers: list[dict[str, Any]],
         restart: str = "Never") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": restart, "containers": containers,
                     "terminationGracePeriodSeconds": 5}}


def _stuck(pod: client.V1Pod) -> str | None:
    for st in pod.status.container_statuses or []:
        waiting = st.state.waiting if st.state else None
        if waiting and waiting.reason in _STUCK:
            return f"container {st.name}: {waiting.reason}: {waiting.message}"
    return None


def _finish(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str]:
    """Wait for the pod to end; its containers' logs, after asserting it succeeded."""
    def ended() -> str | None:
        pod = core.read_namespaced_pod(name, ns)
        stuck = _stuck(pod)
        assert stuck is None, f"pod {name} cannot start: {stuck}"
        phase = pod.status.phase
        return str(phase) if phase in ("Succeeded", "Failed") else None
    phase = _wait.until(ended, 120, f"pod {ns}/{name} to finish")
    pod = core.read_namespaced_pod(name, ns)
    logs = {c.name: str(core.read_namespaced_pod_log(name, ns, container=c.name))
            for c in pod.spec.containers}
    assert phase == "Succeeded", f"pod {name} {phase}; logs: {logs}"
    return logs


def test_each_image_runs_its_entry_point_as_non_root(core: client.CoreV1Api, namespace: str,
                                                     real_node: str) -> None:
    for case in CASES:  # all pods first: the node pulls nothing and starts them together
        containers = [_container("entry", case.image, args=case.args)]
        if case.python:
            containers.append(_container("whoami", case.image, command=WHOAMI))
        core.create_namespaced_pod(namespace, _pod(real_node, case.image, containers))
    for case in CASES:
        logs = _finish(core, namespace, case.image)
        assert case.expect in logs["entry"], f"{case.image} --help printed: {logs['entry']}"
        if case.python:
            assert logs["whoami"].split() == ["uid", "65532", "gid", "65532", "tether", VERSION]


def test_pause_image_holds_a_pod_as_non_root(core: client.CoreV1Api, namespace: str,
                                            real_node: str) -> None:
    # runAsNonRoot: the kubelet starts it only because the image's USER is 65532.
    core.create_namespaced_pod(namespace, _pod(real_node, "pause", [_container("pause", "pause")],
                                               restart="Always"))
    pod = _wait.pod_running(core, namespace, "pause")
    assert pod.status.container_statuses[0].restart_count == 0


def test_base_image_has_every_entry_point_and_a_shell(core: client.CoreV1Api, namespace: str,
                                                      real_node: str) -> None:
    # Root by design (local-path-provisioner's helper pods): no runAsNonRoot here.
    script = ("id -u; for s in tether tether-sidecar tether-operator tether-agent "
              "tether-scripted-model tether-fault-tools; do command -v $s; done; "
              "python3 -c 'import kopf, openai; print(\"extras ok\")'")
    core.create_namespaced_pod(namespace, _pod(real_node, "base", [{
        "name": "main", "image": _ref("base"), "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script]}]))
    lines = _finish(core, namespace, "base")["main"].split()
    assert lines[0] == "0"
    assert lines[1:-2] == [f"/opt/tether/bin/{s}" for s in (
        "tether", "tether-sidecar", "tether-operator", "tether-agent",
        "tether-scripted-model", "tether-fault-tools")]
    assert lines[-2:] == ["extras", "ok"]


def test_evaluator_image_has_its_entry_point_and_clients(core: client.CoreV1Api, namespace: str,
                                                        real_node: str) -> None:
    # It serves until stopped (no --help): its modules, the cluster and database clients it
    # loads at start, and the redactor's engine, imported as the entry point would.
    check = ("import shutil, psycopg, kubernetes_asyncio, presidio_analyzer; "
             "import tether_eval.__main__, tether_eval.kube_sync, tether_operator.kube; "
             "print(shutil.which('tether-evaluator'), 'clients ok')")
    core.create_namespaced_pod(namespace, _pod(real_node, "evaluator", [
        _container("entry", "evaluator", command=["python3", "-c", check]),
        _container("whoami", "evaluator", command=WHOAMI)]))
    logs = _finish(core, namespace, "evaluator")
    assert logs["entry"].split() == ["/opt/tether/bin/tether-evaluator", "clients", "ok"]
    assert logs["whoami"].split() == ["uid", "65532", "gid", "65532", "tether", VERSION]
