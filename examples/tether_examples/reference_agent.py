"""A reference agent: multi-step, tool-using, checkpointing after every step.

Written against the official ``openai`` SDK, unmodified: ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` (a dummy) point it at the tether sidecar, which holds the real key. Its state
is the conversation; after each step it checkpoints it, so a killed run resumes where it stopped
and, through the sidecar's journal, neither pays twice nor repeats a tool's side effect.

Context boundaries: when a model response carries ``X-Tether-Context-Boundary`` (the sidecar
compacted the prompt and wrote the compact form to the volume), the agent replaces its history
with that compact form (``Harness.context()``), so its next checkpoint holds it and a resumed
attempt starts from it; the archived messages stay readable through the built-in
``context_archive`` tool, which it offers the model.

Exit codes: 0 done (the answer is printed and is the last checkpoint's ``result``), 3 out of
steps, 4 stopped by the budget, 143 stopped by SIGTERM (an eviction). For fault tests,
``AGENT_EXIT_AT_STEP=N`` makes it exit with ``AGENT_EXIT_CODE`` (default 1) right after
checkpointing step N, as a crashing agent would:
resumed from that checkpoint it goes on; started afresh (no checkpoint volume) it fails again.

Run it under the harness: ``tether run examples/agenttask-local.yaml --state-dir /tmp/t``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import openai

from tether_agent import BudgetExceeded, Harness, ToolError, exit_on_sigterm, task

__all__ = ["main"]


ARCHIVE = {"type": "function", "function": {
    "name": "context_archive",
    "description": "Read back earlier messages of this task that were archived to keep the "
                   "prompt small: {\"query\": \"text they contain\"} or {\"from\": N, \"to\": M}.",
    "parameters": {"type": "object", "additionalProperties": True}}}


def tool_schemas(names: list[str]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {
        "name": n, "description": f"The {n} tool.",
        "parameters": {"type": "object", "additionalProperties": True}}} for n in names]


def compact(h: Harness, header: str | None, messages: list[dict[str, Any]]) -> None:
    """Continue from the compact form when the call made (or replayed) a context boundary."""
    if header is None:
        return
    ctx = h.context()
    if ctx is not None and str(ctx["boundary"]) == header:
        messages[:] = ctx["messages"]
        print(f"continuing from context boundary {header} ({len(messages)} messages)",
              file=sys.stderr, flush=True)


def run_tool(h: Harness, name: str, arguments: str) -> str:
    try:
        result = h.tool(name, json.loads(arguments or "{}"))
    except ToolError as exc:  # an explicit failure the model can reason about, never "no data"
        result = {"error": exc.error_class, "reason": exc.reason}
    return json.dumps(result, sort_keys=True)


def step_once(h: Harness, client: openai.OpenAI, model: str, messages: list[dict[str, Any]],
              tools: list[dict[str, Any]]) -> str | None:
    """One step: ask the model, run the tools it calls. Returns the answer when it gives one."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages,  # type: ignore[arg-type]
        tools=tools or openai.omit,  # type: ignore[arg-type]
        max_tokens=512)
    reply = raw.parse()
    compact(h, raw.headers.get("x-tether-context-boundary"), messages)
    message = reply.choices[0].message.model_dump(exclude_none=True,
                                                  include={"role", "content", "tool_calls"})
    messages.append(message)
    calls = reply.choices[0].message.tool_calls or []
    if not calls:
        return reply.choices[0].message.content or ""
    for call in calls:
        fn = call.function  # type: ignore[union-attr]
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": run_tool(h, fn.name, fn.arguments)})
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """No options of its own: everything comes from the environment, as a pod sets it."""
    return argparse.ArgumentParser(
        prog="tether-agent", description=__doc__.split("\n\n")[0],
        epilog="Environment: OPENAI_BASE_URL and OPENAI_API_KEY (the sidecar), TETHER_MODEL "
               "(default gpt-4o), TETHER_TOOLS (comma-separated HTTP tool names; MCP servers, in "
               "TETHER_MCP_SERVERS, are not used by this agent), AGENT_MAX_STEPS "
               "(default 50); AGENT_EXIT_AT_STEP and AGENT_EXIT_CODE (default 1): exit with "
               "that code after checkpointing that step (fault tests); the harness variables "
               "read by tether_agent.Harness.",
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    exit_on_sigterm()
    h = Harness()
    client = openai.OpenAI(max_retries=0)  # the sidecar retries by policy; no second layer
    model = os.environ.get("TETHER_MODEL", "gpt-4o")
    tools = [*tool_schemas([t for t in os.environ.get("TETHER_TOOLS", "").split(",") if t]),
             ARCHIVE]
    max_steps = int(os.environ.get("AGENT_MAX_STEPS", "50"))
    exit_at = int(os.environ.get("AGENT_EXIT_AT_STEP", "0"))
    ckpt = h.resume()
    if ckpt is not None and ckpt.state.get("done"):
        h.finish(ckpt.state["result"])  # again: the last run may have died before reporting it
        print(ckpt.state["result"])
        return 0
    instructions, inputs = task()
    messages: list[dict[str, Any]] = ckpt.state["messages"] if ckpt else [
        {"role": "system", "content": "You are a careful agent. Use the tools."},
        {"role": "user", "content": instructions + (f"\nInputs: {json.dumps(inputs)}"
                                                    if inputs else "")}]
    step = ckpt.step if ckpt else 0
    while step < max_steps:
        try:
            answer = step_once(h, client, model, messages, tools)
        except (openai.APIStatusError, BudgetExceeded) as exc:
            code = getattr(exc, "status_code", getattr(exc, "status", 0))
            print(f"stopped at step {step}: {exc}", file=sys.stderr)
            return 4 if code == 402 else 1
        step += 1
        done = answer is not None
        h.checkpoint(step, {"messages": messages, "done": done, "result": answer})
        print(f"step {step} done", file=sys.stderr, flush=True)
        if step == exit_at:
            print(f"exiting at step {step} as AGENT_EXIT_AT_STEP asks", file=sys.stderr)
            return int(os.environ.get("AGENT_EXIT_CODE", "1"))
        if done:
            h.finish(answer)  # PUT /result: the task's answer, for its evaluation record
            print(answer)
            return 0
    print(f"no answer after {max_steps} steps", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
