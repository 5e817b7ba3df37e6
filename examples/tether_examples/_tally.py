"""Script features for long tasks whose history is compacted: a turn index that survives the
compaction, and an answer computed from the request.

- ``turn_by: tool_call_id`` (script key): the turn is one past the number the id of the
  request's last tool result ends with (``call_17`` -> turn 18), 0 when it carries none. Counting
  assistant messages (the default) breaks once a compaction has archived some of them.
- ``tally: {pattern, template}`` (turn key): the content is ``template`` formatted with
  ``{count}`` and ``{total}``: the distinct keys (group 1) of ``pattern``'s matches in the
  request's messages (as canonical JSON) and the sum of their values (group 2, an integer; a
  key seen twice counts once). The answer then depends on what the request actually carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Tally", "parse_tally", "tally", "turn_by_call_id"]

_TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class Tally:
    pattern: re.Pattern[str]
    template: str


def parse_tally(data: Mapping[str, Any], where: str) -> Tally:
    """Validate a ``tally`` entry; ValueError naming the place."""
    if set(data) != {"pattern", "template"}:
        raise ValueError(f"{where}.tally needs exactly the keys pattern and template")
    pattern, template = data["pattern"], data["template"]
    if not isinstance(pattern, str) or not isinstance(template, str):
        raise ValueError(f"{where}.tally.pattern and .template must be strings")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}.tally.pattern is not a regular expression: {exc}") from exc
    if compiled.groups != 2:
        raise ValueError(f"{where}.tally.pattern needs two groups (key, integer value), has "
                         f"{compiled.groups}")
    try:
        template.format(count=0, total=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{where}.tally.template may use only {{count}} and {{total}}: "
                         f"{exc}") from exc
    return Tally(compiled, template)


def tally(spec: Tally, messages: Sequence[Any]) -> str:
    # The canonical JSON of _answer.canonical_json (not imported: _answer imports the script).
    text = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    found = {m.group(1): int(m.group(2)) for m in spec.pattern.finditer(text)}
    return spec.template.format(count=len(found), total=sum(found.values()))


def turn_by_call_id(messages: Sequence[Any]) -> int:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "tool":
            match = _TRAILING_NUMBER.search(str(message.get("tool_call_id", "")))
            return int(match.group(1)) + 1 if match else 0
    return 0
