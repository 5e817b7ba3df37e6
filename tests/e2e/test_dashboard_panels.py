"""Every panel of the chart's Grafana dashboard shows data after a scenario run on the real
cluster (issue #11: "every dashboard panel's query returns data after a scenario run").

The chart is helm-installed as a user would (its operator in the cluster, the evaluator, the
ServiceMonitors and the sidecars' PodMonitor); a Prometheus on this machine scrapes all three
through that discovery (tests/e2e/_monitoring.py). The scenario is real AgentTasks on the real
node, each with its own scripted model on this machine:

- ``long``: the 44-step task of examples/scripts/long_task.yaml under a context budget
  (compactions), evicted once through the Eviction API (an eviction, then a resume);
- ``flaky``: a model that answers 503 once and a tool that fails twice (retries of both
  kinds), a soft limit below its spend (a limit hit);
- ``capped``: evaluated by a judge with a 0.05 USD day whose first sample costs 0.20 USD;
- ``big``: an answer too large for the sidecar's redactor (over 512 Ki characters): its record
  leaves without text and the evaluator counts a redaction failure.

All of them spend against one AgentBudget and are evaluated. Then each query of
charts/tether/dashboards/tether.json goes to Prometheus's ``/api/v1/query_range`` over the
scenario's span, as a Grafana time-series panel asks, with the dashboard's variables filled in
as Grafana would (``$namespace`` the test's namespace, ``$__rate_interval`` four scrape
intervals and one more). A query with no sample, or only NaN, fails the test naming its panel;
so does one that only shows 0 where the scenario made the events it counts.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from tether_examples import scripted_model
from tether_examples._serve import serve_in_thread

from .._obs import get_json
from . import _monitoring, _tools, _wait
from ._cluster import REPO_ROOT
from ._evalmon import Judges, capped_judge, judges, module_namespace, prom_query, prom_range
from ._settings import E2ESettings, settings
from ._tasks import GROUP, VERSION, Doubles, Tasks, agenttask, doubles, steps_script
from .conftest import _unpin
from .test_chart import Release, package
from .test_eval_cluster import _apply, _condition, _judge, _status
from .test_operator import crds

# Prometheus runs on this machine and scrapes pod IPs, as the local cluster allows (kind's do not).
pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.pod_network]
__all__ = ["crds", "doubles", "judges"]  # fixtures, used by name

DASHBOARD = REPO_ROOT / "charts" / "tether" / "dashboards" / "tether.json"
SCRAPE_S = 1
# Grafana's $__rate_interval is max($__interval + scrape interval, 4 x scrape interval).
RATE_INTERVAL = f"{5 * SCRAPE_S}s"
LABELS = {"team": "dash", "main": "yes"}
BUDGET = {"maxTokens": 3000, "keepLastToolResults": 1}
# May stay 0 through the scenario: the queue when the workers keep up, the detector's statistic
# when the judge passes every answer. Every other query must show a value above 0.
ZERO_OK = ("tether_operator_queue_depth", "tether_eval_cusum{")
BIG = "word " * 120_000  # 600,000 characters, over the redactor's 512 Ki character cap


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    yield from module_namespace(core, "e2e-dashboard")


def chart_values(s: E2ESettings, ns: str, node: str) -> dict[str, Any]:
    prefix, tag, policy = s.image_prefix.rstrip("/"), s.image_tag, s.image_pull_policy
    every = {"enabled": True, "interval": f"{SCRAPE_S}s"}
    return {
        "image": {"repository": f"{prefix}/operator", "tag": tag, "pullPolicy": policy},
        "replicas": 1, "watchNamespaces": [ns],
        "nodeSelector": {"kubernetes.io/hostname": node},
        "sidecarImage": {"repository": f"{prefix}/sidecar", "tag": tag},
        "operator": {"settings": {"image_pull_policy": policy, "status_poll_seconds": 1,
                                  "backoff_base_seconds": 1}},
        "podLabels": {"tether.dev/e2e": "operator"},
        "evaluator": {"enabled": True, "image": {"repository": f"{prefix}/evaluator", "tag": tag},
                      "persistence": {"size": "64Mi"},
                      "settings": {"status_seconds": 1, "idle_seconds": 0.5}},
        "metrics": {"serviceMonitor": {**every, "scrapeTimeout": f"{SCRAPE_S}s"},
                    "podMonitor": every},
    }


@pytest.fixture(scope="module")
def release(cluster: Any, namespace: str, core: client.CoreV1Api, api: client.ApiClient,
            real_node: str, crds: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Release]:
    """The packaged chart installed in the namespace, its operator leading, its evaluator
    Ready (the Prometheus Operator's CRDs first: the chart's monitors are custom objects)."""
    _monitoring.install_crds(api)
    tmp = tmp_path_factory.mktemp("dashboard")
    rel = Release(namespace, namespace, cluster, _tools.helm())
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(chart_values(settings(), namespace, real_node)))
    rel.run("install", rel.name, str(package(rel.helm, tmp / "package")), "-f", str(path),
            "--wait", "--timeout", "3m")
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    try:
        yield rel
    finally:
        for pod in core.list_namespaced_pod(namespace, label_selector=(
                "app.kubernetes.io/component in (operator, evaluator)")).items:
            print(f"--- {pod.metadata.name}\n"
                  f"{core.read_namespaced_pod_log(pod.metadata.name, namespace)[-6000:]}")
        rel.run("uninstall", rel.name, "--wait", "--timeout", "2m")
        _unpin(api, core, namespace)  # the operator is gone: its finalizers would hold the ns


@dataclass
class Models:
    """One scripted model per script, where the pods reach them."""

    urls: dict[str, str]


def _scripts() -> dict[str, dict[str, Any]]:
    long: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples/scripts/long_task.yaml")
                                          .read_text())
    for turn in long["turns"]:
        turn["delay"] = 0.3  # the eviction lands mid-task; the sidecar is scraped a while
    flaky = steps_script(8, delay=0.5)
    flaky["turns"][1]["faults"] = [{"status": 503}]
    big = {"model": "gpt-4o", "turns": [{"content": f"FINAL {BIG}", "delay": 2.0,
                                         "usage": {"input_tokens": 50, "output_tokens": 50}}]}
    return {"long": long, "flaky": flaky, "plain": steps_script(4, delay=0.5), "big": big}


@pytest.fixture(scope="module")
def models(doubles: Doubles) -> Iterator[Models]:
    host = urlsplit(doubles.model).hostname or ""
    scripts = _scripts()
    with serve_in_thread(scripted_model.build_app(scripts["long"]), host=host) as long, \
            serve_in_thread(scripted_model.build_app(scripts["flaky"]), host=host) as flaky, \
            serve_in_thread(scripted_model.build_app(scripts["plain"]), host=host) as plain, \
            serve_in_thread(scripted_model.build_app(scripts["big"]), host=host) as big:
        yield Models({"long": long, "flaky": flaky, "plain": plain, "big": big})


def _tasks(models: Models, tools: str) -> list[dict[str, Any]]:
    def task(name: str, model: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
        return agenttask(name, Doubles(models.urls[model], tools), labels=labels, **spec)
    flaky_tools = [{"name": "search", "url": tools + "/flaky/503/2"},
                   {"name": "record", "url": tools + "/side-effect", "sideEffects": True,
                    "idempotencyHeader": "Idempotency-Key"}]
    return [
        task("long", "long", LABELS, contextBudget=BUDGET),
        task("flaky", "flaky", LABELS, tools=flaky_tools,
             costEnvelope={"hardLimitUSD": "5.00", "softLimitUSD": "0.001"}),
        task("capped", "plain", {"team": "dash", "capped": "yes"}),
        task("big", "big", LABELS),
    ]


def _configure(api: client.ApiClient, ns: str, judges: Judges) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agentbudgets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget", "metadata": {"name": "dash"},
        "spec": {"selector": {"matchLabels": {"team": "dash"}}, "period": "Daily",
                 "limitUSD": "50.00"}})
    _apply(custom, ns, "rubrics", "Rubric", "r", {
        "instructions": "Pass an answer that does what the task asked.",
        "verdict": {"kind": "pass_fail"}})
    _apply(custom, ns, "judges", "Judge", "j", _judge(judges.urls["steady"], "50"))
    _apply(custom, ns, "judges", "Judge", "capped", capped_judge(judges.urls["costly"]))
    for name, judge, extra in (
            ("main", "j", {"detector": {"baselinePassRate": "0.9", "shift": "0.4",
                                        "falseAlarmEvery": 100}}),
            ("capped", "capped", {})):
        _apply(custom, ns, "evaluationpolicies", "EvaluationPolicy", name, {
            "selector": {"matchLabels": {name: "yes"}}, "rubricRef": {"name": "r"},
            "judgeRef": {"name": judge}, "sampling": {"rate": "1"}, **extra})
    for name in ("main", "capped"):  # a record that comes first is never queued for it
        _wait.until(lambda n=name: _condition(_status(api, ns, n), "Ready"), 60,
                    f"the evaluator to read policy {name}", 0.5)


def _evict_mid_task(core: client.CoreV1Api, tasks: Tasks, ns: str) -> None:
    def mid(status: dict[str, Any]) -> bool:
        return str(status.get("podName")).endswith("-a1") and (status.get("step") or 0) >= 5
    pod = tasks.wait("long", mid, timeout=240)["status"]["podName"]
    core.create_namespaced_pod_eviction(pod, ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod, namespace=ns)))


def _run_scenario(api: client.ApiClient, core: client.CoreV1Api, ns: str, judges: Judges,
                  models: Models, tools: str) -> None:
    _configure(api, ns, judges)
    tasks = Tasks(api, ns)
    for body in _tasks(models, tools):
        tasks.create(body)
    _evict_mid_task(core, tasks, ns)
    ended = {t["metadata"]["name"]: tasks.done(t["metadata"]["name"], timeout=300)["status"]
             for t in _tasks(models, tools)}
    assert all(st["phase"] == "Succeeded" for st in ended.values()), ended
    assert ended["long"]["evictions"] == 1, ended["long"]
    _wait.until(lambda: (_status(api, ns, "main").get("judged") or 0) >= 2, 120,
                "policy main to judge the long and flaky tasks", 1.0)
    for policy, condition in (("capped", "JudgeCapReached"), ("main", "RedactionFailures")):
        _wait.until(lambda p=policy, c=condition: _condition(_status(api, ns, p), c) == "True",
                    120,
                    f"policy {policy}'s {condition} condition", 1.0)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, in the dashboard's order."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def grafana(expr: str, ns: str) -> str:
    """The query as Grafana sends it with namespace ``ns`` picked (a regex matcher: the name
    as it is)."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$namespace", ns)


