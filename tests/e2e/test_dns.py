"""Cluster DNS: a pod on the real node finds a Service by name, in every form a pod uses
(``<svc>``, ``<svc>.<ns>.svc``, the full ``.svc.cluster.local`` name), and gets a quick
NXDOMAIN for a Service that does not exist. On the local cluster this is CoreDNS run by
hack/cluster/node.sh behind the kube-dns Service (docs/cluster.md, "Cluster DNS").
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from . import _wait
from ._cluster import CLUSTER_DIR, Cluster, run_hack

# Run in the pod: resolve each name with the libc resolver (resolv.conf from the kubelet),
# and print {name: [addresses] or "error: ..."} plus the resolv.conf the pod got.
RESOLVE = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})
    except socket.gaierror as exc:
        out[name] = f"error: {exc.strerror}"
out["resolv.conf"] = open("/etc/resolv.conf").read()
print(json.dumps(out))
"""


def plain(core: client.CoreV1Api, obj: object) -> dict[str, Any]:
    """A client model as the API's JSON (camelCase dicts)."""
    doc: dict[str, Any] = core.api_client.sanitize_for_serialization(obj)
    return doc


def cluster_ip(core: client.CoreV1Api, ns: str, name: str) -> str:
    return str(plain(core, core.read_namespaced_service(name, ns))["spec"]["clusterIP"])


def run_resolver(core: client.CoreV1Api, ns: str, image: dict[str, str], names: list[str]
                 ) -> dict[str, Any]:
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="resolve", labels={"tether.dev/e2e": "dns"}),
        spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(
            name="resolve", image=image["image"], image_pull_policy=image["imagePullPolicy"],
            command=["python", "-c", RESOLVE, *names])])))

    def finished() -> str | None:
        phase = plain(core, core.read_namespaced_pod("resolve", ns))["status"].get("phase")
        return str(phase) if phase in ("Succeeded", "Failed") else None

    phase = _wait.until(finished, 120, f"pod {ns}/resolve to finish", interval=0.5)
    log = str(core.read_namespaced_pod_log("resolve", ns))
    assert phase == "Succeeded", log
    found: dict[str, Any] = json.loads(log.strip().splitlines()[-1])
    return found


@pytest.mark.cluster
@pytest.mark.node
def test_a_pod_resolves_services_by_name(core: client.CoreV1Api, namespace: str,
                                         image: dict[str, str], real_node: str) -> None:
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)])))
    ip = cluster_ip(core, namespace, "web")
    names = ["web", f"web.{namespace}", f"web.{namespace}.svc",
             f"web.{namespace}.svc.cluster.local", "kubernetes.default.svc",
             f"absent.{namespace}.svc.cluster.local"]
    got = run_resolver(core, namespace, image, names)

    for name in names[:4]:
        assert got[name] == [ip], (name, got)
    assert got["kubernetes.default.svc"] == [cluster_ip(core, "default", "kubernetes")], got
    # Not found is an answer, not a timeout (which would read "Temporary failure").
    assert got[names[5]] == "error: Name or service not known", got
    dns_ip = cluster_ip(core, "kube-system", "kube-dns")
    assert f"nameserver {dns_ip}" in got["resolv.conf"], got["resolv.conf"]
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" \
        in got["resolv.conf"], got["resolv.conf"]


def _pid(name: str) -> str:
    return (CLUSTER_DIR / "pids" / f"{name}.pid").read_text().split()[0]


@pytest.mark.cluster
@pytest.mark.node
@pytest.mark.local_cluster
def test_cluster_up_again_restarts_nothing(cluster: Cluster) -> None:
    """cluster-up on a running cluster converges: it restarts only a component whose
    configuration changed, so with nothing changed the kubelet and CoreDNS keep running."""
    if not cluster.local:
        pytest.skip("KUBECONFIG points at another cluster; no local cluster-up to re-run")
    again = run_hack("cluster-up.sh", timeout=300)  # starts CoreDNS if it was missing
    assert again.returncode == 0, again.stderr
    before = {c: _pid(c) for c in ("kubelet", "coredns")}
    again = run_hack("cluster-up.sh", timeout=300)
    assert again.returncode == 0, again.stderr
    assert {c: _pid(c) for c in ("kubelet", "coredns")} == before, again.stderr
    assert "restarting" not in again.stderr, again.stderr
    status = run_hack("cluster-status.sh", timeout=60)
    assert status.returncode == 0 and "coredns " in status.stdout, status.stdout
