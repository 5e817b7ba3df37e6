"""Finding or starting the cluster the e2e suite runs against.

Two sources, in order:
1. ``KUBECONFIG`` set in the environment: any cluster (kind, a remote one). The
   suite only talks to its API; nothing is started or stopped.
2. The local cluster of ``hack/cluster-up.sh``: reused when healthy, started when not
   (needs root). ``TETHER_E2E_NO_START=1`` turns starting off.

This module does not create test objects; ``conftest.py`` does that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
TETHER_CACHE = Path(os.environ.get("TETHER_CACHE", Path.home() / ".cache" / "tether"))
CLUSTER_DIR = Path(os.environ.get("CLUSTER_DIR", TETHER_CACHE / "cluster"))

# A cold cluster-up may build binaries (~10 min on 2 cores) and images.
CLUSTER_UP_TIMEOUT_S = 45 * 60


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


def find_or_start() -> Cluster:
    external = os.environ.get("KUBECONFIG")
    if external:
        return Cluster(Path(external.split(os.pathsep)[0]), local=False)
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    if run_hack("cluster-status.sh", timeout=60).returncode == 0:
        return Cluster(kubeconfig, local=True)
    if os.environ.get("TETHER_E2E_NO_START") == "1":
        raise ClusterUnavailable(
            "no cluster: KUBECONFIG is unset, the local cluster is not running and "
            "TETHER_E2E_NO_START=1 forbids starting it (run: make cluster-up)")
    if os.geteuid() != 0:
        raise ClusterUnavailable(
            "no cluster: KUBECONFIG is unset and starting the local cluster needs root "
            "(run: sudo make cluster-up, or point KUBECONFIG at a kind cluster)")
    up = run_hack("cluster-up.sh", timeout=CLUSTER_UP_TIMEOUT_S)
    if up.returncode != 0:
        raise ClusterUnavailable(
            f"hack/cluster-up.sh failed (exit {up.returncode}); logs in {CLUSTER_DIR}/logs\n"
            f"{up.stderr[-4000:]}")
    return Cluster(kubeconfig, local=True)


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
