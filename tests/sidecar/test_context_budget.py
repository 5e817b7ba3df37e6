"""The context budget through the real sidecar: compaction before the call, the summary paid
for like any call, and an explicit error when the prompt cannot fit."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from .conftest import upstream_requests
from .proc import Sidecar, task_doc


def history(steps: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You research."},
                                  {"role": "user", "content": "TASK: count the lighthouses."}]
    for i in range(steps):
        msgs += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": f"c{i}", "type": "function",
                      "function": {"name": "search", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": f"c{i}",
                  "content": f"page {i}: " + "the coast has many lighthouses " * 40}]
    return msgs


def test_summarize_before_overflow(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={
        "maxTokens": 4000, "compactAt": 0.5, "keepLastToolResults": 1}))
    body = {"model": "gpt-4o", "max_tokens": 50, "messages": history(8)}
    r = httpx.post(sc.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    summary_call, main_call = upstream_requests(model_server)
    assert "Summarize the conversation" in summary_call["body"]["messages"][0]["content"]
    sent = main_call["body"]["messages"]
    assert sent[0]["content"] == "You research." and sent[1]["content"].startswith("TASK")
    assert "Summary: all good." in sent[2]["content"]  # the scripted summary replaced the middle
    assert sent[-1]["content"].startswith("page 7")  # the last tool result stays verbatim
    status = sc.status()
    assert status["compactions"] == 1 and status["llmCalls"] == 1
    # The summary call (300) is paid for and counted; the compacted prompt holds one assistant
    # turn, so the script answers it as turn 1 (1500).
    assert status["inputTokens"] == 300 + 1500
    assert Decimal(status["spentUSD"]) > 0
    assert sc.metric("tether_context_compactions_total", strategy="summarize") == 1

    # The next step resends the history plus one step: the summary is reused, not re-bought.
    body["messages"] = history(9)
    assert httpx.post(sc.url + "/v1/chat/completions", json=body, timeout=30).is_success
    assert len(upstream_requests(model_server)) == 3


def test_truncate_strategy_does_not_call_the_model(sidecar: Callable[..., Sidecar],
                                                   model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={
        "maxTokens": 4000, "compactAt": 0.5, "strategy": "truncate"}))
    r = httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-4o", "max_tokens": 50, "messages": history(8)})
    assert r.status_code == 200
    (only,) = upstream_requests(model_server)
    assert "earlier messages were removed" in only["body"]["messages"][2]["content"]


def test_prompt_that_cannot_fit_is_refused_not_truncated(sidecar: Callable[..., Sidecar],
                                                         model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={"maxTokens": 1000}))
    r = httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-4o", "max_tokens": 50,
        "messages": [{"role": "system", "content": "rule " * 2000},
                     {"role": "user", "content": "go"}]})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "context_budget_exceeded"
    assert upstream_requests(model_server) == []
