"""The official openai SDK, used as an agent would, through the sidecar to a scripted model."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import openai
import pytest
from genai_prices import Usage, calc_price

from tether_sidecar.journal import call_key

from .conftest import upstream_requests
from .proc import REAL_KEY, Sidecar, task_doc


def price(inp: int, out: int, model: str = "gpt-4o", provider: str = "openai") -> Decimal:
    return calc_price(Usage(input_tokens=inp, output_tokens=out), model_ref=model,
                      provider_id=provider).total_price


def client(sc: Sidecar) -> openai.OpenAI:
    c = openai.OpenAI(base_url=sc.url + "/v1", api_key="dummy-agent-key", max_retries=0)
    sc.closers.append(c.close)
    return c


def test_plain_completion_is_relayed_and_charged(sidecar: Callable[..., Sidecar],
                                                  model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    reply = client(sc).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=100)
    assert reply.choices[0].message.content == "Hello there."
    assert reply.usage is not None and reply.usage.prompt_tokens == 1200
    expected = price(1200, 35)
    status = sc.status()
    assert Decimal(status["spentUSD"]) == expected
    assert (status["inputTokens"], status["outputTokens"]) == (1200, 35)
    assert Decimal(str(sc.metric("tether_cost_usd_total", task="t1"))) == pytest.approx(expected)
    assert sc.metric("tether_llm_tokens_total", type="input") == 1200
    seen = upstream_requests(model_server)[-1]
    assert seen["authorization"] == f"Bearer {REAL_KEY}"  # the agent's dummy key never leaves


def test_tool_call_response(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    messages: list[dict[str, object]] = [{"role": "user", "content": "search"},
                                         {"role": "assistant", "content": "Hello there."}]
    reply = client(sc).chat.completions.create(model="gpt-4o", messages=messages,
                                               max_tokens=50)
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "search"  # type: ignore[union-attr]
    assert reply.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("agent_asks_usage", [True, False])
def test_stream_is_relayed_and_charged(sidecar: Callable[..., Sidecar], model_server: str,
                                       agent_asks_usage: bool) -> None:
    sc = sidecar(task_doc(model_server))
    extra = {"stream_options": {"include_usage": True}} if agent_asks_usage else {}
    stream = client(sc).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
        max_tokens=100, **extra)  # type: ignore[call-overload]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there."
    usage_chunks = [c for c in chunks if c.usage is not None]
    # The agent sees usage only if it asked; the sidecar always asked upstream.
    assert len(usage_chunks) == (1 if agent_asks_usage else 0)
    assert upstream_requests(model_server)[-1]["body"]["stream_options"]["include_usage"]
    assert Decimal(sc.status()["spentUSD"]) == price(1200, 35)


def test_missing_max_tokens_is_capped_so_the_hold_is_honest(
        sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    client(sc).chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": "hi"}])
    body = upstream_requests(model_server)[-1]["body"]
    assert body["max_completion_tokens"] == 4096  # spec.model.defaultMaxTokens


def test_soft_limit_warns_and_the_call_still_goes(sidecar: Callable[..., Sidecar],
                                                  model_server: str) -> None:
    sc = sidecar(task_doc(model_server, costEnvelope={"softLimitUSD": "0.001",
                                                      "hardLimitUSD": "2.00"}))
    c = client(sc)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}],
                              max_tokens=10)
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "b"}], max_tokens=10)
    assert "soft limit" in raw.headers["x-tether-budget-warning"]
    assert raw.parse().choices[0].message.content == "Hello there."
    assert sc.status()["limitHits"] == {"soft": 1, "hard": 0, "contended": 0}
    assert sc.metric("tether_budget_limit_hits_total", limit="soft") == 1


def test_span_per_call_with_genai_attributes(sidecar: Callable[..., Sidecar],
                                             model_server: str) -> None:
    sc = sidecar(task_doc(model_server))
    client(sc).chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=100)
    span = sc.wait_span(lambda s: s["name"] == "chat gpt-4o")
    attrs = span["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.output_tokens"] == 35
    assert Decimal(str(attrs["tether.cost_usd"])) == pytest.approx(price(1200, 35))
    assert attrs["tether.context.tokens_estimated"] > 0 and len(attrs["tether.context.hash"]) == 32
    assert span["traceId"] == "6f1c2a3e00004000800000000000abcd"  # the task UID


def test_context_hash_names_the_request_as_sent(sidecar: Callable[..., Sidecar],
                                                model_server: str) -> None:
    """The span's context hash is the journal's call key of what reached the provider: the same
    value when the sidecar changed nothing, that of the capped body when it set max_tokens."""
    sc = sidecar(task_doc(model_server))
    c = client(sc)
    kept = [{"role": "user", "content": "kept as sent"}]
    capped = [{"role": "user", "content": "max_tokens set by the sidecar"}]
    c.chat.completions.create(model="gpt-4o", messages=kept, max_tokens=100)
    c.chat.completions.create(model="gpt-4o", messages=capped)
    sent = [r["body"] for r in upstream_requests(model_server)]
    assert "max_tokens" in sent[1] or "max_completion_tokens" in sent[1]
    journal = [json.loads(line) for line in
               (sc.state_dir / "journal.jsonl").read_text().splitlines()]
    keys = [doc["key"] for doc in journal if doc["t"] == "begin"]
    kept_hash = keys[0][:32]  # nothing rewritten: the journal key, not hashed again
    capped_hash = call_key("llm", "/chat/completions", sent[1])[:32]
    for want in (kept_hash, capped_hash):
        sc.wait_span(lambda s, want=want: s["attributes"].get("tether.context.hash") == want)
    # The key names the agent's request; the hash, what was sent after the cap.
    assert keys[1][:32] != capped_hash
