"""The attempt's end flushes the OTLP mirror, and a collector that does not answer cannot hold it.

A real OTLP/HTTP receiver on 127.0.0.1 (``http.server``, decoding the protobuf the SDK's exporter
sends) stands in for the collector. The batch processor's schedule is set to an hour, so the
only way a span reaches it is the flush at shutdown: the one an evicted pod's sidecar does on
SIGTERM (tests/e2e/test_trace_eviction.py shows it end to end, with Jaeger).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tether_sidecar.tracing import ATTR, Tracing, step_span_id, task_span_id


class Collector(ThreadingHTTPServer):
    """Records the spans posted to /v1/traces; with ``hold`` set, answers none until released."""

    daemon_threads = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[str, str, str]] = []  # name, span id, parent id (hex)
        self.requests: list[ExportTraceServiceRequest] = []
        self.hold = hold
        self.held = threading.Event()  # a request arrived and is being held
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.server.hold:
            self.server.held.set()
            self.server.release.wait(30)
        req = ExportTraceServiceRequest.FromString(body)
        self.server.requests.append(req)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                self.server.spans += [(s.name, s.span_id.hex(), s.parent_span_id.hex())
                                      for s in ss.spans]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test asserts on what arrived


@pytest.fixture
def collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    server = Collector(hold=getattr(request, "param", False))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _hour_long_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")


def tracing(tmp_path: Path, endpoint: str) -> Tracing:
    return Tracing(namespace="ns", task="t", uid="6f1c2a3e-0000-4000-8000-00000000abcd",
                   attempt=1, span_file=tmp_path / "spans.jsonl", otlp_endpoint=endpoint)


def test_spans_queued_at_the_attempts_end_reach_the_collector(
        tmp_path: Path, collector: Collector) -> None:
    t = tracing(tmp_path, collector.url)
    chat = t.start("chat gpt-4o", {ATTR.STEP: 1, ATTR.COST: 0.000725, ATTR.STREAM: False,
                                   ATTR.CONTEXT_HASH: "ab12", ATTR.INPUT_TOKENS: 210})
    chat.add_event("retry", {"class": "server_error", "delay_s": 0.05})
    chat.set_error("upstream 503 twice")
    chat.end()
    t.step_done(1, 0, {})
    t.attempt_done({})
    assert collector.spans == []  # queued, not sent: the schedule is an hour
    assert t._otlp is not None and t._otlp.shutdown()
    t.shutdown()  # again, as Harness.aclose does after it: a no-op for the mirror
    step = f"{step_span_id(t.trace_id, 1):016x}"
    assert [(name, parent) for name, _, parent in collector.spans] == [
        ("chat gpt-4o", step), ("step 1", f"{t.attempt_span:016x}"),
        ("attempt 1", f"{task_span_id(t.trace_id):016x}")]
    assert collector.spans[1][1] == step and collector.spans[2][1] == f"{t.attempt_span:016x}"
    check_as_sent(collector.requests, chat.start_ns, chat.end_ns)


def check_as_sent(requests: list[ExportTraceServiceRequest], start: int, end: int) -> None:
    """The chat span as the JSONL file has it: trace id, times, typed attributes, its event,
    its error status; the resource names the task and attempt, the scope the sidecar."""
    rs = requests[0].resource_spans[0]
    resource = {kv.key: kv.value for kv in rs.resource.attributes}
    assert resource["tether.task"].string_value == "t"
    assert resource["tether.attempt"].int_value == 1
    assert rs.scope_spans[0].scope.name == "tether.sidecar"
    span = rs.scope_spans[0].spans[0]
    assert span.trace_id.hex() == "6f1c2a3e00004000800000000000abcd"
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (start, end)
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs[ATTR.COST].double_value == 0.000725
    assert attrs[ATTR.STREAM].HasField("bool_value") and not attrs[ATTR.STREAM].bool_value
    assert attrs[ATTR.CONTEXT_HASH].string_value == "ab12"
    assert attrs[ATTR.INPUT_TOKENS].int_value == 210 and attrs[ATTR.STEP].int_value == 1
    assert [(e.name, {kv.key: kv.value.string_value or kv.value.double_value
                      for kv in e.attributes}) for e in span.events] == [
        ("retry", {"class": "server_error", "delay_s": 0.05})]
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert span.status.message == "upstream 503 twice"


@pytest.mark.parametrize("collector", [True], indirect=True)
def test_a_collector_that_does_not_answer_cannot_hold_the_attempts_end(
        tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    t = tracing(tmp_path, collector.url)
    t.start("chat gpt-4o", {ATTR.STEP: 1}).end()
    assert t._otlp is not None
    with caplog.at_level(logging.ERROR, logger="tether_sidecar.otlp"):
        flushed = t._otlp.shutdown(timeout_s=0.5)
    assert collector.held.is_set() and not collector.release.is_set()  # still held
    assert flushed is False
    assert f"{collector.url}/v1/traces" in caplog.text and "spans.jsonl" in caplog.text
    collector.release.set()
    t.shutdown()
