"""/v1/responses at its edges: a stream broken part way, bodies the sidecar refuses, the input
compacted to fit the budget, and an openai-compatible server's model priced as the task declares
(or not started at all without a price)."""

from __future__ import annotations

import json
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage, calc_price

from ._raw_upstream import SSE_HEAD, _read_request, _reset, chunked
from .conftest import upstream_requests
from .proc import Sidecar, task_doc

RESPONSES = "/v1/responses"
# Input is free and an output token costs a cent: max_output_tokens 10 holds exactly 0.10 USD.
PRICING = {"inputPerMTok": "0", "outputPerMTok": "10000.00"}
CREATED = (b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
           b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[],'
           b'"usage":null}}\n\n')


@pytest.fixture
def breaking_upstream(request: pytest.FixtureRequest) -> Iterator[str]:
    """Answers every request with the first event of a Responses stream, then resets the
    connection (``reset``) or ends the body cleanly there (``ended``)."""
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            if _read_request(self.request) is None:
                return
            self.request.sendall(SSE_HEAD + chunked(CREATED))
            if request.param == "reset":
                _reset(self.request)
            else:
                self.request.sendall(b"0\r\n\r\n")
                self.request.close()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("breaking_upstream", "reason"), [
    ("reset", "upstream stream broke"), ("ended", "ended before its final event")],
    indirect=["breaking_upstream"])
def test_a_stream_cut_before_its_final_event_is_an_error_and_charged_its_hold(
        sidecar: Callable[..., Sidecar], breaking_upstream: str, reason: str) -> None:
    doc = task_doc(breaking_upstream)
    doc["spec"]["model"]["pricing"] = PRICING
    sc = sidecar(doc)
    c = openai.OpenAI(base_url=sc.url + "/v1", api_key="dummy", max_retries=0)
    sc.closers.append(c.close)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match=reason):
        for event in c.responses.create(model="gpt-4o", input="hi", stream=True,
                                        max_output_tokens=10):
            seen.append(event.type)
    assert seen == ["response.created"]  # what came is relayed; then an error, never an end
    status = sc.status()
    assert Decimal(status["spentUSD"]) == Decimal("0.10")  # the provider bills a cut stream
    assert status["reservedUSD"] == "0.000000"


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"model": "gpt-4o", "input": [', "not valid JSON"),
    (b'{"model": "gpt-4o"}', "input: a non-empty string or list of input items is required"),
    (b'{"model": "gpt-4o", "input": [1, 2]}', "input: a non-empty string or list"),
    (b'{"model": "gpt-4o", "input": "hi", "background": true}', "background: not supported"),
    (b'{"model": "gpt-3.5-turbo", "input": "hi"}', "this task may use 'gpt-4o'"),
])
def test_a_bad_responses_body_is_a_400_and_nothing_moves(
        sidecar: Callable[..., Sidecar], model_server: str, body: bytes, reason: str) -> None:
    sc = sidecar(task_doc(model_server))
    for path in (RESPONSES, "/responses"):
        r = httpx.post(sc.url + path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "bad_request" and reason in r.json()["error"]["message"]
    status = sc.status()
    assert (status["llmCalls"], status["spentUSD"], status["reservedUSD"]) == \
        (0, "0.000000", "0.000000")
    assert upstream_requests(model_server) == []


def test_an_anthropic_task_is_told_its_route(sidecar: Callable[..., Sidecar],
                                             model_server: str) -> None:
    sc = sidecar(task_doc(model_server, provider="anthropic", name="claude-sonnet-4-5"))
    r = httpx.post(sc.url + RESPONSES, json={"model": "claude-sonnet-4-5", "input": "hi"})
    assert r.status_code == 400 and "send /v1/messages" in r.json()["error"]["message"]


def long_input() -> list[dict[str, Any]]:
    """A task, then twelve function calls with their long outputs."""
    items: list[dict[str, Any]] = [{"role": "user", "content": "TASK: find tether."}]
    for i in range(12):
        items += [{"type": "function_call", "call_id": f"c{i}", "name": "search",
                   "arguments": json.dumps({"q": i})},
                  {"type": "function_call_output", "call_id": f"c{i}",
                   "output": f"result {i}: " + "lorem ipsum dolor " * 40}]
    return items


def test_a_long_input_is_compacted_with_calls_and_outputs_kept_together(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={
        "maxTokens": 2000, "strategy": "truncate", "keepLastToolResults": 1}))
    items = long_input()
    r = httpx.post(sc.url + RESPONSES, json={"model": "gpt-4o", "input": items,
                                             "max_output_tokens": 50}, timeout=30)
    assert r.status_code == 200, r.text
    sent = upstream_requests(model_server)[-1]["body"]["input"]
    assert sent[0] == items[0] and "earlier messages were removed" in sent[1]["content"]
    assert len(sent) < len(items) and sent[-2:] == items[-2:]
    calls = {i["call_id"] for i in sent if i.get("type") == "function_call"}
    assert {i["call_id"] for i in sent if i.get("type") == "function_call_output"} <= calls
    assert sc.status()["compactions"] == 1


