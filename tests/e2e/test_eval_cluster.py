"""Issue #10 end to end on the real node: the evaluator runs in the cluster from the chart (its
image, Deployment, Service, PVC and RBAC, rendered by helm into the test's namespace), the
operator (a child process, as test_operator.py runs it) points task sidecars at its Service,
and the scripted model and the scripted judge (on this machine, where the pods reach them) are
the test doubles.

Real AgentTasks run to completion and their records reach the evaluator through the Service;
the bulk of the detector's samples are POSTed to the evaluator's /v1/records directly, each for
an AgentTask object whose status says Succeeded (with the operator stopped, so no pod runs):
hundreds of real tasks would take too long on two cores. A planted drop in the agent's answers
(the scripted judge unchanged) turns the policy's Degraded condition True and counts an alarm of
kind "agent", after the drop and not before; a judge
with a tiny daily cap stops judging (JudgeCapReached). A canary e-mail address planted in the
tasks' instructions is absent from the evaluator's database files and its log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, utils
from prometheus_client.parser import text_string_to_metric_families

from tether_examples._serve import serve_in_thread
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from . import _tools, _wait
from ._cluster import Cluster, _k8s_version
from ._settings import TETHER_CACHE, settings
from ._tasks import GROUP, VERSION, Doubles, Tasks, agenttask, doubles, steps_script, tasks
from .test_operator import Operator, crds

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "tasks"]  # fixtures, used by name

REPO = Path(__file__).resolve().parents[2]
NAME = "tether-evaluator"
CANARY = "canary.e2e.q7x3@example.com"
INSTRUCTIONS = f"Write the records. Report to {CANARY} when done."
DB_FILES = ["/var/lib/tether-eval/eval.db", "/var/lib/tether-eval/eval.db-wal"]


@pytest.fixture(scope="module")
def judge(doubles: Doubles) -> Iterator[tuple[str, ScriptedJudge]]:
    """The scripted judge, where the doubles are: the evaluator's pod reaches it."""
    scripted = ScriptedJudge(JudgeScript(pass_rate=1.0))
    with serve_in_thread(scripted.app(), host=urlsplit(doubles.model).hostname or "") as url:
        yield url, scripted


def _chart_objects(ns: str, node: str, tmp: Path) -> list[dict[str, Any]]:
    image = settings().image("evaluator")
    values = {"fullnameOverride": "tether", "watchNamespaces": [ns],
              "image": {"pullPolicy": settings().image_pull_policy},
              "nodeSelector": {"kubernetes.io/hostname": node},
              "evaluator": {"enabled": True, "image": {"repository": image.rsplit(":", 1)[0],
                                                       "tag": image.rsplit(":", 1)[1]},
                            "persistence": {"size": "64Mi"},
                            "settings": {"status_seconds": 1, "idle_seconds": 0.5}}}
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    out = subprocess.run([_tools.helm(), "template", "e2e", str(REPO / "charts/tether"), "-n", ns,
                          "--show-only", "templates/evaluator.yaml",
                          "--show-only", "templates/rbac-evaluator.yaml",
                          "-f", str(tmp / "values.yaml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture
def evaluator(api: client.ApiClient, core: client.CoreV1Api, namespace: str, real_node: str,
              crds: None, tmp_path: Path) -> Iterator[str]:
    """The chart's evaluator in the test's namespace, Ready; yields its pod's name."""
    utils.create_from_yaml(api, yaml_objects=_chart_objects(namespace, real_node, tmp_path),
                           namespace=namespace)
    apps = client.AppsV1Api(api)

    def ready() -> str | None:
        if not (apps.read_namespaced_deployment(NAME, namespace).status.ready_replicas or 0):
            return None
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=evaluator").items
        return next((p.metadata.name for p in pods if p.status.phase == "Running"), None)
    pod = _wait.until(ready, 180, f"the evaluator Deployment in {namespace} to be Ready")
    yield pod
    print(core.read_namespaced_pod_log(pod, namespace)[-20000:])


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path, core: client.CoreV1Api,
             evaluator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    # What the chart sets on the operator when evaluator.url is empty: the Service's DNS name.
    monkeypatch.setenv("TETHER_OPERATOR_EVALUATOR_URL", f"http://{NAME}.{namespace}.svc:8080")
    op = Operator(cluster, namespace, tmp_path)
    op.start()
    yield op
    op.stop()
    print(op.log.read_text(errors="replace")[-20000:])


def _apply(custom: client.CustomObjectsApi, ns: str, plural: str, kind: str, name: str,
           spec: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name},
        "spec": spec})


def _judge(url: str, per_day: str) -> dict[str, Any]:
    return {"model": {"provider": "openai-compatible", "name": "judge-2026-01-15",
                      "baseURL": url + "/v1", "allowPlaintextHTTP": True,
                      "pricing": {"inputPerMTok": "10.00", "outputPerMTok": "10.00"}},
            "seed": 7, "samples": 1, "costCaps": {"perCallUSD": per_day, "perDayUSD": per_day}}


def _configure(api: client.ApiClient, ns: str, judge_url: str) -> None:
    custom = client.CustomObjectsApi(api)
    _apply(custom, ns, "rubrics", "Rubric", "r", {
        "instructions": "Pass an answer that does what the task asked.",
        "verdict": {"kind": "pass_fail"}})
    _apply(custom, ns, "judges", "Judge", "j", _judge(judge_url, "5"))
    _apply(custom, ns, "judges", "Judge", "capped", _judge(judge_url, "0.05"))
    # A drop from 0.9 to 0.5: the detector alarms within a few dozen failing samples.
    _apply(custom, ns, "evaluationpolicies", "EvaluationPolicy", "main", {
        "selector": {"matchLabels": {"evaluated": "yes"}}, "rubricRef": {"name": "r"},
        "judgeRef": {"name": "j"}, "sampling": {"rate": "1"},
        "detector": {"baselinePassRate": "0.9", "shift": "0.4", "falseAlarmEvery": 100}})
    _apply(custom, ns, "evaluationpolicies", "EvaluationPolicy", "cap", {
        "selector": {"matchLabels": {"capped": "yes"}}, "rubricRef": {"name": "r"},
        "judgeRef": {"name": "capped"}, "sampling": {"rate": "1"}})


def _status(api: client.ApiClient, ns: str, policy: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "evaluationpolicies", policy)
    return dict(obj.get("status") or {})


def _condition(status: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == kind), None)


