"""Render an `Answer` in the Anthropic Messages wire format: body, SSE stream, errors.

Shapes follow the public API reference (https://docs.anthropic.com/en/api/messages and
.../messages-streaming): a stream is ``event: NAME`` / ``data: JSON`` frames —
message_start, then content_block_start / content_block_delta / content_block_stop per block,
then message_delta (stop reason, output tokens) and message_stop. ``ping`` events are omitted.
"""

from __future__ import annotations

import json
from typing import Any

from tether_examples._answer import Answer, arguments_json, pieces

__all__ = ["error", "message", "stream"]

# error.type per status, from https://docs.anthropic.com/en/api/errors
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def message(answer: Answer) -> dict[str, Any]:
    """The non-streaming ``message`` body."""
    return {
        **_envelope(answer),
        "content": [*_text_blocks(answer, with_text=True), *_tool_blocks(answer, with_input=True)],
        "stop_reason": _stop_reason(answer),
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }


def stream(answer: Answer) -> list[bytes]:
    """The SSE frames of a streamed message, message_stop included."""
    start = {
        **_envelope(answer),
        "content": [],
        "stop_reason": None,
        # The API reports a provisional output count at the start; the total comes at the end.
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1},
    }
    frames = [_frame("message_start", {"type": "message_start", "message": start})]
    blocks = [
        (block, [{"type": "text_delta", "text": p} for p in pieces(answer.content)])
        for block in _text_blocks(answer, with_text=False)
    ] + [
        (block, [{"type": "input_json_delta", "partial_json": p} for p in pieces(arguments)])
        for block, arguments in zip(
            _tool_blocks(answer, with_input=False),
            (arguments_json(call) for call in answer.tool_calls),
            strict=True,
        )
    ]
    for index, (block, deltas) in enumerate(blocks):
        frames.append(_frame("content_block_start", {"index": index, "content_block": block}))
        frames += [_frame("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        frames.append(_frame("content_block_stop", {"index": index}))
    delta = {"stop_reason": _stop_reason(answer), "stop_sequence": None}
    frames.append(
        _frame("message_delta", {"delta": delta, "usage": {"output_tokens": answer.output_tokens}})
    )
    frames.append(_frame("message_stop", {}))
    return frames


def error(status: int, message: str) -> dict[str, Any]:
    """An error body: ``{"type": "error", "error": {"type", "message"}}``."""
    default = "api_error" if status >= 500 else "invalid_request_error"
    kind = _ERROR_TYPES.get(status, default)
    return {"type": "error", "error": {"type": kind, "message": message}}


def _envelope(answer: Answer) -> dict[str, Any]:
    return {
        "id": f"msg_{answer.digest}",
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "stop_sequence": None,
    }


def _text_blocks(answer: Answer, *, with_text: bool) -> list[dict[str, Any]]:
    # A tool-only turn has no text block; a turn with neither still has one, possibly empty.
    if answer.content or not answer.tool_calls:
        # Streams start the text block empty and fill it by deltas.
        return [{"type": "text", "text": answer.content if with_text else ""}]
    return []


def _tool_blocks(answer: Answer, *, with_input: bool) -> list[dict[str, Any]]:
    return [
        {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            # Streams start each tool_use block with empty input and fill it by deltas.
            "input": dict(call.arguments) if with_input else {},
        }
        for call in answer.tool_calls
    ]


def _stop_reason(answer: Answer) -> str:
    return "tool_use" if answer.tool_calls else "end_turn"


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()
