"""Control-plane behaviour the operator relies on: owner references are
garbage-collected (background and foreground), and a namespace deletes cleanly."""

from __future__ import annotations

import pytest
from kubernetes import client

from . import _wait

pytestmark = pytest.mark.cluster


def _owned_configmap(core: client.CoreV1Api, ns: str, name: str, owner: client.V1ConfigMap) -> None:
    core.create_namespaced_config_map(ns, {
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
            "uid": owner.metadata.uid, "blockOwnerDeletion": True}]},
        "data": {"k": "v"},
    })


def _gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    return _wait.absent(lambda: core.read_namespaced_config_map(name, ns))


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_dependents_are_garbage_collected(core: client.CoreV1Api, namespace: str,
                                          propagation: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    _owned_configmap(core, namespace, "dependent", owner)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy=propagation)
    _wait.until(lambda: _gone(core, namespace, "dependent"), 60,
                f"the garbage collector to delete the dependent ({propagation})")
    _wait.until(lambda: _gone(core, namespace, "owner"), 60, "the owner to be deleted")


def test_orphan_propagation_keeps_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    _owned_configmap(core, namespace, "dependent", owner)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    _wait.until(lambda: _gone(core, namespace, "owner"), 60, "the owner to be deleted")
    dependent = core.read_namespaced_config_map("dependent", namespace)
    assert not dependent.metadata.owner_references


def test_namespace_deletes_cleanly(core: client.CoreV1Api) -> None:
    name = "e2e-ns-delete"
    core.create_namespace({"metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}}})
    try:
        core.create_namespaced_config_map(name, {"metadata": {"name": "c"}, "data": {"a": "b"}})
        core.create_namespaced_secret(name, {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
        core.create_namespaced_service_account(name, {"metadata": {"name": "sa"}})
    finally:
        core.delete_namespace(name)

    def gone() -> bool:
        try:
            ns = core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        # A namespace stuck on a failed condition never finishes: report it now.
        for cond in ns.status.conditions or []:
            if cond.type.endswith("Failure") and cond.status == "True":
                raise AssertionError(f"namespace deletion failed: {cond.type}: {cond.message}")
        return False
    _wait.until(gone, 90, f"namespace {name} to be deleted")
