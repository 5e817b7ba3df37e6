"""tests/e2e/_monitoring.py turns the chart's ServiceMonitor, PodMonitor and PrometheusRule into
the scrape jobs and rules the Prometheus Operator (v0.85, pkg/prometheus/promcfg.go) would
generate: checked here on the objects helm renders, no cluster. The relabelling is applied to
targets as Prometheus's kubernetes discovery labels them (``keep``, ``drop``, ``replace``, as
Prometheus's relabel package does: anchored regex, ``;`` between source labels), so each test
says which pod or endpoint is scraped and under which ``job``. The e2e tests then scrape the real
cluster through the same jobs (test_alerts_operator.py).

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ..e2e._monitoring import chart_monitoring
from ._chart import FULL, Render, one, render

__all__ = ["render"]  # a fixture, used by name

KUBECONFIG = Path("/kubeconfig")
VALUES = {**FULL, "metrics": {
    "serviceMonitor": {"enabled": True, "interval": "2s", "scrapeTimeout": "1s"},
    "podMonitor": {"enabled": True, "interval": "3s"}, "prometheusRule": {"enabled": True}}}


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """The target's labels after ``rules``, or None when a rule drops it."""
    out = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(out.get(s, "") for s in rule.get(
            "source_labels", []))
        match = re.fullmatch(str(rule.get("regex", "(.*)")), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", str(rule.get("replacement", "$1")))
            out[rule["target_label"]] = match.expand(template)
    return {k: v for k, v in out.items() if not k.startswith("__tmp")}


def endpoint(service: str, port: str, *, ns: str = "tether-system", pod: str = "op-0",
             phase: str = "Running", **svc_labels: str) -> dict[str, str]:
    """A target of role endpoints, as Prometheus's kubernetes discovery labels it."""
    labels = {"__address__": "10.88.0.5:8000", "__meta_kubernetes_namespace": ns,
              "__meta_kubernetes_service_name": service,
              "__meta_kubernetes_endpoint_port_name": port,
              "__meta_kubernetes_endpoint_address_target_kind": "Pod",
              "__meta_kubernetes_endpoint_address_target_name": pod,
              "__meta_kubernetes_pod_name": pod, "__meta_kubernetes_pod_phase": phase,
              "__meta_kubernetes_pod_container_name": "operator", "job": "ignored"}
    for key, value in svc_labels.items():
        name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        labels[f"__meta_kubernetes_service_label_{name}"] = value
        labels[f"__meta_kubernetes_service_labelpresent_{name}"] = "true"
    return labels


def pod(name: str, port: str, *, ns: str = "a", phase: str = "Running",
        **pod_labels: str) -> dict[str, str]:
    """A target of role pod (one per container port)."""
    labels = {"__address__": "10.88.0.9:8081", "__meta_kubernetes_namespace": ns,
              "__meta_kubernetes_pod_name": name, "__meta_kubernetes_pod_phase": phase,
              "__meta_kubernetes_pod_container_name": "tether-sidecar",
              "__meta_kubernetes_pod_container_port_name": port}
    for key, value in pod_labels.items():
        label = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        labels[f"__meta_kubernetes_pod_label_{label}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{label}"] = "true"
    return labels


@pytest.fixture
def jobs(render: Render) -> dict[str, dict[str, Any]]:
    scrape, _ = chart_monitoring(render(VALUES), KUBECONFIG)
    return {j["job_name"]: j for j in scrape}


def test_service_monitor_becomes_an_endpoints_job_in_the_release_namespace(
        jobs: dict[str, dict[str, Any]], render: Render) -> None:
    job = jobs["serviceMonitor/tether-system/tether-operator/0"]
    assert job["kubernetes_sd_configs"] == [{"role": "endpoints", "kubeconfig_file": "/kubeconfig",
                                             "namespaces": {"names": ["tether-system"]}}]
    assert (job["scrape_interval"], job["scrape_timeout"], job["metrics_path"]) == (
        "2s", "1s", "/metrics")
    assert job["honor_labels"] is True
    svc = one(render(VALUES), "Service", "tether-operator")["metadata"]["labels"]
    kept = relabel(job["relabel_configs"], endpoint("tether-operator", "ops", **svc))
    assert kept is not None
    assert {k: kept[k] for k in ("job", "namespace", "pod", "service", "endpoint")} == {
        "job": "tether-operator", "namespace": "tether-system", "pod": "op-0",
        "service": "tether-operator", "endpoint": "ops"}
    assert relabel(job["relabel_configs"], endpoint("tether-operator", "http", **svc)) is None
    others = {**svc, "app.kubernetes.io/instance": "another-release"}
    assert relabel(job["relabel_configs"], endpoint("another", "ops", **others)) is None
    ended = endpoint("tether-operator", "ops", phase="Succeeded", **svc)
    assert relabel(job["relabel_configs"], ended) is None


def test_pod_monitor_becomes_a_pod_job_over_the_watched_namespaces(
        jobs: dict[str, dict[str, Any]]) -> None:
    job = jobs["podMonitor/tether-system/tether-sidecars/0"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/kubeconfig",
                                             "namespaces": {"names": ["a", "b"]}}]
    assert job["scrape_interval"] == "3s" and job["honor_labels"] is True
    assert "scrape_timeout" not in job  # the global one
    kept = relabel(job["relabel_configs"], pod("t1-a1", "ops", **{"tether.dev/task": "t1"}))
    assert kept is not None
    assert {k: kept[k] for k in ("job", "namespace", "pod", "container", "endpoint")} == {
        "job": "tether-system/tether-sidecars", "namespace": "a", "pod": "t1-a1",
        "container": "tether-sidecar", "endpoint": "ops"}
    assert relabel(job["relabel_configs"], pod("web", "ops", app="web")) is None
    assert relabel(job["relabel_configs"], pod("t1-a1", "proxy",
                                               **{"tether.dev/task": "t1"})) is None
    done = pod("t1-a1", "ops", phase="Failed", **{"tether.dev/task": "t1"})
    assert relabel(job["relabel_configs"], done) is None