def _wait_judged(api: client.ApiClient, ns: str, policy: str, n: int) -> dict[str, Any]:
    def judged() -> dict[str, Any] | None:
        status = _status(api, ns, policy)
        return status if (status.get("judged") or 0) >= n else None
    return _wait.until(judged, 120, f"policy {policy} to have judged {n} samples", 1.0)


def _bulk(api: client.ApiClient, core: client.CoreV1Api, ns: str, pod: str, prefix: str,
          count: int, label: str, policy: str, truth: str = "") -> None:
    """``count`` finished AgentTasks (status written here: the operator is stopped), and each
    one's record POSTed to the evaluator's pod as a sidecar would. ``truth`` ("TRUTH:PASS",
    "TRUTH:FAIL") in the answers decides the scripted judge's verdict: what the agent did."""
    custom = client.CustomObjectsApi(api)
    ip = core.read_namespaced_pod(pod, ns).status.pod_ip
    for i in range(count):
        name = f"{prefix}-{i}"
        task = custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", {
            **agenttask(name, Doubles("http://127.0.0.1:1", "http://127.0.0.1:1"),
                        labels={label: "yes"})})
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "agenttasks", name,
            {"status": {"phase": "Succeeded", "attempt": 1}})
        record = {"version": 1, "uid": task["metadata"]["uid"], "namespace": ns, "task": name,
                  "labels": {label: "yes"}, "attempt": 1,
                  "policies": [{"name": policy, "sampled": True}], "outcome": "answered",
                  "answer": f"Done: wrote record {i}. {truth}".strip(),
                  "instructions": INSTRUCTIONS,
                  "inputs": {"contact": CANARY},
                  "redaction": {"ok": True, "findings": {}, "engine": "e2e"},
                  "deterministic": {"checks": [], "retries": 0, "verificationFailures": 0,
                                    "limitHits": {"soft": 0, "hard": 0}, "spentUSD": "0.01"},
                  "finishedAt": "2026-11-30T12:00:00Z"}
        req = urllib.request.Request(f"http://{ip}:8080/v1/records",
                                     data=json.dumps(record).encode(), method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201, resp.read()


def _metrics(core: client.CoreV1Api, ns: str, pod: str) -> dict[str, float]:
    """The evaluator's /metrics, scraped from its pod as Prometheus would: ``name{k="v",...}``
    (labels sorted) to value."""
    ip = core.read_namespaced_pod(pod, ns).status.pod_ip
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def _metric(core: client.CoreV1Api, ns: str, pod: str, name: str, **labels: str) -> float:
    """One series of the namespace (0 when it is not there yet)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted({"namespace": ns, **labels}.items()))
    return _metrics(core, ns, pod).get(f"{name}{{{want}}}", 0.0)


def _alarms(core: client.CoreV1Api, ns: str, pod: str, policy: str, kind: str) -> float:
    return _metric(core, ns, pod, "tether_eval_alarms_total", policy=policy, kind=kind)


def _pod_bytes(cluster: Cluster, ns: str, pod: str) -> str:
    """The evaluator's database files as the pod has them (Python is in its image)."""
    script = ("import sys\nfor p in sys.argv[1:]:\n"
              "    try: sys.stdout.write(open(p, 'rb').read().decode('latin-1'))\n"
              "    except FileNotFoundError: pass\n")
    kubectl = (shutil.which("kubectl")
               or str(TETHER_CACHE / f"k8s-{_k8s_version()}" / "bin" / "kubectl"))
    out = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "exec", "-n", ns,
                          pod, "-c", "evaluator", "--", "python3", "-c", script, *DB_FILES],
                         capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode("latin-1")


