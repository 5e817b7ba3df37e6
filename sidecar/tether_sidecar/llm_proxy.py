"""The model proxy: ``POST /v1/chat/completions`` and ``/v1/responses`` (OpenAI), ``/v1/messages``
(Anthropic). What differs between the formats is behind the :class:`Dialect` hooks.

Per call: parse, fit the prompt into the context budget, reserve the worst-case cost, send with
retries, relay (streamed as it arrives, or whole), settle the cost from the provider's ``usage``.
The agent's dummy key is dropped and the real one added here; nothing else ever sees it.

The spend rules live in :mod:`spend`: waiting out other calls' holds, and the charge-the-hold
rule — an attempt that fails after it may have reached the provider is charged what was held
for it: before its retry, which takes a new hold (``SpendingCall.retrying``), or when the call
fails for good (``SpendingCall.fail``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .boundary import record_boundary
from .context import Compaction, Estimate, transcript
from .dialects import Dialect, Message
from .errors import BadRequest, ModelCallFailed, SidecarError
from .harness import Harness
from .journal import call_key, stored_body
from .ledger import Reservation
from .retry import Failure, RetryExhausted, RetryState, parse_retry_after
from .spend import SpendingCall, hold
from .tracing import ATTR, Span
from .upstream import HOP_HEADERS, Headers, StreamingResponse, TransportError

__all__ = ["handle_llm"]

log = logging.getLogger(__name__)

# Agent headers never sent upstream: its dummy credentials, and framing we redo.
_DROP = HOP_HEADERS | {"authorization", "x-api-key", "cookie", "accept-encoding"}
_NO_HEADERS: Headers = CIMultiDictProxy(CIMultiDict())


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _failure_of(status: int, headers: Headers, body: bytes) -> Failure:
    text = body[:300].decode("utf-8", "replace")
    if status == 429 and b"insufficient_quota" in body:
        # OpenAI's "out of credit" is a 429, but waiting does not refill an account.
        return Failure("quota", f"HTTP 429 insufficient_quota: {text}", status=status)
    return Failure(str(status), f"HTTP {status}: {text}",
                   retry_after=parse_retry_after(headers.get("retry-after")), status=status)


class LlmCall(SpendingCall):
    def __init__(self, h: Harness, request: web.Request, dialect: Dialect) -> None:
        super().__init__(h, h.task.spec.model.name)
        self.request = request
        self.dialect = dialect
        self.model = h.task.spec.model
        self.started = time.perf_counter()
        self.upstream_time = 0.0
        self.last_status = 0
        self.last_headers: Headers = _NO_HEADERS
        self.boundary: int | None = None  # the context boundary this call's compaction wrote

    def check_body(self, body: dict[str, Any]) -> None:
        self.dialect.check(body)
        asked = body.get("model")
        if asked is None:
            body["model"] = self.model.name
        elif asked != self.model.name:
            raise BadRequest(
                f"model: this task may use {self.model.name!r} (spec.model.name), the request "
                f"asked for {asked!r}"
            )

    def headers(self) -> dict[str, str]:
        out = {k: v for k, v in self.request.headers.items() if k.lower() not in _DROP}
        out["content-type"] = "application/json"
        if self.h.api_key:
            out.update(self.dialect.auth(self.h.api_key))
        if self.dialect.name == "anthropic" and "anthropic-version" not in self.request.headers:
            out["anthropic-version"] = "2023-06-01"
        return out

    async def reserve(self, body: dict[str, Any], est: Estimate, max_out: int
                      ) -> tuple[Reservation, Estimate]:
        ledger, price = self.h.ledger, self.h.price
        amount = price.cost(est.tokens, max_out)
        hard = ledger.envelope.hard_limit_usd
        if not est.exact and ledger.spent_usd + ledger.reserved_usd + amount > hard:
            # The cheap byte bound says no; count exactly before refusing.
            est = self.dialect.estimate(self.h, body, exact=True)
            amount = price.cost(est.tokens, max_out)
        return await hold(self.h, amount, est.tokens + max_out), est

    async def summarize(self, archived: list[Message]) -> str:
        """Ask the task's own model to summarise the archivable tier (accounted like any call)."""
        body = self.dialect.summary_request(self.model.name, transcript(archived, self.dialect),
                                            self.h.settings.summary_max_tokens)
        key = call_key("llm", self.dialect.path, body)
        occurrence = self.h.journal.occurrence(key)
        earlier = self.h.journal.earlier(key, occurrence)
        if earlier is not None and earlier[1] is not None:  # summarised before a restart
            self.h.replayed += 1
            return self.dialect.reply_text(orjson.loads(stored_body(earlier[1])))
        sub = LlmCall(self.h, self.request, self.dialect)
        est = self.dialect.estimate(self.h, body)
        res, est = await sub.reserve(body, est, self.h.settings.summary_max_tokens)
        sub.begin(key, occurrence, res)
        span = self.h.tracing.start(f"chat {self.model.name}", {
            ATTR.OPERATION: "chat", ATTR.PROVIDER: self.dialect.name,
            ATTR.REQUEST_MODEL: self.model.name, "tether.purpose": "context_summary",
            ATTR.STEP: self.h.step + 1})
        try:
            resp = await sub.send(orjson.dumps(body), span)
            doc = orjson.loads(resp)
            sub.settle(self.dialect.usage(doc), span)
            sub.end(sub.last_status, sub.last_headers, resp)
            self.upstream_time += sub.upstream_time
            return self.dialect.reply_text(doc)
        except SidecarError as exc:
            sub.fail(exc.reason, span)
            raise
        except BaseException as exc:
            sub.fail(_unexpected(exc), span)
            raise
        finally:
            span.end()

    async def send(self, payload: bytes, span: Span) -> bytes:
        """Non-streaming send with retries; returns the 2xx body."""
        url = self.model.upstream_base + self.dialect.path
        headers = self.headers()
        state = RetryState(self.h.task.spec.retry_policy.calls, started=time.monotonic())
        while True:
            t0 = time.perf_counter()
            self.sending = True
            try:
                resp = await self.h.upstream.send("POST", url, headers, payload,
                                                  self.h.settings.model_timeout_seconds)
                failure = None if resp.status < 300 else _failure_of(resp.status, resp.headers,
                                                                      resp.body)
            except TransportError as exc:
                failure = Failure(exc.kind, exc.reason, reached=exc.reached)
            self.upstream_time += time.perf_counter() - t0
            if failure is None:
                self.last_status, self.last_headers = resp.status, resp.headers
                return resp.body
            state = await self.backoff(state, failure, span)

    async def backoff(self, state: RetryState, failure: Failure, span: Span) -> RetryState:
        """Wait before the next attempt, or raise when there is none. A failed attempt that may
        have been billed is charged its hold first, and the retry holds anew (spend.py)."""
        self.attempt_failed(failure)
        try:
            state = state.increment(failure, time.monotonic(), self.h.rng)
        except RetryExhausted as exc:  # the caller closes the hold by the rule (fail)
            self.h.metrics.llm(self.model.name, exc.error_class)
            span.set_attributes({ATTR.ATTEMPTS: state.attempts, ATTR.OUTCOME: exc.error_class,
                                 ATTR.ERROR_TYPE: failure.cls})
            span.set_error(exc.reason)
            raise ModelCallFailed(exc.error_class, exc.reason, failure.status or 502,
                                  attempts=state.attempts) from exc
        charged = await self.retrying()  # may refuse the retry's hold: the call ends there
        self.h.retries += 1
        self.h.metrics.retry("model", failure.policy_class)
        span.add_event("retry", {"class": failure.cls, "reason": failure.reason[:200],
                                 "delay_s": state.delay, "attempt": state.attempts - 1,
                                 "charged_usd": float(charged)})
        t0 = time.perf_counter()
        await asyncio.sleep(state.delay)
        self.upstream_time += time.perf_counter() - t0
        return state

    def tether_headers(self) -> dict[str, str]:
        ledger = self.h.ledger
        out = {"x-tether-spent-usd": format(ledger.spent_usd, "f"),
               "x-tether-hard-limit-usd": format(ledger.envelope.hard_limit_usd, "f")}
        if self.boundary is not None:  # the agent may continue from GET /context
            out["x-tether-context-boundary"] = str(self.boundary)
        if ledger.soft_passed:
            out["x-tether-budget-warning"] = (
                f"soft limit {ledger.envelope.soft_limit_usd} USD passed: spent "
                f"{ledger.spent_usd} of {ledger.envelope.hard_limit_usd}")
        return out


