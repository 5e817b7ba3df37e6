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


def _strings(value: dict[str, Any] | list[Any]) -> Iterator[str]:
    # Strings are yielded in place, not recursed into: this walk runs over every item of
    # every call.
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in _SKIP:
                continue
            if isinstance(inner, str):
                yield inner
            elif inner and isinstance(inner, (dict, list)):
                yield from _strings(inner)
    else:
        for inner in value:
            if isinstance(inner, str):
                yield inner
            elif inner and isinstance(inner, (dict, list)):
                yield from _strings(inner)


def _item_texts(item: dict[str, Any]) -> Iterator[str]:
    kind = item.get("type")
    # The common shapes first, read by key (about twice as fast as the walk below, and this
    # runs over every item of every call): a text message, a function call, its output.
    if kind is None or kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            yield content
            return
    elif kind == "function_call":
        yield str(item.get("name") or "")
        yield str(item.get("arguments") or "")
        return
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, str):
            yield output
            return
    yield from _strings(item)


def texts(items: list[Any]) -> Iterator[str]:
    for item in items:
        if isinstance(item, dict):
            yield from _item_texts(item)


def images(items: list[Any]) -> int:
    """Image parts: in a message's content, or a tool output (a computer call's screenshot)."""
    count = 0
    for item in items:
        if not isinstance(item, dict):
            continue
        for key in ("content", "output"):
            parts = item.get(key)
            if isinstance(parts, dict):
                parts = [parts]
            if isinstance(parts, list):
                count += sum(1 for part in parts
                             if isinstance(part, dict) and part.get("type") in _IMAGES)
    return count
