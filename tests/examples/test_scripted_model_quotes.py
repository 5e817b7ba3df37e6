"""``{{output:CALL_ID}}`` in a scripted answer quotes that tool result, in each wire format, and
names a call the request does not carry instead of dropping it."""

from __future__ import annotations

from typing import Any

import pytest

from tether_examples._answer import build_answer
from tether_examples._script import Reply

CHAT = [{"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "TCK-7"}]
RESPONSES = [{"role": "user", "content": "go"},
             {"type": "function_call", "call_id": "c1", "name": "t", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1",
              "output": [{"type": "input_text", "text": "TCK-7"}]}]
ANTHROPIC = [{"role": "user", "content": "go"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "c1"}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1",
                                           "content": "TCK-7"}]}]


@pytest.mark.parametrize("messages", [CHAT, RESPONSES, ANTHROPIC],
                         ids=["chat", "responses", "anthropic"])
def test_quotes_the_tool_result(messages: list[dict[str, Any]]) -> None:
    answer = build_answer("/p", {"messages": messages},
                          Reply(content="Opened {{output:c1}}; {{output:c9}}."), "m")
    assert answer.content == "Opened TCK-7; <no output for c9>."
    assert answer.output_tokens == 9  # counted on the text sent, not the template


def test_content_without_a_quote_is_unchanged() -> None:
    answer = build_answer("/p", {"messages": CHAT}, Reply(content="{output:c1} stays"), "m")
    assert answer.content == "{output:c1} stays"