async def _break(out: web.StreamResponse, request: web.Request, dialect: Dialect,
                 reason: str) -> None:
    """End the agent's stream as broken, never as a clean end it could take for the whole
    answer: an SSE error event (the SDKs raise on it), then the connection is dropped without
    the chunked terminator."""
    try:
        await out.write(dialect.stream_error("upstream_stream_broken", reason))
    except ConnectionResetError:
        return  # the agent is gone too: nothing to tell it
    if request.transport is not None:
        request.transport.close()


def _unexpected(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):  # a stop past its grace period
        return "cancelled while in flight"
    return f"internal error: {type(exc).__name__}: {exc}"  # logged by the error middleware


def _context_hash(key: str, sent: dict[str, Any] | None, dialect: Dialect) -> str:
    """128 bits of the call key of the request as sent: the journal key itself when nothing was
    rewritten (``sent`` is None), so the body is hashed once per call, not twice (~12 µs at
    100 KB here, on every call); rehashed only after a cap, an injection or a compaction."""
    return (key if sent is None else call_key("llm", dialect.path, sent))[:32]


def _relay_headers(headers: Headers, ours: dict[str, str]) -> CIMultiDict[str]:
    """The upstream's end-to-end headers, repeated ones kept (Set-Cookie, Link, ...), then ours."""
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        if k.lower() not in HOP_HEADERS and k.lower() not in ours:
            out.add(k, v)
    out.update(ours)
    return out


