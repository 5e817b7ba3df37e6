"""The chart's monitoring objects as the Prometheus Operator would serve them, on the local
cluster (issue #11 item 3): ServiceMonitor, PodMonitor and PrometheusRule read back from the API
server become a Prometheus's ``scrape_configs`` and a rules file; Alertmanager posts to a
webhook ``Receiver`` in the test.

The translation follows the Prometheus Operator v0.85's config generator
(pkg/prometheus/promcfg.go in its module, the version hack/prometheus-operator-crds.sh pins):
``kubernetes_sd_configs`` of role ``endpoints`` for a ServiceMonitor and ``pod`` for a
PodMonitor, the namespace selector as the discovery's namespaces, the label selector and the
port name as ``keep`` relabellings, the interval, timeout, path and honorLabels of each
endpoint, the ``job`` label (the Service's name; ``<namespace>/<name>`` for a PodMonitor) and
the ``namespace``, ``pod``, ``service``, ``container`` and ``endpoint`` target labels. Left out:
authentication, TLS, metric relabelling and sharding (one shard keeps every target), which the
chart does not use. Instead of a ServiceAccount the discovery reads the cluster through its
kubeconfig; the host reaches the pod IPs the discovery finds (10.88.0.0/16 via cni0).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from .._obs import prometheus, wait_for
from ._cluster import CLUSTER_DIR
from ._monitoring_setup import install_crds, operator_crds, prometheus_kubernetes

__all__ = ["Receiver", "chart_monitoring", "cluster_prometheus", "install_crds",
           "monitoring_objects", "operator_crds", "prometheus_kubernetes", "write_rules"]

Doc = dict[str, Any]
GROUP, VERSION = "monitoring.coreos.com", "v1"
PLURALS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors",
           "PrometheusRule": "prometheusrules"}
KUBECONFIG = CLUSTER_DIR / "kubeconfig"
NOTIFY_TIMEOUT_S = 120.0


def monitoring_objects(api: client.ApiClient, namespace: str) -> list[Doc]:
    """The ServiceMonitors, PodMonitors and PrometheusRules in ``namespace``, as the API server
    stores them (what the Prometheus Operator would watch)."""
    custom = client.CustomObjectsApi(api)
    found: list[Doc] = []
    for kind, plural in PLURALS.items():
        listed: Any = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        found += [{**item, "kind": kind} for item in listed["items"]]
    return found


def chart_monitoring(objects: Sequence[Doc], kubeconfig: Path = KUBECONFIG
                     ) -> tuple[list[Doc], list[Doc]]:
    """(scrape_configs, rule_groups) for ``objects`` (as rendered by helm or read back)."""
    scrape: list[Doc] = []
    groups: list[Doc] = []
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            scrape += [_service_monitor_job(obj, i, ep, kubeconfig)
                       for i, ep in enumerate(obj["spec"]["endpoints"])]
        elif obj["kind"] == "PodMonitor":
            scrape += [_pod_monitor_job(obj, i, ep, kubeconfig)
                       for i, ep in enumerate(obj["spec"]["podMetricsEndpoints"])]
        elif obj["kind"] == "PrometheusRule":
            groups += obj["spec"]["groups"]
    return scrape, groups


def write_rules(path: Path, groups: Sequence[Doc]) -> Path:
    """A Prometheus rules file with ``groups``, as the operator mounts it."""
    path.write_text(yaml.safe_dump({"groups": list(groups)}, sort_keys=False))
    return path


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _selector(selector: Doc, role: str) -> list[Doc]:
    """A LabelSelector as keep/drop relabellings on the service's or pod's labels."""
    label, present = f"__meta_kubernetes_{role}_label_", f"__meta_kubernetes_{role}_labelpresent_"
    rules: list[Doc] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        rules.append({"action": "keep", "source_labels": [label + _sanitize(key),
                                                          present + _sanitize(key)],
                      "regex": f"({value});true"})
    for exp in selector.get("matchExpressions") or []:
        key, op = _sanitize(exp["key"]), exp["operator"]
        if op in ("In", "NotIn"):
            rules.append({"action": "keep" if op == "In" else "drop",
                          "source_labels": [label + key, present + key],
                          "regex": f"({'|'.join(exp['values'])});true"})
        elif op in ("Exists", "DoesNotExist"):
            rules.append({"action": "keep" if op == "Exists" else "drop",
                          "source_labels": [present + key], "regex": "true"})
        else:
            raise ValueError(f"label selector operator {op!r} of {exp} is not one of In, "
                             "NotIn, Exists, DoesNotExist")
    return rules


def _discovery(obj: Doc, role: str, kubeconfig: Path) -> Doc:
    """kubernetes_sd_configs: any namespace, the listed ones, or the object's own."""
    sd: Doc = {"role": role, "kubeconfig_file": str(kubeconfig)}
    nsel = obj["spec"].get("namespaceSelector") or {}
    if not nsel.get("any"):
        sd["namespaces"] = {"names": nsel.get("matchNames") or [obj["metadata"]["namespace"]]}
    return sd


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a Prometheus duration (e.g. 30s, 1m30s)")
    return sum(int(n) * units[u] for n, u in parts)


