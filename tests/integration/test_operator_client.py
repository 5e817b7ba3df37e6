"""The operator's own API client and its Lease leader election, against a real kube-apiserver.

Timings are short (Lease of 2 s) but nothing asserts a wall-clock bound: only who holds the
Lease, and in which order things happen."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_operator.kube import ApiError, Conflict, Kube
from tether_operator.leader import Lease, lease_client

from .conftest import Kubectl

pytestmark = pytest.mark.cluster


def task(name: str) -> dict[str, Any]:
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": name},
            "spec": {"agent": {"image": "example.com/agent:1"},
                     "task": {"instructions": "x"},
                     "model": {"provider": "openai", "name": "gpt-4o",
                               "credentialsSecretRef": {"name": "s", "key": "k"}},
                     "costEnvelope": {"hardLimitUSD": "1.00"}}}


async def test_reads_writes_and_errors(kube: Kube, namespace: str) -> None:
    assert await kube.get_task(namespace, "absent") is None
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "client-cm", "namespace": namespace}, "data": {"a": "1"}}
    assert await kube.ensure(cm) is True
    assert await kube.ensure(cm) is False  # already there: not an error, not created again
    with pytest.raises(ApiError) as bad:
        await kube.ensure({**cm, "metadata": {"name": "Not_A_Name", "namespace": namespace}})
    assert bad.value.status == 422 and "metadata.name" in bad.value.message

    await kube.request("POST", f"/apis/tether.dev/v1alpha1/namespaces/{namespace}/agenttasks",
                       task("client-task"))
    got = await kube.get_task(namespace, "client-task")
    assert got is not None and got["spec"]["costEnvelope"]["hardLimitUSD"] == "1.00"
    rv = got["metadata"]["resourceVersion"]
    await kube.patch_task_status(namespace, "client-task", {"phase": "Pending"}, rv)
    with pytest.raises(Conflict):  # the status changed since rv: refused, not overwritten
        await kube.patch_task_status(namespace, "client-task", {"phase": "Running"}, rv)
    after = await kube.get_task(namespace, "client-task")
    assert after is not None and after["status"]["phase"] == "Pending"


async def test_unreachable_server_is_an_api_error_with_status_0(
        kubectl: Kubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load(kubectl.ok("config", "view", "--raw", "--minify", "--flatten"))
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens there
    (tmp_path / "config").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    k = Kube(timeout=5)
    try:
        with pytest.raises(ApiError) as err:
            await k.get_task("default", "x")
        assert err.value.status == 0 and "127.0.0.1:9" in str(err.value)
    finally:
        await k.close()


async def test_one_leader_takeover_after_expiry_and_release(kube: Kube, namespace: str) -> None:
    def lease(who: str) -> Lease:
        return Lease(lease_client(None, 0.3, 1), namespace, "election", who, duration=2,
                     renew=0.3, deadline=1)

    a, b = lease("a"), lease("b")
    try:
        await takeover(kube, namespace, a, b)
    finally:
        await a.kube.close()
        await b.kube.close()


async def takeover(kube: Kube, namespace: str, a: Lease, b: Lease) -> None:
    await a.acquire()
    assert await b._try() is False and b.holder == "a"  # a renewed it: b stands by
    keeping = asyncio.create_task(a.keep())
    await asyncio.sleep(1.0)
    assert await b._try() is False  # still held: a keeps renewing
    keeping.cancel()  # a stops renewing (as if killed)
    await asyncio.wait_for(b.acquire(), 30)
    assert b.leading and b.holder == "b"
    doc = await kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}"
                                    "/leases/election")
    assert doc["spec"]["holderIdentity"] == "b" and doc["spec"]["leaseTransitions"] == 1
    # a comes back: its keep() sees b holding the Lease and gives up leading.
    await asyncio.wait_for(a.keep(), 30)
    assert not a.leading
    await b.release()  # a clean stop hands the Lease back: a takes it on its next round
    assert await a._try() is True and a.holder == "a"


async def test_two_replicas_racing_never_both_lead(kube: Kube, namespace: str) -> None:
    racers = [Lease(lease_client(None, 0.2, 1), namespace, "race", f"r{i}", duration=5,
                    renew=0.2, deadline=1) for i in range(4)]
    try:
        results = await asyncio.gather(*(r._try() for r in racers))
    finally:
        for r in racers:
            await r.kube.close()
    assert sum(results) == 1  # resourceVersion preconditions: exactly one write wins
