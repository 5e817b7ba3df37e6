"""The Responses API dialect: input items as turns for the context budget, the stream's final
usage, and provider-held context counted from what the sidecar saw (and refused past the budget)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tether_api import ContextBudget
from tether_sidecar import responses_items as items
from tether_sidecar.context import ContextManager, TokenCounter
from tether_sidecar.errors import BadRequest, ContextBudgetExceeded
from tether_sidecar.responses_chains import ResponseChains
from tether_sidecar.responses_dialect import RESPONSES
from tether_sidecar.responses_sse import ResponsesStreamUsage
from tether_sidecar.upstream import TransportError


def call(i: int) -> dict[str, Any]:
    return {"type": "function_call", "call_id": f"c{i}", "name": "search",
            "arguments": json.dumps({"q": i})}


def output(i: int, filler: int = 60) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"c{i}",
            "output": f"result {i}: " + "lorem ipsum dolor " * filler}


def history(steps: int) -> list[dict[str, Any]]:
    """A task, then steps of: reasoning, two parallel calls, their two outputs."""
    out: list[dict[str, Any]] = [{"role": "user", "content": "TASK: find the population."}]
    for i in range(steps):
        out += [{"type": "reasoning", "id": f"rs{i}", "summary": [],
                 "encrypted_content": "x" * 500},
                call(2 * i), call(2 * i + 1), output(2 * i), output(2 * i + 1)]
    return out


def harness(tmp_path: Path, limit: int = 2000, **budget: Any) -> Any:
    """What the dialect reads of the harness: the context manager and the chains' place."""
    context = ContextManager(ContextBudget.model_validate(budget), limit, TokenCounter())
    return SimpleNamespace(context=context, responses=None, name="t1",
                           settings=SimpleNamespace(state_dir=tmp_path))


async def never(_: list[Any]) -> str:
    raise AssertionError("truncate does not summarise")


def test_turns_keep_parallel_calls_and_their_reasoning_together() -> None:
    turns = items.turns(history(2))
    assert [t["role"] for t in turns] == ["user", "assistant", "tool", "tool",
                                          "assistant", "tool", "tool"]
    assert [i["type"] for i in turns[1]["items"]] == ["reasoning", "function_call",
                                                      "function_call"]
    assert items.flatten(turns) == history(2)


def test_texts_leave_out_ids_images_and_encrypted_reasoning() -> None:
    body = {"instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:" + "A" * 999}]},
        {"type": "reasoning", "id": "rs1", "encrypted_content": "B" * 999,
         "summary": [{"type": "summary_text", "text": "thought"}]}]}
    texts = list(RESPONSES.texts(body))
    assert texts == ["Be brief.", "look", "thought"]
    assert RESPONSES.images(body) == 1


def test_truncation_never_parts_an_output_from_its_call(tmp_path: Path) -> None:
    h = harness(tmp_path, strategy="truncate", keepLastToolResults=1)
    body: dict[str, Any] = {"model": "gpt-4o", "instructions": "You are a researcher.",
                            "input": history(8)}
    est, compaction = asyncio.run(RESPONSES.fit(h, body, never))
    assert compaction is not None and compaction.after < compaction.before
    sent: list[dict[str, Any]] = body["input"]
    assert sent[0] == {"role": "user", "content": "TASK: find the population."}
    assert "earlier messages were removed" in sent[1]["content"]
    calls = {i["call_id"] for i in sent if i.get("type") == "function_call"}
    outputs = {i["call_id"] for i in sent if i.get("type") == "function_call_output"}
    assert outputs and outputs <= calls  # the provider refuses an output without its call
    kept_calls = [i for i, item in enumerate(sent) if item.get("type") == "function_call"]
    assert sent[kept_calls[0] - 1]["type"] == "reasoning"  # and a call without its reasoning
    assert est.tokens <= 2000


def test_a_short_string_input_is_left_as_sent(tmp_path: Path) -> None:
    body = {"model": "gpt-4o", "input": "hi"}
    est, compaction = asyncio.run(RESPONSES.fit(harness(tmp_path), body, never))
    assert compaction is None and body["input"] == "hi" and est.tokens > 0


