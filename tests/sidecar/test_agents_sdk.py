"""An agent written with the OpenAI Agents SDK, unchanged but for its base URL, through the
sidecar: it talks to the Responses API, plain and streamed, runs its function tool, and the
spend is genai-prices' price for the usage the upstream reported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from genai_prices import Usage, calc_price
from openai import AsyncOpenAI

from .conftest import upstream_requests
from .proc import Sidecar, task_doc


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": "gpt-4o", "after_last": "repeat_last", "turns": [
        {"content": "", "tool_calls": [{"id": "call_1", "name": "search",
                                        "arguments": {"q": "tether"}}],
         "usage": {"input_tokens": 1500, "output_tokens": 20}},
        {"content": "Tether is a harness.", "usage": {"input_tokens": 1800, "output_tokens": 7}},
    ]}


def billed(model_server: str) -> Decimal:
    return sum((calc_price(Usage(input_tokens=r["usage"]["input_tokens"],
                                 output_tokens=r["usage"]["output_tokens"]),
                           model_ref="gpt-4o", provider_id="openai").total_price
                for r in upstream_requests(model_server) if r["usage"]), Decimal(0))


async def run_agent(base_url: str, streamed: bool) -> tuple[str, list[str]]:
    searched: list[str] = []

    @function_tool
    def search(q: str) -> str:
        """Search the web."""
        searched.append(q)
        return "tether is a harness for agents"

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="dummy-agent-key", max_retries=0)
    agent = Agent(name="researcher", instructions="Answer briefly.", tools=[search],
                  model=OpenAIResponsesModel(model="gpt-4o", openai_client=client))
    try:
        if streamed:
            run = Runner.run_streamed(agent, "What is tether?")
            async for _ in run.stream_events():
                pass
            return str(run.final_output), searched
        result = await Runner.run(agent, "What is tether?")
        return str(result.final_output), searched
    finally:
        await client.close()


@pytest.mark.parametrize("streamed", [False, True])
def test_an_agents_sdk_agent_runs_through_the_sidecar(
        sidecar: Callable[..., Sidecar], model_server: str, streamed: bool) -> None:
    set_tracing_disabled(True)  # the SDK would export its traces to OpenAI's servers
    sc = sidecar(task_doc(model_server))
    answer, searched = asyncio.run(run_agent(sc.url, streamed))
    assert (answer, searched) == ("Tether is a harness.", ["tether"])
    seen = upstream_requests(model_server)
    assert [r["path"] for r in seen] == ["/v1/responses"] * 2
    assert seen[1]["body"]["input"][-1]["type"] == "function_call_output"  # the tool's result
    status = sc.status()
    assert status["llmCalls"] == 2
    assert Decimal(status["spentUSD"]) == billed(model_server) > 0
