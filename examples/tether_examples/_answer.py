"""A provider-neutral answer to one request, and the deterministic numbers in it.

Everything here is a pure function of the request body and the script entry — the id, the
model, the token counts — which is what lets a retried request or a restarted agent get a
byte-identical answer. The wire modules (`_openai_wire`, `_anthropic_wire`) only reshape it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tether_examples._script import Reply, ToolCall

__all__ = [
    "CREATED",
    "Answer",
    "arguments_json",
    "build_answer",
    "canonical_json",
    "last_user_text",
    "pieces",
    "tool_outputs",
    "turn_of",
]

# A fixed creation time: a clock here would make two answers to one request differ.
CREATED = 1_700_000_000


@dataclass(frozen=True)
class Answer:
    digest: str  # hex digest of path + request; each provider prefixes it to make an id
    model: str
    content: str
    tool_calls: tuple[ToolCall, ...]
    input_tokens: int
    output_tokens: int


def canonical_json(value: object) -> str:
    """Sorted-key, compact JSON: the same data always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_json(call: ToolCall) -> str:
    """A tool call's arguments as the JSON text a model would emit (script key order kept)."""
    return json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False)


def turn_of(messages: Sequence[Any]) -> int:
    """The turn index of a request: how many assistant messages it already carries."""
    return sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant")


def last_user_text(messages: Sequence[Any]) -> str:
    """Text of the last user message: a string content, or its text parts/blocks joined.

    Only ``type: text`` parts count; tool results, images and documents do not, in either
    wire format, so a rule matches what a person or agent wrote rather than tool output.
    """
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(part.get("text", ""))
                    for part in content
                    if isinstance(part, Mapping) and part.get("type") == "text"
                )
            return ""
    return ""


_QUOTE = re.compile(r"\{\{output:([^{}\s]+)\}\}")


def tool_outputs(messages: Sequence[Any]) -> dict[str, str]:
    """The text of each tool result in the request, by call id: Chat Completions ``tool``
    messages, Responses ``function_call_output`` items, Anthropic ``tool_result`` blocks."""
    found: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        if m.get("role") == "tool" and isinstance(m.get("tool_call_id"), str):
            found[m["tool_call_id"]] = _joined(m.get("content"))
        elif m.get("type") == "function_call_output" and isinstance(m.get("call_id"), str):
            found[m["call_id"]] = _joined(m.get("output"))
        elif isinstance(m.get("content"), list):
            found.update({b["tool_use_id"]: _joined(b.get("content")) for b in m["content"]
                          if isinstance(b, Mapping) and b.get("type") == "tool_result"
                          and isinstance(b.get("tool_use_id"), str)})
    return found


def _joined(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def quote_outputs(content: str, messages: Sequence[Any]) -> str:
    """``content`` with each ``{{output:CALL_ID}}`` replaced by that tool result's text, so a
    scripted answer can depend on what the tools returned; a call the request does not carry
    is named in the text (``<no output for CALL_ID>``), never silently dropped."""
    if "{{output:" not in content:
        return content
    outputs = tool_outputs(messages)
    return _QUOTE.sub(lambda m: outputs.get(m.group(1), f"<no output for {m.group(1)}>"),
                      content)


def pieces(text: str, parts: int = 3) -> list[str]:
    """Split `text` into up to `parts` consecutive non-empty pieces, as a stream would."""
    if not text:
        return []
    size = math.ceil(len(text) / parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


def build_answer(path: str, body: Mapping[str, Any], reply: Reply, default_model: str) -> Answer:
    """Answer `body` (already validated to carry a `messages` list) with `reply`."""
    messages = body["messages"]
    requested = body.get("model")
    content = quote_outputs(reply.content, messages)
    produced = content + "".join(arguments_json(c) for c in reply.tool_calls)
    digest = hashlib.sha256(f"{path}\n{canonical_json(body)}".encode()).hexdigest()[:24]
    return Answer(
        digest=digest,
        model=requested if isinstance(requested, str) and requested else default_model,
        content=content,
        tool_calls=reply.tool_calls,
        input_tokens=(
            reply.input_tokens
            if reply.input_tokens is not None
            else math.ceil(len(canonical_json(messages)) / 4)
        ),
        output_tokens=(
            reply.output_tokens
            if reply.output_tokens is not None
            else max(1, math.ceil(len(produced) / 4))
        ),
    )
