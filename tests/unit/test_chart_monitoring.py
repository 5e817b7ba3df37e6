"""The chart's monitoring objects, rendered without a cluster: ServiceMonitor, PodMonitor, the
dashboard and the alert rules use metrics that exist; promtool checks the rules and unit-tests
the alerts on series they are about.

Needs helm and promtool (hack/helm.sh, hack/promtool.sh; the make targets pass them as $HELM and
$PROMTOOL).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_eval.metrics import EvalMetrics
from tether_operator.metrics import OperatorMetrics
from tether_sidecar.metrics import SidecarMetrics

from ..e2e._settings import TETHER_CACHE
from ..e2e._tools import find_tool
from ._chart import FULL, Render, one, render

__all__ = ["render"]  # a fixture, used by name


def promtool() -> str:
    return find_tool("promtool", "PROMTOOL", "hack/promtool.sh",
                     TETHER_CACHE / "tools" / "promtool")


def exported_metric_names() -> set[str]:
    """Every series name the operator, the sidecar and the evaluator export (counters with
    _total, histograms with _bucket, ...)."""
    names: set[str] = set()
    sidecar = SidecarMetrics("ns", "task")
    for metric in sidecar.registry.collect():
        names.add(metric.name)
        names.update(f"{metric.name}{s}" for s in ("_total", "_bucket", "_sum", "_count"))
    for metric in OperatorMetrics().registry.collect():
        names.add(metric.name)
        names.update(f"{metric.name}{s}" for s in ("_total",))
    for metric in EvalMetrics().registry.collect():
        names.add(metric.name)
        names.update(f"{metric.name}{s}" for s in ("_total", "_bucket", "_sum", "_count"))
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
    docs = render({**FULL, "evaluator": {"enabled": True}})
    exported = exported_metric_names()
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in groups] == ["tether-operator", "tether-tasks", "tether-evaluator"]
    rules = [r for g in groups for r in g["rules"]]
    used = set().union(*(metric_names_in(r["expr"]) for r in rules))
    assert used and used <= exported, used - exported
    dashboard = json.loads(one(docs, "ConfigMap")["data"]["tether.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert len(used) > 5 and used <= exported, used - exported
    assert {"tether_eval_pass_rate", "tether_eval_cusum", "tether_eval_cusum_threshold",
            "tether_eval_samples_total", "tether_eval_judge_cost_usd_total",
            "tether_eval_redaction_failures_total"} <= used  # the evaluation row
    # Every query picks the $namespace variable's namespaces: two releases in one Prometheus
    # (an operator's own series carry its release's namespace) do not mix on a panel.
    assert all('namespace=~"$namespace"' in e for e in exprs), exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert one(docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.fixture
def rules_file(render: Render, tmp_path: Path) -> Iterator[Path]:
    docs = render({**FULL, "evaluator": {"enabled": True}})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(one(docs, "PrometheusRule")["spec"]))
    yield path


def test_alert_rules_pass_promtool_check(rules_file: Path) -> None:
    out = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


JOB = 'job="tether-operator"'
SELF = f'{JOB}, namespace="tether-system"'
# The operator-wide alerts name their release: two releases in one Prometheus stay apart.
WHERE = {"job": "tether-operator", "namespace": "tether-system"}
TASK = 'job="tether-system/tether-sidecars", namespace="team-a", task="t1", pod="t1-0"'


def _failing(namespace: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "team": "platform", "namespace": namespace},
            "exp_annotations": {
                "summary": f"AgentTasks in {namespace} have failed in the last 15 minutes."}}


def _limit(limit: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "team": "platform", "namespace": "team-a",
                           "task": "t1"},
            "exp_annotations": {"summary": f"AgentTask team-a/t1 reached its {limit} cost limit."}}


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
         "values": "0x9 1x25"},
        {"series": f'tether_tasks{{{JOB}, namespace="team-b", phase="Failed", pod="op-0"}}',
         "values": "2x19"},
        # team-c's first failure: its Failed series has no sample before it, not a 0.
        {"series": f'tether_tasks{{{JOB}, namespace="team-c", phase="Running", pod="op-0"}}',
         "values": "1x9 stale"},
        {"series": f'tether_tasks{{{JOB}, namespace="team-c", phase="Failed", pod="op-0"}}',
         "values": "_x10 1x25"},
        # A sidecar (the PodMonitor's job): soft limit at 3m, hard at 6m, its pod gone at 10m
        # (stale 5m later: promtool writes no staleness marker).
        {"series": f'tether_budget_limit_hits_total{{{TASK}, limit="soft"}}',
         "values": "_x3 1x6 _x10"},
        {"series": f'tether_budget_limit_hits_total{{{TASK}, limit="hard"}}',
         "values": "_x6 1 2x2 _x10"},
    ],
    "alert_rule_test": [
        {"eval_time": "3m", "alertname": "TetherOperatorDown", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "TetherOperatorDown", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "team": "platform", **WHERE},
             "exp_annotations": {
                 "summary": "No tether operator replica has been scraped for 5 minutes."}}]},
        {"eval_time": "15m", "alertname": "TetherOperatorNoLeader", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "team": "platform", **WHERE},
             "exp_annotations": {"summary": "tether operator replicas run but none leads."}}]},
        {"eval_time": "15m", "alertname": "TetherOperatorTwoLeaders", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "TetherOperatorBacklog", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "team": "platform", **WHERE},
             "exp_annotations": {"summary": "The operator's work queue has held 500 AgentTasks "
                                                "for 10 minutes."}}]},
        {"eval_time": "10m", "alertname": "TetherBudgetNearlySpent", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "team": "platform", "namespace": "team-a",
                            "budget": "b"},
             "exp_annotations": {"summary": "AgentBudget team-a/b has spent 95% of its limit."}}]},
        {"eval_time": "12m", "alertname": "TetherTasksFailing", "exp_alerts": [
            _failing("team-a"), _failing("team-c")]},
        {"eval_time": "27m", "alertname": "TetherTasksFailing", "exp_alerts": []},  # 15 m on
        {"eval_time": "5m", "alertname": "TetherTasksFailing", "exp_alerts": []},
        {"eval_time": "2m", "alertname": "TetherTaskSoftLimitReached", "exp_alerts": []},
        {"eval_time": "3m", "alertname": "TetherTaskSoftLimitReached", "exp_alerts": [
            _limit("soft")]},
        {"eval_time": "5m", "alertname": "TetherTaskHardLimitReached", "exp_alerts": []},
        {"eval_time": "8m", "alertname": "TetherTaskHardLimitReached", "exp_alerts": [
            _limit("hard")]},
        {"eval_time": "17m", "alertname": "TetherTaskSoftLimitReached", "exp_alerts": []},
        {"eval_time": "17m", "alertname": "TetherTaskHardLimitReached", "exp_alerts": []},
    ],
}


def test_alerts_fire_on_the_series_they_are_about(render: Render, tmp_path: Path) -> None:
    values = {**FULL, "metrics": {**FULL["metrics"], "prometheusRule": {
        "enabled": True, "alertLabels": {"team": "platform"}}}}
    spec = one(render(values), "PrometheusRule")["spec"]
    for group in spec["groups"]:  # descriptions are prose; summaries are checked
        for rule in group["rules"]:
            rule["annotations"].pop("description")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                     "tests": [ALERT_TESTS]}))
    out = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True,
                         text=True, timeout=60, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


SHORT = {"operatorDown": "20s", "noLeader": "21s", "twoLeaders": "22s", "backlog": "1m30s",
         "budgetNearlySpent": "23s", "failedWindow": "40s", "subqueryStep": "2s",
         "softLimit": "1s", "hardLimit": "3s", "evaluatorDown": "24s", "driftWindow": "50s",
         "redactionWindow": "1m"}


def test_rule_durations_are_values(render: Render) -> None:
    """A test cluster renders the same expressions with seconds-scale durations and windows;
    the summaries say them."""
    values = {**FULL, "evaluator": {"enabled": True}, "metrics": {
        **FULL["metrics"], "prometheusRule": {"enabled": True, "durations": SHORT}}}
    groups = one(render(values), "PrometheusRule")["spec"]["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    fors = {name: r.get("for") for name, r in rules.items()}
    assert fors == {
        "TetherOperatorDown": "20s", "TetherOperatorNoLeader": "21s",
        "TetherOperatorTwoLeaders": "22s", "TetherOperatorBacklog": "1m30s",
        "TetherBudgetNearlySpent": "23s", "TetherTasksFailing": None,
        "TetherTaskSoftLimitReached": "1s", "TetherTaskHardLimitReached": "3s",
        "TetherEvaluatorDown": "24s", "TetherEvalDrift": None, "TetherEvalJudgeDrift": None,
        "TetherEvalJudgeCapReached": None, "TetherEvalRedactionFailures": None}
    assert '[40s:2s]' in rules["TetherTasksFailing"]["expr"]
    assert rules["TetherTasksFailing"]["annotations"]["summary"].endswith(
        "in the last 40 seconds.")
    assert all('[50s]' in rules[a]["expr"] for a in ("TetherEvalDrift", "TetherEvalJudgeDrift"))
    assert '[1m]' in rules["TetherEvalRedactionFailures"]["expr"]
    assert rules["TetherOperatorDown"]["annotations"]["summary"].endswith(
        "for 20 seconds.")
    assert rules["TetherOperatorBacklog"]["annotations"]["summary"].endswith("for 1m30s.")
    text = yaml.safe_dump(groups)
    assert not re.search(r"\b(5m|10m|15m|6h|1h)\b|minutes|hours", text), text


def test_task_limit_alerts_read_the_sidecars_not_the_operator(render: Render) -> None:
    groups = one(render(FULL), "PrometheusRule")["spec"]["groups"]
    [tasks] = [g for g in groups if g["name"] == "tether-tasks"]
    assert [r["expr"] for r in tasks["rules"]] == [
        f'max by (namespace, task) (tether_budget_limit_hits_total{{limit="{limit}"}}) > 0'
        for limit in ("soft", "hard")]
    assert [r["for"] for r in tasks["rules"]] == ["0s", "0s"]
