"""The completion benchmark's agents without tether: the direct and the verification arms.

Both call the model with the official ``openai`` SDK (its default retries: 2, honouring
Retry-After) and the tools with httpx (the 2 s timeout every arm uses, no retries), on the
same tasks and doubles as the tether arm.

- direct: a typical integration. A tool error, a timeout, a reset or a body that does not parse
  becomes an empty result (``{}``); a context overflow (400 ``context_length_exceeded``) drops
  the oldest turns until the prompt fits, as trim helpers do.
- verification: the same, but a tool's output is verified (status, JSON, required fields,
  schema) and a failure is an explicit error the model sees; no retries, no backoff, no
  compaction: a context overflow ends the task as a failure.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import jsonschema
import openai

from tests.bench._completion_tasks import MODEL, BenchTask, mix
from tests.bench._completion_tether import TOOL_VERIFY

__all__ = ["run_direct_task"]

SYSTEM = "You are a careful agent. Use the tools."
MAX_TURNS = 100
TOOLS = [{"type": "function", "function": {
    "name": name, "description": f"The {name} tool.",
    "parameters": {"type": "object", "additionalProperties": True}}} for name in TOOL_VERIFY]


def _direct_result(response: httpx.Response) -> Any:
    try:
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPStatusError, ValueError):
        return {}  # the pattern the issue names: an error becomes "no data"


def _verified_result(name: str, response: httpx.Response) -> Any:
    spec = TOOL_VERIFY[name]
    if response.status_code not in (200, 201, 202, 204):
        return {"error": f"http_{response.status_code}", "reason": response.text[:200]}
    if not response.content:
        return {"error": "empty", "reason": "the tool answered an empty body"}
    try:
        doc = response.json()
    except ValueError as exc:
        return {"error": "malformed", "reason": f"the body is not JSON: {exc}"}
    missing = [f for f in spec["requiredFields"] if not isinstance(doc, dict) or f not in doc]
    if missing:
        return {"error": "fields", "reason": f"missing {', '.join(missing)}"}
    try:
        jsonschema.validate(doc, spec["schema"])
    except jsonschema.ValidationError as exc:
        return {"error": "schema", "reason": exc.message}
    return doc


def _tool(http: httpx.Client, url: str, name: str, arguments: str, verify: bool) -> str:
    try:
        response = http.post(f"{url}/{name}", json=json.loads(arguments or "{}"))
    except httpx.HTTPError as exc:
        failed: Any = {"error": type(exc).__name__, "reason": str(exc)} if verify else {}
        return json.dumps(failed)
    return json.dumps(_verified_result(name, response) if verify else _direct_result(response))


def _trim(messages: list[dict[str, Any]], window: int) -> None:
    """Drop the oldest turns (an assistant message and its tool results) after the system
    prompt and the task, until the prompt's estimate is under 3/4 of the window."""
    def size() -> int:
        return math.ceil(len(json.dumps(messages, separators=(",", ":"))) / 4)
    while size() > window * 3 // 4 and len(messages) > 3:
        del messages[2]
        while len(messages) > 2 and messages[2].get("role") == "tool":
            del messages[2]


def _ask(client: openai.OpenAI, messages: list[dict[str, Any]], verify: bool) -> Any:
    """The model's reply; on an overflow the direct arm trims and asks again."""
    while True:
        try:
            return client.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, max_tokens=512)  # type: ignore[arg-type]
        except openai.BadRequestError as exc:
            if verify or exc.code != "context_length_exceeded":
                raise
            _trim(messages, int(mix().tasks["contextWindow"]))


def run_direct_task(task: BenchTask, client: openai.OpenAI, http: httpx.Client, tools_url: str,
                    verify: bool) -> tuple[int, str]:
    """Run one task; (exit code, answer): 1 when an exception ended it, as it would a script."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": task.user_message()}]
    try:
        for _ in range(MAX_TURNS):
            message = _ask(client, messages, verify).choices[0].message
            messages.append(message.model_dump(exclude_none=True,
                                               include={"role", "content", "tool_calls"}))
            if not message.tool_calls:
                return 0, message.content or ""
            for call in message.tool_calls:
                fn = call.function
                messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": _tool(http, tools_url, fn.name, fn.arguments,
                                                  verify)})
    except openai.APIError as exc:
        return 1, f"error: {exc}"
    return 3, ""
