"""Scale: N AgentTasks created at once against N equivalent batch/v1 Jobs, same run, for N in
``--counts`` (default 100,1000,10000).

    python -m tests.bench.operator_scale [--counts 100,1000,10000] [--concurrency 16]

Each half of each count (the Jobs, then the AgentTasks) runs on a control plane of its own,
started fresh by this script (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, as ``make cluster-up`` starts them with ``TETHER_NO_NODE=1``, in
~/.cache/tether/bench-cluster on other ports), so the shared local cluster, its real node and
whatever runs on it are left alone, and neither half shares its apiserver with the other's
objects or inherits deletions. Its only nodes are kwok's fakes (``--kwok-nodes``, 1,000 pods
each): pods are scheduled and reported Running without containers, so what is measured is
the controllers' work, scheduling included, not a kubelet's. Give ``--kubeconfig`` to use a
cluster you started (it must have kwok-managed nodes, or the pods stay Pending).

The Job controller runs with kube-controller-manager's defaults (client QPS 20, burst 30); the
operator's client has no rate limit of its own. Reported per count: time until all pods exist
(and the ratio), create→pod-seen p50/p99 (client clock: object create returned → pod ADDED
event), and the operator's RSS at rest, peak, and a minute after the burst (live-status rounds
and a resync included: the sidecars' pod IPs are kwok's fakes, so every live poll times out,
which is what an operator watching unreachable pods pays).

The operator runs as deployed: from a virtualenv with only ``tether[operator]`` installed (as
its image has), built under ~/.cache/tether/operator-venv, not from the test environment,
whose extra packages (the ``kubernetes`` client: kopf imports it when present) would inflate
its memory by ~18 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import yaml
from kubernetes import client, config

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
        # The raw event stream, each line decoded by orjson: the client's model decoding of
        # every event fell minutes behind at 10,000 pods, and what it saw was then late.
        # Resumed from the last resourceVersion seen, so a reconnect does not resend every pod.
        version = ""
        while not self._stop.is_set():
            resp = core.list_namespaced_pod(ns, label_selector=label, watch=True,
                                            resource_version=version, timeout_seconds=10,
                                            _preload_content=False)
            try:
                for line in resp:
                    ev = orjson.loads(line)
                    meta = ev["object"].get("metadata", {})
                    if ev["type"] == "ERROR":  # 410 Gone: start over from a fresh list
                        version = ""
                        break
                    version = meta.get("resourceVersion", version)
                    owner = (meta.get("labels") or {}).get(label)
                    if owner and owner not in self.seen:
                        self.seen[owner] = time.monotonic()
                    if self._stop.is_set():
                        break
            finally:
                resp.release_conn()

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


def api_load(core: client.CoreV1Api) -> dict[str, dict[str, float]]:
    """The apiserver's own tally since it started: requests and seconds spent serving them, by
    ``VERB resource`` (watches and leases left out), the 12 busiest. Every client is in it
    (the controllers, the scheduler, kwok, this script), which is the point: it is the load the
    half put on the control plane."""
    api = core.api_client
    auth = api.configuration.auth_settings().get("BearerToken")
    resp = api.call_api("GET", api.configuration.host + "/metrics",
                        header_params={auth["key"]: auth["value"]} if auth else {})
    resp.read()
    count: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for line in resp.data.decode().splitlines():
        for name, into in (("apiserver_request_total", count),
                           ("apiserver_request_duration_seconds_sum", seconds)):
            if not line.startswith(name + "{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("verb") in ("WATCH", "CONNECT") or labels.get("resource") == "leases":
                continue
            key = f"{labels.get('verb')} {labels.get('resource')}"
            if labels.get("subresource"):
                key += "/" + labels["subresource"]
            into[key] = into.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    busiest = sorted(count, key=lambda k: -seconds.get(k, 0.0))[:12]
    return {k: {"requests": count[k], "seconds": round(seconds.get(k, 0.0), 2)} for k in busiest}


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
                               "baseURL": "http://127.0.0.1:9/v1",
                               "allowPlaintextHTTP": True},
                     "costEnvelope": {"hardLimitUSD": "1.00"},
                     "checkpoint": {"enabled": False}}}


BENCH_CLUSTER = Path.home() / ".cache" / "tether" / "bench-cluster"
# Ports of the bench control plane: clear of the shared cluster's (config.sh defaults).
BENCH_PORTS = {"TETHER_ETCD_PORT": "12379", "TETHER_ETCD_PEER_PORT": "12380",
               "TETHER_APISERVER_PORT": "16443", "TETHER_KCM_PORT": "20257",
               "TETHER_SCHEDULER_PORT": "20259"}
BENCH_ENV = {"CLUSTER_DIR": str(BENCH_CLUSTER), "TETHER_NO_NODE": "1", **BENCH_PORTS}


def bench_cluster(up: bool) -> str:
    """Start (or tear down) the bench's own control plane; returns its kubeconfig."""
    script = ROOT / "hack" / ("cluster-up.sh" if up else "cluster-down.sh")
    done = subprocess.run(["bash", str(script)], env={**os.environ, **BENCH_ENV},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script.name} for the bench cluster failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if up else ""


