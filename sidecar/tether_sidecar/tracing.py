"""Spans: one trace per task, a span per model or tool call, always written to a JSONL file.

Each finished span is one ``write`` to ``spans.jsonl`` on the state dir (it survives the process
being killed), and, when ``observability.otlpEndpoint`` is set, is also handed to the
OpenTelemetry SDK, which batches it to the collector over OTLP/HTTP.

The trace id is the task's UID (a UUID is 128 bits, exactly a trace id), so every attempt of a
task — every pod, after every eviction — lands in the same trace without passing ids around.
The tree is task → attempt → step → call; every id but a call's is derived from the UID (and the
attempt or step number), so an attempt names its parent without asking anyone. The task span is
sent once, by the attempt that ends the task (task_span.py).

Money: ``tether.cost_usd`` is what the span's own work was charged (a model call: its attempts,
the ones lost and retried included; a step: what was charged since the checkpoint before it,
in whichever attempt; an attempt: what it charged), and
``tether.spent_usd`` the task's running total when the span ended. Every charge in the ledger is
on exactly one ``chat`` span, so their costs over a trace add up to the task's ``spentUSD``.
Attribute names follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``); ours are
``tether.*``. Names live here and nowhere else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .otlp import OtlpMirror

__all__ = ["ATTR", "Span", "Tracing", "attempt_span_id", "shape_of", "step_span_id",
           "task_span_id", "task_trace_id"]

log = logging.getLogger(__name__)


class ATTR:
    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    TOOL_NAME = "gen_ai.tool.name"
    MCP_SERVER = "tether.mcp.server"  # the AgentTask's name of the MCP server a tool is on
    ERROR_TYPE = "error.type"
    COST = "tether.cost_usd"  # this span's own work (see the module docstring)
    SPENT = "tether.spent_usd"  # the task's running total when the span ended
    RESERVED = "tether.reserved_usd"
    ATTEMPTS = "tether.attempts"
    OUTCOME = "tether.outcome"
    STREAM = "tether.stream"
    CONTEXT_TOKENS = "tether.context.tokens_estimated"
    CONTEXT_EXACT = "tether.context.estimate_exact"
    CONTEXT_HASH = "tether.context.hash"
    COMPACTION = "tether.context.compaction"
    # Context the provider keeps (previous_response_id, conversation): counted tokens, and what
    # was counted and what could not be (responses_chains.py).
    PROVIDER_HELD_TOKENS = "tether.context.provider_held_tokens"
    PROVIDER_HELD = "tether.context.provider_held"
    TOOL_REQUEST = "tether.tool.request"
    TOOL_RESPONSE = "tether.tool.response"
    TOOL_STATUS = "http.response.status_code"
    STEP = "tether.step"
    REPLAYED = "tether.replayed"
    ORPHAN = "tether.orphan.call_id"  # a call in flight when an earlier attempt was killed
    TASK_PHASE = "tether.task.phase"


def task_trace_id(uid: str | None, namespace: str, name: str) -> int:
    if uid:
        try:
            return uuid.UUID(uid).int
        except ValueError:
            pass
    digest = hashlib.sha256(f"{namespace}/{name}/{uid or ''}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1


def _derived_id(trace_id: int, what: str) -> int:
    digest = hashlib.sha256(f"{trace_id:032x}/{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def attempt_span_id(trace_id: int, attempt: int) -> int:
    return _derived_id(trace_id, f"attempt/{attempt}")


def step_span_id(trace_id: int, step: int) -> int:
    """The same in every attempt: a step redone after a restart shows as one step."""
    return _derived_id(trace_id, f"step/{step}")


def task_span_id(trace_id: int) -> int:
    return _derived_id(trace_id, "task")


class Span:
    """A span, written when ``end()`` is called. Cheaper than the SDK's (a few µs against ~30):
    the sidecar's per-call budget is a few hundred microseconds. Mirrored to OTLP when set."""

    __slots__ = ("_tracing", "attributes", "end_ns", "events", "name", "parent_id", "span_id",
                 "start_ns", "status", "status_message")

    def __init__(self, tracing: Tracing, name: str, span_id: int, parent_id: int | None,
                 attributes: dict[str, Any], start_ns: int | None = None) -> None:
        self._tracing = tracing
        self.name = name
        self.span_id = span_id
        self.parent_id = parent_id
        self.attributes = attributes
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.status = "UNSET"
        self.status_message = ""
        self.start_ns = start_ns if start_ns is not None else time.time_ns()
        self.end_ns = 0

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        self.events.append((name, time.time_ns(), attributes))

    def set_error(self, message: str) -> None:
        self.status, self.status_message = "ERROR", message

    def end(self) -> None:
        if not self.end_ns:
            self.end_ns = time.time_ns()
            self._tracing.finish(self)

    def to_json(self, trace_id: int, attempt: int) -> bytes:
        return orjson.dumps({
            "traceId": f"{trace_id:032x}", "spanId": f"{self.span_id:016x}",
            "parentId": f"{self.parent_id:016x}" if self.parent_id else None,
            "name": self.name, "start": self.start_ns, "end": self.end_ns,
            "status": self.status, "attempt": attempt, "attributes": self.attributes,
            "events": [{"name": n, "time": t, "attributes": a} for n, t, a in self.events],
        }) + b"\n"


