"""The Helm chart, rendered without a cluster: lint, Pod Security, probes, RBAC, settings,
monitoring objects, and the chart's copies of generated files against their sources.

Needs the helm binary (on PATH, or the one hack/k8s-binaries.sh builds); alert rules are also
checked and unit-tested with promtool when it is found (PATH, $PROMTOOL or
~/.cache/tether/tools/promtool).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_operator.metrics import OperatorMetrics
from tether_operator.settings import OperatorSettings
from tether_sidecar.metrics import SidecarMetrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tether"
CACHE = Path(os.environ.get("TETHER_CACHE", Path.home() / ".cache" / "tether"))
Doc = dict[str, Any]
Render = Callable[..., list[Doc]]


def _k8s_version() -> str:
    found = re.search(r"^K8S_VERSION=(\S+)", (REPO / "hack" / "versions.env").read_text(), re.M)
    return found.group(1) if found else "unknown"


def _tool(name: str, *candidates: Path) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


HELM = _tool("helm", CACHE / f"k8s-{_k8s_version()}" / "bin" / "helm")
PROMTOOL = _tool("promtool", *(Path(p) for p in [os.environ.get("PROMTOOL", "")] if p),
                 CACHE / "tools" / "promtool")

pytestmark = pytest.mark.skipif(
    HELM is None, reason="no helm binary on PATH or in the k8s cache (make k8s-binaries)")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    out = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{out.stderr}")
    return out


@pytest.fixture
def render(tmp_path: Path) -> Render:
    """``render(values)``: the chart's objects as helm template renders them in tether-system."""
    def run(values: Doc | None = None, *, release: str = "tether") -> list[Doc]:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values or {}))
        out = helm("template", release, str(CHART), "-n", "tether-system", "-f", str(path))
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    return run


def failure(values: Doc, tmp_path: Path) -> str:
    """helm template's error for values that must be refused."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("template", "tether", str(CHART), "-f", str(path), check=False)
    assert out.returncode != 0, f"values {values} were accepted"
    return out.stderr


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[d['kind'] for d in docs]}"
    return found[0]


def operator_container(docs: list[Doc]) -> Doc:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "operator"
    return dict(container)


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


FULL: Doc = {"watchNamespaces": ["a", "b"],
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                    "podMonitor": {"enabled": True}},
        "dashboards": {"enabled": True}}


# --- lint and generated copies ---------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "everything-on"])
def test_lint_strict(values: Doc, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("lint", "--strict", str(CHART), "-f", str(path))
    assert "0 chart(s) failed" in out.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    """charts/tether/crds/ holds copies (a packaged chart cannot link outside itself), written
    by `python -m tether_operator.crdgen` together with crds/."""
    sources = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.tether.dev.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sources, "no generated CRDs in crds/"
    assert sorted(copies) == sorted(sources)
    stale = [name for name in sources if copies[name] != sources[name]]
    assert not stale, (f"charts/tether/crds/ differs from crds/ for {stale}: run "
                       "`python -m tether_operator.crdgen`")


def test_values_schema_is_generated_from_values_yaml() -> None:
    """values.schema.json is written by hack/chart_schema.py; stale, this fails."""
    out = subprocess.run([sys.executable, str(REPO / "hack" / "chart_schema.py"), "--check"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr


def test_setting_names_in_the_chart_are_the_operators() -> None:
    """_helpers.tpl lists OperatorSettings' fields to refuse typos at render time."""
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    block = re.search(r'define "tether.settingNames" -}}\n(.*?)\{\{- end', text, re.S)
    assert block is not None
    listed = yaml.safe_load(block.group(1))
    assert sorted(listed) == sorted(OperatorSettings.model_fields)
    assert set(listed.values()) <= {"chart", "free"}


# --- the Deployment --------------------------------------------------------------------------

def pss_restricted_violations(pod: Doc) -> list[str]:
    """What the Pod Security Standards "restricted" profile (with "baseline") checks for a pod
    spec: https://kubernetes.io/docs/concepts/security/pod-security-standards/"""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad.append(key)
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                         "persistentVolumeClaim", "projected", "secret"}:
            bad.append(f"volume {vol['name']}: {kinds}")
    if (psc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        bad.append("pod seccompProfile")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation not false")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities not dropped")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities added")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            bad.append(f"{name}: hostPort")
        if "seccompProfile" in sc and sc["seccompProfile"].get("type") not in (
                "RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile")
    return bad


def test_operator_pod_meets_pod_security_restricted(render: Render) -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pss_restricted_violations(pod) == []
    container = operator_container(docs)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    # A read-only root needs somewhere to write temporary files.
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