def _prepare(h: Harness, call: LlmCall, body: dict[str, Any]) -> tuple[int, bool, bool]:
    """Cap the output (so the hold is honest) and ask for usage in streams; returns the cap,
    whether the usage chunk must be held back from the agent, and whether the body changed."""
    dialect = call.dialect
    max_out = dialect.max_tokens(body)
    capped = max_out is None
    if max_out is None:
        max_out = h.task.spec.model.default_max_tokens
        dialect.cap_max_tokens(body, max_out)
    if body.get("stream") is True and dialect.ask_stream_usage(body):
        return max_out, True, True
    return max_out, False, capped


def _replay(h: Harness, call: LlmCall, key: str, end: dict[str, Any]) -> web.Response:
    """Answer from the journal: the call completed in an earlier attempt (and still says which
    context boundary it made, so an agent killed before acting on it learns of it now)."""
    if (b := h.boundaries.by_call_key(key)) is not None:
        call.boundary = b.n
    h.replayed += 1
    h.metrics.replays.labels(**h.metrics.base, kind="model").inc()
    h.metrics.llm(call.model.name, "replayed")
    span = h.tracing.start(f"chat {call.model.name}", {
        ATTR.OPERATION: "chat", ATTR.PROVIDER: call.dialect.name,
        ATTR.REQUEST_MODEL: call.model.name, ATTR.REPLAYED: True, ATTR.STEP: h.step + 1})
    span.end()
    return web.Response(body=stored_body(end), status=int(end["status"]),
                        headers={"content-type": end.get("ctype") or "application/json",
                                 "x-tether-replayed": "true", **call.tether_headers()})


async def handle_llm(h: Harness, request: web.Request, dialect: Dialect) -> web.StreamResponse:
    if dialect.name != h.dialect.name:
        raise BadRequest(f"this task's model provider is {h.task.spec.model.provider}; send "
                         f"{h.dialect.routes}")
    call = LlmCall(h, request, dialect)
    body = parse_body(await request.read())
    call.check_body(body)
    key = call_key("llm", dialect.path, body)
    occurrence = h.journal.occurrence(key)
    earlier = h.journal.earlier(key, occurrence)
    if earlier is not None and earlier[1] is not None:
        return _replay(h, call, key, earlier[1])
    if h.phase == "BudgetExceeded":  # the breaker has tripped: every later call is a hit too
        h.metrics.limit_hit("hard")
        raise h.ledger.refuse()
    max_out, injected, changed = _prepare(h, call, body)
    est, compaction = await dialect.fit(h, body, call.summarize)
    res, est = await call.reserve(body, est, max_out)
    # Re-serialised even when unchanged: with a key given twice the provider might read the
    # value we did not check (orjson keeps the last), and it costs ~3 µs at 100 KB.
    payload = orjson.dumps(body)
    context_hash = _context_hash(key, body if changed or compaction else None, dialect)
    h.llm_calls += 1
    call.begin(key, occurrence, res)
    span = h.tracing.start(f"chat {call.model.name}", {
        ATTR.OPERATION: "chat", ATTR.PROVIDER: dialect.name, ATTR.REQUEST_MODEL: call.model.name,
        ATTR.REQUEST_MAX_TOKENS: max_out, ATTR.STREAM: bool(body.get("stream")),
        ATTR.CONTEXT_TOKENS: est.tokens, ATTR.CONTEXT_EXACT: est.exact,
        ATTR.RESERVED: float(res.usd), ATTR.STEP: h.step + 1,
        ATTR.CONTEXT_HASH: context_hash, **dialect.context_attributes(h, body)})
    try:
        if compaction is not None:
            await _compacted(h, call, compaction, body, key, span)
        if body.get("stream") is True:
            return await _stream(call, request, payload, span, est, injected)
        return await _plain(call, payload, span, est)
    except SidecarError as exc:
        span.set_error(exc.reason)
        call.fail(exc.reason, span)
        raise
    except BaseException as exc:
        call.fail(_unexpected(exc), span)
        raise
    finally:
        span.end()


