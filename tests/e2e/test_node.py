"""The cluster has a real node that is Ready, and cluster-up is idempotent."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from ._cluster import CLUSTER_DIR, Cluster, run_hack


@pytest.mark.cluster
@pytest.mark.node
def test_real_node_is_ready(core: client.CoreV1Api, real_node: str) -> None:
    node = core.read_node(real_node)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True", ready.message
    # A kubelet with a container runtime, not a kwok fake.
    assert node.status.node_info.container_runtime_version.startswith("containerd://")


@pytest.mark.cluster
@pytest.mark.node
def test_cluster_up_is_idempotent(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("KUBECONFIG points at an external cluster; nothing local to re-run")
    t0 = time.monotonic()
    again = run_hack("cluster-up.sh", timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(CLUSTER_DIR / "kubeconfig")
    assert "already up" in again.stderr
    assert time.monotonic() - t0 < 60
