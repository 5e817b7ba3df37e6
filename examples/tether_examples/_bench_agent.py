"""What the bench model double "thinks": a careful agent model's next move, from the request alone.

A TEST DOUBLE's policy (`bench_model` serves it), deterministic and stateless:

- the task is the ``Inputs: {"keys": [...]}`` of the first user message; each key is a step,
  called in order: ``r`` keys with the ``lookup`` tool, ``p`` keys with ``read_page``;
- the step it is at is the id of the request's last tool result (``call_<k>``); an id counts,
  not the assistant messages, because compaction removes those;
- a tool result that is an explicit error (a JSON object with ``error``) is called again once
  (``call_<k>_again``), as a real model does; failing again, it answers
  ``CANNOT COMPLETE <task>: ...``: an explicit failure, never a guess;
- after the last step, if records are missing and the request carries tether's note that earlier
  messages were archived, it reads them back with ``context_archive`` (``archive_<n>``), again
  while some are still missing (a read can push older records out of the prompt), 3 at most;
- then it answers ``DONE <task>: <n> records, total <sum>`` from the records the request
  ACTUALLY carries (a tool result, or one quoted back by the archive): an emptied or lost result
  gives a wrong answer, as it would with a real model that never saw the value. A record's value
  counts only as the tool documents it, an integer; a drifted shape is not read.
- a summarisation request (tether's compaction) is answered with a summary that names the work
  done but not the values (a real summary of many numbers is not reliably exact; the archive is
  where they are kept).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tether_examples._script import Reply, ToolCall
from tether_examples.bench_faults import parse_key

__all__ = ["SUMMARY_MARK", "decide", "records_in", "task_keys"]

SUMMARY_MARK = "Summarize the conversation below"  # the start of the sidecar's request
_ARCHIVE_NOTE = "call the context_archive tool"  # in tether's summary or truncation note
_ARCHIVE_READ = re.compile(r"^archive_(\d+)$")
MAX_ARCHIVE_READS = 3  # reading the archive back may itself push older records out of the prompt
_CALL = re.compile(r"^call_(\d+)(_again)?$")
_INPUTS = re.compile(r"Inputs: (\{.*\})", re.S)


def task_keys(messages: list[Any]) -> list[str] | None:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            match = _INPUTS.search(m["content"])
            if match:
                keys = json.loads(match.group(1)).get("keys")
                return [str(k) for k in keys] if isinstance(keys, list) else None
    return None


def _decoded(value: Any) -> Iterator[Any]:
    """`value` and everything nested in it, JSON text included (a tool result is text)."""
    yield value
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            yield from _decoded(json.loads(value))
        except ValueError:
            return
    elif isinstance(value, dict):
        for item in value.values():
            yield from _decoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from _decoded(item)


def records_in(messages: list[Any], keys: list[str]) -> dict[str, int]:
    """The task's records the request carries: objects with one of `keys` and an integer value."""
    wanted, found = set(keys), {}
    for node in _decoded(messages):
        if isinstance(node, dict) and node.get("key") in wanted:
            value = node.get("value")
            if isinstance(value, int) and not isinstance(value, bool):
                found[node["key"]] = value
    return found


def _error_of(content: Any) -> str | None:
    try:
        doc = json.loads(content) if isinstance(content, str) else None
    except ValueError:
        return None
    if isinstance(doc, dict) and "error" in doc:
        return f"{doc['error']}: {doc.get('reason', '')}".rstrip(": ")
    return None


def _call(key: str, step: int, again: bool = False) -> Reply:
    parsed = parse_key(key)
    tool = "lookup" if parsed is not None and parsed.kind == "record" else "read_page"
    call_id = f"call_{step}" + ("_again" if again else "")
    return Reply(content="", tool_calls=(ToolCall(call_id, tool, {"key": key}),))


def _task_id(keys: list[str]) -> str:
    return keys[0].rsplit("-", 1)[0] if keys else "?"


def _finish(messages: list[Any], keys: list[str], reads: int) -> Reply:
    """Answer, or read the archive first (again) while records are missing from the prompt."""
    records = [k for k in keys if (p := parse_key(k)) is not None and p.kind == "record"]
    found = records_in(messages, records)
    noted = any(_ARCHIVE_NOTE in str(m.get("content")) for m in messages if isinstance(m, dict))
    if len(found) < len(records) and (noted or reads) and reads < MAX_ARCHIVE_READS:
        query = f"{_task_id(keys)}-r"
        return Reply(content="Reading the records back from the archive.", tool_calls=(
            ToolCall(f"archive_{reads + 1}", "context_archive", {"query": query, "limit": 200}),))
    total = sum(found.values())
    return Reply(content=f"DONE {_task_id(keys)}: {len(found)} records, total {total}")


def decide(messages: list[Any]) -> Reply | str:
    """The next reply to a bench request, or why the request is not one (a 400's message)."""
    keys = task_keys(messages)
    if not keys:
        return 'not a bench task: no user message with Inputs: {"keys": [...]}'
    last = messages[-1] if messages else {}
    if not isinstance(last, dict) or last.get("role") != "tool":
        return _call(keys[0], 0)
    call_id = str(last.get("tool_call_id", ""))
    if (read := _ARCHIVE_READ.match(call_id)) is not None:
        return _finish(messages, keys, int(read.group(1)))
    match = _CALL.match(call_id)
    if match is None:
        return f"tool result {call_id!r} answers no call this model made"
    step, again = int(match.group(1)), match.group(2) is not None
    error = _error_of(last.get("content"))
    if error is not None and not again:
        return _call(keys[step], step, again=True)
    if error is not None:
        return Reply(content=f"CANNOT COMPLETE {_task_id(keys)}: step {step} ({keys[step]}) "
                             f"failed twice: {error}")
    if step + 1 < len(keys):
        return _call(keys[step + 1], step + 1)
    return _finish(messages, keys, 0)
