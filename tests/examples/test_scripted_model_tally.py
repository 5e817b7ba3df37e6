"""The scripted model's features for compacted histories: the turn taken from the last tool
result's call id, and an answer tallied from what the request carries."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tether_examples import scripted_model
from tether_examples._script import ScriptError, parse_script
from tether_examples._serve import serve_in_thread

SCRIPT: dict[str, Any] = {
    "turn_by": "tool_call_id",
    "turns": [
        {"tool_calls": [{"id": "call_0", "name": "search", "arguments": {}}]},
        {"tally": {"pattern": r"entry (\d+) amount (\d+)",
                   "template": "FINAL: {count} entries, total {total}"}},
    ],
}


def ask(url: str, messages: list[dict[str, Any]]) -> str:
    r = httpx.post(url + "/v1/chat/completions", timeout=10,
                   json={"model": "gpt-4o", "messages": messages})
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_the_turn_follows_the_last_tool_result_and_the_answer_tallies_the_request() -> None:
    with serve_in_thread(scripted_model.build_app(SCRIPT)) as url:
        first = httpx.post(url + "/v1/chat/completions", timeout=10, json={
            "model": "gpt-4o", "messages": [{"role": "user", "content": "go"}]}).json()
        assert first["choices"][0]["message"]["tool_calls"][0]["id"] == "call_0"
        # No assistant message left (compacted away), yet the tool result says turn 1.
        seen = [{"role": "user", "content": "[summary] entry 1 amount 5, entry 2 amount 7"},
                {"role": "tool", "tool_call_id": "call_0",
                 "content": "entry 2 amount 7; entry 3 amount 30"}]
        assert ask(url, seen) == "FINAL: 3 entries, total 42"  # entry 2 counted once
        assert ask(url, seen[1:]) == "FINAL: 2 entries, total 37"  # computed, not recited


@pytest.mark.parametrize(("tally", "message"), [
    ({"pattern": "(x)"}, "exactly the keys pattern and template"),
    ({"pattern": "(", "template": "t"}, "not a regular expression"),
    ({"pattern": r"(\d+)", "template": "t"}, "needs two groups"),
    ({"pattern": r"(\d+) (\d+)", "template": "{sum}"}, "only {count} and {total}"),
])
def test_a_wrong_tally_is_refused_naming_the_place(tally: dict[str, Any], message: str) -> None:
    with pytest.raises(ScriptError, match=r"turns\[0\]\.tally") as err:
        parse_script({"turns": [{"tally": tally}]})
    assert message in str(err.value)


def test_an_unknown_turn_by_is_refused() -> None:
    with pytest.raises(ScriptError, match="turn_by must be assistant_messages or tool_call_id"):
        parse_script({"turn_by": "steps"})
