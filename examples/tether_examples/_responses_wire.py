"""The OpenAI Responses API wire format for the scripted model: the conversation a request
continues, and an `Answer` rendered as a response object or its typed event stream.

Shapes follow the public API reference (https://platform.openai.com/docs/api-reference/responses
and .../responses-streaming): a response has ``output`` items (a ``message`` with
``output_text`` content, ``function_call`` items) and ``usage`` with ``input_tokens`` and
``output_tokens`` and their details; a stream is ``event: TYPE`` / ``data: JSON`` frames, each
with a ``sequence_number``: ``response.created``, ``response.in_progress``, per output item
``response.output_item.added`` ... ``response.output_item.done`` (text by
``response.output_text.delta``, arguments by ``response.function_call_arguments.delta``), and
``response.completed`` carrying the whole response with its usage. There is no ``[DONE]``.

Like the provider, the scripted model keeps each response it answers (unless ``store: false``),
so a request can continue one by ``previous_response_id``: the input it is billed for is the
stored conversation (earlier input and output) plus its own ``input``. Conversations (the
``conversation`` parameter) are not kept: such a request is refused, said so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tether_examples._answer import CREATED, Answer, arguments_json, pieces

__all__ = ["as_messages", "conversation", "output_items", "response", "stream"]

_OWN = ("user", "system", "developer")


def conversation(
    body: Mapping[str, Any], stored: Mapping[str, list[Any]]
) -> tuple[list[Any] | None, str]:
    """The items the request is answered (and billed) for, or None and the reason it is not
    valid."""
    if "conversation" in body:
        return None, "conversation: the scripted model keeps no conversations; continue a " \
            "response with previous_response_id or send the history as input"
    value = body.get("input")
    if isinstance(value, str):
        items: list[Any] = [{"role": "user", "content": value}]
    elif isinstance(value, list) and all(isinstance(i, Mapping) for i in value):
        items = list(value)
    else:
        return None, "input: a string or a list of input items is required"
    previous = body.get("previous_response_id")
    if previous is None:
        return items, ""
    if previous not in stored:
        return None, f"previous_response_id: Previous response with id '{previous}' not found."
    return [*stored[previous], *items], ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, Mapping) and p.get("type") in ("input_text", "text"))
    return ""


def as_messages(items: list[Any]) -> list[dict[str, Any]]:
    """The items as chat messages, for the script's turn count and rules: a user, system or
    developer message each; a run of model output (message, reasoning, calls) one assistant
    message; a tool output one tool message."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message" and item.get("role") in _OWN:
            out.append({"role": item["role"], "content": _text(item.get("content"))})
        elif str(kind).endswith("_output"):
            out.append({"role": "tool", "content": ""})
        elif not out or out[-1]["role"] != "assistant":
            out.append({"role": "assistant", "content": ""})
    return out


def output_items(answer: Answer) -> list[dict[str, Any]]:
    """The response's ``output``: a message when there is text (or nothing else), then calls."""
    out: list[dict[str, Any]] = []
    if answer.content or not answer.tool_calls:
        out.append(_message(answer, answer.content, "completed"))
    out += [_call(answer, i, arguments_json(c), "completed")
            for i, c in enumerate(answer.tool_calls)]
    return out


def response(answer: Answer, body: Mapping[str, Any], *, done: bool = True) -> dict[str, Any]:
    """The response object; ``done=False`` gives the in-progress one a stream starts with."""
    return {
        "id": f"resp_{answer.digest}",
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if done else "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": {},
        "model": answer.model,
        "output": output_items(answer) if done else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(answer) if done else None,
    }


def stream(answer: Answer, body: Mapping[str, Any]) -> list[bytes]:
    """The typed SSE events of a streamed response, ``response.completed`` last."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response(answer, body, done=False)},
        {"type": "response.in_progress", "response": response(answer, body, done=False)},
    ]
    for index, item in enumerate(output_items(answer)):
        events += _item_events(index, item)
    events.append({"type": "response.completed", "response": response(answer, body)})
    return [_frame({**event, "sequence_number": n}) for n, event in enumerate(events)]


def _item_events(index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    at = {"output_index": index, "item_id": item["id"]}
    if item["type"] == "function_call":
        events = [{"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "arguments": "", "status": "in_progress"}}]
        events += [{"type": "response.function_call_arguments.delta", **at, "delta": piece}
                   for piece in pieces(item["arguments"])]
        events.append({"type": "response.function_call_arguments.done", **at,
                       "name": item["name"], "arguments": item["arguments"]})
    else:
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events = [{"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "content": [], "status": "in_progress"}},
                  {"type": "response.content_part.added", **at, "content_index": 0,
                   "part": part}]
        events += [{"type": "response.output_text.delta", **at, "content_index": 0,
                    "delta": piece, "logprobs": []} for piece in pieces(text)]
        events += [{"type": "response.output_text.done", **at, "content_index": 0,
                    "text": text, "logprobs": []},
                   {"type": "response.content_part.done", **at, "content_index": 0,
                    "part": {**part, "text": text}}]
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def _message(answer: Answer, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{answer.digest}", "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}


def _call(answer: Answer, index: int, arguments: str, status: str) -> dict[str, Any]:
    call = answer.tool_calls[index]
    return {"type": "function_call", "id": f"fc_{answer.digest}_{index}", "call_id": call.id,
            "name": call.name, "arguments": arguments, "status": status}


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": answer.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