def fake_nodes(core: client.CoreV1Api, count: int) -> None:
    """kwok nodes that take any pod: no taint (unlike the e2e tests' fakes, which share a
    cluster with a real node), room for 1,000 pods each."""
    room = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}
    for i in range(count):
        core.create_node({"metadata": {"name": f"kwok-bench-{i}",
                                       "annotations": {"kwok.x-k8s.io/node": "fake"},
                                       "labels": {"type": "kwok"}},
                          "status": {"capacity": room, "allocatable": room}})


def apply_crds(ext: client.ApiextensionsV1Api) -> None:
    for path in sorted((ROOT / "crds").glob("*.tether.dev.yaml")):
        try:
            ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    time.sleep(2)  # the CRDs' endpoints become served


def run_operator(python: str, kubeconfig: str, ns: str, count: int, core: client.CoreV1Api,
                 custom: client.CustomObjectsApi, concurrency: int,
                 timeout: float) -> dict[str, Any]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "TETHER_OPERATOR_OPS_PORT": "0",
           "TETHER_OPERATOR_LEASE_NAMESPACE": ns,
           "TETHER_OPERATOR_RESYNC_SECONDS": "20"}  # the safety-net resync runs in the minute
    log = ROOT / "_out" / "bench"
    log.mkdir(parents=True, exist_ok=True)
    with (log / f"operator_scale_{count}.log").open("wb") as out:
        op = subprocess.Popen([python, "-m", "tether_operator", "--namespace", ns,
                               "--log-level", "WARNING"],
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        time.sleep(3)
        idle = rss_mb(op.pid)
        w = PodWatch(core, ns, "tether.dev/task")
        result = measure(
            "AgentTask (tether operator)", [task(i) for i in range(count)],
            lambda b: custom.create_namespaced_custom_object("tether.dev", "v1alpha1", ns,
                                                             "agenttasks", b),
            w, concurrency, timeout, sample=lambda: rss_mb(op.pid) if op.poll() is None
            else sys.exit(f"the operator exited {op.returncode}: see {log}"))
        w.stop()
        result["apiserver_at_all_pods"] = api_load(core)
        peak = result["peak_rss_mb"] or 0.0
        for _ in range(60):  # a minute with every task live: resync and live rounds included
            time.sleep(1)
            peak = max(peak, rss_mb(op.pid))
        return {**result, "peak_rss_mb": peak, "operator_rss_idle_mb": idle,
                "operator_rss_settled_mb": rss_mb(op.pid)}
    finally:
        op.terminate()
        op.wait(30)


class Plane:
    """A control plane for one half of a count: ours (started fresh, torn down after) or the
    user's (``--kubeconfig``)."""

    def __init__(self, args: argparse.Namespace, count: int) -> None:
        self.args, self.count = args, count

    def __enter__(self) -> Plane:
        self.kubeconfig = self.args.kubeconfig or bench_cluster(up=True)
        api = config.new_client_from_config(config_file=self.kubeconfig)
        api.configuration.connection_pool_maxsize = self.args.concurrency * 2
        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        apply_crds(client.ApiextensionsV1Api(api))
        if not self.args.kubeconfig:
            fake_nodes(self.core, self.args.kwok_nodes or max(2, -(-self.count // 800)))
        self.ns = f"bench-{time.strftime('%H%M%S')}"
        self.core.create_namespace({"metadata": {"name": self.ns}})
        time.sleep(2)  # the service-account controller
        return self

    def __exit__(self, *_: object) -> None:
        if not self.args.kubeconfig:
            bench_cluster(up=False)


def one_count(count: int, args: argparse.Namespace, python: str) -> dict[str, Any]:
    """Jobs on one fresh control plane, then AgentTasks on another: neither half shares the
    apiserver, etcd or kube-controller-manager with the other's objects (10,000 running Jobs
    left beside the operator kept kube-controller-manager and the apiserver busy)."""
    result: dict[str, Any] = {"count": count, "loadavg_before": os.getloadavg()}
    if not args.skip_jobs:
        with Plane(args, count) as plane:
            w = PodWatch(plane.core, plane.ns, "bench-owner")
            result["jobs"] = measure(
                "batch/v1 Job (kube-controller-manager)", [job(i) for i in range(count)],
                lambda b: plane.batch.create_namespaced_job(plane.ns, b), w, args.concurrency,
                args.timeout)
            w.stop()
            result["jobs"]["apiserver"] = api_load(plane.core)
    if not args.skip_tasks:
        with Plane(args, count) as plane:
            result["agenttasks"] = run_operator(python, plane.kubeconfig, plane.ns, count,
                                                plane.core, plane.custom, args.concurrency,
                                                args.timeout)
            result["agenttasks"]["apiserver"] = api_load(plane.core)
    result["loadavg_after"] = os.getloadavg()
    if not args.skip_jobs and not args.skip_tasks:
        result["ratio_all_pods_operator_over_jobs"] = (
            result["agenttasks"]["all_pods_seconds"] / result["jobs"]["all_pods_seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="100,1000,10000",
                        help="comma-separated task counts, each on a fresh control plane")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--kwok-nodes", type=int, default=0,
                        help="fake nodes (default: one per 800 pods, at least 2)")
    parser.add_argument("--kubeconfig", default="",
                        help="use this cluster instead of starting one (not torn down)")
    parser.add_argument("--skip-jobs", action="store_true",
                        help="only the operator's half (no ratio): for iterating on it")
    parser.add_argument("--skip-tasks", action="store_true",
                        help="only the Job controller's half (the baseline, bound by its client's "
                        "rate limit rather than CPU)")
    args = parser.parse_args()
    python = operator_python()
    out_path = ROOT / "_out" / "bench" / "operator_scale.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.counts.split(","):
        results.append(one_count(int(n), args, python))
        out_path.write_text(json.dumps(results, indent=2))  # kept if a later count fails
        print(json.dumps(results[-1]), flush=True)
    for r in results:
        t, j = r.get("agenttasks"), r.get("jobs")
        line = f"{r['count']:>6}:"
        if j:
            line += f" Jobs: all pods {j['all_pods_seconds']:.1f} s;"
        if t:
            line += (f" AgentTasks: all pods {t['all_pods_seconds']:.1f} s, operator RSS "
                     f"{t['operator_rss_idle_mb']:.1f} → peak {t['peak_rss_mb']:.1f} MB, "
                     f"settled {t['operator_rss_settled_mb']:.1f} MB;")
        if "ratio_all_pods_operator_over_jobs" in r:
            line += f" ratio {r['ratio_all_pods_operator_over_jobs']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
