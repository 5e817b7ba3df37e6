"""Spans: one trace per task, a span per model or tool call, always written to a JSONL file.

The trace id is the task's UID (a UUID is 128 bits, exactly a trace id), so every attempt of a
task — every pod, after every eviction — lands in the same trace without passing ids around. Call
spans are children of the attempt span, whose id is derived from the UID and attempt number.
Attribute names follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``); ours are
``tether.*``. Names live here and nowhere else.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = ["ATTR", "JsonlSpanExporter", "Tracing", "attempt_span_id", "shape_of", "step_span_id",
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
    ERROR_TYPE = "error.type"
    COST = "tether.cost_usd"
    RESERVED = "tether.reserved_usd"
    ATTEMPTS = "tether.attempts"
    OUTCOME = "tether.outcome"
    STREAM = "tether.stream"
    CONTEXT_TOKENS = "tether.context.tokens_estimated"
    CONTEXT_EXACT = "tether.context.estimate_exact"
    CONTEXT_HASH = "tether.context.hash"
    COMPACTION = "tether.context.compaction"
    TOOL_REQUEST = "tether.tool.request"
    TOOL_RESPONSE = "tether.tool.response"
    TOOL_STATUS = "http.response.status_code"
    STEP = "tether.step"
    REPLAYED = "tether.replayed"


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


class _TaskIds(IdGenerator):
    def __init__(self, trace_id: int) -> None:
        self._trace_id = trace_id
        self._random = RandomIdGenerator()
        self.next_span_id: int | None = None  # set just before starting a derived-id span

    def generate_span_id(self) -> int:
        if self.next_span_id is not None:
            span_id, self.next_span_id = self.next_span_id, None
            return span_id
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self._trace_id


def _span_json(span: ReadableSpan) -> bytes:
    ctx = span.get_span_context()
    assert ctx is not None
    doc: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "parentId": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes or {})}
                   for e in span.events],
    }
    return orjson.dumps(doc) + b"\n"


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line (``tether trace`` reads it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("ab")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(_span_json(s) for s in spans)
        with self._lock:
            try:
                self._file.write(data)
                self._file.flush()
            except OSError as exc:
                log.error("Cannot write spans to %s: %s", self.path, exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Tracing:
    def __init__(self, *, namespace: str, task: str, uid: str | None, attempt: int,
                 span_file: Path, otlp_endpoint: str | None) -> None:
        self.trace_id = task_trace_id(uid, namespace, task)
        self.attempt = attempt
        self.attempt_span = attempt_span_id(self.trace_id, attempt)
        self.started_ns = time.time_ns()
        resource = Resource.create({
            "service.name": "tether-sidecar", "tether.task": task,
            "k8s.namespace.name": namespace, "tether.attempt": attempt,
        })
        self._ids = _TaskIds(self.trace_id)
        self.provider = TracerProvider(resource=resource, id_generator=self._ids)
        self.provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter(span_file)))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint)))
        self.tracer = self.provider.get_tracer("tether.sidecar")
        parent = SpanContext(self.trace_id, self.attempt_span, is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        self.parent_context = trace.set_span_in_context(NonRecordingSpan(parent))

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def _context(self, span_id: int) -> Context:
        parent = SpanContext(self.trace_id, span_id, is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(parent))

    def start(self, name: str, attributes: dict[str, Any]) -> trace.Span:
        """A call span, child of the step in progress (``tether.step`` in ``attributes``)."""
        step = attributes.get(ATTR.STEP)
        context = self.parent_context if not isinstance(step, int) else self._context(
            step_span_id(self.trace_id, step))
        return self.tracer.start_span(name, context=context, attributes=attributes)

    def _emit(self, name: str, span_id: int, parent: Context | None, start_ns: int,
              attributes: dict[str, Any]) -> None:
        self._ids.next_span_id = span_id
        span = self.tracer.start_span(name, context=parent, start_time=start_ns,
                                      attributes=attributes)
        span.end()

    def step_done(self, step: int, since_ns: int, attributes: dict[str, Any]) -> None:
        """Emit the span of a step when its checkpoint is written."""
        self._emit(f"step {step}", step_span_id(self.trace_id, step), self.parent_context,
                   since_ns, {ATTR.STEP: step, **attributes})

    def attempt_done(self, attributes: dict[str, Any]) -> None:
        self._emit(f"attempt {self.attempt}", self.attempt_span,
                   self._context(task_span_id(self.trace_id)), self.started_ns,
                   {"tether.attempt": self.attempt, **attributes})

    def shutdown(self) -> None:
        self.provider.shutdown()


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
