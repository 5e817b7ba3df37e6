"""Fixtures for the e2e suite: a cluster (reused, or started by hack/cluster-up.sh),
API clients, and a throwaway namespace per test whose failure collects every
component's log plus the namespace's events and pod logs.

Run: ``pytest tests/e2e -m "cluster or node"`` (see docs/cluster.md). Point
``KUBECONFIG`` at another cluster (kind) to run the same tests there.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

kubernetes = pytest.importorskip("kubernetes", reason="the e2e suite needs the kubernetes client")
from kubernetes import client, config  # noqa: E402

from ._cluster import TETHER_CACHE, Cluster, ClusterUnavailable, collect_logs, find_or_start  # noqa: E402

_CLUSTER_KEY = pytest.StashKey[Cluster]()
ARTIFACTS = Path(os.environ.get("TETHER_E2E_ARTIFACTS", TETHER_CACHE / "e2e-artifacts"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # On a failed cluster test, collect logs before teardown deletes its namespace.
    rep = yield
    is_cluster_test = item.get_closest_marker("cluster") or item.get_closest_marker("node")
    if rep.when == "call" and rep.failed and is_cluster_test:
        cluster = item.stash.get(_CLUSTER_KEY, None)
        if cluster is not None:
            ns = getattr(item, "funcargs", {}).get("namespace")
            dest = collect_logs(cluster, ARTIFACTS / (ns or _slug(item.name)), ns)
            rep.sections.append(("cluster logs", f"Collected cluster logs in {dest}"))
    return rep


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    try:
        return find_or_start()
    except ClusterUnavailable as exc:
        if os.geteuid() != 0 and not os.environ.get("KUBECONFIG"):
            pytest.skip(str(exc))
        raise


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
def image() -> dict[str, str]:
    """Image for test pods: our offline base image by default (never pulled)."""
    return {
        "image": os.environ.get("TETHER_E2E_IMAGE", "docker.io/tether/base:latest"),
        "imagePullPolicy": os.environ.get("TETHER_E2E_PULL_POLICY", "Never"),
    }


@pytest.fixture(autouse=True)
def _cluster_for_log_collection(request: pytest.FixtureRequest) -> None:
    # Cluster tests get the `cluster` fixture even when they do not ask for it, so a
    # failure can always collect every component's log (see pytest_runtest_makereport).
    if request.node.get_closest_marker("cluster") or request.node.get_closest_marker("node"):
        request.node.stash[_CLUSTER_KEY] = request.getfixturevalue("cluster")


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster,
              core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted after the test (after logs are collected on failure)."""
    name = f"e2e-{_slug(request.node.name)}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}}})
    _wait_default_service_account(core, name)
    yield name
    core.delete_namespace(name)


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
