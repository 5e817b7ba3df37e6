"""A pod with a native sidecar on the real node writes to a dynamically provisioned
PVC; a PodDisruptionBudget blocks its eviction (429); once allowed, the Eviction API
removes it, and a new pod on the same claim sees the data. This is the lifecycle an
AgentTask pod goes through when its node is drained."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from . import _wait
from ._settings import E2ESettings

pytestmark = [pytest.mark.cluster, pytest.mark.node]

LABEL = {"tether.dev/e2e": "sidecar-pvc"}

# The sidecar appends its pod's name to the volume, then idles; the main container
# waits for that line and prints the whole file (which includes earlier pods' lines).
SIDECAR_SH = 'echo "written-by $POD_NAME" >> /data/log; trap "exit 0" TERM; sleep infinity & wait'
MAIN_SH = ('until grep -q "written-by $POD_NAME" /data/log 2>/dev/null; do sleep 0.1; done; '
           'cat /data/log; trap "exit 0" TERM; sleep infinity & wait')


def _pod(name: str, claim: str, image: dict[str, str]) -> dict[str, Any]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    mount = [{"name": "data", "mountPath": "/data"}]
    return {
        "metadata": {"name": name, "labels": LABEL},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            # Native sidecar: an init container that keeps running (KEP-753).
            "initContainers": [{"name": "sidecar", **image, "restartPolicy": "Always",
                                "command": ["sh", "-c", SIDECAR_SH], "env": env,
                                "volumeMounts": mount}],
            "containers": [{"name": "main", **image, "command": ["sh", "-c", MAIN_SH],
                            "env": env, "volumeMounts": mount}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def _logs_contain(core: client.CoreV1Api, ns: str, pod: str, text: str) -> bool:
    return text in core.read_namespaced_pod_log(pod, ns, container="main")


def _pdb_settled(policy: client.PolicyV1Api, ns: str, allowed: int) -> bool:
    pdb = policy.read_namespaced_pod_disruption_budget("guard", ns)
    st = pdb.status
    return bool(st and st.observed_generation == pdb.metadata.generation
                and st.current_healthy == 1 and st.disruptions_allowed == allowed)


def _evict(core: client.CoreV1Api, ns: str, name: str) -> None:
    core.create_namespaced_pod_eviction(name, ns, {
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns}})


def _claim(storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "64Mi"}}}
    if storage_class:  # else the cluster's default StorageClass
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": "data"}, "spec": spec}


def test_sidecar_pod_on_pvc_survives_eviction(core: client.CoreV1Api, policy: client.PolicyV1Api,
                                              namespace: str, real_node: str,
                                              image: dict[str, str],
                                              e2e_settings: E2ESettings) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, _claim(e2e_settings.storage_class))
    t0 = time.monotonic()
    core.create_namespaced_pod(namespace, _pod("first", "data", image))
    pod = _wait.pod_running(core, namespace, "first", timeout=180)
    print(f"\npod create -> Running and ready: {time.monotonic() - t0:.2f}s")
    assert pod.spec.node_name == real_node
    sidecar = pod.status.init_container_statuses[0]
    assert sidecar.name == "sidecar" and sidecar.state.running, "the native sidecar must run"
    _wait.until(lambda: _logs_contain(core, namespace, "first", "written-by first"), 30,
                "the main container to read what the sidecar wrote")

    # The claim was bound to a volume that a provisioner created for it.
    pvc = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert pvc.status.phase == "Bound"
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    assert (pv.metadata.annotations or {}).get("pv.kubernetes.io/provisioned-by"), \
        "the PV should be dynamically provisioned"

    # A budget that allows no disruption: the Eviction API must refuse with 429.
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": LABEL}}})
    _wait.until(lambda: _pdb_settled(policy, namespace, 0), 60, "the PDB to count the pod")
    with pytest.raises(client.ApiException) as refused:
        _evict(core, namespace, "first")
    assert refused.value.status == 429, refused.value.body
    assert core.read_namespaced_pod("first", namespace).metadata.deletion_timestamp is None

    # Budget relaxed: the same eviction now goes through and the pod goes away.
    policy.patch_namespaced_pod_disruption_budget(
        "guard", namespace, {"spec": {"minAvailable": 0}})
    _wait.until(lambda: _pdb_settled(policy, namespace, 1), 60, "the PDB to allow one disruption")
    _evict(core, namespace, "first")
    _wait.pod_gone(core, namespace, "first", timeout=60)

    # A replacement pod on the same claim sees the first pod's data.
    core.create_namespaced_pod(namespace, _pod("second", "data", image))
    _wait.pod_running(core, namespace, "second", timeout=120)
    _wait.until(lambda: _logs_contain(core, namespace, "second", "written-by second"), 30,
                "the second pod to write its line")
    assert _logs_contain(core, namespace, "second", "written-by first"), \
        "data written before the eviction must survive on the PVC"
