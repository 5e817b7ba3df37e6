"""The evaluator's Deployment, Service, PVC and ServiceMonitor, rendered without a cluster: one
SQLite writer, the operator pointed at it, what it watches, probes on its routes, restricted.

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether_eval.service import Settings

from ._chart import Doc, Render, env_of, failure, one, operator_container, render

__all__ = ["render"]  # a fixture, used by name

ON: Doc = {"evaluator": {"enabled": True}}
NAME = "tether-evaluator"


def evaluator_container(docs: list[Doc]) -> Doc:
    pod = one(docs, "Deployment", NAME)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return dict(container)


def test_sqlite_evaluator_is_one_replica_recreated_on_its_volume(render: Render) -> None:
    docs = render(ON)
    deploy = one(docs, "Deployment", NAME)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}  # never two SQLite writers
    pod = deploy["spec"]["template"]["spec"]
    pvc = one(docs, "PersistentVolumeClaim", NAME)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": NAME}} in pod["volumes"]
    container = evaluator_container(docs)
    assert {"name": "data", "mountPath": "/var/lib/tether-eval"} in container["volumeMounts"]
    env = env_of(container)
    assert env["TETHER_EVAL_DATABASE"] == "sqlite:///var/lib/tether-eval/eval.db"
    assert env["TETHER_EVAL_INSTANCE"] == NAME  # a restart takes its leases back at once
    assert container["image"] == "docker.io/tether/evaluator:0.1.0"
    assert pod["serviceAccountName"] == NAME and pod["enableServiceLinks"] is False


def test_operator_is_pointed_at_the_charts_evaluator_unless_told_otherwise(
        render: Render) -> None:
    docs = render(ON)
    svc = one(docs, "Service", NAME)
    [port] = svc["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == "http"
    labels = one(docs, "Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    operator_svc = one(docs, "Service", "tether-operator")
    assert not operator_svc["spec"]["selector"].items() <= labels.items()
    url = env_of(operator_container(docs))["TETHER_OPERATOR_EVALUATOR_URL"]
    assert url == "http://tether-evaluator.tether-system.svc:8080"
    other = "http://eval.elsewhere:9000"
    docs = render({"evaluator": {"enabled": True, "url": other}})
    assert env_of(operator_container(docs))["TETHER_OPERATOR_EVALUATOR_URL"] == other


@pytest.mark.parametrize(("values", "namespace"), [
    ({}, "tether-system"), ({"watchNamespaces": ["a", "b"]}, "a"),
    ({"watchNamespaces": ["a", "b"], "evaluator": {"namespace": "b"}}, "b"),
])
def test_evaluator_watches_one_namespace(render: Render, values: Doc, namespace: str) -> None:
    merged = {**values, "evaluator": {"enabled": True, **values.get("evaluator", {})}}
    assert env_of(evaluator_container(render(merged)))["TETHER_EVAL_NAMESPACE"] == namespace


def test_env_is_what_the_evaluators_settings_accept(render: Render,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"evaluator": {"enabled": True, "settings": {"status_seconds": 10,
                                                          "concurrency": 8}}}
    env = env_of(evaluator_container(render(values)))
    for name, value in env.items():
        if name.startswith("TETHER_EVAL_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.namespace, settings.port, settings.status_seconds,
            settings.concurrency) == ("tether-system", 8080, 10.0, 8)
    assert str(settings.secrets_dir) == "/var/run/secrets/tether"


def test_probes_resources_and_restricted_security(render: Render) -> None:
    docs = render(ON)
    container = evaluator_container(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"] == "512Mi"
    operator = operator_container(docs)
    assert container["securityContext"] == operator["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pod = one(docs, "Deployment", NAME)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_judge_secrets_are_mounted_where_the_evaluator_reads_them(render: Render) -> None:
    docs = render({"evaluator": {"enabled": True, "judgeSecrets": ["judge-key"]}})
    container = evaluator_container(docs)
    assert {"name": "judge-judge-key", "mountPath": "/var/run/secrets/tether/judge-key",
            "readOnly": True} in container["volumeMounts"]
    pod = one(docs, "Deployment", NAME)["spec"]["template"]["spec"]
    assert {"name": "judge-judge-key", "secret": {"secretName": "judge-key"}} in pod["volumes"]


def test_postgres_evaluator_has_no_volume_and_may_have_replicas(render: Render) -> None:
    pg = {"name": "eval-db", "key": "url"}
    docs = render({"evaluator": {"enabled": True, "postgresURL": pg, "replicas": 2}})
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    container = evaluator_container(docs)
    [db] = [e for e in container["env"] if e["name"] == "TETHER_EVAL_DATABASE"]
    assert db["valueFrom"] == {"secretKeyRef": pg}
    [inst] = [e for e in container["env"] if e["name"] == "TETHER_EVAL_INSTANCE"]
    assert inst["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_service_monitor_scrapes_the_evaluator_keeping_the_namespace_label(
        render: Render) -> None:
    docs = render({**ON, "metrics": {"serviceMonitor": {"enabled": True}}})
    sm = one(docs, "ServiceMonitor", NAME)
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    svc = one(docs, "Service", NAME)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


@pytest.mark.parametrize(("values", "message"), [
    ({"evaluator": {"enabled": True, "replicas": 2}}, "needs evaluator.postgresURL"),
    ({"evaluator": {"enabled": True, "postgresURL": {"name": "x"}}}, "{name: ..., key: ...}"),
    ({"watchNamespaces": ["a"], "evaluator": {"enabled": True, "namespace": "b"}},
     "not in watchNamespaces"),
    ({"evaluator": {"enabled": True, "settings": {"database": "sqlite:///x"}}},
     "use evaluator.postgresURL"),
    ({"evaluator": {"enabled": True, "replicas": 0}}, "evaluator/replicas"),
])
def test_bad_evaluator_deployment_values_are_refused(values: Doc, message: str,
                                                     tmp_path: Path) -> None:
    assert message in failure(values, tmp_path)


def test_task_pods_may_reach_the_evaluator_under_the_network_policy(render: Render) -> None:
    values = {"watchNamespaces": ["a"], "networkPolicy": {"enabled": True}}
    before = one(render(values), "NetworkPolicy")["spec"]["egress"]
    egress = one(render({**values, **ON}), "NetworkPolicy")["spec"]["egress"]
    [rule] = [r for r in egress if r not in before]
    [peer] = rule["to"]
    labels = one(render({**values, **ON}), "Deployment", NAME)["spec"]["template"]["metadata"]
    assert peer["podSelector"]["matchLabels"].items() <= labels["labels"].items()
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "tether-system"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
