"""The completion benchmark's model: a TEST DOUBLE for an OpenAI Chat Completions provider.

It runs no model. It speaks ``POST /{run}/v1/chat/completions`` (plain, and streamed when
asked) well enough for the official ``openai`` SDK, and plays a careful agent model whose moves
are `_bench_agent.decide`: one tool call per step, an explicit error called again once, the
archive read back after a compaction, and a final answer computed from the tool results the
request actually carries. Like a provider it also:

- enforces a context window (``--context-window`` tokens): a longer prompt is refused with 400
  ``context_length_exceeded``, OpenAI's code, and not billed;
- injects the mix's model faults (429 with Retry-After, 5xx) by (seed, task, turn, attempt);
- bills usage: input tokens = ceil(characters of the canonical JSON of the messages / 4),
  output likewise of what it produced (the scripted model's rule), and keeps the bill per task;
- answers tether's compaction requests (a summary without the values).

``{run}`` names a run (an arm, the cluster run): its attempts and bills are its own.
Control: ``GET /_bench/{run}/bills`` → ``{"<task key prefix>": {"input_tokens", "output_tokens",
"calls", "faults": {kind: n}, "overflows"}}``; ``POST /_bench/reset`` clears every run.

CLI: ``python -m tether_examples.bench_model --mix FILE --port N [--host H]``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether_examples import _openai_wire
from tether_examples._answer import Answer, build_answer, canonical_json
from tether_examples._bench_agent import SUMMARY_MARK, decide, task_keys
from tether_examples._script import Reply
from tether_examples._serve import LOOPBACK, run_until_signalled
from tether_examples.bench_faults import FaultMix, fault_for, load_mix, parse_key

__all__ = ["STATE", "ModelState", "build_app", "main"]

MODEL = "gpt-4o"
_TASK = re.compile(r"(s\d+-t\d+)-[rp]\d+")
_SUMMARY = ("Summary: the agent is working through its task's keys in order with the lookup and "
            "read_page tools; the records read so far are in the archive.")


def _bill() -> dict[str, Any]:
    return {"input_tokens": 0, "output_tokens": 0, "calls": 0, "overflows": 0,
            "faults": Counter()}


@dataclass
class ModelState:
    mix: FaultMix
    window: int
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    bills: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(_bill)))


STATE = web.AppKey("bench_model_state", ModelState)


def build_app(mix: FaultMix, context_window: int | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024**2)
    window = context_window or int(mix.tasks["contextWindow"])
    app[STATE] = ModelState(mix, window)
    app.router.add_post("/{run}/v1/chat/completions", _completion)
    app.router.add_get("/_bench/{run}/bills", _bills)
    app.router.add_post("/_bench/reset", _reset)
    return app


def _error(status: int, message: str, code: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = _openai_wire.error(status, message)
    if code is not None:
        body["error"]["code"] = code
    return web.json_response(body, status=status, headers=headers)


async def _completion(request: web.Request) -> web.StreamResponse:
    state, run = request.app[STATE], request.match_info["run"]
    try:
        body = await request.json()
        messages = body["messages"]
        assert isinstance(messages, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return _error(400, "the body must be a JSON object with a messages list")
    summarising = any(isinstance(m, dict) and str(m.get("content", "")).startswith(SUMMARY_MARK)
                      for m in messages[-1:])
    keys, text = task_keys(messages) or [], canonical_json(messages)
    # A summarisation request carries no task inputs, but its transcript names the task's keys.
    task = keys[0].rsplit("-", 1)[0] if keys else _task_in(text)
    bill = state.bills[run][task]
    tokens = math.ceil(len(text) / 4)
    if tokens > state.window:
        bill["overflows"] += 1
        return _error(400, f"This model's maximum context length is {state.window} tokens. "
                           f"However, your messages resulted in {tokens} tokens. Please reduce "
                           "the length of the messages.", "context_length_exceeded")
    reply = Reply(content=_SUMMARY) if summarising else decide(messages)
    if isinstance(reply, str):
        return _error(400, reply)
    if not summarising and (refused := _fault(state, run, keys, messages)) is not None:
        bill["faults"][refused[0]] += 1
        return refused[1]
    answer = build_answer("/v1/chat/completions", body, reply, MODEL)
    bill["input_tokens"] += answer.input_tokens
    bill["output_tokens"] += answer.output_tokens
    bill["calls"] += 1
    return await _send(request, answer, body)


def _task_in(text: str) -> str:
    match = _TASK.search(text)
    return match.group(1) if match else "unknown"


def _fault(state: ModelState, run: str, keys: list[str],
           messages: list[Any]) -> tuple[str, web.Response] | None:
    """The injected model fault of this request, by (seed, task, turn, attempt), or None."""
    key = parse_key(keys[0]) if keys else None
    if key is None:
        return None
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    turn = str(last.get("tool_call_id", "start"))
    attempt = state.attempts[(run, f"{key.seed}-{key.task}-{turn}")]
    state.attempts[(run, f"{key.seed}-{key.task}-{turn}")] += 1
    fault = fault_for(state.mix, key.seed, key.task, turn, attempt, model=True)
    if fault is None:
        return None
    if fault.kind == "rate_limit":
        return fault.kind, _error(429, "Rate limit reached for requests", "rate_limit_exceeded",
                                  {"Retry-After": str(fault.retry_after or 1)})
    return fault.kind, _error(fault.status(key.task), "The server had an error while "
                                                      "processing your request.")


async def _send(request: web.Request, answer: Answer, body: dict[str, Any]) -> web.StreamResponse:
    if body.get("stream") is not True:
        return web.json_response(_openai_wire.completion(answer))
    options = body.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    for frame in _openai_wire.stream(answer, usage):
        await response.write(frame)
    await response.write_eof()
    return response


async def _bills(request: web.Request) -> web.Response:
    bills = request.app[STATE].bills.get(request.match_info["run"], {})
    return web.json_response({task: {**b, "faults": dict(b["faults"])}
                              for task, b in bills.items()})


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.attempts.clear()
    state.bills.clear()
    return web.json_response({"reset": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether_examples.bench_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", required=True, help="the fault mix YAML")
    parser.add_argument("--context-window", type=int, help="tokens (default: the mix's)")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port; 0 picks a free one")
    args = parser.parse_args(argv)
    run_until_signalled(build_app(load_mix(args.mix), args.context_window), args.host, args.port)


if __name__ == "__main__":
    main()