def test_any_namespace_and_own_namespace_selectors(render: Render) -> None:
    values = {"metrics": VALUES["metrics"]}  # no watchNamespaces: every namespace
    scrape, _ = chart_monitoring(render(values), KUBECONFIG)
    sd = {j["job_name"].split("/")[0]: j["kubernetes_sd_configs"][0] for j in scrape}
    assert "namespaces" not in sd["podMonitor"]  # namespaceSelector.any: every namespace
    assert sd["serviceMonitor"]["namespaces"] == {"names": ["tether-system"]}


def test_rules_are_the_prometheus_rule_groups(render: Render) -> None:
    docs = render({**VALUES, "evaluator": {"enabled": True}})
    scrape, groups = chart_monitoring(docs, KUBECONFIG)
    assert groups == one(docs, "PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in groups] == ["tether-operator", "tether-tasks", "tether-evaluator"]
    names = sorted(j["job_name"] for j in scrape)
    assert names == ["podMonitor/tether-system/tether-sidecars/0",
                     "serviceMonitor/tether-system/tether-evaluator/0",
                     "serviceMonitor/tether-system/tether-operator/0"]


def test_a_timeout_longer_than_the_interval_is_refused(render: Render) -> None:
    """As the Prometheus Operator refuses the monitor (Prometheus would refuse the config)."""
    values = {**VALUES, "metrics": {**VALUES["metrics"], "serviceMonitor": {
        "enabled": True, "interval": "1s", "scrapeTimeout": "10s"}}}
    with pytest.raises(ValueError, match="scrapeTimeout 10s is longer than interval 1s"):
        chart_monitoring(render(values), KUBECONFIG)


def test_a_job_label_names_the_job_from_the_targets_label(render: Render) -> None:
    """A monitor's jobLabel (the chart sets none; a user's copy may): the job is that label's
    value on the Service (role endpoints) or the pod (role pod), and the default without it."""
    docs = render(VALUES)
    for doc in docs:
        if doc["kind"] in ("ServiceMonitor", "PodMonitor"):
            doc["spec"]["jobLabel"] = "example.com/team"
    scrape, _ = chart_monitoring(docs, KUBECONFIG)
    jobs = {j["job_name"].split("/")[0]: j["relabel_configs"] for j in scrape}
    svc = one(docs, "Service", "tether-operator")["metadata"]["labels"]
    kept = relabel(jobs["serviceMonitor"], endpoint(
        "tether-operator", "ops", **{**svc, "example.com/team": "platform"}))
    assert kept is not None and kept["job"] == "platform"
    labels = {"tether.dev/task": "t1", "example.com/team": "agents"}
    kept = relabel(jobs["podMonitor"], pod("t1-a1", "ops", **labels))
    assert kept is not None and kept["job"] == "agents"
    kept = relabel(jobs["podMonitor"], pod("t1-a1", "ops", **{"tether.dev/task": "t1"}))
    assert kept is not None and kept["job"] == "tether-system/tether-sidecars"
