"""The cluster has a real node that is Ready, and cluster-up is idempotent (marker
``local_cluster``: on another cluster there is no cluster-up to re-run)."""

from __future__ import annotations

import subprocess

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
@pytest.mark.local_cluster
def test_cluster_up_is_idempotent(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("KUBECONFIG points at another cluster; no local cluster-up to re-run")
    again = run_hack("cluster-up.sh", timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(CLUSTER_DIR / "kubeconfig")
    # Refreshing images after a Python change is allowed; a restart is not.
    assert "already up" in again.stderr


@pytest.mark.cluster
@pytest.mark.local_cluster
def test_built_helm_and_kubectl_talk_to_the_cluster(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("KUBECONFIG points at another cluster; the built tools are checked on "
                    "the local one")
    bin_dir = run_hack("k8s-binaries.sh", "--print").stdout.strip()
    for tool, args in (("kubectl", ["get", "--raw", "/readyz"]), ("helm", ["list", "-A"])):
        out = subprocess.run([f"{bin_dir}/{tool}", "--kubeconfig", str(cluster.kubeconfig), *args],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, f"{tool}: {out.stderr}"