def test_pod_security_check_catches_a_weakened_pod(render: Render) -> None:
    """The check above can fail: the chart's knobs that weaken it are caught (values merge
    into the defaults, so only what is overridden changes)."""
    docs = render({"securityContext": {"allowPrivilegeEscalation": True},
                   "podSecurityContext": {"runAsNonRoot": False}})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert set(pss_restricted_violations(pod)) == {
        "operator: allowPrivilegeEscalation not false", "operator: runAsNonRoot not true"}


def test_deployment_defaults(render: Render) -> None:
    docs = render()
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert deploy["spec"]["replicas"] == 2
    assert container["image"] == "docker.io/tether/operator:latest"  # appVersion
    assert "command" not in container  # the image's entrypoint: tether-operator
    assert not any(a.startswith("--namespace") for a in container["args"])
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"memory": "256Mi"}}
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
                for e in container["env"] if "valueFrom" in e}
    assert downward == {"POD_NAMESPACE": "metadata.namespace"}
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("port", [8000, 9123])
def test_probes_and_service_use_the_ops_port(render: Render, port: int) -> None:
    docs = render({"opsPort": port})
    container = operator_container(docs)
    [ops] = container["ports"]
    assert ops["containerPort"] == port and env_of(container)["TETHER_OPERATOR_OPS_PORT"] == str(
        port)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": ops["name"]}, probe
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "ops", "port": port, "targetPort": ops["name"],
                                     "protocol": "TCP"}]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_rendered_environment_loads_as_operator_settings(render: Render,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"operator": {"settings": {"image_pull_policy": "Never", "workers": 4,
                                             "statusPollSeconds": 1.5}},
                   "sidecarImage": {"tag": "v9"}})
    env = env_of(operator_container(docs))
    for name, value in env.items():
        if name.startswith("TETHER_OPERATOR_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAMESPACE", "tether-system")
    settings = OperatorSettings()
    assert settings.image_pull_policy == "Never" and settings.workers == 4
    assert settings.status_poll_seconds == 1.5 and settings.ops_port == 8000
    assert settings.sidecar_image == "docker.io/tether/sidecar:v9"
    assert settings.leader_election is True
    assert settings.lease_name == "tether-operator" and settings.lease_namespace == "tether-system"


@pytest.mark.parametrize(("values", "message"), [
    ({"operator": {"settings": {"worker": 4}}}, "no such operator setting"),
    ({"operator": {"settings": {"ops_port": 9000}}}, "use opsPort instead"),
    ({"operator": {"settings": {"lease_namespace": "x"}}}, "is set by the chart"),
    ({"replicas": 2, "leaderElection": {"enabled": False}}, "needs leaderElection.enabled"),
    ({"replicas": 2, "podDisruptionBudget": {"minAvailable": 2}}, "minAvailable must be below"),
    ({"watchNamespaces": ["team-*"]}, "is not a namespace name"),
    ({"metrics": {"prometheusRule": {"enabled": True}}}, "needs metrics.serviceMonitor"),
    # values.schema.json: typos and wrong types stop the install, naming the value
    ({"image": {"pulPolicy": "Never"}}, "additional properties 'pulPolicy' not allowed"),
    ({"replicas": "two"}, "at '/replicas': got string, want integer"),
    ({"image": {"pullPolicy": "Sometimes"}}, "value must be one of"),
    ({"replica": 3}, "additional properties 'replica' not allowed"),
])
def test_bad_values_are_refused(values: Doc, message: str, tmp_path: Path) -> None:
    assert message in failure(values, tmp_path)


def test_single_replica_without_leader_election(render: Render) -> None:
    docs = render({"replicas": 1, "leaderElection": {"enabled": False}})
    assert env_of(operator_container(docs))["TETHER_OPERATOR_LEADER_ELECTION"] == "false"
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert not [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith(
        "-leader")]


# --- RBAC ------------------------------------------------------------------------------------

