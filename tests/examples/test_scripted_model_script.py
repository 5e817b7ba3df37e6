"""Script parsing and entry choice: what a script author sees when a script is wrong or odd."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_examples import scripted_model
from tether_examples._script import Fault, ScriptError, choose, load_script, parse_script
from tether_examples._serve import serve_in_thread

REFERENCE = Path(__file__).parents[2] / "examples" / "scripts" / "reference.yaml"


def test_reference_script_parses() -> None:
    script = load_script(REFERENCE)

    assert script.model == "scripted-1"
    assert len(script.turns) == 5
    assert script.turns[1].faults == (Fault(503, "1"), Fault(429))
    assert script.after_last == "error"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"turns": [{"content": "x", "tool_call": []}]}, "turns[0] has unknown key(s) tool_call"),
        ({"turns": [{"faults": [{"status": "503"}]}]}, "turns[0].faults[0].status must be int"),
        ({"turns": [{"faults": [{"status": 200}]}]}, "HTTP error status"),
        ({"turns": [{"tool_calls": [{"name": "s"}]}]}, "turns[0].tool_calls[0].id is required"),
        ({"turns": [{"usage": {"input_tokens": True}}]}, "input_tokens must be int, not bool"),
        ({"turns": [{"delay": -1}]}, "delay must be >= 0"),
        ({"rules": [{"content": "x"}]}, "rules[0].contains is required"),
        ({"after_last": "loop"}, "after_last must be repeat_last or error"),
        (["not", "a", "mapping"], "script must be a mapping"),
    ],
)
def test_invalid_scripts_name_the_problem(script: Any, message: str) -> None:
    with pytest.raises(ScriptError, match=re.escape(message)):
        parse_script(script)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("turns: [\n")

    with pytest.raises(ScriptError, match=re.escape("broken.yaml: not valid YAML")):
        load_script(broken)


def test_repeat_last_replays_the_last_turn() -> None:
    script = parse_script(
        {"turns": [{"content": "a"}, {"content": "b"}], "after_last": "repeat_last"}
    )

    choice = choose(script, 7, "")

    assert (choice.entry, choice.reply and choice.reply.content) == ("turn 1", "b")


def test_first_matching_rule_wins() -> None:
    script = parse_script(
        {"rules": [{"contains": "sum", "content": "1"}, {"contains": "summary", "content": "2"}]}
    )

    assert choose(script, 0, "a summary please").entry == "rule 0"
    assert choose(script, 0, "nothing").reply is None


def test_reset_refuses_an_invalid_script_and_keeps_the_old_one(scripted_url: str) -> None:
    refused = httpx.post(f"{scripted_url}/_scripted/reset", json={"script": {"turns": 3}})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{scripted_url}/v1/chat/completions", json=body)

    assert refused.status_code == 400
    assert "script.turns must be list" in refused.json()["error"]
    assert answer.json()["choices"][0]["message"]["tool_calls"][0]["id"] == "call_search_1"


def test_reset_clears_fault_counters(scripted_url: str) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]
    body = {"model": "m", "messages": [*messages, {"role": "user", "content": "go on"}]}
    url = f"{scripted_url}/v1/chat/completions"
    statuses = [httpx.post(url, json=body).status_code for _ in range(3)]
    httpx.post(f"{scripted_url}/_scripted/reset").raise_for_status()

    assert statuses == [503, 429, 200]
    assert httpx.post(url, json=body).status_code == 503


def test_a_restarted_server_gives_byte_identical_answers() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answers = []
    for _ in range(2):
        with serve_in_thread(scripted_model.build_app(load_script(REFERENCE))) as url:
            answers.append(httpx.post(f"{url}/v1/chat/completions", json=body).content)

    assert answers[0] == answers[1]
    assert b"call_search_1" in answers[0]
