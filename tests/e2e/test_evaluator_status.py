"""The evaluator against the real API server: its configuration read from a namespace's Rubric,
Judge and EvaluationPolicy, and the policy's status written back (no pods: the evaluator runs
here, the judge is the scripted one on 127.0.0.1)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.evaluator.conftest import record
from tests.evaluator.test_judge import drain, ingest
from tether_eval.kube_sync import list_tasks, read_config, store_missing, write_statuses
from tether_eval.redaction import load
from tether_eval.service import Service, Settings
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from ._cluster import Cluster

pytestmark = [pytest.mark.cluster]
GROUP, VERSION = "tether.dev", "v1alpha1"


def _apply(api: client.ApiClient, ns: str, plural: str, kind: str, name: str,
           spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, plural, {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                                     "metadata": {"name": name}, "spec": spec})


async def test_the_policy_status_is_written_from_the_store(
        cluster: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        _apply(api, namespace, "rubrics", "Rubric", "r1", {
            "instructions": "Pass a good answer.", "verdict": {"kind": "pass_fail"}})
        _apply(api, namespace, "judges", "Judge", "j1", {
            "model": {"provider": "openai-compatible", "name": "judge-2026-01-15",
                      "baseURL": jurl + "/v1", "allowPlaintextHTTP": True,
                      "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "4.00"}},
            "seed": 7, "samples": 1, "costCaps": {"perCallUSD": "0.05", "perDayUSD": "1"}})
        _apply(api, namespace, "evaluationpolicies", "EvaluationPolicy", "p1", {
            "rubricRef": {"name": "r1"}, "judgeRef": {"name": "j1"},
            "sampling": {"rate": "0.5"},
            "detector": {"baselinePassRate": "0.85", "shift": "0.05"}})
        # A policy naming a Judge that does not exist is left out, not fatal.
        _apply(api, namespace, "evaluationpolicies", "EvaluationPolicy", "orphan", {
            "rubricRef": {"name": "r1"}, "judgeRef": {"name": "missing"},
            "sampling": {"rate": "0.5"}})
        settings = Settings(namespace=namespace, database=f"sqlite://{tmp_path}/e.db",
                            instance="e2e", secrets_dir=tmp_path)
        redactor = load()
        svc = await Service.open(settings, redactor, environ={})
        try:
            assert sorted(svc.config.policies) == ["p1"]
            docs = [record("u1"), record("u2", answer="No. TRUTH:FAIL")]
            await ingest(svc, *[{**d, "namespace": namespace} for d in docs])
            await drain(svc)
            assert await svc.store.pending() == 2  # in a cluster, judging waits for the end
            for uid in ("u1", "u2"):  # as mark_terminal does from the AgentTask's phase
                assert await svc.store.set_terminal(uid, 1, "Succeeded")
            await drain(svc)
            assert await write_statuses(svc.kube, namespace, svc.evaluator) == 1
            assert await write_statuses(svc.kube, namespace, svc.evaluator) == 0  # unchanged
            # No AgentTask in the namespace ended without a record.
            tasks = await list_tasks(svc.kube, namespace)
            assert await store_missing(svc.kube, namespace, tasks, svc.ingest,
                                       timedelta(0)) == 0
            # A policy created while it runs is judged for from the next turn on.
            _apply(api, namespace, "evaluationpolicies", "EvaluationPolicy", "p2", {
                "rubricRef": {"name": "r1"}, "judgeRef": {"name": "j1"},
                "sampling": {"rate": "1"}})
            svc.reconfigure(await read_config(svc.kube, namespace))
            assert sorted(svc.config.policies) == ["p1", "p2"]
            assert svc.evaluator.judges["j1"].spec == svc.config.judges["j1"]
        finally:
            await svc.close()
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "evaluationpolicies", "p1")
    status = obj["status"]
    assert (status["records"], status["judged"], status["passRate"]) == (2, 2, 0.5)
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Degraded": "False", "JudgeDrift": "Unknown",
                          "JudgeCapReached": "False", "RedactionFailures": "False"}
