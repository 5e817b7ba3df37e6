"""The official anthropic SDK through the sidecar: plain, streamed, tool use; cost and key."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from genai_prices import Usage, calc_price

from .conftest import upstream_requests
from .proc import REAL_KEY, Sidecar, task_doc

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": MODEL, "turns": [
        {"content": "Bonjour.", "usage": {"input_tokens": 900, "output_tokens": 12}},
        {"content": "Let me look.", "tool_calls": [{"id": "toolu_1", "name": "search",
                                                    "arguments": {"q": "x"}}],
         "usage": {"input_tokens": 1000, "output_tokens": 30}},
    ], "after_last": "repeat_last"}


def cost(inp: int, out: int) -> Decimal:
    return calc_price(Usage(input_tokens=inp, output_tokens=out), model_ref=MODEL,
                      provider_id="anthropic").total_price


def client(sc: Sidecar) -> anthropic.Anthropic:
    c = anthropic.Anthropic(base_url=sc.url, api_key="dummy", max_retries=0)
    sc.closers.append(c.close)
    return c


def test_plain_message(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, provider="anthropic", name=MODEL))
    msg = client(sc).messages.create(model=MODEL, max_tokens=100,
                                     messages=[{"role": "user", "content": "salut"}])
    assert msg.content[0].text == "Bonjour."  # type: ignore[union-attr]
    assert Decimal(sc.status()["spentUSD"]) == cost(900, 12)
    seen = upstream_requests(model_server)[-1]
    assert seen["x-api-key"] == REAL_KEY and seen["authorization"] is None


def test_stream_with_tool_use(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, provider="anthropic", name=MODEL))
    with client(sc).messages.stream(
            model=MODEL, max_tokens=100,
            messages=[{"role": "user", "content": "find x"},
                      {"role": "assistant", "content": "Bonjour."},
                      {"role": "user", "content": "go"}]) as stream:
        final = stream.get_final_message()
    tool_uses = [b for b in final.content if b.type == "tool_use"]
    assert tool_uses and tool_uses[0].input == {"q": "x"}
    assert final.usage.output_tokens == 30
    assert Decimal(sc.status()["spentUSD"]) == cost(1000, 30)
    assert sc.metric("tether_llm_tokens_total", type="output") == 30


def test_openai_route_refused_for_an_anthropic_task(sidecar: Callable[..., Sidecar],
                                                     model_server: str) -> None:
    import httpx
    sc = sidecar(task_doc(model_server, provider="anthropic", name=MODEL))
    r = httpx.post(sc.url + "/v1/chat/completions", json={"messages": [{"role": "user",
                                                                        "content": "x"}]})
    assert r.status_code == 400 and "/v1/messages" in r.json()["error"]["message"]
