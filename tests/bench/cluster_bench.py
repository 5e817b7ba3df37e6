"""Measure the local test cluster: cluster-up time (warm, or cold with --cold),
pod create -> Running on the real node, and memory at idle.

    sudo python3 -m tests.bench.cluster_bench [--cold] [--pods 5] [--settle 30]

--cold removes the rootfs, image and containerd caches first (the Kubernetes
binaries are kept: their cold build is timed by hack/k8s-binaries.sh itself, in
~/.cache/tether/k8s-<version>/build-times.txt). Prints one JSON object.
Needs root and the kubernetes client; leaves the cluster running.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from kubernetes import client, config

from tests.e2e._cluster import CLUSTER_DIR, HACK, TETHER_CACHE
from tests.e2e._settings import settings as e2e_settings

E2E = e2e_settings()

COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
              "apiserver-forward", "containerd", "kubelet", "kube-proxy"]


def _timed(script: str) -> float:
    t0 = time.monotonic()
    subprocess.run([str(HACK / script)], check=True, capture_output=True, text=True)
    return round(time.monotonic() - t0, 2)


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids = (task / "children").read_text().split() if (task / "children").exists() else []
        out += [int(k) for k in kids]
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def memory_mib() -> dict[str, float]:
    """PSS of each component; containerd's shims and the pods they run count under 'pods'."""
    sock = str(CLUSTER_DIR / "run" / "containerd" / "containerd.sock")
    result: dict[str, float] = {}
    for name in COMPONENTS:
        f = CLUSTER_DIR / "pids" / f"{name}.pid"
        if f.exists():
            result[name] = round(_pss_kib(int(f.read_text().split()[0])) / 1024, 1)
    pods = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "containerd-shim" in cmd and f"-address {sock} " in cmd:
            pods += sum(_pss_kib(p) for p in _tree(int(proc.name)))
    result["pods (shims + containers)"] = round(pods / 1024, 1)
    result["total"] = round(sum(result.values()), 1)
    return result


def pod_startup_s(core: client.CoreV1Api, n: int) -> list[float]:
    ns = "bench-startup"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        while not core.list_namespaced_service_account(ns).items:
            time.sleep(0.1)
        times = []
        for i in range(n):
            t0 = time.monotonic()
            core.create_namespaced_pod(ns, {
                "metadata": {"name": f"p{i}"},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "c", **E2E.container("pause")}]}})
            while core.read_namespaced_pod(f"p{i}", ns).status.phase != "Running":
                time.sleep(0.05)
            times.append(round(time.monotonic() - t0, 2))
        return times
    finally:
        core.delete_namespace(ns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--pods", type=int, default=5)
    ap.add_argument("--settle", type=float, default=30, help="seconds idle before measuring memory")
    args = ap.parse_args()
    report: dict[str, object] = {"cluster_down_s": _timed("cluster-down.sh")}
    if args.cold:
        for d in ("rootfs", "images", "containerd"):
            shutil.rmtree(TETHER_CACHE / d, ignore_errors=True)
    report["cluster_up_cold_s" if args.cold else "cluster_up_warm_s"] = _timed("cluster-up.sh")
    core = client.CoreV1Api(config.new_client_from_config(str(CLUSTER_DIR / "kubeconfig")))
    report["pod_create_to_running_s"] = pod_startup_s(core, args.pods)
    time.sleep(args.settle)
    report["idle_memory_pss_mib"] = memory_mib()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
