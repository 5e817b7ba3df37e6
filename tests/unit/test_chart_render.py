"""The Helm chart, rendered without a cluster: lint, the package a user installs, Pod Security,
probes, settings, and the chart's copies of generated files against their sources. RBAC and
monitoring objects: test_chart_rbac.py, test_chart_monitoring.py.

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tether_operator.settings import OperatorSettings

from ._chart import (
    CHART,
    FULL,
    REPO,
    Doc,
    Render,
    env_of,
    failure,
    helm,
    one,
    operator_container,
    render,
)

__all__ = ["render"]  # a fixture, used by name


# --- lint, package and generated copies ------------------------------------------------------

@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "everything-on"])
def test_lint_strict(values: Doc, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("lint", "--strict", str(CHART), "-f", str(path))
    assert "0 chart(s) failed" in out.stdout


def test_package_holds_what_an_install_needs(tmp_path: Path) -> None:
    """`helm package` makes the .tgz users install (tests/e2e/test_chart.py installs it): the
    CRDs, the values schema and the dashboard go in, and the package renders by itself."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (tgz,) = tmp_path.glob("tether-*.tgz")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert tgz.name == f"tether-{chart['version']}.tgz"
    with tarfile.open(tgz) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "unpacked", filter="data")
    packed = tmp_path / "unpacked" / "tether"
    crds = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert crds and {p.name: p.read_bytes() for p in (packed / "crds").glob("*")} == crds
    for needed in ("Chart.yaml", "values.yaml", "values.schema.json", "dashboards/tether.json",
                   "templates/deployment.yaml", "templates/dashboard.yaml"):
        assert f"tether/{needed}" in names, f"{needed} is missing from {tgz.name}"
    # Rendered from the package, the dashboard ConfigMap holds the whole file (.Files.Get
    # gives "" for a file left out, and the chart would install an empty dashboard).
    out = helm("template", "tether", str(tgz), "-n", "tether-system", "--set",
               "dashboards.enabled=true")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    dashboard = one(docs, "ConfigMap")["data"]["tether.json"]
    assert json.loads(dashboard) == json.loads((CHART / "dashboards" / "tether.json").read_text())


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
    assert container["image"] == "docker.io/tether/operator:0.1.0"  # appVersion
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
