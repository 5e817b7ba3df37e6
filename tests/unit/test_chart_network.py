"""The chart's NetworkPolicy for task pods and the sidecar proxy values, rendered without a
cluster (helm template). The local cluster's CNI does not enforce NetworkPolicy, so rendering is
what is tested (docs/chart.md says so); the selectors are checked against the labels the
operator really puts on task pods and on its own pods.

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether_operator import manifests
from tether_operator.settings import OperatorSettings

from ._chart import FULL, Doc, Render, env_of, failure, one, operator_container, render

__all__ = ["render"]  # a fixture, used by name

S = OperatorSettings(leader_election=False)
ON: Doc = {"networkPolicy": {"enabled": True}, "watchNamespaces": ["team-a", "team-b"]}


def task_pod_labels() -> dict[str, str]:
    task: dict[str, Any] = {
        "metadata": {"name": "t1", "namespace": "team-a", "uid": "u"},
        "spec": {"agent": {"image": "a:1"}, "task": {"instructions": "x"},
                 "model": {"provider": "openai", "name": "m"},
                 "costEnvelope": {"hardLimitUSD": "1"}}}
    labels: dict[str, str] = manifests.pod(task, 1, S, None)["metadata"]["labels"]
    return labels


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "Exists", expr  # the only kind the chart writes
        if expr["key"] not in labels:
            return False
    return True


def policies(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "NetworkPolicy"}


def test_off_by_default(render: Render) -> None:
    assert policies(render()) == {}
    assert set(policies(render(FULL))) == {"a", "b"}  # FULL turns everything on


def test_one_policy_per_watched_namespace_selecting_task_pods_only(render: Render) -> None:
    docs = render(ON)
    found = policies(docs)
    assert set(found) == {"team-a", "team-b"}
    spec = found["team-a"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert selects(spec["podSelector"], task_pod_labels())
    operator_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selects(spec["podSelector"], operator_labels)
    assert set(policies(render({**ON, "networkPolicy": {"enabled": True,
                                                         "namespaces": ["x"]}}))) == {"x"}


def test_ingress_is_the_ops_port_from_the_operator_and_prometheus(render: Render) -> None:
    values = {**ON, "networkPolicy": {"enabled": True, "prometheusNamespaces": ["monitoring"]}}
    docs = render(values)
    [rule] = policies(docs)["team-a"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": S.sidecar_ops_port}]
    operator_pod = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    release_ns = {"kubernetes.io/metadata.name": "tether-system"}
    operator_peer, prometheus_peer = rule["from"]
    assert operator_peer["namespaceSelector"]["matchLabels"] == release_ns
    assert selects(operator_peer["podSelector"], operator_pod)
    assert prometheus_peer == {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}
    moved = render({**ON, "operator": {"settings": {"sidecar_ops_port": 9191}}})
    [rule] = policies(moved)["team-b"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9191}]


def test_egress_is_dns_and_the_listed_cidrs_never_everything(render: Render) -> None:
    [dns] = policies(render(ON))["team-a"]["spec"]["egress"]  # no CIDRs: DNS alone
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    values = {**ON, "networkPolicy": {"enabled": True,
                                      "model": {"cidrs": ["203.0.113.0/24"], "ports": [443]},
                                      "tools": {"cidrs": ["10.20.0.0/16"], "ports": [8080, 443]},
                                      "extraEgress": [{"to": [{"namespaceSelector": {
                                          "matchLabels": {"team": "models"}}}]}]}}
    egress = policies(render(values))["team-a"]["spec"]["egress"]
    assert len(egress) == 4
    model, tools = egress[1], egress[2]
    assert model == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                     "ports": [{"protocol": "TCP", "port": 443}]}
    assert tools["ports"] == [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 443}]
    assert egress[3]["to"][0]["namespaceSelector"]["matchLabels"] == {"team": "models"}
    for rule in egress:  # a rule without "to" would open every destination
        assert rule.get("to"), rule


def test_enabled_without_namespaces_is_refused(tmp_path: Path) -> None:
    message = failure({"networkPolicy": {"enabled": True}}, tmp_path)
    assert "networkPolicy.enabled needs networkPolicy.namespaces or watchNamespaces" in message


@pytest.mark.parametrize("proxy", [{}, {"httpsProxy": "http://proxy.corp:3128",
                                        "noProxy": ".svc,.cluster.local"}])
def test_sidecar_proxy_values_reach_the_operator_settings(
        render: Render, proxy: Doc, monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(operator_container(render({"sidecarProxy": proxy})))
    for name, value in env.items():
        if name.startswith("TETHER_OPERATOR_SIDECAR_") and "PROXY" in name:
            monkeypatch.setenv(name, value or "")
    settings = OperatorSettings(leader_election=False)
    assert settings.sidecar_https_proxy == proxy.get("httpsProxy", "")
    assert settings.sidecar_no_proxy == proxy.get("noProxy", "")
    assert settings.sidecar_http_proxy == ""


def test_proxy_settings_are_the_charts_to_set(tmp_path: Path) -> None:
    message = failure({"operator": {"settings": {"sidecar_https_proxy": "http://p:1"}}},
                      tmp_path)
    assert "use sidecarProxy.httpsProxy instead" in message
