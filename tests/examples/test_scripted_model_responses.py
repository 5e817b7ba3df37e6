"""The scripted model's Responses API, driven by the official OpenAI SDK over real loopback HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tether_examples import scripted_model
from tether_examples._serve import serve_in_thread

SEARCH = {"type": "function", "name": "search",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
SCRIPT = {"model": "gpt-4o", "turns": [
    {"content": "", "tool_calls": [{"id": "call_1", "name": "search", "arguments": {"q": "x"}}],
     "usage": {"input_tokens": 1500, "output_tokens": 20}},
    {"content": "Done."},
]}


@pytest.fixture
def url() -> Iterator[str]:
    with serve_in_thread(scripted_model.build_app(SCRIPT)) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as c:
        yield c


def billed(url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(url + "/_scripted/requests", timeout=5).json()
    return got


def canonical_tokens(items: list[Any]) -> int:
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return math.ceil(len(text) / 4)


def test_a_function_call_turn_with_scripted_usage(client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o", input="search", tools=[SEARCH])  # type: ignore[list-item]
    call = r.output[0]
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_1", "search", {"q": "x"})
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (1500, 20)
    assert r.id.startswith("resp_") and r.status == "completed"


def test_previous_response_id_continues_and_bills_the_stored_conversation(
        client: openai.OpenAI, url: str) -> None:
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="search")
    first = raw.http_response.json()
    output = {"type": "function_call_output", "call_id": "call_1", "output": "found"}
    second = client.responses.create(model="gpt-4o", previous_response_id=first["id"],
                                     input=[output])  # type: ignore[list-item]
    assert second.output_text == "Done."  # turn 1: the stored function call counts
    assert billed(url)[1]["turn"] == 1
    history = [{"role": "user", "content": "search"}, *first["output"], output]
    assert second.usage is not None
    # Billed for the whole conversation, as the provider bills a continued response.
    assert second.usage.input_tokens == canonical_tokens(history)


def test_stream_is_typed_events_ending_with_the_usage(client: openai.OpenAI) -> None:
    history = [{"role": "user", "content": "search"},
               {"type": "function_call", "call_id": "call_1", "name": "search",
                "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_1", "output": "found"}]
    # Typed as Any: the SDK's union of ~60 event types defeats narrowing by ``type``.
    events: list[Any] = list(client.responses.create(
        model="gpt-4o", input=history, stream=True))  # type: ignore[arg-type]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Done."
    final = events[-1].response
    assert final.output_text == "Done."
    assert final.usage is not None and final.usage.input_tokens == canonical_tokens(history)


def test_stream_helper_accumulates_a_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input="search") as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert final.output[0].arguments == '{"q":"x"}'


def test_store_false_keeps_nothing_and_an_unknown_id_is_a_400(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gpt-4o", input="search", store=False)
    with pytest.raises(openai.BadRequestError, match="not found"):
        client.responses.create(model="gpt-4o", input="more", previous_response_id=first.id)


def test_a_conversation_is_refused_with_the_reason(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="keeps no conversations"):
        client.responses.create(model="gpt-4o", input="hi", conversation="conv_1")
