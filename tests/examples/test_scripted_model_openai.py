"""The scripted model, driven by the official OpenAI SDK over real loopback HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

Conversation = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def client(scripted_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{scripted_url}/v1", api_key="sk-test", max_retries=0) as c:
        yield c


def test_turn_zero_is_a_tool_call_with_scripted_usage(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    result = client.chat.completions.create(model="gpt-4o", messages=conversation(0))

    choice = result.choices[0]
    assert result.model == "gpt-4o"  # the request names a model, so it is echoed
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll search for recent incidents first."
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_search_1", "search")
    assert json.loads(call.function.arguments) == {"q": "payment outage", "limit": 3}
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 30)
    assert result.usage.total_tokens == 150


def test_plain_text_turn_has_estimated_usage(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    messages = conversation(3)
    result = client.chat.completions.create(model="m", messages=messages)

    text = "The outage was caused by an expired certificate on the payment gateway."
    assert result.choices[0].message.content == text
    assert result.choices[0].finish_reason == "stop"
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert result.usage is not None
    assert result.usage.prompt_tokens == -(-len(canonical) // 4)
    assert result.usage.completion_tokens == -(-len(text) // 4)


def test_same_request_twice_gets_the_same_answer(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    first = client.chat.completions.create(model="m", messages=conversation(2))
    again = client.chat.completions.create(model="m", messages=conversation(2))

    assert first.model_dump() == again.model_dump()
    assert first.choices[0].message.tool_calls[0].id == "call_read_1"


def test_stream_with_usage_reassembles_the_answer(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=conversation(0),
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I'll search for recent incidents first."
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id == "call_search_1"
    assert deltas[0].function.name == "search"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"q": "payment outage", "limit": 3}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 30


def test_stream_without_include_usage_sends_no_usage(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=conversation(3), stream=True))

    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_faults_come_first_then_the_answer(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    messages = conversation(1)
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="m", messages=messages)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=messages)
    answer = client.chat.completions.create(model="m", messages=messages)

    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["retry-after"] == "1"
    assert unavailable.value.body["type"] == "server_error"
    assert limited.value.status_code == 429
    assert "retry-after" not in limited.value.response.headers
    assert answer.choices[0].message.tool_calls[0].function.name == "fetch"


def test_sdk_retries_through_faults(scripted_url: str, conversation: Conversation) -> None:
    script = {
        "turns": [
            {
                "content": "fine",
                "faults": [
                    {"status": 503, "retry_after": "0.01"},
                    {"status": 500, "retry_after": "0.01"},
                ],
            }
        ]
    }
    httpx.post(f"{scripted_url}/_scripted/reset", json={"script": script}).raise_for_status()

    with openai.OpenAI(base_url=f"{scripted_url}/v1", api_key="k", max_retries=2) as client:
        answer = client.chat.completions.create(model="m", messages=conversation(0))

    assert answer.choices[0].message.content == "fine"
    log = httpx.get(f"{scripted_url}/_scripted/requests").json()
    assert [entry["turn"] for entry in log] == [0, 0, 0]


def test_rule_wins_over_the_turn(client: openai.OpenAI, conversation: Conversation) -> None:
    messages = conversation(4, last="Summarize the conversation so far.")
    result = client.chat.completions.create(model="m", messages=messages)

    assert result.choices[0].message.content.startswith("Summary:")
    assert result.usage is not None
    assert result.usage.prompt_tokens == 50


def test_past_the_last_turn_is_a_400_naming_the_turn(
    client: openai.OpenAI, conversation: Conversation
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="m", messages=conversation(5))

    assert "no turn 5" in error.value.message
    assert error.value.body["type"] == "invalid_request_error"


def test_malformed_json_is_a_400_in_openai_format(scripted_url: str) -> None:
    response = httpx.post(
        f"{scripted_url}/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_requests_are_logged_with_their_credentials(
    client: openai.OpenAI, scripted_url: str, conversation: Conversation
) -> None:
    client.chat.completions.create(model="m", messages=conversation(3))

    [entry] = httpx.get(f"{scripted_url}/_scripted/requests").json()
    assert entry["path"] == "/v1/chat/completions"
    assert entry["authorization"] == "Bearer sk-test"
    assert entry["x-api-key"] is None
    assert entry["turn"] == 3
    assert entry["body"]["messages"] == conversation(3)


def test_the_log_is_the_bill_usage_of_answers_none_for_errors(
    client: openai.OpenAI, scripted_url: str, conversation: Conversation
) -> None:
    answered = client.chat.completions.create(model="m", messages=conversation(0))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=conversation(5))

    first, refused = httpx.get(f"{scripted_url}/_scripted/requests").json()
    assert answered.usage is not None
    assert first["usage"] == {"input_tokens": answered.usage.prompt_tokens,
                              "output_tokens": answered.usage.completion_tokens}
    assert refused["usage"] is None  # an error answer bills nothing


def test_a_client_that_hangs_up_during_the_delay_is_billed(scripted_url: str) -> None:
    script = {"turns": [{"content": "slow", "delay": 0.5, "usage": {"input_tokens": 7}}]}
    httpx.post(f"{scripted_url}/_scripted/reset", json={"script": script}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):  # the caller gives up; the server answers anyway
        httpx.post(f"{scripted_url}/v1/chat/completions", timeout=0.1,
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    def billed() -> Any:
        return httpx.get(f"{scripted_url}/_scripted/requests").json()[0]["usage"]
    deadline = time.monotonic() + 5
    while billed() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polls the log the delayed handler writes; no event to wait on
    assert billed() == {"input_tokens": 7, "output_tokens": 1}
