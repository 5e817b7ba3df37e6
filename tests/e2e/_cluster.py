"""Finding or starting the cluster the e2e suite runs against.

Two sources, in order:
1. ``KUBECONFIG`` set in the environment: any cluster (kind, a remote one). The
   suite only talks to its API; nothing is started or stopped.
2. The local cluster of ``hack/cluster-up.sh``: reused when healthy, started when not
   (needs root). ``TETHER_E2E_NO_START=1`` turns starting off.

Then ``TETHER_E2E_LOAD_IMAGES`` (e.g. ``kind load docker-image``), when set, puts the images
where the cluster's nodes find them. This module does not create test objects;
``conftest.py`` does that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from ._settings import REPO_ROOT, TETHER_CACHE, E2ESettings

__all__ = ["REPO_ROOT", "TETHER_CACHE", "Cluster", "ClusterUnavailable", "apply_crds",
           "collect_logs", "find_or_start", "load_images", "run_hack"]

HACK = REPO_ROOT / "hack"
CLUSTER_DIR = Path(os.environ.get("CLUSTER_DIR", TETHER_CACHE / "cluster"))

# A cold cluster-up may build binaries (~10 min on 2 cores) and images.
CLUSTER_UP_TIMEOUT_S = 45 * 60
# kind load copies every image into every node: a slow runner gets a quarter of an hour.
LOAD_IMAGES_TIMEOUT_S = 15 * 60


class ClusterUnavailable(RuntimeError):
    """No cluster to test against, and none could be started; the message says why."""


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    local: bool  # started by hack/cluster-up.sh: component logs are on this machine

    @property
    def logs_dir(self) -> Path | None:
        return CLUSTER_DIR / "logs" if self.local else None


def run_hack(script: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a hack/ script; output captured, never raises on a non-zero exit."""
    return subprocess.run(
        [str(HACK / script), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, check=False,
    )


def find_or_start(settings: E2ESettings) -> Cluster:
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    external = os.environ.get("KUBECONFIG")
    if external:
        given = Path(external.split(os.pathsep)[0])
        # `make cluster-env` points KUBECONFIG at the local cluster: still ours, logs and all.
        return Cluster(given, local=given.resolve() == kubeconfig.resolve())
    if run_hack("cluster-status.sh", timeout=60).returncode == 0:
        return Cluster(kubeconfig, local=True)
    if settings.no_start:
        raise ClusterUnavailable(
            "no cluster: KUBECONFIG is unset, the local cluster is not running and "
            "TETHER_E2E_NO_START=1 forbids starting it (run: make cluster-up)")
    if os.geteuid() != 0:
        raise ClusterUnavailable(
            "no cluster: KUBECONFIG is unset and starting the local cluster needs root "
            "(run: sudo make cluster-up, or point KUBECONFIG at another cluster: "
            "docs/cluster.md)")
    up = run_hack("cluster-up.sh", timeout=CLUSTER_UP_TIMEOUT_S)
    if up.returncode != 0:
        raise ClusterUnavailable(
            f"hack/cluster-up.sh failed (exit {up.returncode}); logs in {CLUSTER_DIR}/logs\n"
            f"{up.stderr[-4000:]}")
    return Cluster(kubeconfig, local=True)


def load_images(settings: E2ESettings) -> None:
    """Run TETHER_E2E_LOAD_IMAGES with the image refs appended, when it is set."""
    command = settings.load_command()
    if command is None:
        return
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=LOAD_IMAGES_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise ClusterUnavailable(f"TETHER_E2E_LOAD_IMAGES: no program {command[0]!r} "
                                 "(install it or fix the variable)") from exc
    if done.returncode != 0:
        raise ClusterUnavailable(
            f"TETHER_E2E_LOAD_IMAGES failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}\n"
            "Build the images first (images/*/Dockerfile, tagged as the command shows).")


def collect_logs(cluster: Cluster, dest: Path, namespace: str | None) -> Path:
    """Copy every component's log, plus the test namespace's events and pod logs."""
    dest.mkdir(parents=True, exist_ok=True)
    if cluster.logs_dir and cluster.logs_dir.is_dir():
        shutil.copytree(cluster.logs_dir, dest / "components", dirs_exist_ok=True)
    kubectl = (shutil.which("kubectl")
               or str(TETHER_CACHE / f"k8s-{_k8s_version()}" / "bin" / "kubectl"))
    base = [kubectl, "--kubeconfig", str(cluster.kubeconfig)]
    commands = {
        "nodes.txt": ["get", "nodes", "-o", "wide"],
        "all-pods.txt": ["get", "pods", "-A", "-o", "wide"],
        "pvs.txt": ["get", "pv,pvc", "-A", "-o", "wide"],
    }
    if namespace:
        commands |= {
            "ns-describe.txt": ["-n", namespace, "describe", "all,pvc,pdb"],
            "ns-events.txt": ["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"],
            "ns-pod-logs.txt": ["-n", namespace, "logs", "--all-containers", "--prefix",
                                "--ignore-errors", "-l", "tether.dev/e2e", "--tail=200"],
        }
    for name, args in commands.items():
        out = subprocess.run(base + args, capture_output=True, text=True, timeout=60, check=False)
        (dest / name).write_text(out.stdout + out.stderr)
    return dest


def _k8s_version() -> str:
    for line in (HACK / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise ClusterUnavailable("hack/versions.env has no K8S_VERSION line")


def apply_crds(api: client.ApiClient, timeout: float = 60.0) -> None:
    """The committed CRDs, created or replaced, then waited on until Established: a run must not
    depend on which test, or which earlier tree, installed them last (the e2e ``crds`` fixture,
    the cluster benchmarks)."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted((REPO_ROOT / "crds").glob("*.tether.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        names.append(crd["metadata"]["name"])
        try:
            old = ext.read_custom_resource_definition(crd["metadata"]["name"])
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(crd)
        else:
            crd["metadata"]["resourceVersion"] = old.metadata.resource_version
            ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(c.type == "Established" and c.status == "True" for c in
                   ext.read_custom_resource_definition(n).status.conditions or [])
               for n in names):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the CRDs {names} were not Established in {timeout}s "
                       "(kubectl get crd; is the apiserver healthy?)")