async def _compacted(h: Harness, call: LlmCall, compaction: Compaction, body: dict[str, Any],
                     key: str, span: Span) -> None:
    """Count the compaction and, when it left permanent + note + working tier, write it as a
    context boundary before the call leaves (the agent may continue from that compact form)."""
    h.compactions += 1
    h.metrics.compaction(compaction.strategy)
    span.set_attribute(ATTR.COMPACTION, f"{compaction.strategy}: {compaction.before} -> "
                       f"{compaction.after} tokens, {compaction.archived_messages} messages"
                       f"{' (summary reused)' if compaction.reused_summary else ''}")
    if compaction.boundary:
        messages = body.get("messages", body.get("input"))
        call.boundary = (await record_boundary(h.boundaries, compaction, list(messages or []),
                                               key)).n
        span.set_attribute("tether.context.boundary", call.boundary)


async def _plain(call: LlmCall, payload: bytes, span: Span, est: Estimate) -> web.Response:
    h, dialect = call.h, call.dialect
    data = await call.send(payload, span)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
        log.warning("Model response for task %s is not JSON", h.name)
    usage = dialect.usage(doc) if isinstance(doc, dict) else None
    call.settle(usage, span)
    call.end(call.last_status, call.last_headers, data)
    if isinstance(doc, dict):
        dialect.answered(h, doc)
    if usage is not None:  # anchors the estimate of this conversation's next prompt
        h.context.observe(est, usage[0], dialect)
    headers = _relay_headers(call.last_headers, call.tether_headers())
    h.metrics.overhead_model.observe(time.perf_counter() - call.started - call.upstream_time)
    return web.Response(body=data, status=call.last_status, headers=headers)


async def _open_stream(call: LlmCall, payload: bytes, span: Span) -> StreamingResponse:
    """Send until the provider answers 2xx (retrying only here, before a byte is relayed)."""
    url = call.model.upstream_base + call.dialect.path
    headers = call.headers()
    state = RetryState(call.h.task.spec.retry_policy.calls, started=time.monotonic())
    while True:
        t0 = time.perf_counter()
        call.sending = True  # stays so while the stream is relayed: it is billed from here
        try:
            up = await call.h.upstream.stream("POST", url, headers, payload,
                                              call.h.settings.model_timeout_seconds)
            if up.status < 300:
                call.upstream_time += time.perf_counter() - t0
                return up
            data = await up.read()
            await up.aclose()
            failure = _failure_of(up.status, up.headers, data)
        except TransportError as exc:
            failure = Failure(exc.kind, exc.reason, reached=exc.reached)
        call.upstream_time += time.perf_counter() - t0
        state = await call.backoff(state, failure, span)


async def _stream(call: LlmCall, request: web.Request, payload: bytes, span: Span,
                  est: Estimate, injected: bool) -> web.StreamResponse:
    up = await _open_stream(call, payload, span)
    usage = call.dialect.stream_usage(call.h, strip_usage_chunk=injected)
    out = web.StreamResponse(status=up.status,
                             headers=_relay_headers(up.headers, call.tether_headers()))
    relayed: list[bytes] = []
    interrupted: str | None = None
    try:
        await out.prepare(request)
        async for chunk in up.chunks():
            data = usage.feed(chunk)
            if data:
                relayed.append(data)
                await out.write(data)
        if tail := usage.flush():
            relayed.append(tail)
            await out.write(tail)
    except TransportError as exc:
        interrupted = f"upstream stream broke: {exc.reason}"
        await _break(out, request, call.dialect, interrupted)
    except ConnectionResetError as exc:
        interrupted = f"agent went away mid-stream: {exc}"
    finally:
        await up.aclose()
    if interrupted:
        span.set_error(interrupted)
        call.fail(interrupted, span)  # charged the hold: the provider bills a broken stream
        return out
    reported = (usage.input_tokens or 0, usage.output_tokens or 0, usage.cache_read,
                usage.cache_write) if usage.complete else None
    call.settle(reported, span)
    call.end(up.status, up.headers, b"".join(relayed))
    await out.write_eof()
    if usage.input_tokens:
        call.h.context.observe(est, usage.input_tokens, call.dialect)
    return out
