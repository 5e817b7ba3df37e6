"""What workloads on the real node rely on: the project image runs with the repo
installed, and a pod reaches the API server through the `kubernetes` Service with
its ServiceAccount token, as an in-cluster operator does."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from . import _wait

pytestmark = [pytest.mark.cluster, pytest.mark.node]

# Reads /version through the Service VIP with the pod's token; prints the status.
API_PROBE = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
url = "https://%s:%s/version" % (os.environ["KUBERNETES_SERVICE_HOST"],
                                  os.environ["KUBERNETES_SERVICE_PORT"])
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "/token").read()})
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
body = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))
print("apiserver", body["gitVersion"])
"""


def _run_to_completion(core: client.CoreV1Api, ns: str, name: str, image: dict[str, str],
                       command: list[str]) -> str:
    core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "labels": {"tether.dev/e2e": name}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "main", **image, "command": command}]}})

    def finished() -> Any:
        phase = core.read_namespaced_pod(name, ns).status.phase
        return phase if phase in ("Succeeded", "Failed") else None
    phase = _wait.until(finished, 120, f"pod {ns}/{name} to finish")
    logs = core.read_namespaced_pod_log(name, ns, container="main")
    assert phase == "Succeeded", f"pod {name} {phase}; its log:\n{logs}"
    return str(logs)


def test_project_image_has_the_repo_installed(core: client.CoreV1Api, namespace: str,
                                              image: dict[str, str]) -> None:
    logs = _run_to_completion(core, namespace, "version", image, [
        "python3", "-c", "import importlib.metadata as m; print('tether', m.version('tether'))"])
    assert logs.startswith("tether "), logs


def test_pod_reaches_apiserver_through_the_service(core: client.CoreV1Api, namespace: str,
                                                   image: dict[str, str]) -> None:
    logs = _run_to_completion(core, namespace, "api-probe", image, ["python3", "-c", API_PROBE])
    assert logs.startswith("apiserver v1."), logs
