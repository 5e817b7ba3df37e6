"""Scale: 1,000 AgentTasks created at once against 1,000 equivalent batch/v1 Jobs, same run.

    python -m tests.bench.operator_scale [--count 1000] [--concurrency 16]

Needs a cluster (KUBECONFIG, or the local one of `make cluster-up`) with the CRDs applied by
this script. The real node is cordoned for the run, so the pods stay Pending: what is measured
is the controllers' work up to "every pod exists", not the kubelet's. The Job controller
runs with kube-controller-manager's defaults (client QPS 20, burst 30 on this cluster); the
operator's client has no rate limit of its own. Reported: time until all pods exist (and the
ratio), create→pod-seen p50/p99 (client clock: object create returned → pod ADDED event), and
the operator's RSS. Everything it creates is deleted at the end.

The operator runs as deployed: from a virtualenv with only ``tether[operator]`` installed (as
its image has), built under ~/.cache/tether/operator-venv, not from the test environment,
whose extra packages (the ``kubernetes`` client: kopf imports it when present) would inflate
its memory by ~18 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from tests.e2e._settings import settings as e2e_settings

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_VENV = Path.home() / ".cache" / "tether" / "operator-venv"


def operator_python() -> str:
    """A python with this checkout's ``tether[operator]`` and nothing else."""
    py = OPERATOR_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(OPERATOR_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{ROOT}[operator]"], check=True)  # dependencies
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], check=True)  # this code
    absent = subprocess.run([str(py), "-c", "import kubernetes"], capture_output=True)
    if absent.returncode == 0:
        raise SystemExit(f"{OPERATOR_VENV} has the kubernetes client: not as deployed")
    return str(py)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PodWatch:
    """Records when each pod (by its owner's name) is first seen."""

    def __init__(self, core: client.CoreV1Api, ns: str, owner_label: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(core, ns, owner_label),
                                        daemon=True)
        self._thread.start()

    def _run(self, core: client.CoreV1Api, ns: str, label: str) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, ns, label_selector=label,
                               timeout_seconds=5):
                owner = ev["object"].metadata.labels.get(label)
                if owner and owner not in self.seen:
                    self.seen[owner] = time.monotonic()
                if self._stop.is_set():
                    w.stop()
                    break

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def create_all(bodies: list[Any], create: Any, concurrency: int) -> dict[str, float]:
    created: dict[str, float] = {}

    def one(body: Any) -> None:
        create(body)
        created[body["metadata"]["name"]] = time.monotonic()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    return created


def measure(name: str, bodies: list[Any], create: Any, watcher: PodWatch, concurrency: int,
            timeout: float, sample: Any = None) -> dict[str, Any]:
    t0 = time.monotonic()
    created = create_all(bodies, create, concurrency)
    peak = 0.0
    while len(watcher.seen) < len(bodies) and time.monotonic() - t0 < timeout:
        if sample:
            peak = max(peak, sample())
        time.sleep(0.2)
    done = time.monotonic()
    lat = sorted(watcher.seen[n] - created[n] for n in created if n in watcher.seen)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [0.0] * 99
    return {"what": name, "objects": len(bodies), "pods_seen": len(watcher.seen),
            "create_seconds": max(created.values()) - t0,
            "all_pods_seconds": done - t0,
            "create_to_pod_p50_s": statistics.median(lat) if lat else None,
            "create_to_pod_p99_s": q[98], "peak_rss_mb": peak or None}


def job(i: int) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"j{i}", "labels": {"bench": "jobs"}},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {"bench-owner": f"j{i}"}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "agent", **E2E.container("agent"),
                    "command": ["python", "-c", "pass"]}]}}}}


E2E = e2e_settings()


