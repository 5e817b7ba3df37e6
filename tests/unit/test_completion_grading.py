"""Grading a completion-benchmark task, the model double's moves that decide the answer, and
the arm summary built from the grades."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bench._completion_report import Graded, combine, summarise
from tests.bench._completion_tasks import Outcome, grade, make_tasks
from tether_examples._bench_agent import decide, records_in
from tether_examples._script import Reply
from tether_examples.bench_faults import record_value

TASK = next(t for t in make_tasks(50, 11) if not t.long)


@pytest.mark.parametrize(("end", "answer", "kind"), [
    (0, TASK.expected, "completed"),
    ("Succeeded", TASK.expected + "\n", "completed"),
    ("Succeeded", TASK.expected.replace("total ", "total 1"), "silent_wrong"),
    (0, "DONE but no numbers", "silent_wrong"),
    ("Succeeded", f"CANNOT COMPLETE {TASK.id}: step 3 failed twice", "explicit_failure"),
    ("Failed", TASK.expected, "explicit_failure"),
    ("BudgetExceeded", "", "explicit_failure"),
    (1, TASK.expected, "explicit_failure"),
    (0, "", "explicit_failure"),
])
def test_grade(end: str | int, answer: str, kind: str) -> None:
    assert grade(TASK, end, answer, 0.25) == Outcome(kind, 0.25)  # type: ignore[arg-type]


def _start() -> list[dict[str, Any]]:
    return [{"role": "system", "content": "s"}, {"role": "user", "content": TASK.user_message()}]


def _result(step: int, body: Any, again: bool = False) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{step}" + ("_again" if again else ""),
            "content": json.dumps(body)}


def _reply(messages: list[dict[str, Any]]) -> Reply:
    reply = decide(messages)
    assert isinstance(reply, Reply), reply
    return reply


def test_the_model_walks_the_keys_and_answers_from_what_it_was_sent() -> None:
    assert _reply(_start()).tool_calls[0].arguments == {"key": TASK.keys[0]}
    messages = _start()
    for step, key in enumerate(TASK.keys):
        messages.append(_result(step, {"key": key, "value": record_value(key)}))
    assert _reply(messages).content == TASK.expected
    messages[3] = _result(1, {})  # the direct arm's emptied result: a wrong total, no error
    assert _reply(messages).content.startswith(f"DONE {TASK.id}:")
    assert _reply(messages).content != TASK.expected


def test_an_explicit_error_is_called_again_once_then_the_model_gives_up() -> None:
    messages = [*_start(), _result(0, {"error": "schema", "reason": "value is a string"})]
    again = _reply(messages).tool_calls[0]
    assert (again.id, again.arguments) == ("call_0_again", {"key": TASK.keys[0]})
    messages.append(_result(0, {"error": "schema", "reason": "value is a string"}, again=True))
    assert _reply(messages).content.startswith(f"CANNOT COMPLETE {TASK.id}: step 0")


def test_missing_records_are_read_back_from_the_archive_only_after_tethers_note() -> None:
    last = len(TASK.keys) - 1
    key = TASK.keys[last]
    messages = [*_start(), _result(last, {"key": key, "value": record_value(key)})]
    assert not _reply(messages).tool_calls  # no note: it answers from what it has
    messages.insert(2, {"role": "user", "content": "[tether: summary of 40 earlier messages; "
                        "the messages themselves are archived: call the context_archive tool"})
    read = _reply(messages).tool_calls[0]
    assert (read.name, read.id) == ("context_archive", "archive_1")
    archived = {"entries": [{"message": _result(i, {"key": k, "value": record_value(k)})}
                            for i, k in enumerate(TASK.keys)]}
    messages.append({"role": "tool", "tool_call_id": "archive_1",
                     "content": json.dumps(archived)})
    assert _reply(messages).content == TASK.expected


def test_a_drifted_value_is_not_read_as_a_record() -> None:
    key = TASK.keys[0]
    nested = json.dumps({"key": key, "value": f"{record_value(key):,} units"})
    assert records_in([{"role": "tool", "content": nested}], [key]) == {}


def test_the_summary_counts_outcomes_and_the_medians_span_the_seeds() -> None:
    tasks = make_tasks(4, 11)
    kinds = ["completed", "completed", "silent_wrong", "explicit_failure"]
    graded = [Graded(t, Outcome(k, 0.5), "") for t, k in zip(tasks, kinds, strict=True)]  # type: ignore[arg-type]
    one = summarise(graded, 10.0, {})
    assert (one["tasks"], one["completed"], one["silentWrong"], one["explicitFailures"]) == (
        4, 2, 1, 1)
    assert one["usdPerCompleted"] == 1.0
    other = {**one, "completionPct": 100.0}
    both = combine({1: {"tether": one}, 2: {"tether": other}, 3: {"tether": other}})
    assert both["tether"]["completionPct"] == 100.0
    assert both["tether"]["spread"]["completionPct"] == [50.0, 100.0]
