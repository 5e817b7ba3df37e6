"""The chart's tether-evaluator alerts on the real cluster (issue #11: every alert fires and
resolves, and reaches an Alertmanager webhook receiver).

The chart's evaluator templates (its Deployment, Service, PVC, RBAC and ServiceMonitor) and its
PrometheusRule, rendered by helm with seconds-scale ``metrics.prometheusRule.durations``, are
created in the test's namespace. A Prometheus on this machine scrapes the evaluator's pod through
the ServiceMonitor's discovery and evaluates the PrometheusRule's ``tether-evaluator`` group, both
read back from the API server (tests/e2e/_monitoring.py); its Alertmanager posts to a webhook
receiver in the test. Records are POSTed to the evaluator as test_eval_cluster.py does for its
bulk (each for an AgentTask whose status the test sets to Succeeded; no operator runs here), and
the scripted judges run on this machine:

- TetherEvalDrift: the agent's answers drop (TRUTH:FAIL) under a steady judge, until the
  detector's first alarm.
- TetherEvalJudgeDrift: a second judge grades the policy's anchors differently (it fails six
  good answers in ten): one anchor move, one judge alarm.
- TetherEvalRedactionFailures: one record whose sidecar could not redact it (``redaction.ok``
  false, no text: what a sidecar sends when its redactor fails closed). Once the alert fires, a
  record too large for the evaluator's own redactor (over its 512 Ki character cap: it fails
  closed, stores the record without text and counts it).
- TetherEvalJudgeCapReached: a judge with a 0.05 USD day whose first sample costs 0.20 USD.
- TetherEvaluatorDown: the Deployment scaled to 0, then back with the capped judge's
  ``perDayUSD`` raised. TetherEvalJudgeCapReached resolves when the evaluator's series go
  stale (scaled to 0), and stays resolved once it is back: the evaluator keeps a judge paused
  until the next UTC day, so only a new process reads the raised cap and judges the waiting
  records.

The alarm and redaction counters are created by their first increment, at 1, and ``increase()``
alone sees no increase in a series that starts inside its window: each of the three alerts must
fire on ONE event (the counter's highest value in Prometheus is 1 when it fires), which rules
written with ``increase()`` alone never do. The three resolve, the evaluator still up, once their
window (20 s) has passed their last event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from tether_examples.scripted_judge import JudgeScript

from .._obs import alertmanager, wait_for
from . import _monitoring, _wait
from ._evalmon import (
    Judges,
    apply,
    capped_judge,
    judges,
    module_namespace,
    post_record,
    prom_alerts,
    prom_query,
    template,
)
from ._settings import settings
from ._tasks import doubles
from .test_eval_anchors import ANCHORS
from .test_eval_cluster import NAME, _apply, _bulk, _condition, _judge, _status, _wait_judged
from .test_operator import crds

# Prometheus runs on this machine and scrapes pod IPs, as the local cluster allows (kind's do not).
pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.pod_network]
__all__ = ["crds", "doubles", "judges"]  # fixtures, used by name

# Seconds-scale rules: `for` of the down alert, the windows of the drift and redaction alerts.
DURATIONS = {"evaluatorDown": "5s", "driftWindow": "20s", "redactionWindow": "20s"}
ALERT_TIMEOUT = 90.0


def values(ns: str, node: str) -> dict[str, Any]:
    image = settings().image("evaluator")
    return {"fullnameOverride": "tether", "watchNamespaces": [ns],
            "image": {"pullPolicy": settings().image_pull_policy},
            "nodeSelector": {"kubernetes.io/hostname": node},
            "evaluator": {"enabled": True, "image": {"repository": image.rsplit(":", 1)[0],
                                                     "tag": image.rsplit(":", 1)[1]},
                          "persistence": {"size": "64Mi"},
                          "settings": {"status_seconds": 1, "idle_seconds": 0.5}},
            "metrics": {"serviceMonitor": {"enabled": True, "interval": "1s",
                                           "scrapeTimeout": "1s"},
                        "prometheusRule": {"enabled": True, "redactionFailures": 1,
                                           "durations": DURATIONS}}}


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """One namespace for the module: the scenarios share one evaluator and one Prometheus."""
    yield from module_namespace(core, "e2e-evalalerts")


@dataclass
class Stack:
    api: client.ApiClient
    core: client.CoreV1Api
    ns: str
    prom: str
    receiver: _monitoring.Receiver
    t0: float = field(default_factory=time.monotonic)
    times: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def pod(self) -> str:
        pods = self.core.list_namespaced_pod(
            self.ns, label_selector="app.kubernetes.io/component=evaluator").items
        running = [p.metadata.name for p in pods if p.status.phase == "Running"
                   and not p.metadata.deletion_timestamp and p.status.pod_ip]
        assert running, f"no running evaluator pod in {self.ns}"
        return str(running[0])

    def mark(self, alert: str, what: str) -> None:
        self.times.setdefault(alert, {})[what] = round(time.monotonic() - self.t0, 1)

    def series(self, expr: str) -> None:
        """Wait until Prometheus has scraped ``expr`` (a counter's first sample)."""
        wait_for(lambda: prom_query(self.prom, expr) or None, ALERT_TIMEOUT,
                 f"Prometheus to have scraped {expr}")

    def highest(self, counter: str) -> float:
        """The highest value Prometheus has scraped of ``counter`` since it started."""
        seconds = int(time.monotonic() - self.t0) + 1
        [sample] = prom_query(self.prom, f"max(max_over_time({counter}[{seconds}s]))")
        return float(sample["value"][1])

    def fires(self, alert: str, **labels: str) -> None:
        """The alert (with ``labels``) fires in Prometheus, then its firing notification
        reaches the receiver."""
        want = dict(labels)

        def firing() -> bool | None:
            return any(a["state"] == "firing" and want.items() <= a["labels"].items()
                       for a in prom_alerts(self.prom, alert)) or None
        wait_for(firing, ALERT_TIMEOUT, f"{alert} {want} firing in Prometheus")
        self.mark(alert, "firing in Prometheus")
        self.labels[alert] = want
        self.notified(alert, "firing", want)

    def resolves(self, alert: str) -> None:
        wait_for(lambda: None if prom_alerts(self.prom, alert) else True, ALERT_TIMEOUT,
                 f"{alert} gone from Prometheus's alerts")
        self.mark(alert, "inactive in Prometheus")
        self.notified(alert, "resolved", self.labels[alert])

    def notified(self, alert: str, status: str, labels: dict[str, str]) -> None:
        """A ``status`` notification of ``alert`` that arrived after its trigger."""
        since = self.t0 + self.times[alert]["trigger"]
        wait = self.receiver.wait_firing if status == "firing" else self.receiver.wait_resolved
        arrived, _ = wait(alert, ALERT_TIMEOUT, since, **labels)
        self.times[alert][f"{status} at the receiver"] = round(arrived - self.t0, 1)


def _ready(api: client.ApiClient, ns: str) -> Callable[[], bool | None]:
    apps = client.AppsV1Api(api)
    return lambda: bool(apps.read_namespaced_deployment(NAME, ns).status.ready_replicas) or None


@pytest.fixture(scope="module")
def stack(api: client.ApiClient, core: client.CoreV1Api, namespace: str, real_node: str,
          crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The evaluator, its ServiceMonitor and the PrometheusRule in the namespace; Prometheus
    scraping it through that discovery, Alertmanager, the receiver."""
    tmp = tmp_path_factory.mktemp("evalalerts")
    _monitoring.install_crds(api)
    apply(api, namespace, template(namespace, values(namespace, real_node), tmp,
                                   "templates/evaluator.yaml", "templates/rbac-evaluator.yaml",
                                   "templates/prometheusrule.yaml"))
    _wait.until(_ready(api, namespace), 180, f"the evaluator Deployment in {namespace}", 1.0)
    scrape, groups = _monitoring.chart_monitoring(_monitoring.monitoring_objects(api, namespace))
    rules = tmp / "rules.yaml"
    _monitoring.write_rules(rules, [g for g in groups if g["name"] == "tether-evaluator"])
    with _monitoring.Receiver() as receiver, alertmanager(tmp, receiver.url) as am, \
            _monitoring.cluster_prometheus(tmp, scrape, [rules], am) as prom:
        found = Stack(api, core, namespace, prom, receiver)
        found.series(f'up{{job="{NAME}", namespace="{namespace}"}} == 1')
        yield found
    for pod in core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=evaluator").items:
        log = str(core.read_namespaced_pod_log(pod.metadata.name, namespace))
        print("\n".join(ln for ln in log.splitlines() if "aiohttp.access" not in ln)[-20000:])


def _configure(s: Stack, judges: Judges) -> None:
    custom = client.CustomObjectsApi(s.api)
    s.core.create_namespaced_config_map(s.ns, {"metadata": {"name": "golden"}, "data": {
        "anchors.jsonl": "\n".join(json.dumps(a) for a in ANCHORS) + "\n"}})
    _apply(custom, s.ns, "rubrics", "Rubric", "r", {
        "instructions": "Pass an answer that does what the task asked.",
        "verdict": {"kind": "pass_fail"}})
    _apply(custom, s.ns, "judges", "Judge", "j", _judge(judges.urls["steady"], "50"))
    _apply(custom, s.ns, "judges", "Judge", "m", _judge(judges.urls["moving"], "50"))
    _apply(custom, s.ns, "judges", "Judge", "capped", capped_judge(judges.urls["costly"]))
    detector = {"baselinePassRate": "0.9", "shift": "0.4", "falseAlarmEvery": 100}
    for name, judge, extra in (
            ("main", "j", {"detector": detector}),
            ("anchored", "m", {"detector": detector, "anchors": {
                "configMapRef": {"name": "golden", "key": "anchors.jsonl"}, "every": "10s"}}),
            ("cap", "capped", {})):
        _apply(custom, s.ns, "evaluationpolicies", "EvaluationPolicy", name, {
            "selector": {"matchLabels": {name: "yes"}}, "rubricRef": {"name": "r"},
            "judgeRef": {"name": judge}, "sampling": {"rate": "1"}, **extra})
    for name in ("main", "anchored", "cap"):  # a record sent before is never queued for it
        _wait.until(lambda n=name: _condition(_status(s.api, s.ns, n), "Ready"), 60,
                    f"the evaluator to read policy {name}", 0.5)


def _feed(s: Stack, policy: str, truth: str, judged: int, done: Callable[[], bool],
          what: str) -> int:
    """Records for ``policy``, one at a time (48 at most), until ``done``; returns the policy's
    judged count."""
    for k in range(48):
        _bulk(s.api, s.core, s.ns, s.pod(), f"{policy}-{judged}-{k}", 1, policy, policy, truth)
        judged += 1
        _wait_judged(s.api, s.ns, policy, judged)
        if done():
            return judged
    pytest.fail(f"{what}: not after {judged} judged samples of policy {policy}")


def _drift(s: Stack) -> None:
    """The agent's answers fail under the steady judge, one record at a time (a failed answer
    moves the detector a third of the way to its threshold) until it alarms once (kind agent):
    that one alarm fires the alert."""
    alarms = f'tether_eval_alarms_total{{policy="main", kind="agent", namespace="{s.ns}"}}'
    s.mark("TetherEvalDrift", "trigger")
    _feed(s, "main", "TRUTH:FAIL", 0, lambda: bool(_status(s.api, s.ns, "main").get("alarms")),
          "the first agent alarm")
    s.fires("TetherEvalDrift", namespace=s.ns, policy="main")
    assert s.highest(alarms) == 1, f"TetherEvalDrift fired after more than one alarm: {alarms}"
    assert _condition(_status(s.api, s.ns, "main"), "Degraded") == "True"


def _judge_drift(s: Stack, judges: Judges) -> None:
    """The anchored policy's judge moves: its next anchor run alarms once (kind judge), and
    that one alarm fires the alert (no records: no detector alarm adds to it)."""
    def drift(want: str) -> dict[str, Any] | None:
        status = _status(s.api, s.ns, "anchored")
        return status if _condition(status, "JudgeDrift") == want else None
    _wait.until(lambda: drift("False"), 120, "the anchored policy's first anchor run", 1.0)
    judges.scripts["moving"].reset(JudgeScript(sensitivity=0.4, seed=5))
    s.mark("TetherEvalJudgeDrift", "trigger")
    _wait.until(lambda: drift("True"), 120, "JudgeDrift True on the anchored policy", 1.0)
    s.fires("TetherEvalJudgeDrift", namespace=s.ns, policy="anchored")
    alarms = f'tether_eval_alarms_total{{policy="anchored", kind="judge", namespace="{s.ns}"}}'
    assert s.highest(alarms) == 1, "TetherEvalJudgeDrift fired after more than one alarm"
    assert _condition(_status(s.api, s.ns, "anchored"), "Degraded") == "False"


def _redaction(s: Stack) -> None:
    s.mark("TetherEvalRedactionFailures", "trigger")
    # What a sidecar sends when its own redactor fails closed: no text, ok false.
    post_record(s.core, s.ns, s.pod(), "unredacted", answer=None,
                redaction={"ok": False, "findings": {}, "engine": ""})
    s.fires("TetherEvalRedactionFailures", namespace=s.ns)
    failures = f'tether_eval_redaction_failures_total{{namespace="{s.ns}"}}'
    assert s.highest(failures) == 1, "TetherEvalRedactionFailures fired after more than one"
    # Redacted by the sidecar, says the record, but over the evaluator's own redactor's cap:
    # it fails closed (too_large), stored without text, counted.
    post_record(s.core, s.ns, s.pod(), "oversized", answer="word " * 120_000,
                redaction={"ok": True, "findings": {}, "engine": "e2e"})
    s.series(f"{failures} == 2")
    s.mark("TetherEvalRedactionFailures", "second failure scraped")


def _cap(s: Stack) -> None:
    s.mark("TetherEvalJudgeCapReached", "trigger")
    _bulk(s.api, s.core, s.ns, s.pod(), "capped", 3, "cap", "cap")
    _wait.until(lambda: _condition(_status(s.api, s.ns, "cap"), "JudgeCapReached") == "True",
                120, "the capped judge's JudgeCapReached condition", 1.0)
    s.fires("TetherEvalJudgeCapReached", namespace=s.ns, judge="capped")


def _restart(s: Stack) -> None:
    """Scaled to 0 (TetherEvaluatorDown), then back with the capped judge's day raised."""
    apps = client.AppsV1Api(s.api)
    assert not prom_alerts(s.prom, "TetherEvaluatorDown")
    s.mark("TetherEvaluatorDown", "trigger")
    apps.patch_namespaced_deployment_scale(NAME, s.ns, {"spec": {"replicas": 0}})
    # absent() of a comparison carries no labels: the rule names its release's job and namespace.
    s.fires("TetherEvaluatorDown", job=NAME, namespace=s.ns)
    client.CustomObjectsApi(s.api).patch_namespaced_custom_object(
        "tether.dev", "v1alpha1", s.ns, "judges", "capped",
        {"spec": {"costCaps": {"perCallUSD": "5", "perDayUSD": "50"}}})
    s.mark("TetherEvaluatorDown", "scaled back")
    apps.patch_namespaced_deployment_scale(NAME, s.ns, {"spec": {"replicas": 1}})
    _wait.until(_ready(s.api, s.ns), 180, f"the evaluator back in {s.ns}", 1.0)


ALERTS = ["TetherEvalDrift", "TetherEvalJudgeDrift", "TetherEvalRedactionFailures",
          "TetherEvalJudgeCapReached", "TetherEvaluatorDown"]


def test_every_evaluator_alert_fires_reaches_the_receiver_and_resolves(
        stack: Stack, judges: Judges) -> None:
    s = stack
    _configure(s, judges)
    _drift(s)
    _judge_drift(s, judges)
    _redaction(s)
    # No more alarms or failures: each resolves once its window has passed its last event,
    # the evaluator still up.
    for alert in ALERTS[:3]:
        s.resolves(alert)
    _cap(s)
    _restart(s)
    for alert in ALERTS[3:]:
        s.resolves(alert)
    # The capped policy's records, waiting since the cap, are judged under the raised one,
    # and the cap's alert stays resolved.
    assert _wait_judged(s.api, s.ns, "cap", 3)["judged"] == 3
    s.series(f'tether_eval_judge_cost_usd_total{{judge="capped", namespace="{s.ns}"}} > 0')
    assert not prom_alerts(s.prom, "TetherEvalJudgeCapReached")
    print("figures (seconds since Prometheus started):")
    for alert in ALERTS:
        print(f"  {alert}: {s.times[alert]}")