def _job(obj: Doc, kind: str, i: int, ep: Doc, kubeconfig: Path, role: str) -> Doc:
    meta = obj["metadata"]
    job: Doc = {"job_name": f"{kind}/{meta['namespace']}/{meta['name']}/{i}",
                "honor_labels": bool(ep.get("honorLabels")),
                "kubernetes_sd_configs": [_discovery(obj, role, kubeconfig)]}
    for field, key in (("interval", "scrape_interval"), ("scrapeTimeout", "scrape_timeout"),
                       ("path", "metrics_path"), ("scheme", "scheme")):
        if ep.get(field):
            job[key] = ep[field]
    if "scrape_interval" in job and "scrape_timeout" in job and (
            _seconds(job["scrape_timeout"]) > _seconds(job["scrape_interval"])):
        # The Prometheus Operator refuses such a monitor; so does this translation.
        raise ValueError(f"{kind} {meta['namespace']}/{meta['name']}: scrapeTimeout "
                         f"{job['scrape_timeout']} is longer than interval "
                         f"{job['scrape_interval']}")
    return job


_RUNNING = {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)"}
_KEEP_JOB = {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}


def _service_monitor_job(sm: Doc, i: int, ep: Doc, kubeconfig: Path) -> Doc:
    job = _job(sm, "serviceMonitor", i, ep, kubeconfig, "endpoints")
    target = ["__meta_kubernetes_endpoint_address_target_kind",
              "__meta_kubernetes_endpoint_address_target_name"]
    relabel = [_KEEP_JOB, *_selector(sm["spec"].get("selector") or {}, "service")]
    if ep.get("port"):
        relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                        "regex": ep["port"]})
    relabel += [
        {"source_labels": target, "separator": ";", "regex": "Node;(.*)",
         "replacement": "${1}", "target_label": "node"},
        {"source_labels": target, "separator": ";", "regex": "Pod;(.*)",
         "replacement": "${1}", "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
    ]
    if ep.get("filterRunning", True):
        relabel.append(_RUNNING)
    relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job",
                    "replacement": "${1}"})
    return _job_tail(job, relabel, sm, ep, "service")


def _pod_monitor_job(pm: Doc, i: int, ep: Doc, kubeconfig: Path) -> Doc:
    job = _job(pm, "podMonitor", i, ep, kubeconfig, "pod")
    relabel = [_KEEP_JOB]
    if ep.get("filterRunning", True):
        relabel.append(_RUNNING)
    relabel += _selector(pm["spec"].get("selector") or {}, "pod")
    if ep.get("port"):
        relabel.append({"action": "keep",
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": ep["port"]})
    relabel += [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"target_label": "job", "replacement": f"{pm['metadata']['namespace']}/"
                                               f"{pm['metadata']['name']}"},
    ]
    return _job_tail(job, relabel, pm, ep, "pod")


def _job_tail(job: Doc, relabel: list[Doc], monitor: Doc, ep: Doc, role: str) -> Doc:
    """What both monitors end with: the jobLabel's value as the job, the endpoint label."""
    if monitor["spec"].get("jobLabel"):
        relabel.append({"source_labels": [
            f"__meta_kubernetes_{role}_label_" + _sanitize(monitor["spec"]["jobLabel"])],
            "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
    if ep.get("port"):
        relabel.append({"target_label": "endpoint", "replacement": ep["port"]})
    job["relabel_configs"] = relabel
    return job


@contextmanager
def cluster_prometheus(workdir: Path, scrape_configs: Sequence[Doc], rule_files: Sequence[Path],
                       alertmanager_url: str | None) -> Iterator[str]:
    """A Prometheus on this machine (hack/prometheus-kubernetes.sh's) with the discovered jobs
    and the rules, evaluating every second (tests/_obs.py); yields its base URL."""
    with prometheus(workdir, [], rule_files, alertmanager_url, scrape_configs=scrape_configs,
                    binary=prometheus_kubernetes()) as url:
        yield url


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook receiver on 127.0.0.1: keeps every alert of every notification
    posted to it, with the time it arrived. Use it as a context manager (serves in a thread).
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.alerts: list[tuple[float, Doc]] = []  # (monotonic arrival, alert as posted)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def received(self, name: str, status: str, after: float = 0.0,
                 **labels: str) -> tuple[float, Doc] | None:
        """(arrival, alert): the first alert ``name`` posted with ``status`` (firing,
        resolved) and ``labels``, arrived after the monotonic time ``after``."""
        with self.lock:
            return next(((t, a) for t, a in self.alerts
                         if t > after and a["labels"].get("alertname") == name
                         and a["status"] == status and labels.items() <= a["labels"].items()),
                        None)

    def wait_firing(self, name: str, timeout: float = NOTIFY_TIMEOUT_S, after: float = 0.0,
                    **labels: str) -> tuple[float, Doc]:
        return wait_for(lambda: self.received(name, "firing", after, **labels), timeout,
                        f"a firing {name} {labels or ''} at the webhook receiver")

    def wait_resolved(self, name: str, timeout: float = NOTIFY_TIMEOUT_S, after: float = 0.0,
                      **labels: str) -> tuple[float, Doc]:
        return wait_for(lambda: self.received(name, "resolved", after, **labels), timeout,
                        f"a resolved {name} {labels or ''} at the webhook receiver")


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = time.monotonic()
        with self.server.lock:
            self.server.alerts += [(now, alert) for alert in body.get("alerts", [])]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the alerts are the record
