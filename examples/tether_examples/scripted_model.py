"""A scripted model server: a TEST DOUBLE for an LLM provider. It runs no model.

It speaks three wire formats well enough for the official SDKs — OpenAI Chat Completions
(``POST /v1/chat/completions``), the OpenAI Responses API (``POST /v1/responses``) and Anthropic
Messages (``POST /v1/messages``), plain and streamed (SSE) — and answers from a YAML script. Use
it to test an agent, or the tether sidecar, offline and deterministically. It checks no API
keys, enforces no limits and does not validate requests beyond what it needs to pick an answer.

Determinism: the answer is a pure function of the request (ids and ``created`` included) and,
for a Responses request that continues one by ``previous_response_id``, of the response it
continues, so a retry or a restarted agent gets the same answer. The turn index of a request is
the number of messages with role ``assistant`` already in its ``messages`` (Responses: runs of
model output items in the conversation, stored history included: ``_responses_wire.py``). The
only state is the fault counter, the request log below and the responses kept for
``previous_response_id`` (as the provider keeps them, unless ``store: false``).

Script format::

    model: scripted-1            # response model, unless the request names one
    turns:                       # turn i answers a request carrying i assistant messages
      - content: "I'll search."  # assistant text (may be empty when tool_calls is given);
                                 #   {{output:CALL_ID}} quotes that tool result's text
        tool_calls:              # optional; arguments are rendered as compact JSON
          - {id: call_1, name: search, arguments: {q: "x"}}
        usage: {input_tokens: 120, output_tokens: 30}   # optional, either key alone is fine
        faults:                  # optional: attempt k at this entry (k < len) gets faults[k]
          - {status: 503, retry_after: "1"}             # Retry-After header; optional message
          - {status: 429}
        delay: 0.05              # optional seconds to wait before answering (faults included)
    rules:                       # optional, checked first: the first rule whose `contains`
      - contains: "Summarize"    #   occurs in the last user message's text wins; same keys
        content: "Summary: ..."  #   as a turn
    after_last: error            # or repeat_last; error answers 400 naming the turn
    turn_by: assistant_messages  # or tool_call_id; with a turn's `tally: {pattern, template}`
                                 #   for histories that are compacted (_tally.py)

Default usage: input = ceil(len(canonical JSON of messages) / 4) (Responses: of the
conversation's items, stored history included, after the instructions), output = max(1,
ceil(len(content + each tool call's arguments JSON) / 4)). Canonical JSON is sorted-key,
compact, non-ASCII kept. Fault counters are per (path, entry), entry being ``turn N`` or
``rule N``, so each endpoint fails independently. Errors use each
provider's error body; 529 is Anthropic's ``overloaded_error``.

Test-control endpoints (not part of any provider API):

- ``GET /_scripted/requests`` — every model request received, in order: ``path``,
  ``authorization``, ``x-api-key``, ``idempotency-key`` (header values or null), ``body``
  (parsed JSON, null if malformed), ``turn`` (null if it could not be computed) and ``usage``:
  ``{"input_tokens", "output_tokens"}`` of the answer, set once an answer is built (null for an
  error answer), which is what a provider bills. A client that hangs up while the answer is
  delayed is still billed, as a provider would bill it; a test adds the log up into a bill.
- ``POST /_scripted/reset`` — clears the log, fault counters and kept responses; a JSON body
  ``{"script": {...}}`` also replaces the script (400 with the reason if it is invalid).

CLI: ``python -m tether_examples.scripted_model --script FILE --port N [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether_examples import _anthropic_wire, _openai_wire, _responses_wire
from tether_examples._answer import Answer, build_answer, last_user_text, turn_of
from tether_examples._script import Script, ScriptError, choose, load_script, parse_script
from tether_examples._serve import LOOPBACK, run_until_signalled
from tether_examples._tally import tally, turn_by_call_id

__all__ = ["STATE", "ScriptedState", "build_app", "main"]

OPENAI_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
ANTHROPIC_PATH = "/v1/messages"
_RECORDED_HEADERS = ("authorization", "x-api-key", "idempotency-key")


@dataclass
class ScriptedState:
    """The server's mutable part: the script, attempts per (path, entry), the request log, and
    the Responses conversations kept (response id -> its input and output items)."""

    script: Script
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stored: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Wire:
    error: Callable[[int, str], dict[str, Any]]
    render: Callable[[Answer, Mapping[str, Any]], dict[str, Any]]
    render_stream: Callable[[Answer, Mapping[str, Any]], list[bytes]]


def _openai_stream(answer: Answer, body: Mapping[str, Any]) -> list[bytes]:
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return _openai_wire.stream(answer, include_usage)


_WIRES = {
    OPENAI_PATH: _Wire(_openai_wire.error, lambda a, _: _openai_wire.completion(a),
                       _openai_stream),
    RESPONSES_PATH: _Wire(_openai_wire.error, _responses_wire.response, _responses_wire.stream),
    ANTHROPIC_PATH: _Wire(
        _anthropic_wire.error, lambda a, _: _anthropic_wire.message(a),
        lambda a, _: _anthropic_wire.stream(a),
    ),
}

STATE = web.AppKey("scripted_state", ScriptedState)


def build_app(script: Script | Mapping[str, Any]) -> web.Application:
    """The scripted model as an aiohttp app; `script` parsed already or as plain data."""
    app = web.Application()
    app[STATE] = ScriptedState(script if isinstance(script, Script) else parse_script(script))
    app.router.add_post(OPENAI_PATH, _model_request)
    app.router.add_post(RESPONSES_PATH, _model_request)
    app.router.add_post(ANTHROPIC_PATH, _model_request)
    app.router.add_get("/_scripted/requests", _requests)
    app.router.add_post("/_scripted/reset", _reset)
    return app


async def _model_request(request: web.Request) -> web.StreamResponse:
    state, wire, path = request.app[STATE], _WIRES[request.path], request.path
    record: dict[str, Any] = {h: request.headers.get(h) for h in _RECORDED_HEADERS}
    record = {"path": path, **record, "body": None, "turn": None, "usage": None}
    state.requests.append(record)
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(wire, 400, f"request body is not valid JSON: {exc}")
    record["body"] = body
    billed, messages, problem = _conversation(path, body, state)
    if billed is None:
        return _error(wire, 400, problem)
    by_id = state.script.turn_by == "tool_call_id"
    record["turn"] = turn = turn_by_call_id(messages) if by_id else turn_of(messages)
    choice = choose(state.script, turn, last_user_text(messages))
    if choice.reply is None:
        return _error(wire, 400, choice.problem)
    reply = choice.reply
    attempt = state.attempts.get((path, choice.entry), 0)
    state.attempts[(path, choice.entry)] = attempt + 1
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if attempt < len(reply.faults):
        fault = reply.faults[attempt]
        message = fault.message or (
            f"scripted fault {attempt + 1} of {len(reply.faults)} at {choice.entry}"
        )
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return _error(wire, fault.status, message, headers)
    answer = build_answer(path, billed, reply, state.script.model)
    if reply.tally is not None:
        answer = dataclasses.replace(answer, content=tally(reply.tally, messages))
    record["usage"] = {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens}
    if path == RESPONSES_PATH and body.get("store") is not False:
        kept = [*billed["_items"], *_responses_wire.output_items(answer)]
        state.stored[f"resp_{answer.digest}"] = kept
    if body.get("stream") is True:
        return await _stream(request, wire.render_stream(answer, body))
    return web.json_response(wire.render(answer, body))


def _conversation(
    path: str, body: Any, state: ScriptedState
) -> tuple[dict[str, Any] | None, list[Any], str]:
    """The body the answer is built and billed from (``messages`` what the provider reads),
    the messages the script picks a turn by, or None and why the request is refused."""
    if path != RESPONSES_PATH:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None, [], "request body must be a JSON object with a messages list"
        return body, body["messages"], ""
    if not isinstance(body, dict):
        return None, [], "request body must be a JSON object"
    items, problem = _responses_wire.conversation(body, state.stored)
    if items is None:
        return None, [], problem
    instructions = body.get("instructions")
    lead = [{"role": "developer", "content": instructions}] if instructions else []
    billed = {**body, "messages": [*lead, *items], "_items": items}  # _items: kept if stored
    return billed, _responses_wire.as_messages(items), ""


async def _stream(request: web.Request, frames: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    for frame in frames:
        await response.write(frame)
    await response.write_eof()
    return response


def _error(
    wire: _Wire, status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(wire.error(status, message), status=status, headers=headers)


async def _requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].requests)


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = await request.read()
    if raw.strip():
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or set(data) - {"script"}:
                raise ScriptError('reset body must be {"script": <script>} or empty')
            if "script" in data:
                state.script = parse_script(data["script"])
        except (UnicodeDecodeError, json.JSONDecodeError, ScriptError) as exc:
            return web.json_response({"error": f"reset refused: {exc}"}, status=400)
    state.attempts.clear()
    state.requests.clear()
    state.stored.clear()
    return web.json_response({"reset": True})


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: serve the script on a loopback port until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tether_examples.scripted_model",
        description="Scripted model server (a test double): OpenAI (Chat Completions, Responses) "
        "and Anthropic wire formats.",
    )
    parser.add_argument("--script", required=True, help="YAML script to play")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind; 0 picks a free one")
    args = parser.parse_args(argv)
    try:
        script = load_script(args.script)
    except (OSError, ScriptError) as exc:
        parser.error(str(exc))
    run_until_signalled(build_app(script), args.host, args.port)


if __name__ == "__main__":
    main()