def task(i: int) -> dict[str, Any]:
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": f"t{i}"},
            "spec": {"agent": {**E2E.container("agent"), "command": ["python", "-c", "pass"]},
                     "task": {"instructions": "nothing"},
                     "model": {"provider": "openai", "name": "gpt-4o",
                               "baseURL": "http://127.0.0.1:9/v1"},
                     "costEnvelope": {"hardLimitUSD": "1.00"},
                     "checkpoint": {"enabled": False}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--skip-jobs", action="store_true",
                        help="only the operator's half (no ratio): for iterating on it")
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG") or str(
        Path.home() / ".cache" / "tether" / "cluster" / "kubeconfig")
    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = args.concurrency * 2
    core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), \
        client.CustomObjectsApi(api)
    ext = client.ApiextensionsV1Api(api)
    for path in sorted((ROOT / "crds").glob("*.tether.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    nodes = [n.metadata.name for n in core.list_node().items]
    for n in nodes:
        core.patch_node(n, {"spec": {"unschedulable": True}})
    suffix = time.strftime("%H%M%S")  # a namespace from an earlier run may still be going
    jobs_ns, tasks_ns = f"bench-jobs-{suffix}", f"bench-tasks-{suffix}"
    results: dict[str, Any] = {"count": args.count, "machine": {"nproc": os.cpu_count(),
                                                                "loadavg": os.getloadavg()}}
    op = None
    python = operator_python()
    try:
        for ns in (jobs_ns, tasks_ns):
            core.create_namespace({"metadata": {"name": ns}})
        time.sleep(2)  # the service-account controller
        if not args.skip_jobs:
            w = PodWatch(core, jobs_ns, "bench-owner")
            results["jobs"] = measure(
                "batch/v1 Job (kube-controller-manager)", [job(i) for i in range(args.count)],
                lambda b: batch.create_namespaced_job(jobs_ns, b), w, args.concurrency,
                args.timeout)
            w.stop()
        env = {**os.environ, "KUBECONFIG": kubeconfig, "TETHER_OPERATOR_OPS_PORT": "0",
               "TETHER_OPERATOR_LEASE_NAMESPACE": tasks_ns,
               "TETHER_OPERATOR_RESYNC_SECONDS": "20"}  # the safety-net resync runs in the minute
        log = (ROOT / "_out" / "bench")
        log.mkdir(parents=True, exist_ok=True)
        with (log / "operator_scale.log").open("wb") as out:
            op = subprocess.Popen([python, "-m", "tether_operator", "--namespace",
                                   tasks_ns, "--log-level", "WARNING"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
        time.sleep(3)
        idle = rss_mb(op.pid)
        w = PodWatch(core, tasks_ns, "tether.dev/task")
        results["agenttasks"] = measure(
            "AgentTask (tether operator)", [task(i) for i in range(args.count)],
            lambda b: custom.create_namespaced_custom_object("tether.dev", "v1alpha1", tasks_ns,
                                                             "agenttasks", b),
            w, args.concurrency, args.timeout, sample=lambda: rss_mb(op.pid) if op.poll() is None
            else sys.exit(f"the operator exited {op.returncode}: see {log}"))
        w.stop()
        peak = results["agenttasks"]["peak_rss_mb"] or 0.0
        for _ in range(60):  # a minute with 1,000 live tasks: resync and live rounds included
            time.sleep(1)
            peak = max(peak, rss_mb(op.pid))
        results["agenttasks"]["peak_rss_mb"] = peak
        results["agenttasks"]["operator_rss_idle_mb"] = idle
        results["agenttasks"]["operator_rss_settled_mb"] = rss_mb(op.pid)
        if not args.skip_jobs:
            j, t = results["jobs"], results["agenttasks"]
            results["ratio_all_pods_operator_over_jobs"] = (t["all_pods_seconds"]
                                                            / j["all_pods_seconds"])
    finally:
        if op is not None:
            op.terminate()
            op.wait(30)
        for n in nodes:
            core.patch_node(n, {"spec": {"unschedulable": False}})
        for ns in (jobs_ns, tasks_ns):
            try:
                core.delete_namespace(ns)
            except client.ApiException as exc:
                print(f"could not delete namespace {ns}: {exc.reason}", file=sys.stderr)
    out_path = ROOT / "_out" / "bench" / "operator_scale.json"
    out_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
