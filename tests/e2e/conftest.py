"""Fixtures for the e2e suite: a cluster (reused, or started by hack/cluster-up.sh),
API clients, and a throwaway namespace per test whose failure collects every
component's log plus the namespace's events and pod logs.

Run: ``pytest tests/e2e -m "cluster or node"`` (see docs/cluster.md). Point
``KUBECONFIG`` at another cluster (kind) to run the same tests there; TETHER_E2E_* settings
(``_settings.py``) name the images and how they reach its nodes.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from ._cluster import Cluster, ClusterUnavailable, collect_logs, find_or_start, load_images
from ._settings import E2ESettings, SettingsError, settings

_CLUSTER_KEY = pytest.StashKey[Cluster]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # On a failed cluster test, collect logs before teardown deletes its namespace.
    rep = yield
    is_cluster_test = item.get_closest_marker("cluster") or item.get_closest_marker("node")
    if rep.when == "call" and rep.failed and is_cluster_test:
        cluster = item.stash.get(_CLUSTER_KEY, None)
        if cluster is not None:
            ns = getattr(item, "funcargs", {}).get("namespace")
            dest = collect_logs(cluster, settings().artifacts / (ns or _slug(item.name)), ns)
            rep.sections.append(("cluster logs", f"Collected cluster logs in {dest}"))
    return rep


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


@pytest.fixture(scope="session")
def e2e_settings() -> E2ESettings:
    """TETHER_E2E_* (see _settings.py); a wrong one fails every cluster test, naming it."""
    try:
        return settings()
    except SettingsError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def cluster(e2e_settings: E2ESettings) -> Cluster:
    """The cluster, with the images loaded into it when TETHER_E2E_LOAD_IMAGES says how."""
    try:
        found = find_or_start(e2e_settings)
        load_images(e2e_settings)
    except ClusterUnavailable as exc:
        problem = str(exc)  # failed outside the handler: the message alone, no chained trace
    else:
        return found
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def policy(api: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api)


@pytest.fixture(scope="session")
def real_node(core: client.CoreV1Api) -> str:
    """Name of a Ready node run by a real kubelet (not one faked by kwok)."""
    for node in core.list_node().items:
        annotations = node.metadata.annotations or {}
        if annotations.get("kwok.x-k8s.io/node") == "fake":
            continue
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        if ready and ready[0].status == "True":
            return str(node.metadata.name)
    pytest.fail("the cluster has no Ready real node (kubectl get nodes); node tests need one")


@pytest.fixture(scope="session")
def image(e2e_settings: E2ESettings) -> dict[str, str]:
    """Image fields for test pods: the project's base image (TETHER_E2E_IMAGE_*)."""
    return e2e_settings.container("base")


@pytest.fixture(autouse=True)
def _cluster_for_log_collection(request: pytest.FixtureRequest) -> None:
    # Cluster tests get the `cluster` fixture even when they do not ask for it, so a
    # failure can always collect every component's log (see pytest_runtest_makereport).
    if request.node.get_closest_marker("cluster") or request.node.get_closest_marker("node"):
        request.node.stash[_CLUSTER_KEY] = request.getfixturevalue("cluster")


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster, api: client.ApiClient,
              core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted after the test (after logs are collected on failure)."""
    name = f"e2e-{_slug(request.node.name)}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}}})
    _wait_default_service_account(core, name)
    yield name
    _unpin(api, core, name)
    core.delete_namespace(name)


def _unpin(api: client.ApiClient, core: client.CoreV1Api, ns: str) -> None:
    """Drop the operator's finalizers in ``ns``: it has stopped by now (its fixture ends
    first), and a task's budget-release or a pod's attempt-figures would hold the namespace's
    deletion for ever (docs/lifecycle.md)."""
    custom = client.CustomObjectsApi(api)
    try:
        tasks = custom.list_namespaced_custom_object("tether.dev", "v1alpha1", ns, "agenttasks")
    except client.ApiException as exc:
        if exc.status != 404:  # 404: the CRD is not installed, no task to free
            raise
        tasks = {"items": []}
    for task in tasks["items"]:
        if task["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object("tether.dev", "v1alpha1", ns, "agenttasks",
                                                  task["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
    for pod in core.list_namespaced_pod(ns).items:
        if "tether.dev/attempt-figures" in (pod.metadata.finalizers or []):
            core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": [
                f for f in pod.metadata.finalizers if f != "tether.dev/attempt-figures"]}})


def _wait_default_service_account(core: client.CoreV1Api, ns: str, timeout: float = 30) -> None:
    # Pods are refused until the service-account controller has made "default".
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default"
               for sa in core.list_namespaced_service_account(ns).items):
            return
        time.sleep(0.2)
    pytest.fail(f"namespace {ns} got no default ServiceAccount in {timeout}s "
                "(is kube-controller-manager running?)")


KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def kwok_nodes(core: client.CoreV1Api) -> Iterator[Any]:
    """Factory: ``kwok_nodes(n)`` makes n fake nodes (run by kwok, tainted so only
    pods that tolerate KWOK_TAINT land there) and returns their names; they are
    deleted after the test. For scale tests that need many nodes, not real pods."""
    made: list[str] = []

    def make(n: int, prefix: str = "kwok") -> list[str]:
        names = [f"{prefix}-{uuid.uuid4().hex[:6]}-{i}" for i in range(n)]
        for name in names:
            core.create_node({"metadata": {
                "name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
                "spec": {"taints": [KWOK_TAINT]}})
            made.append(name)
        return names

    yield make
    for name in made:
        try:
            core.delete_node(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
