"""Render an `Answer` in the OpenAI Chat Completions wire format: body, SSE stream, errors.

Shapes follow the public API reference (https://platform.openai.com/docs/api-reference/chat):
a stream is ``data: <chunk JSON>`` frames ending with ``data: [DONE]``; with
``stream_options.include_usage`` every chunk carries ``usage: null`` and one extra chunk with
empty ``choices`` carries the totals just before ``[DONE]``.
"""

from __future__ import annotations

import json
from typing import Any

from tether_examples._answer import CREATED, Answer, arguments_json, pieces

__all__ = ["completion", "error", "stream"]

# type/code per status, as the API reports them; the SDKs pick their exception by status.
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def completion(answer: Answer) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` body."""
    message: dict[str, Any] = {
        "role": "assistant",
        # The API sends null content when the model only calls tools.
        "content": answer.content if answer.content or not answer.tool_calls else None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_json(call)},
            }
            for call in answer.tool_calls
        ]
    return {
        "id": f"chatcmpl-{answer.digest}",
        "object": "chat.completion",
        "created": CREATED,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(answer)}],
        "usage": _usage(answer),
    }


def stream(answer: Answer, include_usage: bool) -> list[bytes]:
    """The SSE frames of a streamed completion, ``[DONE]`` included."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in pieces(answer.content)]
    for index, call in enumerate(answer.tool_calls):
        head = {"index": index, "id": call.id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in pieces(arguments_json(call))
        ]
    chunks = [_chunk(answer, include_usage, [_choice(delta, None)]) for delta in deltas]
    chunks.append(_chunk(answer, include_usage, [_choice({}, _finish(answer))]))
    if include_usage:
        chunks.append({**_chunk(answer, False, []), "usage": _usage(answer)})
    return [_frame(json.dumps(chunk)) for chunk in chunks] + [_frame("[DONE]")]


def error(status: int, message: str) -> dict[str, Any]:
    """An error body: ``{"error": {"message", "type", "code"}}``."""
    kind, code = _ERRORS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _finish(answer: Answer) -> str:
    return "tool_calls" if answer.tool_calls else "stop"


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason}


def _chunk(answer: Answer, usage_slot: bool, choices: list[dict[str, Any]]) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{answer.digest}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": answer.model,
        "choices": choices,
    }
    if usage_slot:
        chunk["usage"] = None
    return chunk


def _frame(data: str) -> bytes:
    return f"data: {data}\n\n".encode()
