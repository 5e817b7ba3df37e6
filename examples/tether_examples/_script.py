"""The script a scripted model plays: its parsed form, its validation, and choosing an entry.

The YAML format is documented in `tether_examples.scripted_model`. Parsing is strict: an
unknown key or a wrong type raises `ScriptError` naming the place (``turns[2].tool_calls[0]``),
because a typo such as ``tool_call:`` silently ignored would make a test pass for the wrong
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tether_examples._tally import Tally, parse_tally

__all__ = [
    "Choice",
    "Fault",
    "Reply",
    "Rule",
    "Script",
    "ScriptError",
    "ToolCall",
    "choose",
    "load_script",
    "parse_script",
]

DEFAULT_MODEL = "scripted-1"


class ScriptError(ValueError):
    """The script is not valid; the message names the offending field."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """One injected error response: HTTP `status`, optional `Retry-After` value and message."""

    status: int
    retry_after: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Reply:
    """What a turn or rule answers. Token counts left as None are estimated per request."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    faults: tuple[Fault, ...] = ()
    delay: float = 0.0
    tally: Tally | None = None  # content computed from the request (_tally.py)


@dataclass(frozen=True)
class Rule:
    contains: str
    reply: Reply


@dataclass(frozen=True)
class Script:
    model: str = DEFAULT_MODEL
    turns: tuple[Reply, ...] = ()
    rules: tuple[Rule, ...] = ()
    after_last: Literal["repeat_last", "error"] = "error"
    turn_by: Literal["assistant_messages", "tool_call_id"] = "assistant_messages"


@dataclass(frozen=True)
class Choice:
    """The script entry that answers a request.

    `entry` names it (``turn 3``, ``rule 0``) and keys the fault counter; `reply` is None when
    the script ran out and `after_last` is ``error``, with the reason in `problem`.
    """

    entry: str
    reply: Reply | None
    problem: str = ""


def choose(script: Script, turn: int, last_user_text: str) -> Choice:
    """Pick the entry for a request with `turn` assistant messages: first matching rule wins."""
    for index, rule in enumerate(script.rules):
        if rule.contains in last_user_text:
            return Choice(f"rule {index}", rule.reply)
    if turn < len(script.turns):
        return Choice(f"turn {turn}", script.turns[turn])
    if script.after_last == "repeat_last" and script.turns:
        last = len(script.turns) - 1
        return Choice(f"turn {last}", script.turns[last])
    problem = (
        f"scripted model has no turn {turn}: the script has {len(script.turns)} turn(s) "
        f"and after_last is {script.after_last!r}"
    )
    return Choice(f"turn {turn}", None, problem)


def load_script(path: str | Path) -> Script:
    """Read and validate a YAML script file."""
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ScriptError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_script(data)
    except ScriptError as exc:
        raise ScriptError(f"{path}: {exc}") from exc


def parse_script(data: object) -> Script:
    """Validate a script given as plain data (what `yaml.safe_load` or `json.loads` returns)."""
    top = _mapping(data, "script", {"model", "turns", "rules", "after_last", "turn_by"})
    turn_by = _field(top, "turn_by", str, "script", "assistant_messages")
    if turn_by not in ("assistant_messages", "tool_call_id"):
        raise ScriptError(f"script.turn_by must be assistant_messages or tool_call_id, not "
                          f"{turn_by!r}")
    after_last = _field(top, "after_last", str, "script", "error")
    if after_last not in ("repeat_last", "error"):
        raise ScriptError(f"script.after_last must be repeat_last or error, not {after_last!r}")
    turns = _field(top, "turns", list, "script", [])
    rules = _field(top, "rules", list, "script", [])
    return Script(
        model=_field(top, "model", str, "script", DEFAULT_MODEL),
        turns=tuple(_reply(item, f"turns[{i}]", set()) for i, item in enumerate(turns)),
        rules=tuple(_rule(item, f"rules[{i}]") for i, item in enumerate(rules)),
        after_last="repeat_last" if after_last == "repeat_last" else "error",
        turn_by="tool_call_id" if turn_by == "tool_call_id" else "assistant_messages",
    )


def _rule(data: object, where: str) -> Rule:
    contains = _field(_mapping(data, where, None), "contains", str, where)
    return Rule(contains=contains, reply=_reply(data, where, {"contains"}))


def _reply(data: object, where: str, extra_keys: set[str]) -> Reply:
    keys = {"content", "tool_calls", "usage", "faults", "delay", "tally"} | extra_keys
    entry = _mapping(data, where, keys)
    usage = _mapping(
        _field(entry, "usage", dict, where, {}), f"{where}.usage", {"input_tokens", "output_tokens"}
    )
    delay = _field(entry, "delay", (int, float), where, 0.0)
    if delay < 0:
        raise ScriptError(f"{where}.delay must be >= 0 seconds, not {delay}")
    calls = _field(entry, "tool_calls", list, where, [])
    faults = _field(entry, "faults", list, where, [])
    tally = _field(entry, "tally", dict, where, None)
    try:
        parsed_tally = None if tally is None else parse_tally(tally, where)
    except ValueError as exc:
        raise ScriptError(str(exc)) from exc
    return Reply(
        tally=parsed_tally,
        content=_field(entry, "content", str, where, "") or "",
        tool_calls=tuple(_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)),
        input_tokens=_tokens(usage, "input_tokens", f"{where}.usage"),
        output_tokens=_tokens(usage, "output_tokens", f"{where}.usage"),
        faults=tuple(_fault(f, f"{where}.faults[{j}]") for j, f in enumerate(faults)),
        delay=float(delay),
    )


def _tool_call(data: object, where: str) -> ToolCall:
    call = _mapping(data, where, {"id", "name", "arguments"})
    return ToolCall(
        id=_field(call, "id", str, where),
        name=_field(call, "name", str, where),
        arguments=dict(_field(call, "arguments", dict, where, {})),
    )


def _fault(data: object, where: str) -> Fault:
    fault = _mapping(data, where, {"status", "retry_after", "message"})
    status = _field(fault, "status", int, where)
    if not 400 <= status <= 599:
        raise ScriptError(f"{where}.status must be an HTTP error status (400-599), not {status}")
    retry_after = _field(fault, "retry_after", (str, int, float), where, None)
    return Fault(
        status=status,
        retry_after=None if retry_after is None else str(retry_after),
        message=_field(fault, "message", str, where, None),
    )


def _tokens(usage: Mapping[str, Any], key: str, where: str) -> int | None:
    value: int | None = _field(usage, key, int, where, None)
    if value is not None and value < 0:
        raise ScriptError(f"{where}.{key} must be >= 0, not {value}")
    return value


def _mapping(data: object, where: str, allowed: set[str] | None) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ScriptError(f"{where} must be a mapping, not {type(data).__name__}")
    if allowed is not None:
        unknown = sorted(str(key) for key in data if key not in allowed)
        if unknown:
            raise ScriptError(
                f"{where} has unknown key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
    return data


_MISSING: Any = object()


def _field(
    data: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    default: Any = _MISSING,
) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise ScriptError(f"{where}.{key} is required")
        return default
    # bool is an int subclass, but `status: true` is a typo, not a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ScriptError(f"{where}.{key} must be {names}, not {type(value).__name__}")
    return value
