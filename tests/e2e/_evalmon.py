"""What test_alerts_evaluator.py and test_dashboard_panels.py share: the chart's objects applied
to the test's namespace (core kinds through the client, the Prometheus Operator's kinds as
custom objects: _monitoring.install_crds first), and Prometheus's HTTP API (instant and range
queries, the alerts it holds).
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, utils

from tether_examples._serve import serve_in_thread
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .._obs import get_json
from . import _tools, _wait
from ._cluster import REPO_ROOT
from ._tasks import Doubles
from .test_eval_cluster import _judge

__all__ = ["MONITORING", "Judges", "apply", "capped_judge", "judges", "module_namespace",
           "post_record", "prom_alerts", "prom_query", "prom_range", "template"]

CHART = REPO_ROOT / "charts" / "tether"
MONITORING = "monitoring.coreos.com"
PLURALS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors",
           "PrometheusRule": "prometheusrules"}


def module_namespace(core: client.CoreV1Api, prefix: str) -> Iterator[str]:
    """A fresh namespace for a whole module (its scenarios share one install), then deleted."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}}})
    _wait.until(lambda: any(sa.metadata.name == "default"
                            for sa in core.list_namespaced_service_account(name).items),
                30, f"the default ServiceAccount in {name}")
    yield name
    core.delete_namespace(name)


@dataclass
class Judges:
    """Three scripted judges on this machine, where pods reach them: steady (reads the TRUTH
    markers), moving (a test moves it) and costly (20,000 output tokens a verdict: 0.20 USD at
    capped_judge's prices)."""

    urls: dict[str, str]
    scripts: dict[str, ScriptedJudge]


@pytest.fixture(scope="module")
def judges(doubles: Doubles) -> Iterator[Judges]:
    host = urlsplit(doubles.model).hostname or ""
    made = {"steady": ScriptedJudge(JudgeScript()), "moving": ScriptedJudge(JudgeScript()),
            "costly": ScriptedJudge(JudgeScript(pass_rate=1.0, output_tokens=20_000))}
    with serve_in_thread(made["steady"].app(), host=host) as steady, \
            serve_in_thread(made["moving"].app(), host=host) as moving, \
            serve_in_thread(made["costly"].app(), host=host) as costly:
        yield Judges({"steady": steady, "moving": moving, "costly": costly}, made)


def capped_judge(url: str) -> dict[str, Any]:
    """A Judge with a 0.05 USD day asking ``url`` (the costly judge) three samples a verdict:
    the first sample spends 0.20 USD, the ledger refuses the second, and the first record
    judged reaches the cap (JudgeCapReached)."""
    return {**_judge(url, "0.05"), "samples": 3}


def template(ns: str, values: dict[str, Any], tmp: Path, *show_only: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``values`` into ``ns``: every object, or only those
    of the templates named (``templates/evaluator.yaml``)."""
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    only = [a for t in show_only for a in ("--show-only", t)]
    out = subprocess.run([_tools.helm(), "template", "e2e", str(CHART), "-n", ns, *only,
                          "-f", str(path)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, f"helm template {CHART}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def apply(api: client.ApiClient, ns: str, objects: list[dict[str, Any]]) -> None:
    """Create the objects in ``ns``: the Prometheus Operator's kinds as custom objects (their
    CRDs must be installed), the rest with the client's create_from_yaml."""
    custom = client.CustomObjectsApi(api)
    ours = [o for o in objects if o["apiVersion"].startswith(MONITORING + "/")]
    for obj in ours:
        version = obj["apiVersion"].split("/")[1]
        custom.create_namespaced_custom_object(MONITORING, version, ns, PLURALS[obj["kind"]],
                                               obj)
    plain = [o for o in objects if o not in ours]
    utils.create_from_yaml(api, yaml_objects=plain, namespace=ns)


def post_record(core: client.CoreV1Api, ns: str, pod: str, task: str, **fields: Any) -> None:
    """POST one record (for policy main) to the evaluator's pod, as a task's sidecar would."""
    record = {"version": 1, "uid": str(uuid.uuid4()), "namespace": ns, "task": task,
              "labels": {}, "attempt": 1, "policies": [{"name": "main", "sampled": True}],
              "outcome": "answered", "finishedAt": "2026-11-30T12:00:00Z", **fields}
    ip = core.read_namespaced_pod(pod, ns).status.pod_ip
    req = urllib.request.Request(f"http://{ip}:8080/v1/records", method="POST",
                                 data=json.dumps(record).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 201, resp.read()


def prom_query(prom: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """``/api/v1/query``: the instant vector's samples (empty when there is no data)."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    doc = get_json(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=30)
    assert doc["status"] == "success", json.dumps(doc)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def prom_range(prom: str, expr: str, start: float, end: float, step: float
               ) -> list[dict[str, Any]]:
    """``/api/v1/query_range`` (what a Grafana time-series panel asks): the matrix's series."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    doc = get_json(f"{prom}/api/v1/query_range?{urllib.parse.urlencode(params)}", timeout=60)
    assert doc["status"] == "success", json.dumps(doc)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def prom_alerts(prom: str, name: str) -> list[dict[str, Any]]:
    """The alerts named ``name`` Prometheus holds now (pending or firing)."""
    doc = get_json(f"{prom}/api/v1/alerts", timeout=30)
    return [a for a in doc["data"]["alerts"] if a["labels"].get("alertname") == name]
