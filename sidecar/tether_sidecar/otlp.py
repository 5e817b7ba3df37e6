"""The OTLP mirror of the span file: imported only when ``observability.otlpEndpoint`` is set.

The OpenTelemetry SDK (and its exporter) is what only some tasks need: a sidecar without an
endpoint never imports it, which saves it ~15-50 ms of start-up and ~1.3 MB (docs/benchmarks.md,
the footprint section).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

if TYPE_CHECKING:
    from .tracing import Span

__all__ = ["FLUSH_TIMEOUT_S", "OtlpMirror"]

log = logging.getLogger(__name__)

# How long the attempt's end waits for the queued spans to reach the collector. The SDK's own
# bound is 30 s (and each export may retry for 10 s): as long as the pod's whole grace period,
# and spent on the event loop before the sidecar writes its termination summary. A collector
# that is down must not cost the operator that summary; the spans stay in spans.jsonl.
FLUSH_TIMEOUT_S = 5.0


class _TaskIds(IdGenerator):
    """Ids for the OTLP mirror: our trace id, and the span id each of our spans already has."""

    def __init__(self, trace_id: int) -> None:
        self._trace_id = trace_id
        self.next_span_id = 1

    def generate_span_id(self) -> int:
        return self.next_span_id

    def generate_trace_id(self) -> int:
        return self._trace_id


class OtlpMirror:
    """Replays finished spans into the OpenTelemetry SDK, which batches them to an OTLP/HTTP
    endpoint with the same ids, times, attributes and events as the JSONL file."""

    def __init__(self, endpoint: str, trace_id: int, resource: dict[str, Any]) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        self.endpoint = endpoint
        self.trace_id = trace_id
        self._ids = _TaskIds(trace_id)
        self.provider = TracerProvider(resource=Resource.create(resource),
                                       id_generator=self._ids)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint)))
        self.tracer = self.provider.get_tracer("tether.sidecar")

    def export(self, span: Span) -> None:
        parent = None
        if span.parent_id:
            ctx = SpanContext(self.trace_id, span.parent_id, is_remote=True,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = trace.set_span_in_context(NonRecordingSpan(ctx))
        self._ids.next_span_id = span.span_id
        sdk_span = self.tracer.start_span(span.name, context=parent, start_time=span.start_ns,
                                          attributes=span.attributes)
        for name, at, attrs in span.events:
            sdk_span.add_event(name, attrs, timestamp=at)
        if span.status == "ERROR":
            sdk_span.set_status(trace.StatusCode.ERROR, span.status_message)
        sdk_span.end(end_time=span.end_ns)

    def shutdown(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Export every span still queued (the batch processor drains its queue when shut down:
        an evicted attempt's last spans go now or never), waiting at most ``timeout_s``. True
        when all went; False, said in the log, when the collector did not take them in time (the
        export goes on in its daemon thread until the process exits)."""
        done = threading.Event()

        def stop() -> None:
            self.provider.shutdown()
            done.set()

        threading.Thread(target=stop, name="otlp-shutdown", daemon=True).start()
        if done.wait(timeout_s):
            return True
        log.error("The spans still queued for %s were not all exported within %.1f s of the "
                  "attempt's end; the collector may miss them (spans.jsonl on the task's volume "
                  "has every span). Check that the collector is up and reachable from the pod.",
                  self.endpoint, timeout_s)
        return False
