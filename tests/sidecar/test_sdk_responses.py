"""The official openai SDK's Responses API, used as an agent would, through the sidecar to the
scripted model: plain, streamed, a function call round trip, a chain the provider keeps; the
spend always equals genai-prices' price for the usage the upstream reported."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage, calc_price

from .conftest import upstream_requests
from .proc import REAL_KEY, Sidecar, task_doc

SEARCH: Any = {"type": "function", "name": "search", "description": "Search the web.",
               "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                              "required": ["q"]}}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "tether is a harness"}


@pytest.fixture
def script() -> dict[str, Any]:
    """Turn 0 calls a tool, turn 1 answers; a summary rule for the context budget."""
    return {
        "model": "gpt-4o",
        "turns": [
            {"content": "", "tool_calls": [{"id": "call_1", "name": "search",
                                            "arguments": {"q": "tether"}}],
             "usage": {"input_tokens": 1500, "output_tokens": 20}},
            {"content": "Tether is a harness.", "usage": {"input_tokens": 1800,
                                                          "output_tokens": 7}},
        ],
        "rules": [{"contains": "Summarize the conversation", "content": "Summary: all good.",
                   "usage": {"input_tokens": 300, "output_tokens": 12}}],
        "after_last": "repeat_last",
    }


def price(inp: int, out: int) -> Decimal:
    return calc_price(Usage(input_tokens=inp, output_tokens=out), model_ref="gpt-4o",
                      provider_id="openai").total_price


def billed(model_server: str) -> Decimal:
    """What the upstream reported, priced by genai-prices: what a provider would bill."""
    return sum((price(r["usage"]["input_tokens"], r["usage"]["output_tokens"])
                for r in upstream_requests(model_server) if r["usage"]), Decimal(0))


def client(sc: Sidecar) -> openai.OpenAI:
    c = openai.OpenAI(base_url=sc.url + "/v1", api_key="dummy-agent-key", max_retries=0)
    sc.closers.append(c.close)
    return c


def test_plain_response_is_relayed_and_charged(sidecar: Callable[..., Sidecar],
                                               model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    r = client(sc).responses.create(model="gpt-4o", input="find tether", tools=[SEARCH],
                                    max_output_tokens=100)
    call = r.output[0]
    assert call.type == "function_call" and call.arguments == '{"q":"tether"}'
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (1500, 20)
    status = sc.status()
    assert Decimal(status["spentUSD"]) == billed(model_server) == price(1500, 20)
    assert (status["inputTokens"], status["outputTokens"], status["llmCalls"]) == (1500, 20, 1)
    assert Decimal(str(sc.metric("tether_cost_usd_total", task="t1"))) == pytest.approx(
        price(1500, 20))
    seen = upstream_requests(model_server)[-1]
    assert seen["path"] == "/v1/responses" and seen["authorization"] == f"Bearer {REAL_KEY}"
    assert seen["body"]["max_output_tokens"] == 100 and "stream_options" not in seen["body"]
    span = sc.wait_span(lambda s: s["name"] == "chat gpt-4o")
    assert span["attributes"]["gen_ai.usage.input_tokens"] == 1500
    assert "tether.context.provider_held" not in span["attributes"]  # nothing kept upstream


def test_missing_max_output_tokens_is_capped_so_the_hold_is_honest(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    client(sc).responses.create(model="gpt-4o", input="find tether")
    assert upstream_requests(model_server)[-1]["body"]["max_output_tokens"] == 4096


def test_stream_is_relayed_event_by_event_and_charged(sidecar: Callable[..., Sidecar],
                                                      model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    history = [{"role": "user", "content": "find tether"},
               {"type": "function_call", "call_id": "call_1", "name": "search",
                "arguments": '{"q":"tether"}'}, OUTPUT]
    events: list[Any] = list(client(sc).responses.create(
        model="gpt-4o", input=history, stream=True, max_output_tokens=50))  # type: ignore[arg-type]
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text == "Tether is a harness."
    assert Decimal(sc.status()["spentUSD"]) == billed(model_server) == price(1800, 7)
    with client(sc).responses.stream(model="gpt-4o", input="find tether",
                                     max_output_tokens=50) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert Decimal(sc.status()["spentUSD"]) == billed(model_server) == price(1800, 7) + price(
        1500, 20)


def test_function_call_round_trip_with_the_history_resent(sidecar: Callable[..., Sidecar],
                                                          model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    c = client(sc)
    first = c.responses.create(model="gpt-4o", input="find tether", tools=[SEARCH], store=False)
    history: list[Any] = [{"role": "user", "content": "find tether"},
                          *[item.model_dump(exclude_none=True) for item in first.output], OUTPUT]
    second = c.responses.create(model="gpt-4o", input=history, tools=[SEARCH], store=False)
    assert second.output_text == "Tether is a harness."
    sent = upstream_requests(model_server)[-1]["body"]["input"]
    assert sent[-1] == OUTPUT and sent[1]["type"] == "function_call"
    assert Decimal(sc.status()["spentUSD"]) == billed(model_server) == price(1500, 20) + price(
        1800, 7)


def test_a_previous_response_id_chain_is_counted_from_the_usage_the_sidecar_saw(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    c = client(sc)
    first = c.responses.create(model="gpt-4o", input="find tether", tools=[SEARCH])
    second = c.responses.create(model="gpt-4o", previous_response_id=first.id,
                                input=[OUTPUT], tools=[SEARCH])  # type: ignore[list-item]
    assert second.output_text == "Tether is a harness."
    span = sc.wait_span(lambda s: "tether.context.provider_held_tokens" in s["attributes"])
    attrs = span["attributes"]
    assert attrs["tether.context.provider_held_tokens"] == 1500 + 20  # first's input + output
    assert f"previous_response_id {first.id}: 1500 input + 20 output" in \
        attrs["tether.context.provider_held"]
    assert attrs["tether.context.tokens_estimated"] > 1520  # plus this request's own input
    assert Decimal(sc.status()["spentUSD"]) == billed(model_server)


def test_a_chain_past_the_context_budget_is_refused_before_it_leaves(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, contextBudget={"maxTokens": 1024}))
    c = client(sc)
    first = c.responses.create(model="gpt-4o", input="find tether", max_output_tokens=50)
    with pytest.raises(openai.BadRequestError) as info:
        c.responses.create(model="gpt-4o", previous_response_id=first.id, input=[OUTPUT],  # type: ignore[list-item]
                           max_output_tokens=50)
    error = info.value.body
    assert isinstance(error, dict) and error["type"] == "context_budget_exceeded"
    assert "1520 the provider keeps" in error["message"]
    assert f"previous_response_id {first.id}" in error["message"]
    assert len(upstream_requests(model_server)) == 1  # the refused call never left
    assert Decimal(sc.status()["spentUSD"]) == price(1500, 20)


def test_an_unknown_previous_response_is_uncounted_and_said_so(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    with pytest.raises(openai.BadRequestError, match="not found"):  # the provider's answer
        client(sc).responses.create(model="gpt-4o", previous_response_id="resp_elsewhere",
                                    input="go on")
    span = sc.wait_span(lambda s: "tether.context.provider_held" in s["attributes"])
    assert span["attributes"]["tether.context.provider_held"] == (
        "uncounted: previous_response_id resp_elsewhere (no response of it passed through "
        "this sidecar)")
    assert "cannot count: previous_response_id resp_elsewhere" in sc.log()


def test_a_5xx_is_retried_and_only_the_answer_is_charged(
        sidecar: Callable[..., Sidecar], model_server: str, script: dict[str, Any]) -> None:
    script["turns"][0]["faults"] = [{"status": 500}]
    httpx.post(model_server + "/_scripted/reset", json={"script": script}, timeout=5)
    sc = sidecar(task_doc(model_server))
    r = client(sc).responses.create(model="gpt-4o", input="find tether", max_output_tokens=50)
    assert r.output[0].type == "function_call"
    assert [q["usage"] is not None for q in upstream_requests(model_server)] == [False, True]
    status = sc.status()
    assert status["retries"] == 1
    assert Decimal(status["spentUSD"]) == billed(model_server) == price(1500, 20)


def test_the_hard_limit_holds_on_responses(sidecar: Callable[..., Sidecar],
                                           model_server: str) -> None:
    sc = sidecar(task_doc(model_server, costEnvelope={"hardLimitUSD": "0.01"}))
    with pytest.raises(openai.APIStatusError) as info:
        # 4096 output tokens (the default cap) at 10 USD/MTok are 0.04 USD: can never fit.
        client(sc).responses.create(model="gpt-4o", input="find tether")
    assert info.value.status_code == 402
    assert info.value.response.headers["x-tether-error-class"] == "budget_exceeded"
    assert upstream_requests(model_server) == []
    assert sc.status()["phase"] == "BudgetExceeded"


def test_after_a_restart_a_call_is_replayed_and_the_chain_still_counted(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    doc = task_doc(model_server)
    sc = sidecar(doc)
    first = client(sc).responses.create(model="gpt-4o", input="find tether",
                                        max_output_tokens=50)
    spent = sc.status()["spentUSD"]
    sc.stop()
    again = Sidecar(sc.workdir, doc).start()  # a new pod on the same volume
    try:
        c = client(again)
        raw = c.responses.with_raw_response.create(model="gpt-4o", input="find tether",
                                                   max_output_tokens=50)
        assert raw.headers["x-tether-replayed"] == "true" and raw.parse().id == first.id
        assert len(upstream_requests(model_server)) == 1  # answered from the journal
        assert again.status()["spentUSD"] == spent  # and not charged again
        c.responses.create(model="gpt-4o", previous_response_id=first.id, input=[OUTPUT],  # type: ignore[list-item]
                           max_output_tokens=50)
        span = again.wait_span(
            lambda s: s["attributes"].get("tether.context.provider_held_tokens") == 1520)
        assert "uncounted" not in span["attributes"]["tether.context.provider_held"]
    finally:
        again.stop()
