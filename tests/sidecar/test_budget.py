"""The hard limit is a circuit breaker: concurrent calls against an almost spent envelope never
push settled spend past it, and once it trips the task can spend nothing more. Calls refused
only because of other calls' holds wait, or get a retryable 429, and never trip it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from .conftest import upstream_requests
from .proc import Sidecar, task_doc

# Each output token costs 1 cent and input is free, so a call held at max_tokens=10 holds
# exactly 0.10 USD and settles at 0.07 (the script reports 7 output tokens).
PRICING = {"inputPerMTok": "0", "outputPerMTok": "10000.00"}
HOLD, COST = Decimal("0.10"), Decimal("0.07")


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": "gpt-4o", "turns": [{"content": "ok", "delay": 0.2,
                                          "usage": {"input_tokens": 50, "output_tokens": 7}}]}


def budget_task(model_url: str, hard: str = "1.00") -> dict[str, Any]:
    doc = task_doc(model_url, costEnvelope={"hardLimitUSD": hard},
                   tools=[{"name": "ok", "url": "http://127.0.0.1:9/ok"}])
    doc["spec"]["model"]["pricing"] = PRICING
    return doc


BODY = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


async def burst(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        rs = await asyncio.gather(*(client.post(url + "/v1/chat/completions", json=BODY)
                                    for _ in range(n)))
    return [r.status_code for r in rs]


def test_64_concurrent_calls_against_an_almost_spent_envelope(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(budget_task(model_server))
    for _ in range(10):
        assert httpx.post(sc.url + "/v1/chat/completions", json=BODY, timeout=30).is_success
    assert Decimal(sc.status()["spentUSD"]) == 10 * COST  # 0.70 spent, 0.30 left
    codes = asyncio.run(burst(sc.url, 64))
    assert set(codes) <= {200, 402}
    ok = codes.count(200)
    assert 1 <= ok <= 3  # three holds of 0.10 fit in 0.30, all 64 in flight at once
    status = sc.status()
    assert Decimal(status["spentUSD"]) == (10 + ok) * COST <= Decimal("1.00")
    assert status["reservedUSD"] == "0.000000"
    assert len(upstream_requests(model_server)) == 10 + ok  # refused calls never left the pod
    assert status["phase"] == "BudgetExceeded"
    assert sc.metric("tether_budget_limit_hits_total", limit="hard") == codes.count(402)


def test_sequential_calls_stop_within_one_hold_of_the_limit(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(budget_task(model_server))
    codes = []
    for _ in range(30):
        r = httpx.post(sc.url + "/v1/chat/completions", json=BODY, timeout=30)
        codes.append(r.status_code)
        if r.status_code == 402:
            error = r.json()
            assert error["error"]["type"] == "budget_exceeded"
            assert "hard limit" in error["error"]["message"]
            break
    spent = Decimal(sc.status()["spentUSD"])
    assert codes.count(200) == 13 and codes[-1] == 402  # 13 x 0.07 = 0.91; a 14th may need 1.01
    assert spent <= Decimal("1.00") and Decimal("1.00") - spent < HOLD


def test_tripped_breaker_refuses_tools_and_further_calls(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(budget_task(model_server, hard="0.05"))  # less than one hold
    r = httpx.post(sc.url + "/v1/chat/completions", json=BODY, timeout=30)
    assert r.status_code == 402 and r.headers["x-should-retry"] == "false"
    tool = httpx.post(sc.url + "/tools/ok", json={})
    assert tool.status_code == 402 and tool.json()["error"]["class"] == "budget_exceeded"
    small = {**BODY, "max_tokens": 1}  # would fit, but the breaker has tripped
    assert httpx.post(sc.url + "/v1/chat/completions", json=small).status_code == 402
    assert upstream_requests(model_server) == []
    assert sc.status()["spentUSD"] == "0.000000"


# A hold of 0.02 (20 output tokens at 0.1 cent) that settles at 0.001 (1 output token).
SMALL_PRICING = {"inputPerMTok": "0", "outputPerMTok": "1000.00"}
SMALL = {**BODY, "max_tokens": 20}


def contended_task(model_url: str) -> dict[str, Any]:
    doc = task_doc(model_url, costEnvelope={"hardLimitUSD": "0.05"})
    doc["spec"]["model"]["pricing"] = SMALL_PRICING
    return doc


async def small_burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        return list(await asyncio.gather(*(client.post(url + "/v1/chat/completions", json=SMALL)
                                           for _ in range(n))))


@pytest.mark.parametrize("script", [{"model": "gpt-4o", "turns": [
    {"content": "ok", "delay": 0.2, "usage": {"input_tokens": 50, "output_tokens": 1}}]}])
def test_holds_of_other_calls_make_calls_wait_not_end_the_task(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    # 8 x 0.02 held is 0.16, over the 0.05 hard limit; 8 x 0.001 spent is well within it.
    sc = sidecar(contended_task(model_server))
    codes = [r.status_code for r in asyncio.run(small_burst(sc.url, 8))]
    assert codes == [200] * 8  # two at a time fit; the others waited for them to settle
    status = sc.status()
    assert status["phase"] == "Running"
    assert Decimal(status["spentUSD"]) == 8 * Decimal("0.001")
    assert status["limitHits"]["hard"] == 0
    assert sc.metric("tether_budget_limit_hits_total", limit="hard") == 0


@pytest.mark.parametrize("script", [{"model": "gpt-4o", "turns": [
    {"content": "ok", "delay": 0.5, "usage": {"input_tokens": 50, "output_tokens": 1}}]}])
def test_a_call_still_crowded_out_after_the_wait_is_refused_as_retryable(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(contended_task(model_server), "--hold-wait-seconds", "0")
    responses = asyncio.run(small_burst(sc.url, 8))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) >= 2 and len(ok) + len(refused) == 8 and refused
    for r in refused:
        assert r.status_code == 429 and r.json()["error"]["type"] == "budget_contended"
        assert r.headers["retry-after"] == "1" and r.headers["x-should-retry"] == "true"
    status = sc.status()
    assert status["phase"] == "Running" and status["limitHits"]["hard"] == 0
    assert status["limitHits"]["contended"] == len(refused)
    assert Decimal(status["spentUSD"]) == len(ok) * Decimal("0.001") <= Decimal("0.05")
    assert sc.metric("tether_budget_limit_hits_total", limit="contended") == len(refused)
    assert httpx.post(sc.url + "/v1/chat/completions", json=SMALL, timeout=30).is_success
