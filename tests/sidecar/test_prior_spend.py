"""Spend of earlier attempts, handed in by the operator (--prior-*): the hard limit holds across
attempts with an empty state dir, and a journal that already holds that spend is not counted
twice (issue #9, contract 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import upstream_requests
from .proc import Sidecar, task_doc

# Input is free and an output token costs 0.1 cent: max_tokens 20 holds 0.02 USD, and the
# script's 10 output tokens cost 0.01.
PRICING = {"inputPerMTok": "0", "outputPerMTok": "1000.00"}
BODY = {"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": "gpt-4o", "turns": [{"content": "ok",
                                          "usage": {"input_tokens": 7, "output_tokens": 10}}]}


def task(model_url: str) -> dict[str, Any]:
    doc = task_doc(model_url, costEnvelope={"hardLimitUSD": "0.05"})
    doc["spec"]["model"]["pricing"] = PRICING
    return doc


@pytest.fixture
def attempts(tmp_path: Path, model_server: str) -> Iterator[Callable[..., Sidecar]]:
    """Sidecars started one after another on one state dir, as attempts on one PVC."""
    started: list[Sidecar] = []

    def start(*args: str) -> Sidecar:
        sc = Sidecar(tmp_path, task(model_server), *args)
        started.append(sc)
        return sc.start()

    yield start
    for sc in started:
        sc.stop()


def test_prior_spend_counts_against_the_hard_limit_with_no_journal(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task(model_server), "--prior-spent-usd", "0.0375",
                 "--prior-input-tokens", "300", "--prior-output-tokens", "37")
    status = sc.status()
    assert (status["spentUSD"], status["inputTokens"], status["outputTokens"]) == (
        "0.037500", 300, 37)
    r = httpx.post(sc.url + "/v1/chat/completions", json=BODY, timeout=30)
    assert r.status_code == 402 and r.json()["error"]["type"] == "budget_exceeded"
    assert "hard limit 0.050000 USD: spent 0.037500" in r.json()["error"]["message"]
    assert sc.status()["phase"] == "BudgetExceeded"
    assert upstream_requests(model_server) == []


def test_a_journal_holding_the_prior_spend_is_not_counted_twice(
        attempts: Callable[..., Sidecar]) -> None:
    first = attempts()
    for _ in range(3):
        assert httpx.post(first.url + "/v1/chat/completions", json=BODY, timeout=30).is_success
    assert first.status()["spentUSD"] == "0.030000"
    first.stop()
    # The operator read 0.03 from the first attempt's summary; the journal says 0.03 too.
    second = attempts("--prior-spent-usd", "0.03", "--prior-input-tokens", "21",
                      "--prior-output-tokens", "30")
    status = second.status()
    assert (status["spentUSD"], status["inputTokens"], status["outputTokens"]) == (
        "0.030000", 21, 30)
    second.stop()
    # Each figure is the larger of the two: here the operator knows of more spend.
    third = attempts("--prior-spent-usd", "0.045", "--prior-output-tokens", "12")
    status = third.status()
    assert (status["spentUSD"], status["outputTokens"]) == ("0.045000", 30)
