"""The Responses API's ``input`` items, seen by the context budget as turns.

The context budget (``context.py``) works on a list of messages with chat semantics: the
permanent tier leads, and a tool result stays with the assistant turn that called it. Responses
input items are finer grained: one model turn is several items (reasoning, a message, function
calls) and each tool output is an item of its own. So the items are grouped into turns before the
budget sees them, and flattened back after a compaction:

* a ``user``, ``system`` or ``developer`` message is a turn of its own;
* consecutive items the model produced (an assistant message, reasoning, ``*_call`` items, item
  references, MCP approval requests and their answers) are one ``assistant`` turn, so parallel
  function calls, and the reasoning item a reasoning model needs sent back with them, are
  archived or kept together: the provider refuses an output whose call is missing;
* each tool output (a type ending in ``_output``: ``function_call_output``,
  ``custom_tool_call_output``, ...) is a ``tool`` turn, kept with the turn that called it.

Texts for the estimate are every string value of an item except identifiers, types, statuses and
opaque payloads (image and file data, encrypted reasoning), which are not prompt text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["Turn", "flatten", "images", "items_of", "texts", "turns"]

Turn = dict[str, Any]  # {"role": "user" | "system" | "developer" | "assistant" | "tool", "items"}

# Not prompt text: ids and types, and opaque payloads (images are counted apart, encrypted
# reasoning is the provider's own and cannot be measured here).
_SKIP = frozenset({"id", "type", "status", "role", "call_id", "encrypted_content", "image_url",
                   "file_data", "file_url", "file_id", "detail", "annotations", "logprobs"})
_IMAGES = frozenset({"input_image", "computer_screenshot"})
_OWN_TURN = frozenset({"user", "system", "developer"})


def items_of(value: Any) -> list[Any]:
    """The input as a list of items (a string input is one user message)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def _role(item: Any) -> str:
    if not isinstance(item, dict):
        return "user"
    kind = item.get("type") or "message"
    if kind == "message":
        role = item.get("role")
        return role if role in _OWN_TURN else "assistant"
    return "tool" if str(kind).endswith("_output") else "assistant"


def turns(items: list[Any]) -> list[Turn]:
    out: list[Turn] = []
    for item in items:
        role = _role(item)
        if role == "assistant" and out and out[-1]["role"] == "assistant":
            out[-1]["items"].append(item)
        else:
            out.append({"role": role, "items": [item]})
    return out


def flatten(groups: list[Turn]) -> list[Any]:
    return [item for turn in groups for item in turn.get("items") or ()]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in _SKIP:
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def texts(items: list[Any]) -> Iterator[str]:
    for item in items:
        yield from _strings(item)


def images(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if value.get("type") in _IMAGES else 0
        return own + sum(images(v) for k, v in value.items() if k not in _SKIP)
    if isinstance(value, list):
        return sum(images(v) for v in value)
    return 0