def test_a_summary_is_a_responses_call_charged_like_any(sidecar: Callable[..., Sidecar],
                                                         model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={"maxTokens": 2000,
                                                       "keepLastToolResults": 1}))
    r = httpx.post(sc.url + RESPONSES, json={"model": "gpt-4o", "input": long_input(),
                                             "max_output_tokens": 50}, timeout=30)
    assert r.status_code == 200, r.text
    summary, call = upstream_requests(model_server)
    assert summary["path"] == call["path"] == RESPONSES
    assert summary["body"]["store"] is False
    assert summary["body"]["input"].startswith("Summarize the conversation")
    note = call["body"]["input"][1]
    assert note["role"] == "user" and note["content"].endswith("Summary: all good.")
    spent = Decimal(sc.status()["spentUSD"])
    assert spent == sum((price(q["usage"]) for q in (summary, call)), Decimal(0))


def price(usage: dict[str, int]) -> Decimal:
    return calc_price(Usage(input_tokens=usage["input_tokens"],
                            output_tokens=usage["output_tokens"]),
                      model_ref="gpt-4o", provider_id="openai").total_price


LOCAL = {"inputPerMTok": "0.20", "outputPerMTok": "0.60"}


def compatible(model_server: str, **model: Any) -> dict[str, Any]:
    doc = task_doc(model_server, name="my-local-model-7b")
    doc["spec"]["model"].update(provider="openai-compatible", **model)
    return doc


def test_an_openai_compatible_model_is_charged_its_declared_prices(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(compatible(model_server, pricing=LOCAL))
    c = openai.OpenAI(base_url=sc.url + "/v1", api_key="dummy", max_retries=0)
    sc.closers.append(c.close)
    chat = c.chat.completions.create(model="my-local-model-7b", max_tokens=50,
                                     messages=[{"role": "user", "content": "find tether"}])
    assert chat.choices[0].message.content == "Hello there."  # the scripted turn 0
    resp = c.responses.create(model="my-local-model-7b", input="find tether",
                              max_output_tokens=50)
    assert resp.output_text == "Hello there." and resp.model == "my-local-model-7b"
    usage = [r["usage"] for r in upstream_requests(model_server)]
    expected = sum(((Decimal(u["input_tokens"]) * Decimal("0.20")
                     + Decimal(u["output_tokens"]) * Decimal("0.60")) / 1_000_000 for u in usage),
                   Decimal(0))
    status = sc.status()
    assert status["priceSource"] == "spec"
    assert Decimal(status["spentUSD"]) == expected.quantize(Decimal("0.000001"))


def test_an_openai_compatible_model_without_a_price_does_not_start(tmp_path: Path) -> None:
    sc = Sidecar(tmp_path, compatible("http://127.0.0.1:9"))
    done = subprocess.run(sc.command(), capture_output=True, text=True, timeout=60, env=sc.env)
    assert done.returncode == 2
    assert "genai-prices has no price for openai-compatible model 'my-local-model-7b'" in \
        done.stderr and "set spec.model.pricing {inputPerMTok, outputPerMTok}" in done.stderr