def no_data(prom: str, ns: str, start: float) -> list[str]:
    """The panels' queries whose range over [start, now] has no sample that is a number, or,
    but for ZERO_OK, none above 0: every event the scenario made must show."""
    missing = []
    for title, expr in panel_queries():
        query = grafana(expr, ns)
        series = prom_range(prom, query, start, time.time(), SCRAPE_S)
        values = [float(v) for s in series for _, v in s["values"]]
        numbers = [v for v in values if not math.isnan(v)]
        if not numbers:
            missing.append(f"panel {title!r}: no data: {query}")
        elif max(numbers) <= 0 and not any(m in expr for m in ZERO_OK):
            missing.append(f"panel {title!r}: only 0 ({len(numbers)} samples): {query}")
    return missing


def test_every_panel_query_returns_data(
        release: Release, judges: Judges, models: Models, doubles: Doubles,
        api: client.ApiClient, core: client.CoreV1Api, namespace: str, tmp_path: Path) -> None:
    scrape, _ = _monitoring.chart_monitoring(_monitoring.monitoring_objects(api, namespace))
    with _monitoring.cluster_prometheus(tmp_path, scrape, [], None) as prom:
        start = time.time()
        for job in ("tether-operator", "tether-evaluator"):
            up = f'up{{job=~".*{job}", namespace="{namespace}"}} == 1'
            _wait.until(lambda q=up: prom_query(prom, q), 60, f"Prometheus scraping {job}", 1.0)
        _run_scenario(api, core, namespace, judges, models, doubles.tools)
        # The evaluator's last figures reach Prometheus a scrape after its status shows them.
        deadline, missing = time.monotonic() + 60, no_data(prom, namespace, start)
        while missing and time.monotonic() < deadline:
            time.sleep(SCRAPE_S)  # a poll interval: the next scrape, then ask again
            missing = no_data(prom, namespace, start)
        print(f"figures: {len(panel_queries())} panel queries over {time.time() - start:.0f} s "
              f"of scenario, {len(missing)} without data")
        assert not missing, "panels without data:\n" + "\n".join(missing)
        # The dashboard's $namespace variable (label_values(<selector>, namespace)) offers it.
        [variable] = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]
                      if v["name"] == "namespace"]
        selector = variable["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        values = get_json(f"{prom}/api/v1/label/namespace/values?"
                          f"{urllib.parse.urlencode({'match[]': selector})}")
        assert namespace in values["data"], values