def rules_for_sa(docs: list[Doc], sa: str, sa_ns: str) -> dict[str | None, list[Doc]]:
    """Rules bound to the service account: {namespace or None (cluster-wide): rules}."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    bound: dict[str | None, list[Doc]] = {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": sa, "namespace": sa_ns} not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace")
        ref = b["roleRef"]
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        bound.setdefault(ns, []).extend(role["rules"])
    return bound


def allowed(rules: list[Doc], group: str, resource: str, verb: str, name: str = "") -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


# What the operator calls (operator/tether_operator/kube.py and leader.py, and kopf's watches
# and events); the e2e test runs it with this RBAC and checks its log for refusals.
WORKLOAD_CALLS = [
    ("tether.dev", "agenttasks", v) for v in ("get", "list", "watch", "patch")] + [
    ("tether.dev", "agenttasks/status", "patch"),
    ("tether.dev", "agentbudgets", "get"), ("tether.dev", "agentbudgets", "list"),
    ("tether.dev", "agentbudgets", "watch"), ("tether.dev", "agentbudgets/status", "update"),
    ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "create"), ("", "pods", "delete"),
    ("", "configmaps", "create"), ("", "serviceaccounts", "create"),
    ("", "persistentvolumeclaims", "create"), ("", "events", "create")]


@pytest.mark.parametrize("values", [{}, FULL], ids=["clusterwide", "namespaces"])
def test_rbac_grants_what_the_operator_does_and_no_wildcards(render: Render,
                                                             values: Doc) -> None:
    docs = render(values)
    for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"] and "pods/eviction" not in rule["resources"]
    bound = rules_for_sa(docs, "tether-operator", "tether-system")
    scopes = values.get("watchNamespaces") or [None]
    for scope in scopes:
        for call in WORKLOAD_CALLS:
            assert allowed(bound.get(scope, []), *call), (scope, call)
        # Status only: the operator never writes a budget's spec, nor any other object's.
        for verb in ("update", "patch", "delete"):
            assert not allowed(bound.get(scope, []), "tether.dev", "agentbudgets", verb)
            assert not allowed(bound.get(scope, []), "", "configmaps", verb)
    if values.get("watchNamespaces"):  # nothing but kopf's discovery cluster-wide
        cluster = bound[None]
        assert {r for rule in cluster for r in rule["resources"]} == {
            "customresourcedefinitions", "namespaces"}
        assert {v for rule in cluster for v in rule["verbs"]} == {"list", "watch"}
        assert set(bound) == {None, "a", "b", "tether-system"}
    assert allowed(bound[None], "apiextensions.k8s.io", "customresourcedefinitions", "watch")


def test_leader_election_may_touch_only_its_lease(render: Render) -> None:
    docs = render()
    env = env_of(operator_container(docs))
    lease = env["TETHER_OPERATOR_LEASE_NAME"]
    bound = rules_for_sa(docs, "tether-operator", "tether-system")
    here = bound["tether-system"]
    for verb in ("get", "create", "update"):
        assert allowed(here, "coordination.k8s.io", "leases", verb, lease), verb
    assert not allowed(here, "coordination.k8s.io", "leases", "get", "someone-elses")
    assert not any(allowed(rules, "coordination.k8s.io", "leases", v, lease)
                   for scope, rules in bound.items() if scope != "tether-system"
                   for v in ("get", "update", "create"))


def test_user_roles_aggregate_and_only_admin_writes_budgets(render: Render) -> None:
    docs = render()
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    edit, admin = roles["tether-edit"], roles["tether-admin"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert allowed(edit["rules"], "tether.dev", "agenttasks", "create")
    assert not allowed(edit["rules"], "tether.dev", "agentbudgets", "update")
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in admin["metadata"]["labels"]
    assert allowed(admin["rules"], "tether.dev", "agentbudgets", "update")
    docs = render({"rbac": {"aggregateToDefaultRoles": False}})
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == [
        "tether-operator-tether-system"]


def test_watch_namespaces_become_arguments_and_roles(render: Render) -> None:
    docs = render(FULL)
    args = operator_container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a",
                                                                "--namespace=b"]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs
             if d["kind"] == "Role"}
    assert roles == {("a", "tether-operator"), ("b", "tether-operator"),
                     ("tether-system", "tether-operator-leader")}


# --- monitoring ------------------------------------------------------------------------------

def exported_metric_names() -> set[str]:
    """Every series name the operator and the sidecar export (counters with _total, histograms
    with _bucket, ...)."""
    names: set[str] = set()
    sidecar = SidecarMetrics("ns", "task")
    for metric in sidecar.registry.collect():
        names.add(metric.name)
        names.update(f"{metric.name}{s}" for s in ("_total", "_bucket", "_sum", "_count"))
    for metric in OperatorMetrics().registry.collect():
        names.add(metric.name)
        names.update(f"{metric.name}{s}" for s in ("_total",))
    return names


def metric_names_in(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(tether_[a-z_]+)\b", expr)}


def test_monitoring_objects_are_off_by_default(render: Render) -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    kinds = {d["kind"] for d in render(FULL)}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} <= kinds


def test_service_monitor_keeps_the_tasks_namespace_label(render: Render) -> None:
    docs = render(FULL)
    sm = one(docs, "ServiceMonitor")
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == "ops" and endpoint["honorLabels"] is True
    svc = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    pm = one(docs, "PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "ops"  # the sidecar's port name


def test_alerts_and_dashboard_use_metrics_that_exist(render: Render) -> None:
    docs = render(FULL)
    exported = exported_metric_names()
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    used = set().union(*(metric_names_in(r["expr"]) for r in rules))
    assert used and used <= exported, used - exported
    dashboard = json.loads(one(docs, "ConfigMap")["data"]["tether.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert len(used) > 5 and used <= exported, used - exported
    assert one(docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.fixture
def rules_file(render: Render, tmp_path: Path) -> Iterator[Path]:
    if PROMTOOL is None:
        pytest.skip("promtool not found (PATH, $PROMTOOL, ~/.cache/tether/tools/promtool)")
    docs = render(FULL)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(one(docs, "PrometheusRule")["spec"]))
    yield path


def test_alert_rules_pass_promtool_check(rules_file: Path) -> None:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


JOB = 'job="tether-operator"'
SELF = f'{JOB}, namespace="tether-system"'
# Series over 20 minutes and the alerts they must (and must not) raise.
ALERT_TESTS = {
    "interval": "1m",
    "input_series": [
        {"series": f'up{{{SELF}, pod="op-0"}}', "values": "1x4 0x15"},
        {"series": f'tether_operator_leader{{{SELF}, pod="op-0"}}', "values": "1x4 0x15"},
        {"series": f'tether_operator_queue_depth{{{SELF}, pod="op-0"}}', "values": "500x19"},
        {"series": f'tether_budget_spent_usd{{{JOB}, namespace="team-a", budget="b"}}',
         "values": "95x19"},
        {"series": f'tether_budget_limit_usd{{{JOB}, namespace="team-a", budget="b"}}',
         "values": "100x19"},
        {"series": f'tether_budget_spent_usd{{{JOB}, namespace="team-b", budget="c"}}',
         "values": "10x19"},
        {"series": f'tether_budget_limit_usd{{{JOB}, namespace="team-b", budget="c"}}',
         "values": "100x19"},
        {"series": f'tether_tasks{{{JOB}, namespace="team-a", phase="Failed", pod="op-0"}}',
         "values": "0x9 1x10"},
        {"series": f'tether_tasks{{{JOB}, namespace="team-b", phase="Failed", pod="op-0"}}',
         "values": "2x19"},
    ],
    "alert_rule_test": [
        {"eval_time": "3m", "alertname": "TetherOperatorDown", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "TetherOperatorDown", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "team": "platform"}, "exp_annotations": {
                "summary": "No tether operator replica has been scraped for 5 minutes."}}]},
        {"eval_time": "15m", "alertname": "TetherOperatorNoLeader", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "team": "platform"}, "exp_annotations": {
                "summary": "tether operator replicas run but none leads."}}]},
        {"eval_time": "15m", "alertname": "TetherOperatorTwoLeaders", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "TetherOperatorBacklog", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "team": "platform"}, "exp_annotations": {
                "summary": "The operator's work queue has held 500 AgentTasks for 10 minutes."}}]},
        {"eval_time": "10m", "alertname": "TetherBudgetNearlySpent", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "team": "platform", "namespace": "team-a",
                            "budget": "b"},
             "exp_annotations": {"summary": "AgentBudget team-a/b has spent 95% of its limit."}}]},
        {"eval_time": "12m", "alertname": "TetherTasksFailing", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "team": "platform", "namespace": "team-a"},
             "exp_annotations": {
                 "summary": "AgentTasks in team-a have failed in the last 15 minutes."}}]},
        {"eval_time": "5m", "alertname": "TetherTasksFailing", "exp_alerts": []},
    ],
}


def test_alerts_fire_on_the_series_they_are_about(render: Render, tmp_path: Path) -> None:
    if PROMTOOL is None:
        pytest.skip("promtool not found (PATH, $PROMTOOL, ~/.cache/tether/tools/promtool)")
    values = {**FULL, "metrics": {**FULL["metrics"], "prometheusRule": {
        "enabled": True, "alertLabels": {"team": "platform"}}}}
    spec = one(render(values), "PrometheusRule")["spec"]
    for rule in spec["groups"][0]["rules"]:  # descriptions are prose; summaries are checked
        rule["annotations"].pop("description")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                     "tests": [ALERT_TESTS]}))
    out = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True,
                         text=True, timeout=60, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
