"""The tool pipeline: journal → verify → classify → retry/backoff → explicit failure, and its
HTTP front door ``POST /tools/{name}``.

:class:`ToolPipeline` is the one call path every tool takes (docs/architecture.md, "Several
front doors, one pipeline"): an HTTP tool here, an MCP ``tools/call`` in ``mcp_proxy``. A front
door gives it the call's identity and a ``send`` that makes one attempt and says whether it
failed (each front door its own checks); the pipeline does the rest: replay from the journal,
side-effect rules, retries by policy, the span, the metric. The agent gets the tool's own
response when it passes, and otherwise an error naming the class (retryable_exhausted,
non_retryable, verification_failed, budget_exceeded) and the reason. A failure never comes back
as an empty success.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tether_api import CallRetry, ToolSpec, parse_duration

from .errors import BadRequest, BudgetExceeded, NotFound, ToolCallFailed
from .harness import Harness
from .journal import call_key, stored_body
from .retry import Failure, RetryExhausted, RetryState
from .tracing import ATTR, Span, shape_of
from .upstream import HOP_HEADERS, TransportError
from .verify import ToolResponse, chain

__all__ = ["Done", "Send", "ToolCall", "ToolPipeline", "ToolProxy"]

_FORWARD = ("content-type", "accept")

# One attempt: given the call's idempotency key, the response (None when there was none) and
# the failure the front door's checks found in it (None: a success).
Send = Callable[[str], Awaitable[tuple[ToolResponse | None, Failure | None]]]


@dataclass(frozen=True)
class ToolCall:
    """What the pipeline needs to know about one call, from its front door."""

    tool: ToolSpec  # the AgentTask entry: retry policy and timeout
    label: str  # the tool's name in metrics and span names
    key: str  # journal identity (call_key)
    request: bytes  # shown in the span per observability.toolIO
    side_effects: bool
    idempotent: bool  # safe to repeat: an idempotency key is sent, or the server says so
    attributes: dict[str, Any] = field(default_factory=dict)  # extra span attributes


@dataclass(frozen=True)
class Done:
    response: ToolResponse
    attempts: int  # 0 when answered from the journal
    replayed: bool = False
    backoff_s: float = 0.0  # spent waiting between attempts (not the sidecar's overhead)


class ToolPipeline:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self._retry = {t.name: (t.retry.apply(h.task.spec.retry_policy.calls) if t.retry
                                else h.task.spec.retry_policy.calls) for t in h.task.spec.tools}
        self._timeout = {t.name: parse_duration(t.timeout) for t in h.task.spec.tools}

    def policy(self, tool: ToolSpec) -> CallRetry:
        return self._retry[tool.name]

    def timeout(self, tool: ToolSpec) -> float:
        return self._timeout[tool.name]

    def idempotency_key(self, key: str, occurrence: int) -> str:
        """Stable for the n-th identical call of a task: a retry, or the same call made again
        after a restart, carries the same key, so the tool can recognise it."""
        uid = self.h.task.metadata.uid or f"{self.h.task.metadata.namespace}/{self.h.name}"
        return hashlib.sha256(f"{uid}/{key}/{occurrence}".encode()).hexdigest()[:32]

    def _replay(self, call: ToolCall, end: dict[str, Any]) -> Done:
        h = self.h
        h.replayed += 1
        h.metrics.replays.labels(**h.metrics.base, kind="tool").inc()
        h.metrics.tool(call.label, "replayed")
        h.tracing.start(f"execute_tool {call.label}", {
            ATTR.OPERATION: "execute_tool", ATTR.TOOL_NAME: call.tool.name, ATTR.REPLAYED: True,
            ATTR.STEP: h.step + 1, **call.attributes}).end()
        ctype = str(end.get("ctype") or "application/octet-stream")
        return Done(ToolResponse(int(str(end["status"])), {"content-type": ctype},
                                 stored_body(end)), 0, replayed=True)

    async def run(self, call: ToolCall, send: Send) -> Done:
        """The call's response once it passed its checks, from the journal when an earlier
        attempt of the task completed it; raises a SidecarError naming the class otherwise."""
        h = self.h
        if h.phase == "BudgetExceeded":
            h.metrics.tool(call.label, "budget_exceeded")
            raise BudgetExceeded("the task's hard limit was reached; the task must stop",
                                 tool=call.label)
        occurrence = h.journal.occurrence(call.key)
        earlier = h.journal.earlier(call.key, occurrence)
        if earlier is not None and earlier[1] is not None:
            return self._replay(call, earlier[1])
        if earlier is not None and call.side_effects and not call.idempotent:
            h.metrics.tool(call.label, "non_retryable")
            raise ToolCallFailed(
                "non_retryable", f"tool {call.label!r} has side effects and this call was sent "
                "before the restart without finishing; it may have run, so it is not sent again "
                "(set idempotencyHeader to make it safe to repeat)", tool=call.label, attempts=0)
        h.tool_calls += 1
        call_id = h.next_call_id()
        h.journal.begin(call_id, "tool", call.key, occurrence, side_effects=call.side_effects)
        attrs = {ATTR.OPERATION: "execute_tool", ATTR.TOOL_NAME: call.tool.name,
                 ATTR.STEP: h.step + 1, **call.attributes}
        if (shown := shape_of(call.request, h.task.spec.observability.tool_io)) is not None:
            attrs[ATTR.TOOL_REQUEST] = shown
        span = h.tracing.start(f"execute_tool {call.label}", attrs)
        idempotency_key = self.idempotency_key(call.key, occurrence)
        try:
            resp, state, slept = await self._attempts(call, send, idempotency_key, span)
        except ToolCallFailed as exc:
            h.journal.abort(call_id, exc.reason)
            raise
        except asyncio.CancelledError:
            h.journal.abort(call_id, "cancelled while in flight")
            raise
        finally:
            span.end()
        h.journal.end(call_id, call.key, status=resp.status, headers=resp.headers,
                      body=resp.body)
        h.metrics.tool(call.label, "ok" if state.attempts == 1 else "retried_ok")
        return Done(resp, state.attempts, backoff_s=slept)

    async def _attempts(self, call: ToolCall, send: Send, idempotency_key: str,
                        span: Span) -> tuple[ToolResponse, RetryState, float]:
        """Attempts until success or a final failure; also the seconds slept in backoff."""
        h = self.h
        # A built-in tool (context_archive) is no task tool: the task's default policy.
        policy = self._retry.get(call.tool.name, h.task.spec.retry_policy.calls)
        state = RetryState(policy, started=time.monotonic(),
                           side_effects=call.side_effects, idempotent=call.idempotent)
        mode = h.task.spec.observability.tool_io
        slept = 0.0
        while True:
            resp, failure = await send(idempotency_key)
            if failure is None:
                assert resp is not None
                span.set_attributes({ATTR.ATTEMPTS: state.attempts, ATTR.TOOL_STATUS: resp.status,
                                     ATTR.OUTCOME: "ok" if state.attempts == 1 else "retried_ok"})
                if (shown := shape_of(resp.body, mode)) is not None:
                    span.set_attribute(ATTR.TOOL_RESPONSE, shown)
                return resp, state, slept
            try:
                state = state.increment(failure, time.monotonic(), h.rng)
            except RetryExhausted as exc:
                self._fail(call, exc, failure, resp, span)
            h.retries += 1
            h.metrics.retry("tool", failure.policy_class)
            span.add_event("retry", {"class": failure.cls, "reason": failure.reason[:200],
                                     "delay_s": state.delay, "attempt": state.attempts - 1})
            await asyncio.sleep(state.delay)
            slept += state.delay

    def _fail(self, call: ToolCall, exc: RetryExhausted, failure: Failure,
              resp: ToolResponse | None, span: Span) -> None:
        h = self.h
        attempts = exc.state.attempts
        h.metrics.tool(call.label, exc.error_class)
        if exc.error_class == "verification_failed":
            h.verification_failures += 1  # a fact of the evaluation record (eval_record.py)
        span.set_attributes({ATTR.ATTEMPTS: attempts, ATTR.OUTCOME: exc.error_class,
                             ATTR.ERROR_TYPE: failure.cls})
        if resp is not None:
            span.set_attribute(ATTR.TOOL_STATUS, resp.status)
            if (shown := shape_of(resp.body, h.task.spec.observability.tool_io)) is not None:
                span.set_attribute(ATTR.TOOL_RESPONSE, shown)
        span.set_error(exc.reason)
        raise ToolCallFailed(exc.error_class, exc.reason, tool=call.label, attempts=attempts,
                             failureClass=failure.cls,
                             upstreamStatus=resp.status if resp is not None else None) from exc


class ToolProxy:
    """``POST /tools/{name}``: an HTTP tool through the pipeline."""

    def __init__(self, h: Harness, pipeline: ToolPipeline) -> None:
        self.h = h
        self.pipeline = pipeline

    async def handle(self, request: web.Request) -> web.Response:
        h = self.h
        started = time.perf_counter()
        name = request.match_info["name"]
        tool = h.task.spec.tool(name)
        if tool is None or tool.url is None:
            known = ", ".join(t.name for t in h.task.spec.tools if t.url) or "none"
            mcp = f" ({name!r} is an MCP server: use /mcp/{name})" if tool is not None else ""
            raise NotFound(f"unknown tool {name!r}{mcp}; this task's HTTP tools: {known}")
        raw = await request.read()
        if raw and "json" in request.headers.get("content-type", "").lower():
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(
                    f"request body for tool {name!r} is not valid JSON: {exc}") from exc
        headers = {k: v for k in _FORWARD if (v := request.headers.get(k))}
        url, method, timeout = tool.url, tool.method, self.pipeline.timeout(tool)
        checks = h.tool_checks[name]
        waited = 0.0

        async def send(idempotency_key: str) -> tuple[ToolResponse | None, Failure | None]:
            nonlocal waited
            if tool.idempotency_header:
                headers[tool.idempotency_header] = idempotency_key
            t0 = time.perf_counter()
            try:
                up = await h.upstream.send(method, url, headers, raw, timeout)
            except TransportError as exc:
                return None, Failure(exc.kind, exc.reason, reached=exc.reached)
            finally:
                waited += time.perf_counter() - t0
            resp = ToolResponse(up.status, up.headers, up.body)
            return resp, chain(checks, resp)

        call = ToolCall(tool, name, call_key("tool", name, raw), raw, bool(tool.side_effects),
                        tool.idempotency_header is not None)
        done = await self.pipeline.run(call, send)
        if done.replayed:
            return web.Response(body=done.response.body, status=done.response.status, headers={
                "content-type": done.response.headers["content-type"],
                "x-tether-replayed": "true"})
        out_headers: CIMultiDict[str] = CIMultiDict()
        for k, v in done.response.headers.items():  # repeated headers kept (Set-Cookie, ...)
            if k.lower() not in HOP_HEADERS:
                out_headers.add(k, v)
        out_headers["x-tether-attempts"] = str(done.attempts)
        # Backoff waits and the tool's own time are not the sidecar's overhead.
        h.metrics.overhead_tool.observe(time.perf_counter() - started - waited - done.backoff_s)
        return web.Response(body=done.response.body, status=done.response.status,
                            headers=out_headers)
