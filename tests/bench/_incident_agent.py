"""The founding incident's agent loop: ask the model, call the tool it asks for, on an error put
the error in the history and ask again — no backoff, no give-up, no budget of its own.

It is the kind of integration the incident had: the official ``openai`` SDK with its defaults,
a long prompt (a system prompt and the documents the task retrieved, ~``INCIDENT_PROMPT_TOKENS``
tokens) and the last ``HISTORY`` messages of the conversation, ``max_tokens`` 1024. The same
code runs both arms of the replay (tests/bench/_incident.py):

* under tether (``TETHER_URL`` set by ``tether run``): the model through the sidecar
  (``OPENAI_BASE_URL``), the tool through ``POST $TETHER_URL/tools/lookup`` (tether_agent's
  Harness), a checkpoint after every step. A 402 from the model (the hard limit) ends it: exit 4.
* straight to the provider and the tool (``OPENAI_BASE_URL`` the model, ``INCIDENT_TOOL_URL`` the
  tool): nothing ever refuses it, so the bench bounds it with ``INCIDENT_MAX_SECONDS`` — the
  test's cap, not the agent's logic.

Last line on stdout: ``{"modelCalls": n, "toolCalls": n, "toolErrors": n, "stoppedBy": ...}``.
Run as a file (``python tests/bench/_incident_agent.py``): it imports nothing from the tests.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

import httpx
import openai

HISTORY = 12  # messages of the conversation kept (the framework's trimming); 6 steps
WORDS = ["payment", "ledger", "settlement", "retry", "gateway", "refund", "invoice", "merchant",
         "acquirer", "batch", "timeout", "webhook", "reconciliation", "currency", "capture",
         "authorisation", "chargeback", "dispute", "latency", "queue", "partition", "replica",
         "outage", "incident", "region", "failover", "certificate"]
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look up a payment by id in the ledger service.",
    "parameters": {"type": "object", "properties": {"payment_id": {"type": "string"}},
                   "required": ["payment_id"]}}}]


def documents(tokens: int) -> str:
    """``tokens`` tokens' worth (4 characters a token) of retrieved documents, the same bytes
    every run (a seeded generator), so both arms send the same prompt."""
    rng, out, size = random.Random(11), [], 0
    while size < 4 * tokens:
        line = " ".join(rng.choice(WORDS) for _ in range(14)) + "."
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


def base_prompt(tokens: int) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You investigate payment incidents. Use the lookup "
                                          "tool to read payments; never guess a result."},
            {"role": "user", "content": "Find why payment pay_4411 was charged twice. "
                                        "Documents retrieved for this task:\n" + documents(tokens)}]


def call_tool(harness: Any, url: str, arguments: str) -> str:
    """The tool's result as the model will read it, or the error the integration got."""
    try:
        if harness is not None:
            return json.dumps(harness.tool("lookup", json.loads(arguments or "{}")))
        resp = httpx.post(url, content=arguments or "{}", timeout=30,
                          headers={"content-type": "application/json"})
        resp.raise_for_status()
        return json.dumps(resp.json())
    except Exception as exc:  # noqa: BLE001 - the naive loop's point: any error goes back in
        return f"lookup failed: {type(exc).__name__}: {exc}"


def main() -> int:
    tether = os.environ.get("TETHER_URL")
    harness = None
    if tether:
        from tether_agent import Harness
        harness = Harness()
    client = openai.OpenAI()
    model = os.environ.get("TETHER_MODEL") or os.environ.get("INCIDENT_MODEL", "gpt-4o")
    tool_url = f"{tether}/tools/lookup" if tether else os.environ.get("INCIDENT_TOOL_URL", "")
    cap = float(os.environ.get("INCIDENT_MAX_SECONDS") or 0)
    base = base_prompt(int(os.environ.get("INCIDENT_PROMPT_TOKENS", "40000")))
    history: list[dict[str, Any]] = []
    model_calls = tool_calls = tool_errors = 0
    stopped_by = "cap"
    start = time.monotonic()
    while not cap or time.monotonic() - start < cap:
        try:
            reply = client.chat.completions.create(
                model=model, messages=[*base, *history[-HISTORY:]],  # type: ignore[list-item]
                tools=TOOLS, max_tokens=1024)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            if exc.status_code != 402:
                raise
            stopped_by = "hard limit (402)"
            print(f"stopped: {exc.message}", file=sys.stderr)
            break
        model_calls += 1
        message = reply.choices[0].message
        history.append(message.model_dump(exclude_none=True,
                                          include={"role", "content", "tool_calls"}))
        for call in message.tool_calls or []:
            result = call_tool(harness, tool_url, call.function.arguments)  # type: ignore[union-attr]
            tool_calls += 1
            tool_errors += result.startswith("lookup failed")
            history.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if harness is not None:
            harness.checkpoint(model_calls, {"history": history[-HISTORY:]})
    print(json.dumps({"modelCalls": model_calls, "toolCalls": tool_calls,
                      "toolErrors": tool_errors, "stoppedBy": stopped_by}), flush=True)
    return 4 if stopped_by != "cap" else 0


if __name__ == "__main__":
    sys.exit(main())
