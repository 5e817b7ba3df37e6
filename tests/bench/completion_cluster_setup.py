"""The completion table on the real node, its cluster set-up: the CRDs, a namespace of the
run's own, the operator as a supervised child process from the tree, and the namespace's removal
(``completion_cluster.py`` runs the tasks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client

from tests.e2e._cluster import Cluster, apply_crds
from tests.e2e._settings import settings
from tests.e2e._tasks import GROUP, VERSION
from tests.e2e.test_operator import Operator

__all__ = ["BenchOperator", "Supervisor", "apply_crds", "operator_in", "prepare_namespace",
           "real_node", "remove_namespace"]


def prepare_namespace(core: client.CoreV1Api, ns: str) -> None:
    """The namespace as the e2e operator fixture makes it: restricted pod security, the model
    credentials Secret (the doubles check no key; the sidecar needs one to send)."""
    core.create_namespace({"metadata": {"name": ns, "labels": {
        "tether.dev/e2e": "true", "pod-security.kubernetes.io/enforce": "restricted"}}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-bench"}})
    deadline = time.monotonic() + 30
    while not any(sa.metadata.name == "default"
                  for sa in core.list_namespaced_service_account(ns).items):
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {ns} got no default ServiceAccount in 30s "
                               "(is kube-controller-manager running?)")
        time.sleep(0.2)


def real_node(core: client.CoreV1Api) -> client.V1Node:
    """A Ready node run by a real kubelet (kwok's fakes run no container)."""
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake":
            continue
        if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
            return node
    raise RuntimeError("the cluster has no Ready real node (kubectl get nodes; make cluster-up)")


def remove_namespace(api: client.ApiClient, ns: str) -> None:
    """Delete ``ns`` once its operator has stopped: the finalizers it would have removed (a
    task's budget release, a pod's attempt figures) are dropped first, or they would hold the
    namespace for ever (docs/lifecycle.md); a run that ended early leaves tasks behind."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for task in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks")["items"]:
        if task["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks",
                                                  task["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
    for pod in core.list_namespaced_pod(ns).items:
        if pod.metadata.finalizers:
            core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": [
                f for f in pod.metadata.finalizers if f != "tether.dev/attempt-figures"]}})
    core.delete_namespace(ns)


class BenchOperator(Operator):
    """The e2e suite's operator process with the Lease timings it is deployed with (15 s,
    renew deadline 10 s, the settings' defaults): the suite's 3 s deadline suits its kill
    tests, and on this shared machine an apiserver slow for 3 s made the leader step down
    (it stops, by design) mid-run."""

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig),
               "TETHER_OPERATOR_SIDECAR_IMAGE": settings().image("sidecar"),
               "TETHER_OPERATOR_IMAGE_PULL_POLICY": settings().image_pull_policy,
               "TETHER_OPERATOR_STATUS_POLL_SECONDS": "1",  # as the e2e suite: see Driver
               "TETHER_OPERATOR_BACKOFF_BASE_SECONDS": "1",
               "TETHER_OPERATOR_OPS_HOST": "127.0.0.1",
               "TETHER_OPERATOR_OPS_PORT": str(self.port),
               "TETHER_OPERATOR_LEASE_NAMESPACE": self.namespace}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tether_operator", "--namespace", self.namespace],
                stdout=log, stderr=subprocess.STDOUT, env=env)


class Supervisor:
    """Starts the operator again when its process has exited, as its Deployment's kubelet
    restarts the container (a leader that cannot renew its Lease stops); counts the restarts,
    which the figures report."""

    def __init__(self, op: Operator) -> None:
        self.op, self.restarts = op, 0

    def __call__(self) -> None:
        if self.op.proc is not None and self.op.proc.poll() is not None:
            self.restarts += 1
            print(f"the operator exited ({self.op.proc.returncode}); restart "
                  f"{self.restarts}, log {self.op.log}", file=sys.stderr, flush=True)
            self.op.start()


@contextmanager
def operator_in(cluster: Cluster, ns: str) -> Iterator[BenchOperator]:
    """The operator, a child process from the tree watching ``ns``; its log's tail is
    printed when it stops unclean."""
    op = BenchOperator(cluster, ns, Path(tempfile.mkdtemp(prefix="completion-cluster-")))
    op.start()
    try:
        yield op
    finally:
        code = op.stop()
        if code not in (0, -15, None):
            print(op.log.read_text(errors="replace")[-5000:], file=sys.stderr)
