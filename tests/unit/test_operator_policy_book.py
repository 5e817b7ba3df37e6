"""tether_operator.evaluation.PolicyBook against a real HTTP server on 127.0.0.1 standing in
for API server answers a shared cluster will not give on demand: the EvaluationPolicy CRD
missing (404), the operator's RBAC lacking the kind (403), a 5xx; and when it reads at all.
The real API server's side is tests/integration/test_eval_env.py."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tether_operator.evaluation import PolicyBook
from tether_operator.kube import ApiError, Kube

from ..integration.invalid_eval import sample

URL = "http://evaluator:8080"
LIST = "/apis/tether.dev/v1alpha1/namespaces/{ns}/evaluationpolicies"


def _task(ns: str) -> dict[str, Any]:
    return {"metadata": {"name": "t", "namespace": ns, "uid": "u-1",
                         "labels": {"team": "support"}}, "spec": {}}


def _policy(ns: str) -> dict[str, Any]:
    body = sample("EvaluationPolicy")
    body["metadata"].update(namespace=ns, resourceVersion="1")
    return body


@pytest.fixture
async def kube(unused_tcp_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[tuple[Kube, list[str]]]:
    asked: list[str] = []
    answers = {"gone": (404, "NotFound"), "denied": (403, "Forbidden"),
               "broken": (500, "InternalError")}

    async def listing(request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        asked.append(ns)
        if ns in answers:
            status, reason = answers[ns]
            return web.json_response({"kind": "Status", "reason": reason, "message": ns},
                                     status=status)
        items = [_policy(ns)] if ns == "team" else []
        return web.json_response({"items": items})

    app = web.Application()
    app.router.add_get(LIST.format(ns="{ns}"), listing)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    (tmp_path / "config").write_text(yaml.safe_dump({
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{unused_tcp_port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = Kube()
    yield client, asked
    await client.close()
    await runner.cleanup()


@pytest.mark.parametrize("ns", ["gone", "denied"])
async def test_no_crd_or_no_rbac_runs_the_task_without_evaluation(
        kube: tuple[Kube, list[str]], ns: str, caplog: pytest.LogCaptureFixture) -> None:
    client, asked = kube
    book = PolicyBook(client, URL)
    with caplog.at_level(logging.WARNING, logger="tether_operator.evaluation"):
        assert await book.env_for(_task(ns)) is None
    assert asked == [ns]
    assert "tasks there get no evaluation" in caplog.text and ns in caplog.text


async def test_a_passing_fault_is_raised_for_the_reconcile_to_retry(
        kube: tuple[Kube, list[str]]) -> None:
    client, _ = kube
    with pytest.raises(ApiError) as caught:
        await PolicyBook(client, URL).env_for(_task("broken"))
    assert caught.value.status == 500


async def test_read_only_where_the_watch_has_shown_policies(
        kube: tuple[Kube, list[str]]) -> None:
    client, asked = kube
    book = PolicyBook(client, URL)
    assert await book.env_for(_task("empty")) is None
    assert await book.env_for(_task("empty")) is None
    assert asked == ["empty"]  # listed once: none there, and the watch has shown none since
    book.seen(_policy("empty"), deleted=False)  # one appears
    await book.env_for(_task("empty"))
    assert asked == ["empty", "empty"]
    env = await book.env_for(_task("team"))
    await book.env_for(_task("team"))
    assert asked[2:] == ["team", "team"]  # policies there: read fresh for every pod
    assert env is not None and json.loads(env)["policies"][0]["name"] == "support-triage"


async def test_no_evaluator_url_means_no_variable(kube: tuple[Kube, list[str]],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    client, _ = kube
    with caplog.at_level(logging.WARNING, logger="tether_operator.evaluation"):
        assert await PolicyBook(client, "").env_for(_task("team")) is None
    assert "support-triage" in caplog.text and "no evaluator URL is set" in caplog.text
