"""Model calls are retried per policy (408/429/5xx/529 with backoff, Retry-After honoured) and
never for 4xx or an exhausted account; the agent's SDK is told not to retry again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from .conftest import upstream_requests
from .proc import Sidecar, task_doc


def script_with(faults: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "gpt-4o", "turns": [{"content": "ok", "faults": faults,
                                          "usage": {"input_tokens": 10, "output_tokens": 2}}]}


def call(sc: Sidecar) -> httpx.Response:
    return httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("script", [script_with([{"status": 503}, {"status": 529},
                                                 {"status": 429, "retry_after": "0"}])])
def test_transient_faults_are_retried(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, retryPolicy={"calls": {
        "initialInterval": "10ms", "maxAttempts": 4}}))
    r = call(sc)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"
    assert len(upstream_requests(model_server)) == 4
    assert sc.status()["retries"] == 3
    assert sc.metric("tether_retries_total", kind="model") == 3
    assert sc.metric("tether_llm_calls_total", outcome="ok") == 1


@pytest.mark.parametrize("script", [script_with([{"status": 503}] * 5)])
def test_exhausted_retries_tell_the_sdk_not_to_retry(sidecar: Callable[..., Sidecar],
                                                     model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    client = openai.OpenAI(base_url=sc.url + "/v1", api_key="dummy", max_retries=2)
    sc.closers.append(client.close)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503
    assert info.value.response.headers["x-tether-error-class"] == "retryable_exhausted"
    # maxAttempts 3 in the sidecar, and the SDK's own 2 retries were not used.
    assert len(upstream_requests(model_server)) == 3
    assert sc.status()["spentUSD"] == "0.000000"
    assert sc.status()["reservedUSD"] == "0.000000"


@pytest.mark.parametrize(("script", "status"), [
    (script_with([{"status": 400}]), 400), (script_with([{"status": 401}]), 401),
    (script_with([{"status": 404}]), 404), (script_with([{"status": 422}]), 422),
    (script_with([{"status": 429, "message": "You exceeded your quota: insufficient_quota"}]),
     429),
])
def test_client_errors_are_never_retried(sidecar: Callable[..., Sidecar], model_server: str,
                                         status: int) -> None:
    sc = sidecar(task_doc(model_server))
    r = call(sc)
    assert r.status_code == status
    assert r.json()["error"]["type"] == "non_retryable"
    assert len(upstream_requests(model_server)) == 1
