"""The scripted model, driven by the official Anthropic SDK over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

Conversation = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def client(scripted_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=scripted_url, api_key="sk-ant-test", max_retries=0) as c:
        yield c


def test_turn_zero_is_text_then_tool_use(
    client: anthropic.Anthropic, conversation: Conversation
) -> None:
    message = client.messages.create(model="claude-x", max_tokens=100, messages=conversation(0))

    assert message.model == "claude-x"
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert text.type == "text"
    assert text.text == "I'll search for recent incidents first."
    assert tool.type == "tool_use"
    assert (tool.id, tool.name) == ("call_search_1", "search")
    assert tool.input == {"q": "payment outage", "limit": 3}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (120, 30)


def test_tool_only_turn_has_no_text_block(
    client: anthropic.Anthropic, conversation: Conversation
) -> None:
    # Turn 1 starts with two faults; pass them to reach the answer.
    for _ in range(2):
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model="m", max_tokens=100, messages=conversation(1))
    message = client.messages.create(model="m", max_tokens=100, messages=conversation(1))

    assert [block.type for block in message.content] == ["tool_use"]


def test_same_request_twice_gets_the_same_answer(
    client: anthropic.Anthropic, conversation: Conversation
) -> None:
    first = client.messages.create(model="m", max_tokens=100, messages=conversation(3))
    again = client.messages.create(model="m", max_tokens=100, messages=conversation(3))

    assert first.model_dump() == again.model_dump()
    assert first.stop_reason == "end_turn"


def test_stream_reassembles_text_and_tool_input(
    client: anthropic.Anthropic, conversation: Conversation
) -> None:
    with client.messages.stream(model="m", max_tokens=100, messages=conversation(0)) as stream:
        events = list(stream)
        final = stream.get_final_message()

    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    text, tool = final.content
    assert text.type == "text"
    assert text.text == "I'll search for recent incidents first."
    assert tool.type == "tool_use"
    assert tool.input == {"q": "payment outage", "limit": 3}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (120, 30)


def test_raw_stream_starts_with_a_provisional_output_count(
    client: anthropic.Anthropic, conversation: Conversation
) -> None:
    events = list(
        client.messages.create(model="m", max_tokens=100, messages=conversation(3), stream=True)
    )

    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1
    delta = next(event for event in events if event.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 1


def test_faults_use_anthropic_error_bodies(scripted_url: str, conversation: Conversation) -> None:
    script = {"turns": [{"content": "ok", "faults": [{"status": 529}, {"status": 503}]}]}
    httpx.post(f"{scripted_url}/_scripted/reset", json={"script": script}).raise_for_status()

    with anthropic.Anthropic(base_url=scripted_url, api_key="k", max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            client.messages.create(model="m", max_tokens=10, messages=conversation(0))
        with pytest.raises(anthropic.InternalServerError) as unavailable:
            client.messages.create(model="m", max_tokens=10, messages=conversation(0))
        answer = client.messages.create(model="m", max_tokens=10, messages=conversation(0))

    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "scripted fault 1 of 2 at turn 0"},
    }
    assert unavailable.value.status_code == 503
    assert answer.content[0].type == "text"


def test_fault_retry_after_is_sent(client: anthropic.Anthropic, conversation: Conversation) -> None:
    with pytest.raises(anthropic.InternalServerError) as unavailable:
        client.messages.create(model="m", max_tokens=10, messages=conversation(1))

    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["retry-after"] == "1"


def test_fault_counters_are_per_endpoint(
    client: anthropic.Anthropic, scripted_url: str, conversation: Conversation
) -> None:
    with openai.OpenAI(base_url=f"{scripted_url}/v1", api_key="k", max_retries=0) as other:
        for _ in range(2):
            with pytest.raises(openai.APIStatusError, match="scripted fault"):
                other.chat.completions.create(model="m", messages=conversation(1))
    # The OpenAI endpoint used up its faults; the Anthropic one still has both.
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model="m", max_tokens=10, messages=conversation(1))


def test_malformed_json_is_a_400_in_anthropic_format(scripted_url: str) -> None:
    response = httpx.post(f"{scripted_url}/v1/messages", content=b"not json")

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_requests_log_the_api_key_and_reset_clears_it(
    client: anthropic.Anthropic, scripted_url: str, conversation: Conversation
) -> None:
    client.messages.create(model="m", max_tokens=10, messages=conversation(3))

    [entry] = httpx.get(f"{scripted_url}/_scripted/requests").json()
    assert (entry["path"], entry["turn"]) == ("/v1/messages", 3)
    # Older SDKs send the key as x-api-key; anthropic 2.x sends it as a bearer token.
    assert "sk-ant-test" in (
        entry["x-api-key"],
        (entry["authorization"] or "").removeprefix("Bearer "),
    )
    httpx.post(f"{scripted_url}/_scripted/reset").raise_for_status()
    assert httpx.get(f"{scripted_url}/_scripted/requests").json() == []
