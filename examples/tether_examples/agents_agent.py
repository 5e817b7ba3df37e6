"""The second reference agent: written with the OpenAI Agents SDK as people write it today.

Its model is the Responses API (the SDK's default for ``Agent(model=...)``) and its tools come
from MCP servers over Streamable HTTP. Nothing in it is tether-specific but the base URLs the
pod sets — ``OPENAI_BASE_URL`` for the model, ``$TETHER_URL/mcp/<name>`` for each server in
``TETHER_MCP_SERVERS`` — and the checkpoint calls of ``tether_agent``. The sidecar behind those
URLs verifies and retries the calls, meters the spend and journals the destructive tool calls.

Checkpoints go through the SDK's own memory seam, a ``Session``: the runner hands a session the
items of each turn as the turn ends (model output and tool results together), which is exactly
a step to checkpoint, and reads the history back from it when a run starts. So a resumed run is
``Runner.run(agent, [], session=...)`` over the restored items: the SDK continues the
conversation where the last checkpoint left it, with no replay of ours. (``to_input_list()``
after the run would checkpoint only at the end; ``RunHooks`` see a turn's parts, not its items.)

Exit codes: 0 done (the answer is printed, reported by ``Harness.finish`` and is the last
checkpoint's ``result``), 3 out of steps, 4 stopped by the budget, 143 stopped by SIGTERM (an
eviction), 1 otherwise.
``AGENT_EXIT_AT_STEP=N`` makes it exit at once with ``AGENT_EXIT_CODE`` (default 1) right after
checkpointing step N, as a crash would.

Run it under the harness: ``tether run examples/agenttask-agents.yaml --state-dir /tmp/t``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack

import openai
from agents import Agent, MaxTurnsExceeded, Runner, set_tracing_disabled
from agents.items import TResponseInputItem
from agents.mcp import MCPServerStreamableHttp
from agents.memory import SessionSettings

from tether_agent import BudgetExceeded, Harness, exit_on_sigterm, task

__all__ = ["CheckpointSession", "main"]

INSTRUCTIONS = ("You investigate incidents with the tools you have. Open one follow-up ticket "
                "for the fix, then answer with the root cause and the ticket.")


class CheckpointSession:
    """A ``Session`` (the Agents SDK's protocol) that keeps the conversation in tether
    checkpoints, saved before the run goes on. A step is a turn: the task's input, which the
    runner adds first, is saved at step 0."""

    session_settings: SessionSettings | None = None  # the SDK's defaults

    def __init__(self, harness: Harness, items: list[TResponseInputItem], step: int,
                 exit_at: int = 0) -> None:
        self.session_id = os.environ.get("TETHER_TASK_NAME", "agent")
        self.harness, self.items, self.step, self.exit_at = harness, items, step, exit_at

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        return list(self.items[-limit:] if limit else self.items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self.items.extend(items)
        turn = any(not (isinstance(i, dict) and i.get("role") == "user") for i in items)
        self.step += turn
        await self.save(done=False, result=None)
        if not turn:
            return
        if self.step == self.exit_at:
            print(f"exiting at step {self.step} as AGENT_EXIT_AT_STEP asks", file=sys.stderr,
                  flush=True)
            os._exit(int(os.environ.get("AGENT_EXIT_CODE", "1")))  # a crash: nothing unwinds
        print(f"step {self.step} done", file=sys.stderr, flush=True)

    async def pop_item(self) -> TResponseInputItem | None:
        return self.items.pop() if self.items else None

    async def clear_session(self) -> None:
        self.items.clear()

    async def save(self, *, done: bool, result: str | None) -> None:
        # The runner hands a session input items, plain JSON dicts: saved as they are.
        state = {"items": list(self.items), "done": done, "result": result}
        await asyncio.to_thread(self.harness.checkpoint, self.step, state)


def final_answer(items: list[TResponseInputItem]) -> str | None:
    """The answer when the conversation already ends in one: an assistant message last (a
    turn that called tools ends in their outputs). The agent died after saving that turn and
    before marking the task done; asking the model again would start a turn nobody asked for."""
    last = items[-1] if items else None
    if not (isinstance(last, dict) and last.get("role") == "assistant"
            and last.get("type", "message") == "message"):
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def mcp_servers(tether_url: str) -> list[MCPServerStreamableHttp]:
    names = [n for n in os.environ.get("TETHER_MCP_SERVERS", "").split(",") if n]
    return [MCPServerStreamableHttp(name=n, params={"url": f"{tether_url}/mcp/{n}",
                                                    "timeout": 30},
                                    cache_tools_list=True, client_session_timeout_seconds=120,
                                    max_retry_attempts=0)  # the sidecar retries by policy
            for n in names]


def first_input() -> str:
    instructions, inputs = task()
    return instructions + (f"\nInputs: {json.dumps(inputs)}" if inputs else "")


async def run(h: Harness, session: CheckpointSession, max_steps: int) -> str:
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(s) for s in mcp_servers(h.url)]
        agent = Agent(name="investigator", instructions=INSTRUCTIONS, mcp_servers=servers,
                      model=os.environ.get("TETHER_MODEL", "gpt-4o"))
        start: str | list[TResponseInputItem] = [] if session.items else first_input()
        # max_turns counts this run's turns: the steps left, not the task's total.
        result = await Runner.run(agent, start, session=session,
                                  max_turns=max(1, max_steps - session.step))
        return str(result.final_output)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """No options of its own: everything comes from the environment, as a pod sets it."""
    return argparse.ArgumentParser(
        prog="tether-agents-agent", description=__doc__.split("\n\n")[0],
        epilog="Environment: OPENAI_BASE_URL and OPENAI_API_KEY (the sidecar), TETHER_URL, "
               "TETHER_MCP_SERVERS (comma-separated MCP server names), TETHER_MODEL (default "
               "gpt-4o), AGENT_MAX_STEPS (default 50); AGENT_EXIT_AT_STEP and AGENT_EXIT_CODE "
               "(default 1): exit with that code after checkpointing that step (fault tests).",
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    exit_on_sigterm()
    # The sidecar makes the traces; the SDK's own exporter would send them to OpenAI's servers,
    # around the harness (and, in a pod, into a network policy that refuses it).
    set_tracing_disabled(True)
    h = Harness()
    ckpt = h.resume()
    if ckpt is not None and ckpt.state.get("done"):
        h.finish(ckpt.state["result"])  # again: the last run may have died before reporting it
        print(ckpt.state["result"])
        return 0
    session = CheckpointSession(h, list(ckpt.state["items"]) if ckpt else [],
                                ckpt.step if ckpt else 0,
                                int(os.environ.get("AGENT_EXIT_AT_STEP", "0")))
    try:
        answer = final_answer(session.items)
        if answer is None:
            answer = asyncio.run(run(h, session, int(os.environ.get("AGENT_MAX_STEPS", "50"))))
        asyncio.run(session.save(done=True, result=answer))
    except MaxTurnsExceeded as exc:
        print(f"no answer after {session.step} steps: {exc}", file=sys.stderr)
        return 3
    except (openai.APIStatusError, BudgetExceeded) as exc:
        code = getattr(exc, "status_code", getattr(exc, "status", 0))
        print(f"stopped at step {session.step}: {exc}", file=sys.stderr)
        return 4 if code == 402 else 1
    h.finish(answer)
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
