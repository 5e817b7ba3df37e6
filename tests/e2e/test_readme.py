"""README.md's "Run it on Kubernetes" block, run verbatim against the cluster: the chart's
operator in-cluster, the test doubles as Services, the sample AgentTask found by cluster DNS and
Succeeded. `make kube-demo` runs the same block (hack/kube-demo.sh).

The block's names are the README's: release ``tether`` in ``tether-system``, the task in
``default``, which that operator alone watches (``watchNamespaces``), so the operators other
tests install into their own namespaces never see it. Everything is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from ._cluster import REPO_ROOT, Cluster
from ._tools import helm

pytestmark = [pytest.mark.cluster, pytest.mark.node]

SECTION = "## Run it on Kubernetes"
TASK = "incident-research"
SYSTEM_NS = "tether-system"
GROUP, VERSION = "tether.dev", "v1alpha1"


def readme_block() -> str:
    """The first ```sh block under SECTION, as a user copies it."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split(f"\n{SECTION}\n", 1)
    assert len(section) == 2, f"README.md has no {SECTION!r} section"
    body = section[1].split("\n## ", 1)[0]
    found = re.search(r"^```sh\n(.*?)^```$", body, re.M | re.S)
    assert found, f"README.md's {SECTION!r} section has no ```sh block"
    return found.group(1)


def bin_dir() -> str:
    out = subprocess.run([str(REPO_ROOT / "hack" / "k8s-binaries.sh"), "--print"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def images_in(block_files: list[str]) -> set[str]:
    """The docker.io/tether images the block's manifests and the chart run."""
    refs = set()
    for rel in block_files:
        refs |= set(re.findall(r"^\s*image: (docker\.io/tether/\S+)$",
                               (REPO_ROOT / rel).read_text(), re.M))
    app = re.search(r'^appVersion: "?([^"\n]+)"?$',
                    (REPO_ROOT / "charts" / "tether" / "Chart.yaml").read_text(), re.M)
    assert app, "charts/tether/Chart.yaml has no appVersion"
    return refs | {f"docker.io/tether/{name}:{app.group(1)}" for name in ("operator", "sidecar")}


def require_images(core: client.CoreV1Api, node: str, refs: set[str]) -> None:
    """Nothing is pulled on this machine: name a missing image rather than time out."""
    status = core.api_client.sanitize_for_serialization(core.read_node(node))["status"]
    have = {name for image in status.get("images", []) for name in image.get("names", [])}
    missing = sorted(refs - have)
    if missing:
        pytest.fail(f"images {missing} are not on node {node}; hack/images.sh builds "
                    "docker.io/tether/* and make cluster-up imports them", pytrace=False)


def tools_env(cluster: Cluster) -> dict[str, str]:
    """The user's shell: KUBECONFIG, the pinned helm first on PATH, and the local cluster's
    kubectl (another cluster's user brings their own kubectl on PATH)."""
    first = [str(Path(helm()).parent)] + ([bin_dir()] if cluster.local else [])
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": ":".join([*first, os.environ["PATH"]])}


def run(env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=240, check=False,
                          env=env)


def kubectl(cluster: Cluster, *args: str) -> str:
    out = run(tools_env(cluster), "kubectl", *args)
    return out.stdout + out.stderr


def remove_task(env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """The task first (its pod and PVC go with it), while its operator still runs."""
    return [run(env, "kubectl", "delete", "agenttask", TASK, "--ignore-not-found", "--wait",
                "--timeout=120s"),
            run(env, "kubectl", "delete", "secret", "model-creds", "--ignore-not-found")]


@pytest.fixture
def readme_env(cluster: Cluster, core: client.CoreV1Api, real_node: str
               ) -> Iterator[dict[str, str]]:
    if cluster.local:  # elsewhere the images may come from a registry
        require_images(core, real_node, images_in(["examples/kubernetes/test-doubles.yaml",
                                                   "crds/samples/agenttask.yaml"]))
    env = tools_env(cluster)
    # A task left by `make kube-demo` would already be Succeeded: start from none.
    assert all(r.returncode == 0 for r in remove_task(env))
    try:
        yield env
    finally:
        done = [
            *remove_task(env),
            run(env, "helm", "uninstall", "tether", "-n", SYSTEM_NS, "--wait",
                "--ignore-not-found"),
            run(env, "kubectl", "delete", "namespace", SYSTEM_NS, "--ignore-not-found",
                "--wait", "--timeout=180s")]
        failed = [f"{' '.join(r.args)}: {r.stderr}" for r in done if r.returncode != 0]
        assert not failed, f"cleanup failed (the next run may clash): {failed}"


def diagnostics(cluster: Cluster) -> str:
    return "\n".join(kubectl(cluster, *args) for args in (
        ["get", "agenttask", TASK, "-o", "yaml"],
        ["get", "pods", "-A", "-o", "wide"],
        ["-n", SYSTEM_NS, "logs", "-l", "app.kubernetes.io/component=operator", "--tail=80"],
        ["logs", "-l", f"tether.dev/task={TASK}", "--all-containers", "--prefix", "--tail=40"],
        ["get", "events", "--sort-by=.lastTimestamp"]))


def tool_hits(core: client.CoreV1Api) -> dict[str, Any]:
    """The fault-tools double's record of what reached it, through the API server's proxy."""
    resp: Any = core.connect_get_namespaced_service_proxy_with_path(
        "fault-tools:8081", SYSTEM_NS, "_hits", _preload_content=False)
    hits: dict[str, Any] = json.loads(resp.data)
    return hits


def test_readme_kubernetes_block_runs_the_sample_to_succeeded(
        cluster: Cluster, readme_env: dict[str, str], core: client.CoreV1Api,
        api: client.ApiClient) -> None:
    block = readme_block()
    run = subprocess.run(["bash", "-euo", "pipefail", "-x", "-c", block], cwd=REPO_ROOT,
                         env=readme_env, capture_output=True, text=True, timeout=900,
                         check=False)
    assert run.returncode == 0, (
        f"README block failed (exit {run.returncode}):\n{run.stderr[-4000:]}\n"
        f"{diagnostics(cluster)[-8000:]}")
    # The block's last command lists the task; a user sees it Succeeded.
    listed = [line.split() for line in run.stdout.splitlines() if line.startswith(TASK)]
    assert listed and listed[0][1] == "Succeeded", run.stdout

    task: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, "default", "agenttasks", TASK)
    st = task["status"]
    assert st["phase"] == "Succeeded" and st["attempt"] == 1, st
    assert Decimal(st["spentUSD"]) > 0, st
    # What the README says happens: the model's scripted 503 and 429 and the tool's 503
    # were retried by the sidecar (examples/scripts/reference.yaml, the sample's tools).
    assert st["retries"] == 3, st
    # The tools were reached by their Service names: the flaky one failed once and was
    # retried, the side effect was recorded exactly once.
    hits = tool_hits(core)
    assert hits["hits"].get("/flaky/503/1") == 2, hits
    assert len(hits["side_effects"]) == 1, hits