@pytest.mark.parametrize(("body", "reason"), [
    ({"model": "m"}, "input: a non-empty string or list"),
    ({"input": ""}, "input: a non-empty string or list"),
    ({"input": ["text"]}, "input: a non-empty string or list"),
    ({"input": "hi", "background": True}, "background: not supported"),
])
def test_bodies_that_cannot_be_carried_are_refused(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        RESPONSES.check(body)


def response(rid: str, inp: int, out: int, conv: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": rid, "object": "response",
                           "usage": {"input_tokens": inp, "output_tokens": out}}
    if conv:
        doc["conversation"] = {"id": conv}
    return doc


def test_a_chain_is_counted_from_the_usage_seen_and_survives_a_restart(tmp_path: Path) -> None:
    chains = ResponseChains(tmp_path / "responses.jsonl", "t1")
    chains.record(response("resp_1", 1200, 35))
    chains.record(response("resp_2", 900, 10, conv="conv_1"))
    again = ResponseChains(tmp_path / "responses.jsonl", "t1")  # a restarted sidecar
    held = again.held({"previous_response_id": "resp_1", "input": "next"})
    assert (held.tokens, held.uncounted) == (1235, ())
    assert "previous_response_id resp_1: 1200 input + 35 output" in held.describe()
    assert again.held({"conversation": "conv_1", "input": "x"}).tokens == 910
    unknown = again.held({"previous_response_id": "resp_9", "input": [
        {"type": "item_reference", "id": "msg_1"}]})
    assert unknown.tokens == 0
    assert unknown.uncounted == ("previous_response_id resp_9 (no response of it passed "
                                 "through this sidecar)", "1 item_reference input item(s)")


def test_a_chain_past_the_budget_is_refused_naming_what_the_provider_keeps(
        tmp_path: Path) -> None:
    h = harness(tmp_path, limit=2000)
    RESPONSES.answered(h, response("resp_1", 1900, 200))
    body = {"model": "gpt-4o", "previous_response_id": "resp_1", "input": "and then?"}
    with pytest.raises(ContextBudgetExceeded, match="2100 the provider keeps") as info:
        asyncio.run(RESPONSES.fit(h, body, never))
    assert "previous_response_id resp_1" in info.value.reason
    assert info.value.details["providerHeldTokens"] == 2100
    RESPONSES.answered(h, response("resp_2", 1000, 100))
    body["previous_response_id"] = "resp_2"
    est, _ = asyncio.run(RESPONSES.fit(h, body, never))
    assert 1100 < est.tokens < 1200 and est.counted == 0  # not calibration material
    attrs = RESPONSES.context_attributes(h, body)
    assert attrs["tether.context.provider_held_tokens"] == 1100


FINAL = {"type": "response.completed", "sequence_number": 5, "response": {
    "id": "resp_1", "usage": {"input_tokens": 120, "output_tokens": 30,
                              "input_tokens_details": {"cached_tokens": 100},
                              "output_tokens_details": {"reasoning_tokens": 7}}}}


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_the_stream_usage_is_the_final_events_however_it_is_cut(size: int) -> None:
    stream = (b'event: response.created\ndata: {"type":"response.created","response":'
              b'{"id":"resp_1","usage":null}}\n\n'
              b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
              b'"delta":"response.completed"}\n\n'
              + b"event: response.completed\r\ndata: " + json.dumps(FINAL).encode() + b"\r\n\r\n")
    seen: list[dict[str, Any]] = []
    reader = ResponsesStreamUsage(seen.append)
    relayed = b"".join(reader.feed(stream[i:i + size]) for i in range(0, len(stream), size))
    relayed += reader.flush()
    assert relayed == stream  # passed on unchanged
    assert reader.complete and (reader.input_tokens, reader.output_tokens) == (120, 30)
    assert (reader.cache_read, reader.final) == (100, "response.completed")
    assert [r["id"] for r in seen] == ["resp_1"]


def test_a_stream_without_its_final_event_is_a_broken_one() -> None:
    reader = ResponsesStreamUsage()
    reader.feed(b'event: response.created\ndata: {"type":"response.created","response":'
                b'{"id":"r","usage":null}}\n\n')
    with pytest.raises(TransportError, match="ended before its final event") as info:
        reader.flush()
    assert info.value.reached  # the provider ran it: charged its hold
    assert not reader.complete and reader.final is None
