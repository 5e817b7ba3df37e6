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

ARTIFACTS = Path(os.environ.get("TETHER_E2E_ARTIFACTS", TETHER_CACHE / "e2e-artifacts"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so fixtures can tell a failed test.
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


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


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster,
              core: client.CoreV1Api) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"e2e-{slug}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}}})
    _wait_default_service_account(core, name)
    yield name
    if _failed(request):
        dest = collect_logs(cluster, ARTIFACTS / name, name)
        print(f"\nCollected cluster and namespace logs in {dest}")
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
