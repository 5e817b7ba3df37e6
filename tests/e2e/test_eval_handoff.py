"""Issue #10, step 1, on the real node: the operator (a child process, as test_operator.py runs
it) hands the sidecar of a task an EvaluationPolicy selects its policies in TETHER_EVALUATION;
the real sidecar reads it and its record reaches the evaluator URL naming the policies with the
operator's ``sampled`` flags. A task no policy selects gets no variable and sends no record.

The evaluator is a double in this process (POST /v1/records, 201), bound where the model and
tool doubles are (_tasks.py), so the task's pod reaches it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from kubernetes import client

from tether_api.sampling import sampled
from tether_examples._serve import serve_in_thread

from ._cluster import Cluster
from ._tasks import GROUP, VERSION, Doubles, Tasks, agenttask, doubles, steps_script, tasks
from .test_operator import Operator, crds

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "tasks"]  # fixtures, used by name


@pytest.fixture(scope="module")
def records(doubles: Doubles) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The evaluator double: its URL and the records it was sent."""
    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.json_response({"stored": True}, status=201)

    app = web.Application()
    app.router.add_post("/v1/records", receive)
    with serve_in_thread(app, host=urlsplit(doubles.model).hostname or "") as url:
        yield url, got


@pytest.fixture
def operator(cluster: Cluster, namespace: str, crds: None, tmp_path: Path,
             core: client.CoreV1Api, records: tuple[str, list[dict[str, Any]]],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "model-creds", "labels": {
        "tether.dev/model-credentials": "true"}}, "stringData": {"api-key": "sk-e2e"}})
    monkeypatch.setenv("TETHER_OPERATOR_EVALUATOR_URL", records[0])  # Operator passes its env
    op = Operator(cluster, namespace, tmp_path)
    op.start()
    yield op
    op.stop()
    print(op.log.read_text(errors="replace")[-20000:])


def _policy(api: client.ApiClient, ns: str) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "evaluationpolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "EvaluationPolicy",
            "metadata": {"name": "e2e-half"},
            "spec": {"selector": {"matchLabels": {"evaluated": "yes"}},
                     "rubricRef": {"name": "r"}, "judgeRef": {"name": "j"},
                     "sampling": {"rate": "0.5"},
                     "checks": [{"name": "says-final", "regex": "FINAL"}]}})


def _sidecar_env(core: client.CoreV1Api, ns: str, pod: str) -> dict[str, str]:
    body: dict[str, Any] = core.api_client.sanitize_for_serialization(
        core.read_namespaced_pod(pod, ns))
    return {e["name"]: e.get("value", "") for e in body["spec"]["initContainers"][0].get("env",
                                                                                       [])}


def test_a_selected_tasks_record_names_its_policies(
        operator: Operator, tasks: Tasks, doubles: Doubles, api: client.ApiClient,
        core: client.CoreV1Api, namespace: str,
        records: tuple[str, list[dict[str, Any]]]) -> None:
    _policy(api, namespace)
    doubles.use(steps_script(2))
    tasks.create(agenttask("evaluated", doubles, labels={"evaluated": "yes"}))
    tasks.create(agenttask("plain", doubles))
    done = {name: tasks.done(name) for name in ("evaluated", "plain")}
    assert all(t["status"]["phase"] == "Succeeded" for t in done.values()), done
    uid = done["evaluated"]["metadata"]["uid"]

    env = _sidecar_env(core, namespace, done["evaluated"]["status"]["podName"])
    handed = json.loads(env["TETHER_EVALUATION"])
    assert handed["evaluatorURL"] == records[0]
    assert [(p["name"], p["sampled"]) for p in handed["policies"]] == [
        ("e2e-half", sampled(uid, "0.5"))]
    assert "TETHER_EVALUATION" not in _sidecar_env(core, namespace,
                                                   done["plain"]["status"]["podName"])

    deadline = time.monotonic() + 60  # delivered at the task's end, with backoff
    while not [r for r in records[1] if r.get("uid") == uid]:
        assert time.monotonic() < deadline, f"no record for {uid}: {records[1]}"
        time.sleep(0.5)
    [record] = [r for r in records[1] if r.get("uid") == uid]
    assert record["task"] == "evaluated" and record["namespace"] == namespace
    assert record["policies"] == [{"name": "e2e-half", "sampled": sampled(uid, "0.5")}]
    assert all(r.get("task") != "plain" for r in records[1])
