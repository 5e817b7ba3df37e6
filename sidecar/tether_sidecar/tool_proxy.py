"""The tool proxy: ``POST /tools/{name}`` → verify → classify → retry/backoff → explicit failure.

The agent gets the tool's own response when it passes the tool's ``verify`` chain, and otherwise
a JSON error naming the class (retryable_exhausted, non_retryable, verification_failed,
budget_exceeded) and the reason. A failure never comes back as an empty success.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tether_api import ToolSpec, parse_duration

from .errors import BadRequest, BudgetExceeded, NotFound, ToolCallFailed
from .harness import Harness
from .journal import call_key, stored_body
from .retry import Failure, RetryExhausted, RetryState
from .tracing import ATTR, Span, shape_of
from .upstream import HOP_HEADERS, TransportError
from .verify import ToolResponse, chain

__all__ = ["ToolProxy"]

_FORWARD = ("content-type", "accept")


class ToolProxy:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self._retry = {t.name: (t.retry.apply(h.task.spec.retry_policy.calls) if t.retry
                                else h.task.spec.retry_policy.calls) for t in h.task.spec.tools}
        self._timeout = {t.name: parse_duration(t.timeout) for t in h.task.spec.tools}

    def idempotency_key(self, key: str, occurrence: int) -> str:
        """Stable for the n-th identical call of a task: a retry, or the same call made again
        after a restart, carries the same key, so the tool can recognise it."""
        uid = self.h.task.metadata.uid or f"{self.h.task.metadata.namespace}/{self.h.name}"
        return hashlib.sha256(f"{uid}/{key}/{occurrence}".encode()).hexdigest()[:32]

    def _replay(self, name: str, end: dict[str, object]) -> web.Response:
        h = self.h
        h.replayed += 1
        h.metrics.replays.labels(**h.metrics.base, kind="tool").inc()
        h.metrics.tool(name, "replayed")
        h.tracing.start(f"execute_tool {name}", {ATTR.OPERATION: "execute_tool",
                                                 ATTR.TOOL_NAME: name, ATTR.REPLAYED: True,
                                                 ATTR.STEP: h.step + 1}).end()
        return web.Response(body=stored_body(end), status=int(str(end["status"])), headers={
            "content-type": str(end.get("ctype") or "application/octet-stream"),
            "x-tether-replayed": "true"})

    async def handle(self, request: web.Request) -> web.Response:
        h = self.h
        started = time.perf_counter()
        name = request.match_info["name"]
        tool = h.task.spec.tool(name)
        if tool is None:
            known = ", ".join(t.name for t in h.task.spec.tools) or "none"
            raise NotFound(f"unknown tool {name!r}; this task's tools: {known}")
        if h.phase == "BudgetExceeded":
            h.metrics.tool(name, "budget_exceeded")
            raise BudgetExceeded("the task's hard limit was reached; the task must stop",
                                 tool=name)
        raw = await request.read()
        if raw and "json" in request.headers.get("content-type", "").lower():
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(
                    f"request body for tool {name!r} is not valid JSON: {exc}") from exc
        key = call_key("tool", name, raw)
        occurrence = h.journal.occurrence(key)
        earlier = h.journal.earlier(key, occurrence)
        if earlier is not None and earlier[1] is not None:
            return self._replay(name, earlier[1])
        if earlier is not None and tool.side_effects and not tool.idempotency_header:
            h.metrics.tool(name, "non_retryable")
            raise ToolCallFailed(
                "non_retryable", f"tool {name!r} has side effects and this call was sent before "
                "the restart without finishing; it may have run, so it is not sent again (set "
                "idempotencyHeader to make it safe to repeat)", tool=name, attempts=0)
        headers = {k: v for k in _FORWARD if (v := request.headers.get(k))}
        if tool.idempotency_header:
            headers[tool.idempotency_header] = self.idempotency_key(key, occurrence)
        h.tool_calls += 1
        call_id = h.next_call_id()
        h.journal.begin(call_id, "tool", key, occurrence, side_effects=tool.side_effects)
        mode = h.task.spec.observability.tool_io
        attrs = {ATTR.OPERATION: "execute_tool", ATTR.TOOL_NAME: name, ATTR.STEP: h.step + 1}
        if (shown := shape_of(raw, mode)) is not None:
            attrs[ATTR.TOOL_REQUEST] = shown
        span = h.tracing.start(f"execute_tool {name}", attrs)
        try:
            resp, state, waited = await self._call(tool, raw, headers, span)
        except ToolCallFailed as exc:
            h.journal.abort(call_id, exc.reason)
            raise
        except asyncio.CancelledError:
            h.journal.abort(call_id, "cancelled while in flight")
            raise
        finally:
            span.end()
        h.journal.end(call_id, key, status=resp.status, headers=resp.headers, body=resp.body)
        outcome = "ok" if state.attempts == 1 else "retried_ok"
        h.metrics.tool(name, outcome)
        out_headers: CIMultiDict[str] = CIMultiDict()
        for k, v in resp.headers.items():  # repeated headers kept (Set-Cookie, Link, ...)
            if k.lower() not in HOP_HEADERS:
                out_headers.add(k, v)
        out_headers["x-tether-attempts"] = str(state.attempts)
        h.metrics.overhead_tool.observe(time.perf_counter() - started - waited)
        return web.Response(body=resp.body, status=resp.status, headers=out_headers)

    async def _call(self, tool: ToolSpec, raw: bytes, headers: dict[str, str],
                    span: Span) -> tuple[ToolResponse, RetryState, float]:
        """Attempts until success or a final failure; also returns the seconds spent waiting
        on the tool and in backoff, which are not the sidecar's overhead."""
        h = self.h
        state = RetryState(self._retry[tool.name], started=time.monotonic(),
                           side_effects=tool.side_effects,
                           idempotent=tool.idempotency_header is not None)
        checks = h.tool_checks[tool.name]
        mode = h.task.spec.observability.tool_io
        waited = 0.0
        while True:
            t0 = time.perf_counter()
            try:
                up = await h.upstream.send(tool.method, tool.url, headers, raw,
                                           self._timeout[tool.name])
                resp = ToolResponse(up.status, up.headers, up.body)
                failure = chain(checks, resp)
            except TransportError as exc:
                resp, failure = None, Failure(exc.kind, exc.reason, reached=exc.reached)
            waited += time.perf_counter() - t0
            if failure is None:
                assert resp is not None
                span.set_attributes({ATTR.ATTEMPTS: state.attempts, ATTR.TOOL_STATUS: resp.status,
                                     ATTR.OUTCOME: "ok" if state.attempts == 1 else "retried_ok"})
                if (shown := shape_of(resp.body, mode)) is not None:
                    span.set_attribute(ATTR.TOOL_RESPONSE, shown)
                return resp, state, waited
            try:
                state = state.increment(failure, time.monotonic(), h.rng)
            except RetryExhausted as exc:
                self._fail(tool, exc, failure, resp, span)
            h.retries += 1
            h.metrics.retry("tool", failure.policy_class)
            span.add_event("retry", {"class": failure.cls, "reason": failure.reason[:200],
                                     "delay_s": state.delay, "attempt": state.attempts - 1})
            await asyncio.sleep(state.delay)
            waited += state.delay

    def _fail(self, tool: ToolSpec, exc: RetryExhausted, failure: Failure,
              resp: ToolResponse | None, span: Span) -> None:
        h = self.h
        attempts = exc.state.attempts
        h.metrics.tool(tool.name, exc.error_class)
        span.set_attributes({ATTR.ATTEMPTS: attempts, ATTR.OUTCOME: exc.error_class,
                             ATTR.ERROR_TYPE: failure.cls})
        if resp is not None:
            span.set_attribute(ATTR.TOOL_STATUS, resp.status)
            if (shown := shape_of(resp.body, h.task.spec.observability.tool_io)) is not None:
                span.set_attribute(ATTR.TOOL_RESPONSE, shown)
        span.set_error(exc.reason)
        raise ToolCallFailed(exc.error_class, exc.reason, tool=tool.name, attempts=attempts,
                             failureClass=failure.cls,
                             upstreamStatus=resp.status if resp is not None else None) from exc
