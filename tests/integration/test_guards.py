"""guards.credentials and guards.claim against a real kube-apiserver: what stops a task's pod
before it is created.

guards.py is I/O only (metadata reads and creates), so it is called directly on task bodies; the
operator's use of it (phase Failed, or a wait) is tested with the reconciler.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from tether_operator import guards, manifests
from tether_operator.kube import Kube

from .conftest import Kubectl

pytestmark = pytest.mark.cluster

LABEL = {"tether.dev/model-credentials": "true"}


def _apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    out = kubectl.ok("-n", namespace, "create", "-o", "json", "-f", "-", stdin=yaml.safe_dump(obj))
    created: dict[str, Any] = json.loads(out)
    return created


def _secret(kubectl: Kubectl, namespace: str, name: str, labels: dict[str, str]) -> None:
    _apply(kubectl, namespace, {"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": name, "labels": labels},
                                "stringData": {"api-key": "sk-never-read"}})


def _task(namespace: str, name: str, secret: str = "", uid: str = "", **model: Any
          ) -> dict[str, Any]:
    """A task body as the operator reads it (guards never needs it stored)."""
    spec: dict[str, Any] = {"agent": {"image": "example.com/agent:1"},
                            "task": {"instructions": "x"},
                            "model": {"provider": "openai", "name": "gpt-4o", **model},
                            "costEnvelope": {"hardLimitUSD": "1.00"}}
    if secret:
        spec["model"]["credentialsSecretRef"] = {"name": secret, "key": "api-key"}
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": name, "namespace": namespace,
                         "uid": uid or str(uuid.uuid4())},
            "spec": spec}


async def test_a_labelled_secret_and_no_leftovers_let_the_pod_start(
        kube: Kube, kubectl: Kubectl, namespace: str) -> None:
    _secret(kubectl, namespace, "creds-ok", LABEL)
    assert await guards.credentials(kube, _task(namespace, "good", "creds-ok")) is None
    assert await guards.credentials(kube, _task(namespace, "no-secret")) is None


async def test_a_secret_read_is_metadata_only(kube: Kube, kubectl: Kubectl,
                                              namespace: str) -> None:
    _secret(kubectl, namespace, "creds-meta", LABEL)
    meta = await guards._metadata(kube, f"/api/v1/namespaces/{namespace}/secrets/creds-meta")
    assert meta is not None and meta["kind"] == "PartialObjectMetadata"
    assert meta["metadata"]["labels"] == LABEL
    assert "data" not in meta and "stringData" not in meta
    assert "sk-never-read" not in json.dumps(meta)


async def test_a_secret_without_the_opt_in_label_is_refused_naming_it(
        kube: Kube, kubectl: Kubectl, namespace: str) -> None:
    _secret(kubectl, namespace, "creds-plain", {"tether.dev/model-credentials": "yes"})
    found = await guards.credentials(kube, _task(namespace, "nolabel", "creds-plain"))
    assert found is not None
    reason, message = found
    assert reason == "CredentialsNotAllowed"
    assert "Secret creds-plain" in message and "spec.model.credentialsSecretRef" in message
    assert f"kubectl -n {namespace} label secret creds-plain tether.dev/model-credentials=true" \
        in message


async def test_a_ca_bundle_secret_needs_the_opt_in_too(kube: Kube, kubectl: Kubectl,
                                                       namespace: str) -> None:
    _secret(kubectl, namespace, "ca-plain", {})
    task = _task(namespace, "ca", caBundle={"secretKeyRef": {"name": "ca-plain",
                                                              "key": "ca.crt"}})
    found = await guards.credentials(kube, task)
    assert found is not None and found[0] == "CredentialsNotAllowed"
    assert "spec.model.caBundle.secretKeyRef" in found[1]


async def test_a_missing_secret_is_named(kube: Kube, namespace: str) -> None:
    found = await guards.credentials(kube, _task(namespace, "missing", "creds-absent"))
    assert found is not None
    reason, message = found
    assert reason == "CredentialsNotFound"
    assert f"Secret creds-absent (named by spec.model.credentialsSecretRef) does not exist in " \
           f"namespace {namespace}" in message


async def test_objects_of_an_earlier_task_of_the_same_name_are_never_adopted(
        kube: Kube, kubectl: Kubectl, namespace: str) -> None:
    # A real earlier task owns the leftovers (an owner that does not exist would let the
    # garbage collector remove them mid-test).
    earlier = _apply(kubectl, namespace, {k: v for k, v in _task(namespace, "reused").items()
                                          if k != "metadata"} | {"metadata": {"name": "reused"}})
    owner = {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask", "name": "reused",
             "uid": earlier["metadata"]["uid"]}
    _apply(kubectl, namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "reused-task", "ownerReferences": [owner]},
                                "data": {"agenttask.yaml": "{}"}})
    again = _task(namespace, "reused")  # the same name, a new UID
    made, found = await guards.claim(kube, manifests.config_map(again),
                                     again["metadata"]["uid"])
    assert not made and found is not None
    reason, message = found
    assert reason == "StaleObjects"
    assert "ConfigMap reused-task exists and is not this task's" in message
    assert earlier["metadata"]["uid"] in message
    # The task that does own it is not blocked by its own objects.
    mine = _task(namespace, "reused", uid=earlier["metadata"]["uid"])
    assert await guards.claim(kube, manifests.config_map(mine), mine["metadata"]["uid"]) \
        == (False, None)


async def test_a_claim_of_another_owner_or_none_blocks_the_pod(
        kube: Kube, kubectl: Kubectl, namespace: str) -> None:
    task = _task(namespace, "by-hand")
    claim = manifests.pvc(task)
    by_hand = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": claim["metadata"]["name"]},
               "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Mi"}}}}
    _apply(kubectl, namespace, by_hand)
    made, found = await guards.claim(kube, claim, task["metadata"]["uid"])
    assert not made and found is not None and found[0] == "StaleObjects"
    assert f"PersistentVolumeClaim {claim['metadata']['name']}" in found[1]
    assert "no owner" in found[1]


async def test_a_claim_made_by_this_call_is_the_tasks(kube: Kube, kubectl: Kubectl,
                                                     namespace: str) -> None:
    # A stored task: a claim owned by a UID that does not exist would be garbage-collected.
    task = _apply(kubectl, namespace, {k: v for k, v in _task(namespace, "fresh").items()
                                       if k != "metadata"} | {"metadata": {"name": "fresh"}})
    made, found = await guards.claim(kube, manifests.pvc(task), task["metadata"]["uid"])
    assert made and found is None
    # Asked again (a reconcile after a lost answer), it is found and recognised as its own.
    assert await guards.claim(kube, manifests.pvc(task), task["metadata"]["uid"]) \
        == (False, None)
