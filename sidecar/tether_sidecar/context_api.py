"""The context boundary's HTTP faces: ``GET /context`` (the compact form to continue from),
``POST /context/boundary`` (the agent marks one: its history compacted now, whatever its size)
and the built-in tool ``POST /tools/context_archive`` (archived messages read back). boundary.py
says what is on the volume; a model call that compacts writes one too (llm_proxy.py).

The archive tool goes through the tool pipeline like any tool (journal replay, span, metric);
only its ``send`` is local. A task tool of the same name is shadowed by it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from tether_api import ToolSpec

from .boundary import ARCHIVE_TOOL, record_boundary
from .errors import BadRequest
from .harness import Harness
from .journal import call_key
from .llm_proxy import LlmCall
from .retry import Failure
from .tool_proxy import ToolCall, ToolPipeline
from .verify import ToolResponse

__all__ = ["ContextApi"]

_ARGS = {"query", "from", "to", "limit"}
_MAX_LIMIT = 200


def parse_archive_request(raw: bytes) -> tuple[str | None, int | None, int | None, int]:
    """(query, from, to, limit) of a context_archive call; BadRequest naming the field."""
    try:
        doc: Any = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{ARCHIVE_TOOL}: the request is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest(f'{ARCHIVE_TOOL}: the request must be a JSON object such as '
                         '{"query": "invoice"} or {"from": 1, "to": 20}')
    if unknown := sorted(set(doc) - _ARGS):
        raise BadRequest(f"{ARCHIVE_TOOL}: unknown field(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(_ARGS))}")
    query = doc.get("query")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise BadRequest(f"{ARCHIVE_TOOL}: query must be a non-empty string, got {query!r}")
    ints = {}
    for name, low, high, default in (("from", 1, None, None), ("to", 1, None, None),
                                     ("limit", 1, _MAX_LIMIT, 50)):
        value = doc.get(name, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < low or (high is not None and value > high)):
            bound = f" and at most {high}" if high else ""
            raise BadRequest(f"{ARCHIVE_TOOL}: {name} must be an integer of at least {low}"
                             f"{bound}, got {value!r}")
        ints[name] = value
    return query, ints["from"], ints["to"], ints["limit"] or 50


class ContextApi:
    def __init__(self, h: Harness, pipeline: ToolPipeline) -> None:
        self.h = h
        self.pipeline = pipeline
        # Not a task tool: the pipeline's default retry policy and no checks apply to it.
        self.tool = ToolSpec.model_construct(name=ARCHIVE_TOOL)

    async def get(self, _: web.Request) -> web.Response:
        """The latest boundary (the compact messages to continue from), or nulls before one."""
        b = self.h.boundaries.latest()
        doc = (b.public(len(self.h.boundaries.archive)) if b is not None
               else {"boundary": None, "messages": None, "summary": None})
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def mark(self, request: web.Request) -> web.Response:
        """Compact the agent's history now, in the task's model format, and write the boundary;
        the summary is bought like any model call (and not again for the same messages)."""
        h = self.h
        raw = await request.read()
        try:
            doc: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"context boundary: the request is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or set(doc) - {
                "messages", "system"}:
            raise BadRequest('context boundary: send {"messages": [...]} (and "system" for an '
                             "anthropic task), the history as the agent sends it to the model")
        messages: list[Any] = list(doc["messages"])
        body: dict[str, Any] = {"messages": messages}
        if "system" in doc:
            body["system"] = doc["system"]
        call = LlmCall(h, request, h.dialect)
        _, compaction = await h.context.fit(body, h.dialect, call.summarize, force=True)
        if compaction is None or not compaction.boundary:
            raise BadRequest(f"context boundary: nothing to archive in these "
                             f"{len(messages)} messages: they are all permanent or "
                             "working tier (spec.contextBudget.tiers, keepLastToolResults)")
        h.compactions += 1
        h.metrics.compaction(compaction.strategy)
        b = await record_boundary(h.boundaries, compaction, body["messages"],
                                  call_key("context", "/context/boundary", doc))
        return web.json_response(b.public(len(h.boundaries.archive)), status=201)

    async def archive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        query, start, end, limit = parse_archive_request(raw)
        store = self.h.boundaries

        async def send(_: str) -> tuple[ToolResponse | None, Failure | None]:
            found = store.search(query, start, end, limit)
            body = orjson.dumps({"archivedTotal": len(store.archive), "returned": len(found),
                                 "entries": found})
            return ToolResponse(200, {"content-type": "application/json"}, body), None

        started = time.perf_counter()
        call = ToolCall(self.tool, ARCHIVE_TOOL, call_key("tool", ARCHIVE_TOOL, raw), raw,
                        side_effects=False, idempotent=True)
        done = await self.pipeline.run(call, send)
        self.h.metrics.overhead_tool.observe(time.perf_counter() - started)
        headers = {"content-type": "application/json", "x-tether-attempts": str(done.attempts)}
        if done.replayed:
            headers["x-tether-replayed"] = "true"
        return web.Response(body=done.response.body, status=done.response.status,
                            headers=headers)
