"""The context budget through the real sidecar: compaction before the call, the summary paid
for like any call, and an explicit error when the prompt cannot fit."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tether_examples._serve import serve_in_thread

from ..bench._corpus import text
from . import _counting_model
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


def test_compaction_on_the_anchored_estimate_comes_before_the_threshold(
        sidecar: Callable[..., Sidecar]) -> None:
    """An agent that resends its whole history, 40 steps, far past its budget: the provider
    reports real counts, the sidecar anchors on them, and no prompt it sends reaches the
    compaction threshold — decided without loading the tokenizer."""
    with serve_in_thread(_counting_model.build_app()) as url:
        sc = sidecar(task_doc(url, contextBudget={"maxTokens": 8000, "keepLastToolResults": 2}))
        threshold = int(8000 * 0.8)
        rng = random.Random(12)
        msgs: list[dict[str, Any]] = [{"role": "system", "content": "You research."},
                                      {"role": "user", "content": "TASK: count the lighthouses."}]
        for _ in range(40):
            r = httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
                "model": "gpt-4o", "max_tokens": 50, "messages": msgs})
            assert r.status_code == 200, r.text
            reply = r.json()["choices"][0]["message"]
            msgs += [reply, {"role": "tool", "tool_call_id": reply["tool_calls"][0]["id"],
                             "content": text(rng, rng.choice(("prose", "json", "log", "code")))}]
        counted = httpx.get(url + "/_counted", timeout=5).json()
    sent = [c["prompt_tokens"] for c in counted if not c["summary"]]
    assert len(sent) == 40
    assert _counting_model.prompt_tokens(msgs) > 3 * threshold  # the history needed compacting
    assert max(sent) < threshold  # compacted before the threshold, never after it
    assert max(sent) > threshold * 0.6  # and not far before it: the budget is used
    assert sc.metric("tether_context_compactions_total", strategy="summarize") >= 3
    assert sc.status()["compactions"] >= 3
    maps = Path(f"/proc/{sc.proc.pid}/maps").read_text() if sc.proc else ""
    assert maps and "bpe_openai" not in maps  # the estimate decided: no tokenizer in memory
