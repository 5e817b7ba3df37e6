"""The evaluator's alerts (issue #10), unit-tested by promtool on the series the evaluator
exports: agent drift and judge drift hold while the detector keeps alarming and resolve after,
the judge's daily cap, redaction failures, the evaluator down.

Needs helm and promtool (hack/helm.sh, hack/promtool.sh; the make targets pass them as $HELM and
$PROMTOOL).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from ._chart import FULL, Render, one, render
from .test_chart_monitoring import promtool

__all__ = ["render"]  # a fixture, used by name

JOB = 'job="tether-evaluator"'
POL = f'{JOB}, namespace="team-a", policy="support"'
WARN = {"severity": "warning", "team": "platform"}


def _alert(summary: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {**WARN, **labels}, "exp_annotations": {"summary": summary}}


DRIFT = "The pass rate of EvaluationPolicy team-a/support has dropped."
JUDGE = "The judge of EvaluationPolicy team-a/support no longer grades its anchors as before."
REDACTION = "Evaluation records from team-a could not be redacted."
# 1-minute steps over 11 hours. The counters are born by their first event, at 1, as the
# evaluator's are: the agent's detector alarms at 30m and 60m (a drop that lasts), then no more
# (fixed); the judge's alarms once (one anchor move) at 60m; one record fails redaction at 15m.
# Each alert fires at its first event and holds until the window (6 h, 1 h) has passed the last.
# Prometheus misses the agent's counter for 40 minutes (about 2h to 2h40m): 6 h later it is not
# a new series.
EVAL_ALERT_TESTS = {
    "interval": "1m",
    "input_series": [
        {"series": f'up{{{JOB}, namespace="tether-system", pod="ev-0"}}', "values": "1x19 0x20"},
        {"series": f'tether_eval_alarms_total{{{POL}, kind="agent"}}',
         "values": "_x29 1x30 2x60 _x40 2x500"},
        {"series": f'tether_eval_alarms_total{{{POL}, kind="judge"}}', "values": "_x59 1x540"},
        {"series": f'tether_eval_judge_cap_reached{{{JOB}, namespace="team-a", judge="j"}}',
         "values": "0x9 1x10 0x10"},
        {"series": f'tether_eval_redaction_failures_total{{{JOB}, namespace="team-a"}}',
         "values": "_x14 1x120"},
    ],
    "alert_rule_test": [
        {"eval_time": "10m", "alertname": "TetherEvaluatorDown", "exp_alerts": []},
        {"eval_time": "30m", "alertname": "TetherEvaluatorDown", "exp_alerts": [
            _alert("The tether evaluator has not been scraped for 5 minutes.",
                   job="tether-evaluator", namespace="tether-system")]},
        {"eval_time": "20m", "alertname": "TetherEvalDrift", "exp_alerts": []},
        {"eval_time": "30m", "alertname": "TetherEvalDrift", "exp_alerts": [
            _alert(DRIFT, namespace="team-a", policy="support")]},
        {"eval_time": "6h", "alertname": "TetherEvalDrift", "exp_alerts": [
            _alert(DRIFT, namespace="team-a", policy="support")]},
        {"eval_time": "7h30m", "alertname": "TetherEvalDrift", "exp_alerts": []},
        {"eval_time": "8h20m", "alertname": "TetherEvalDrift", "exp_alerts": []},  # the gap
        {"eval_time": "50m", "alertname": "TetherEvalJudgeDrift", "exp_alerts": []},
        {"eval_time": "60m", "alertname": "TetherEvalJudgeDrift", "exp_alerts": [
            _alert(JUDGE, namespace="team-a", policy="support")]},
        {"eval_time": "6h30m", "alertname": "TetherEvalJudgeDrift", "exp_alerts": [
            _alert(JUDGE, namespace="team-a", policy="support")]},
        {"eval_time": "7h30m", "alertname": "TetherEvalJudgeDrift", "exp_alerts": []},
        {"eval_time": "5m", "alertname": "TetherEvalJudgeCapReached", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "TetherEvalJudgeCapReached", "exp_alerts": [_alert(
            "Judge team-a/j reached its daily cost cap.", namespace="team-a", judge="j")]},
        {"eval_time": "25m", "alertname": "TetherEvalJudgeCapReached", "exp_alerts": []},
        {"eval_time": "10m", "alertname": "TetherEvalRedactionFailures", "exp_alerts": []},
        {"eval_time": "15m", "alertname": "TetherEvalRedactionFailures", "exp_alerts": [
            _alert(REDACTION, namespace="team-a")]},
        {"eval_time": "1h10m", "alertname": "TetherEvalRedactionFailures", "exp_alerts": [
            _alert(REDACTION, namespace="team-a")]},
        {"eval_time": "1h20m", "alertname": "TetherEvalRedactionFailures", "exp_alerts": []},
    ],
}


def test_no_evaluator_alerts_without_the_evaluator(render: Render) -> None:
    groups = one(render(FULL), "PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in groups] == ["tether-operator", "tether-tasks"]


def test_evaluator_alerts_fire_on_the_series_they_are_about(render: Render,
                                                           tmp_path: Path) -> None:
    rule = {"enabled": True, "alertLabels": {"team": "platform"}}
    values = {**FULL, "evaluator": {"enabled": True},
              "metrics": {**FULL["metrics"], "prometheusRule": rule}}
    spec = one(render(values), "PrometheusRule")["spec"]
    [group] = [g for g in spec["groups"] if g["name"] == "tether-evaluator"]
    for rule in group["rules"]:  # descriptions are prose; summaries are checked
        rule["annotations"].pop("description")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [group]}))
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                     "tests": [EVAL_ALERT_TESTS]}))
    out = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True,
                         text=True, timeout=60, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
