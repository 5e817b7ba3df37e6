"""The OTLP mirror of the span file: imported only when ``observability.otlpEndpoint`` is set.

The OpenTelemetry SDK (and its exporter) is what only some tasks need: a sidecar without an
endpoint never imports it, which saves it ~15-50 ms of start-up and ~1.3 MB (docs/benchmarks.md,
the footprint section).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from .tracing import Span

__all__ = ["FLUSH_TIMEOUT_S", "OtlpMirror"]

log = logging.getLogger(__name__)

# How long the attempt's end waits for the queued spans to reach the collector. The SDK's own
# bound is 30 s (and each export may retry for 10 s): as long as the pod's whole grace period,
# and spent on the event loop before the sidecar writes its termination summary. A collector
# that is down must not cost the operator that summary; the spans stay in spans.jsonl.
FLUSH_TIMEOUT_S = 5.0
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class OtlpMirror:
    """Hands each finished span to the SDK's batch processor, which sends it to an OTLP/HTTP
    endpoint with the same ids, times, attributes and events as the JSONL file.

    The span is given as the finished, read-only span the processor takes, not replayed through
    a tracer: a tracer would build and validate a second live span (sampler, attribute limits,
    the processor's start hook), ~20 µs of the event loop per span against ~4 µs for this
    (docs/benchmarks.md, the tracing overhead section). Our attributes are already what OTLP
    carries (str, bool, int, float); a value of another type is dropped by the encoder, logged,
    and the rest of the span still goes."""

    def __init__(self, endpoint: str, trace_id: int, resource: dict[str, Any]) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        self.endpoint = endpoint
        self.trace_id = trace_id
        self.resource = Resource.create(resource)
        self.scope = InstrumentationScope("tether.sidecar")
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint))

    def export(self, span: Span) -> None:
        parent = (SpanContext(self.trace_id, span.parent_id, is_remote=False,
                              trace_flags=_SAMPLED) if span.parent_id else None)
        status = (Status(StatusCode.ERROR, span.status_message) if span.status == "ERROR"
                  else _UNSET)
        self.processor.on_end(ReadableSpan(
            span.name, SpanContext(self.trace_id, span.span_id, is_remote=False,
                                   trace_flags=_SAMPLED),
            parent, self.resource, span.attributes,
            [Event(name, attrs, at) for name, at, attrs in span.events],
            status=status, start_time=span.start_ns, end_time=span.end_ns,
            instrumentation_scope=self.scope))

    def shutdown(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Export every span still queued (the batch processor drains its queue when shut down:
        an evicted attempt's last spans go now or never), waiting at most ``timeout_s``. True
        when all went; False, said in the log, when the collector did not take them in time (the
        export goes on in its daemon thread until the process exits)."""
        done = threading.Event()

        def stop() -> None:
            self.processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK has no hints here
            done.set()

        threading.Thread(target=stop, name="otlp-shutdown", daemon=True).start()
        if done.wait(timeout_s):
            return True
        log.error("The spans still queued for %s were not all exported within %.1f s of the "
                  "attempt's end; the collector may miss them (spans.jsonl on the task's volume "
                  "has every span). Check that the collector is up and reachable from the pod.",
                  self.endpoint, timeout_s)
        return False