class Tracing:
    def __init__(self, *, namespace: str, task: str, uid: str | None, attempt: int,
                 span_file: Path, otlp_endpoint: str | None) -> None:
        self.trace_id = task_trace_id(uid, namespace, task)
        self.attempt = attempt
        self.attempt_span = attempt_span_id(self.trace_id, attempt)
        self.started_ns = time.time_ns()
        self.span_file = span_file
        self.write_errors = 0
        self._fd = os.open(span_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._rng = random.Random()
        self._step_ids: dict[int, int] = {}  # a SHA-256 each is ~5 µs, and every call asks
        self._otlp: OtlpMirror | None = None
        if otlp_endpoint:
            # Imported only here: the OpenTelemetry SDK costs a sidecar without an endpoint
            # ~15-50 ms of start-up (it scans the installed packages' entry points) and ~1.3 MB.
            from .otlp import OtlpMirror

            self._otlp = OtlpMirror(otlp_endpoint, self.trace_id, {
                "service.name": "tether-sidecar", "tether.task": task,
                "k8s.namespace.name": namespace, "tether.attempt": attempt,
            })

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def start(self, name: str, attributes: dict[str, Any]) -> Span:
        """A call span, child of the step in progress (``tether.step`` in ``attributes``)."""
        step = attributes.get(ATTR.STEP)
        parent = self._step_id(step) if isinstance(step, int) else self.attempt_span
        return Span(self, name, self._rng.getrandbits(64) or 1, parent, attributes)

    def _step_id(self, step: int) -> int:
        span_id = self._step_ids.get(step)
        if span_id is None:
            if len(self._step_ids) > 64:  # only the step in progress and its neighbours matter
                self._step_ids.clear()
            span_id = self._step_ids[step] = step_span_id(self.trace_id, step)
        return span_id

    def finish(self, span: Span) -> None:
        try:
            os.write(self._fd, span.to_json(self.trace_id, self.attempt))
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 1000 == 0:
                log.error("Cannot write spans to %s (%d lost so far): %s", self.span_file,
                          self.write_errors, exc.strerror)
        if self._otlp is not None:
            self._otlp.export(span)

    def step_done(self, step: int, since_ns: int, attributes: dict[str, Any]) -> None:
        """Emit the span of a step when its checkpoint is written."""
        Span(self, f"step {step}", self._step_id(step), self.attempt_span,
             {ATTR.STEP: step, **attributes}, since_ns).end()

    def orphan(self, call_id: str, model: str, usd: float) -> None:
        """The span of a model call an earlier attempt left in flight (killed: its own span was
        never written), which this attempt's ledger charges its hold: the charge has a span."""
        Span(self, f"chat {model}", self._rng.getrandbits(64) or 1, self.attempt_span, {
            ATTR.OPERATION: "chat", ATTR.REQUEST_MODEL: model, ATTR.ORPHAN: call_id,
            ATTR.OUTCOME: "orphan", ATTR.COST: usd}).end()

    def attempt_done(self, attributes: dict[str, Any]) -> None:
        Span(self, f"attempt {self.attempt}", self.attempt_span, task_span_id(self.trace_id),
             {"tether.attempt": self.attempt, **attributes}, self.started_ns).end()

    def shutdown(self) -> None:
        if self._otlp is not None:
            self._otlp.shutdown()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_FULL_LIMIT = 64 * 1024


def shape_of(body: bytes, mode: str) -> str | None:
    """A tool body as a span attribute: verbatim (capped), its shape only, or nothing."""
    if mode == "none":
        return None
    if mode == "full":
        text = body[:_FULL_LIMIT].decode("utf-8", "replace")
        extra = len(body) - _FULL_LIMIT
        return text + (f"…[{extra} more bytes]" if extra > 0 else "")
    try:
        doc = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return f"<{len(body)} bytes, not JSON>"
    return orjson.dumps(_redact(doc)).decode()


def _redact(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _redact(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_redact(v) for v in doc[:3]] + ([f"<{len(doc) - 3} more>"] if len(doc) > 3 else [])
    if isinstance(doc, str):
        return f"<str {len(doc)}>"
    if doc is None or isinstance(doc, bool):
        return doc
    return f"<{type(doc).__name__}>"
