"""kwok fakes nodes for scale: many Ready nodes and pods without real containers,
next to the real node, which kwok must leave alone. The local cluster runs kwok; on another
cluster deselect these (``-m "not kwok"``) unless its owner runs kwok too."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from . import _wait
from .conftest import KWOK_TOLERATION

pytestmark = [pytest.mark.cluster, pytest.mark.kwok]


def _ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_fake_nodes_become_ready_and_run_pods(core: client.CoreV1Api, kwok_nodes: Any,
                                              namespace: str) -> None:
    names = set(kwok_nodes(20))
    _wait.until(lambda: sum(_ready(n) for n in core.list_node(label_selector="type=kwok").items
                            if n.metadata.name in names) == len(names),
                60, "kwok to mark 20 fake nodes Ready (is kwok running? make cluster-status)")
    for i in range(40):
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": f"fake-{i}", "labels": {"tether.dev/e2e": "kwok"}},
            "spec": {"nodeSelector": {"type": "kwok"}, "tolerations": [KWOK_TOLERATION],
                     "containers": [{"name": "c", "image": "never-pulled.invalid/fake"}]}})

    def all_running() -> bool:
        pods = core.list_namespaced_pod(namespace).items
        return len(pods) == 40 and all(p.status.phase == "Running" and p.spec.node_name in names
                                       for p in pods)
    _wait.until(all_running, 90, "40 pods to be Running on the fake nodes", interval=0.5)


def test_kwok_leaves_the_real_node_alone(core: client.CoreV1Api) -> None:
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") != "fake":
            assert not node.status.node_info.kubelet_version.startswith("kwok"), node.metadata.name
