"""The OpenAI Responses API (``POST /v1/responses``) as a :class:`Dialect` of the one call path.

The request keeps its system prompt in ``instructions`` and its conversation as typed ``input``
items (``responses_items.py`` groups them into turns for the context budget); the output cap is
``max_output_tokens``; usage comes as ``input_tokens``/``output_tokens`` with cached tokens in
``input_tokens_details`` (``responses_sse.py`` reads it from a stream's final event). Context
the provider keeps (``previous_response_id``, ``conversation``) is counted from the usage the
sidecar saw for it and enforced against the budget, never compacted (``responses_chains.py``).

Refused here: ``background: true`` (the answer would be fetched by a ``GET`` the sidecar does
not carry, so the hold could never be settled from its usage).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from . import responses_items as items
from .context import Compaction, Estimate
from .dialects import OPENAI, SUMMARY_PROMPT, Dialect, Message, StreamUsage, Summarize, Usage
from .errors import BadRequest, ContextBudgetExceeded
from .responses_chains import Held, ResponseChains
from .responses_sse import ResponsesStreamUsage, usage_of
from .tracing import ATTR

if TYPE_CHECKING:
    from .harness import Harness

__all__ = ["RESPONSES", "chains"]


def chains(h: Harness) -> ResponseChains:
    """The task's record of responses seen (opened on the first Responses call)."""
    if h.responses is None:
        h.responses = ResponseChains(h.settings.state_dir / "responses.jsonl", h.name)
    return h.responses


def _schema(body: dict[str, Any]) -> Any:
    """A structured output's JSON schema (``text.format``): prompt too."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return fmt.get("schema") if isinstance(fmt, dict) else None


def _view(body: dict[str, Any]) -> tuple[dict[str, Any], list[items.Turn]]:
    """The body as the context budget sees a chat prompt: ``input`` as turns under
    ``messages``, ``instructions`` as ``system``, a structured output's schema with the tools."""
    turns = items.turns(items.items_of(body.get("input")))
    tools = list(body.get("tools") or ())
    if (schema := _schema(body)) is not None:
        tools.append({"text.format.schema": schema})
    return {"messages": turns, "system": body.get("instructions"), "tools": tools}, turns


class _Responses(Dialect):
    name = "openai"
    path = "/responses"
    routes = OPENAI.routes
    system_in_messages = False

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        """Of a request body, or of its view (``_view``) or a part of it (context.py)."""
        for key in ("system", "instructions"):
            value = body.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from items.texts(value)
        if "messages" in body:
            yield from items.texts(items.flatten(body["messages"]))
        else:
            yield from items.texts(items.items_of(body.get("input")))
        for tool in body.get("tools") or ():
            yield repr(tool)
        if (schema := _schema(body)) is not None:
            yield repr(schema)

    def images(self, body: dict[str, Any]) -> int:
        turns = body.get("messages")
        return items.images(items.flatten(turns) if isinstance(turns, list)
                            else items.items_of(body.get("input")))

    def is_permanent(self, msg: Message) -> bool:
        return msg.get("role") in ("system", "developer")

    def is_tool_result(self, msg: Message) -> bool:
        return msg.get("role") == "tool"

    def note(self, text: str) -> Message:
        return {"role": "user", "items": [{"role": "user", "content": text}]}

    def max_tokens(self, body: dict[str, Any]) -> int | None:
        value = body.get("max_output_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def cap_max_tokens(self, body: dict[str, Any], value: int) -> None:
        body["max_output_tokens"] = value

    def usage(self, doc: dict[str, Any]) -> Usage | None:
        return usage_of(doc)

    def error(self, error_class: str, reason: str) -> dict[str, Any]:
        return OPENAI.error(error_class, reason)

    def stream_error(self, error_class: str, reason: str) -> bytes:
        # The typed ``error`` event of the API, plus ``error`` that the SDK raises on.
        doc = {"type": "error", "code": error_class, "message": reason, "param": None,
               "sequence_number": 0, **self.error(error_class, reason)}
        return b"event: error\ndata: " + orjson.dumps(doc) + b"\n\n"

    def auth(self, key: str) -> dict[str, str]:
        return OPENAI.auth(key)

    def summary_request(self, model: str, transcript: str, max_tokens: int) -> dict[str, Any]:
        return {"model": model, "max_output_tokens": max_tokens, "store": False,
                "input": SUMMARY_PROMPT + transcript}

    def reply_text(self, doc: dict[str, Any]) -> str:
        return "".join(
            str(part.get("text", "")) for item in doc.get("output") or ()
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content") or ()
            if isinstance(part, dict) and part.get("type") == "output_text")

    def check(self, body: dict[str, Any]) -> None:
        value = body.get("input")
        if not (isinstance(value, str) and value) and not (
                isinstance(value, list) and value and all(isinstance(i, dict) for i in value)):
            raise BadRequest("input: a non-empty string or list of input items is required")
        if body.get("background") is True:
            raise BadRequest("background: not supported through the sidecar (the response "
                             "would be fetched later, past the cost envelope); omit it")

    async def fit(self, h: Harness, body: dict[str, Any], summarize: Summarize
                  ) -> tuple[Estimate, Compaction | None]:
        held = chains(h).held(body)
        view, turns = _view(body)
        est, compaction = await h.context.fit(view, self, summarize)
        if view["messages"] is not turns:  # compacted: what is sent is the compact form
            body["input"] = items.flatten(view["messages"])
        return self._with_held(h, est, held, view), compaction

    def estimate(self, h: Harness, body: dict[str, Any], *, exact: bool = False) -> Estimate:
        view = _view(body)[0]
        est = h.context.estimate(view, self, exact=exact)
        return self._with_held(h, est, chains(h).held(body, warn=False), view)

    def context_attributes(self, h: Harness, body: dict[str, Any]) -> dict[str, Any]:
        held = chains(h).held(body, warn=False)
        if not (held.counted or held.uncounted):
            return {}
        return {ATTR.PROVIDER_HELD_TOKENS: held.tokens, ATTR.PROVIDER_HELD: held.describe()}

    def stream_usage(self, h: Harness, strip_usage_chunk: bool) -> StreamUsage:
        return ResponsesStreamUsage(chains(h).record)

    def answered(self, h: Harness, doc: dict[str, Any]) -> None:
        chains(h).record(doc)

    def _with_held(self, h: Harness, est: Estimate, held: Held, view: dict[str, Any]
                   ) -> Estimate:
        """The estimate with the provider-held context added, refused when it cannot fit (the
        sidecar cannot compact what the provider keeps); counted before it is refused."""
        if not (held.counted or held.uncounted):
            return est
        limit = h.context.limit
        if est.tokens + held.tokens > limit and not est.exact:
            est = h.context.estimate(view, self, exact=True)
        total = est.tokens + held.tokens
        if total > limit:
            raise ContextBudgetExceeded(
                f"the prompt needs about {total} tokens: {est.tokens} in this request and "
                f"{held.tokens} the provider keeps ({held.describe()}), over the budget of "
                f"{limit}; the sidecar cannot compact context the provider keeps: send the "
                "conversation as input (with store: false) so it can be compacted, or raise "
                "spec.contextBudget.maxTokens", estimatedTokens=total, budgetTokens=limit,
                providerHeldTokens=held.tokens)
        # Not calibration material: the provider's count covers context never estimated here.
        return Estimate(total, est.exact, 0)


RESPONSES: Dialect = _Responses()