def test_the_evaluator_in_the_cluster_judges_detects_and_caps(
        operator: Operator, evaluator: str, tasks: Tasks, doubles: Doubles, cluster: Cluster,
        judge: tuple[str, ScriptedJudge], api: client.ApiClient, core: client.CoreV1Api,
        namespace: str) -> None:
    ns, (judge_url, scripted) = namespace, judge
    scripted.reset(JudgeScript(pass_rate=1.0))
    _configure(api, ns, judge_url)
    # Real tasks on the real node: their sidecars redact and deliver to the Service.
    doubles.use(steps_script(2))
    for name in ("real-0", "real-1"):
        tasks.create(agenttask(name, doubles, labels={"evaluated": "yes"},
                               task={"instructions": INSTRUCTIONS}))
    done = [tasks.done(name) for name in ("real-0", "real-1")]
    assert all(t["status"]["phase"] == "Succeeded" for t in done), done
    status = _wait_judged(api, ns, "main", 2)
    assert status["records"] >= 2 and _condition(status, "Ready") == "True"
    operator.stop()  # from here no pod runs: the bulk tasks' status is written by the test

    # In control: 3 failing answers in 30, at the baseline's rate, each followed by passes
    # (judged before the next are sent, so their order is fixed): the CUSUM moves, stays under
    # its threshold, and nothing alarms.
    for k in range(3):
        _bulk(api, core, ns, evaluator, f"before-{k}-fail", 1, "evaluated", "main", "TRUTH:FAIL")
        _wait_judged(api, ns, "main", 2 + 10 * k + 1)
        _bulk(api, core, ns, evaluator, f"before-{k}-pass", 9, "evaluated", "main", "TRUTH:PASS")
        _wait_judged(api, ns, "main", 2 + 10 * k + 10)
    status = _wait_judged(api, ns, "main", 32)
    assert (status["judged"], status["passRate"], status["alarms"]) == (32, 29 / 32, 0)
    assert _condition(status, "Degraded") == "False"  # not before the drop
    assert _alarms(core, ns, evaluator, "main", "agent") == 0
    fails = _metric(core, ns, evaluator, "tether_eval_samples_total", policy="main",
                    verdict="fail")
    assert fails == 3  # the detector saw failures, and did not alarm

    # The planted drop: the agent's answers now fail (the judge is unchanged). Every alarm
    # comes from a sample after the 32nd: the detector had none at 32.
    _bulk(api, core, ns, evaluator, "after", 30, "evaluated", "main", "TRUTH:FAIL")
    _wait.until(lambda: _condition(_status(api, ns, "main"), "Degraded") == "True", 120,
                "the policy's Degraded condition after the drop", 1.0)
    status = _status(api, ns, "main")
    [degraded] = [c for c in status["conditions"] if c["type"] == "Degraded"]
    assert degraded["reason"] == "DriftAlarm", degraded
    assert "attributed to the agent" in degraded["message"], degraded
    assert status["passRate"] < 0.9 and status["alarms"] >= 1
    assert _alarms(core, ns, evaluator, "main", "agent") >= 1
    assert _alarms(core, ns, evaluator, "main", "judge") == 0

    # Each verdict now reports 20,000 output tokens (0.20 USD at this pricing): the first call
    # the capped judge makes spends past its 0.05 USD day, and the ledger refuses the next.
    scripted.reset(JudgeScript(pass_rate=1.0, output_tokens=20_000))
    _bulk(api, core, ns, evaluator, "capped", 5, "capped", "cap")

    def cap_reached() -> dict[str, Any] | None:
        status = _status(api, ns, "cap")
        return status if _condition(status, "JudgeCapReached") == "True" else None
    capped = _wait.until(cap_reached, 120, "the capped judge's JudgeCapReached condition", 1.0)
    assert capped["records"] == 5 and (capped.get("judged") or 0) < 5  # the rest wait

    stored = _pod_bytes(cluster, ns, evaluator)
    assert "Done: wrote record" in stored, "the database was not read"
    assert "<EMAIL_ADDRESS>" in stored  # the instructions were stored, redacted
    assert CANARY not in stored
    assert CANARY not in core.read_namespaced_pod_log(evaluator, ns)
    [state] = core.read_namespaced_pod(evaluator, ns).status.container_statuses
    assert state.restart_count == 0, "the evaluator restarted: its log above is the new one's"
