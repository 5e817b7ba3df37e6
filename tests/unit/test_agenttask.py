"""An AgentTask is accepted as written or refused with every problem named by its field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tether_api import InvalidAgentTask, parse_agenttask, parse_duration

from .conftest import task_dict


def test_minimal_task_gets_documented_defaults(minimal_task: dict[str, Any]) -> None:
    task = parse_agenttask(minimal_task)
    calls = task.spec.retry_policy.calls
    assert task.spec.cost_envelope.hard_limit_usd == Decimal("2.00")
    assert calls.max_attempts == 4
    assert calls.seconds("initial_interval") == 0.5
    assert "429" in calls.retry_on and "timeout" in calls.retry_on
    assert "400" in calls.non_retryable
    assert task.spec.context_budget.compact_at == 0.8
    assert task.spec.prompt_budget == 128_000


def test_round_trip_keeps_the_wire_names(minimal_task: dict[str, Any]) -> None:
    dumped = parse_agenttask(minimal_task).model_dump(by_alias=True, mode="json",
                                                      exclude_none=True)
    assert dumped["spec"]["costEnvelope"]["hardLimitUSD"] == "2.00"
    assert dumped["spec"]["observability"]["toolIO"] == "redacted"
    assert parse_agenttask(dumped) == parse_agenttask(minimal_task)


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0),
    ("1.5s", 1.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


INVALID = [
    ("soft above hard", {"costEnvelope": {"softLimitUSD": "3.00", "hardLimitUSD": "2.00"}},
     "spec.costEnvelope", "must not exceed hardLimitUSD"),
    ("negative limit", {"costEnvelope": {"hardLimitUSD": "-1.00"}},
     "spec.costEnvelope.hardLimitUSD", "not a money amount"),
    ("money as a float", {"costEnvelope": {"hardLimitUSD": 2.5}},
     "spec.costEnvelope.hardLimitUSD", "quoted decimal string"),
    ("unknown retry class", {"retryPolicy": {"calls": {"retryOn": [500, "sometimes"]}}},
     "spec.retryPolicy.calls.retryOn", "unknown retry class 'sometimes'"),
    ("bad duration", {"retryPolicy": {"calls": {"initialInterval": "5 seconds"}}},
     "spec.retryPolicy.calls.initialInterval", "is not a duration"),
    ("misspelt field", {"costEnvelope": {"hardLimitUsd": "2.00"}},
     "spec.costEnvelope.hardLimitUsd", "unknown field"),
    ("compactAt over 1", {"contextBudget": {"compactAt": 1.5}},
     "spec.contextBudget.compactAt", "less than or equal to 1"),
    ("duplicate tools", {"tools": [{"name": "a", "url": "http://x"},
                                   {"name": "a", "url": "http://y"}]},
     "spec", "names must be unique"),
    ("tool url not http", {"tools": [{"name": "a", "url": "ftp://x"}]},
     "spec.tools.0.url", "should match pattern"),
    ("compatible without url", {"model": {"provider": "openai-compatible", "name": "llama"}},
     "spec.model", "needs baseURL"),
    ("status out of range", {"tools": [{"name": "a", "url": "http://x",
                                        "verify": {"expectStatus": [200, 700]}}]},
     "spec.tools.0.verify.expectStatus", "100-599"),
    ("schema not a schema", {"tools": [{"name": "a", "url": "http://x",
                                        "verify": {"schema": {"type": "banana"}}}]},
     "spec.tools.0.verify.schema", "not a valid JSON Schema"),
    ("plaintext baseURL", {"model": {"provider": "openai", "name": "m",
                                     "baseURL": "http://model:8080/v1"}},
     "spec.model", "set spec.model.allowPlaintextHTTP: true"),
    ("caBundle with both refs", {"model": {"provider": "openai", "name": "m", "caBundle": {
        "configMapKeyRef": {"name": "ca", "key": "ca.crt"},
        "secretKeyRef": {"name": "ca", "key": "ca.crt"}}}},
     "spec.model.caBundle", "exactly one of configMapKeyRef and secretKeyRef"),
    ("caBundle with no ref", {"model": {"provider": "openai", "name": "m", "caBundle": {}}},
     "spec.model.caBundle", "exactly one of configMapKeyRef and secretKeyRef"),
]


@pytest.mark.parametrize(("case", "spec", "path", "message"), INVALID,
                         ids=[c[0] for c in INVALID])
def test_invalid_task_names_the_field(case: str, spec: dict[str, Any], path: str,
                                      message: str) -> None:
    with pytest.raises(InvalidAgentTask) as info:
        parse_agenttask(task_dict(**spec))
    matching = [p for p in info.value.problems if p.startswith(path + ":")]
    assert matching, info.value.problems
    assert any(message in p for p in matching), matching


def test_tool_retry_override_inherits_unset_fields() -> None:
    task = parse_agenttask(task_dict(
        retryPolicy={"calls": {"maxAttempts": 6, "initialInterval": "1s"}},
        tools=[{"name": "search", "url": "http://x", "retry": {"maxAttempts": 2}}]))
    tool = task.spec.tool("search")
    assert tool is not None and tool.retry is not None
    merged = tool.retry.apply(task.spec.retry_policy.calls)
    assert merged.max_attempts == 2
    assert merged.initial_interval == "1s"


def test_evaluation_is_not_a_field_until_it_does_something(minimal_task: dict[str, Any]) -> None:
    # It was accepted and used nowhere (issue #9); evaluation comes back as its own CRDs (#10).
    with pytest.raises(InvalidAgentTask, match="evaluation"):
        parse_agenttask({**minimal_task, "spec": {**minimal_task["spec"],
                                                  "evaluation": {"sampleRate": 0.5}}})


def test_plaintext_base_url_only_when_the_task_says_so() -> None:
    # tether run applies the CRD's rule through this model: a key sent over plain HTTP is a
    # decision a user writes down (issue #9).
    model = {"provider": "openai-compatible", "name": "llama", "baseURL": "http://vllm:8000/v1",
             "allowPlaintextHTTP": True}
    task = parse_agenttask(task_dict(model=model))
    assert task.spec.model.upstream_base == "http://vllm:8000/v1"
    secure = parse_agenttask(task_dict(model={"provider": "openai", "name": "m",
                                              "baseURL": "https://model.example/v1"}))
    assert secure.spec.model.allow_plaintext_http is False


def test_ca_bundle_from_a_config_map_or_a_secret() -> None:
    for ref in ("configMapKeyRef", "secretKeyRef"):
        bundle_ref = {ref: {"name": "ca", "key": "ca.crt"}}
        task = parse_agenttask(task_dict(model={"provider": "openai", "name": "m",
                                                "caBundle": bundle_ref}))
        bundle = task.spec.model.ca_bundle
        assert bundle is not None
        chosen = bundle.config_map_key_ref or bundle.secret_key_ref
        assert chosen is not None and (chosen.name, chosen.key) == ("ca", "ca.crt")
