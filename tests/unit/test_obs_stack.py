"""The test observability stack works (issue #11, item 3): an alert on a scraped gauge goes
pending, firing, reaches an Alertmanager webhook receiver and resolves there; a span exported
over OTLP/HTTP comes back from Jaeger's query API with its attributes. No cluster: every part is
a real process or server on 127.0.0.1 (tests/_obs.py). The chart's alert rules load into that
Prometheus and evaluate without error; the install script names the Debian package it could not
download.

Needs prometheus, alertmanager, jaeger and helm (hack/observability.sh, hack/jaeger.sh,
hack/helm.sh; the make targets pass them as $PROMETHEUS, $ALERTMANAGER, $JAEGER, $HELM).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from .._obs import alertmanager, free_port, get_json, jaeger, prometheus, wait_for
from ..e2e._settings import REPO_ROOT
from ._chart import FULL, Render, one, render

__all__ = ["render"]  # a fixture, used by name

BOUND_S = 60.0  # every wait below; the whole alert round trip takes a few seconds
RULES = {"groups": [{"name": "obs-stack-test", "rules": [{
    "alert": "TestGaugeRaised", "expr": "tether_test_gauge > 0", "for": "3s",
    "labels": {"severity": "warning"},
    "annotations": {"summary": "the test gauge is {{ $value }}"}}]}]}


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook receiver: keeps every JSON body posted to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def received(self, status: str) -> dict[str, Any] | None:
        with self.lock:
            return next((b for b in self.bodies if b.get("status") == status), None)


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the bodies are the record


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def alert_state(prom: str) -> str | None:
    """The state of TestGaugeRaised in Prometheus (pending, firing), or None when inactive."""
    alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == "TestGaugeRaised"),
                None)


def test_alert_fires_reaches_the_receiver_and_resolves(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("tether_test_gauge", "Set by the test to raise the alert", registry=registry)
    port = free_port()
    exporter, exporter_thread = start_http_server(port, "127.0.0.1", registry)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    try:
        with (alertmanager(tmp_path, receiver.url) as am,
              prometheus(tmp_path, [f"127.0.0.1:{port}"], [rules], am) as prom):
            wait_for(lambda: get_json(f"{prom}/api/v1/query?query=tether_test_gauge")["data"]
                     ["result"] or None, BOUND_S, "Prometheus scraping the test exporter")
            assert alert_state(prom) is None, "the alert is active before the gauge is set"
            gauge.set(3)
            wait_for(lambda: alert_state(prom) == "pending" or None, BOUND_S, "pending")
            wait_for(lambda: alert_state(prom) == "firing" or None, BOUND_S, "firing")
            fired = wait_for(lambda: receiver.received("firing"), BOUND_S,
                             "the firing notification at the webhook receiver")
            gauge.set(0)
            resolved = wait_for(lambda: receiver.received("resolved"), BOUND_S,
                                "the resolved notification at the webhook receiver")
    finally:
        exporter.shutdown()
        exporter.server_close()
        exporter_thread.join(5)
    for body, status in ((fired, "firing"), (resolved, "resolved")):
        (alert,) = body["alerts"]
        assert alert["status"] == status
        assert alert["labels"]["alertname"] == "TestGaugeRaised"
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["job"] == "test"
        assert alert["labels"]["instance"] == f"127.0.0.1:{port}"
    assert fired["alerts"][0]["annotations"]["summary"] == "the test gauge is 3"
    assert resolved["alerts"][0]["endsAt"] > resolved["alerts"][0]["startsAt"]


def test_an_otlp_span_comes_back_from_jaeger_with_its_attributes(tmp_path: Path) -> None:
    with jaeger(tmp_path) as backend:
        provider = TracerProvider(resource=Resource.create({"service.name": "tether-obs-test"}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{backend.otlp_http}/v1/traces", timeout=10)))
        with provider.get_tracer("tests.obs").start_as_current_span("tool call") as span:
            span.set_attribute("tether.tool", "search")
            span.set_attribute("tether.attempt", 2)
            trace_id = format(span.get_span_context().trace_id, "032x")
        provider.shutdown()

        def fetched() -> dict[str, Any] | None:
            data = get_json(f"{backend.query}/api/traces/{trace_id}").get("data")
            return data[0] if data else None

        trace = wait_for(fetched, BOUND_S, f"trace {trace_id} in Jaeger's query API")
    (got,) = trace["spans"]
    assert got["operationName"] == "tool call"
    tags = {t["key"]: t["value"] for t in got["tags"]}
    assert tags["tether.tool"] == "search"
    assert tags["tether.attempt"] == 2
    assert trace["processes"][got["processID"]]["serviceName"] == "tether-obs-test"


def test_the_install_script_names_the_package_it_cannot_download(tmp_path: Path) -> None:
    # apt as on a machine whose mirror lists the package but will not serve it.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-cache").write_text("#!/bin/sh\necho '  Candidate: 9.9.9-1'\n")
    (fake / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    done = subprocess.run(
        [str(REPO_ROOT / "hack" / "observability.sh"), "alertmanager"], capture_output=True,
        text=True, timeout=60,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
             "TETHER_CACHE": str(tmp_path / "cache")})
    assert done.returncode != 0
    assert "prometheus-alertmanager package (9.9.9-1)" in done.stderr
    assert not list((tmp_path / "cache" / "tools").glob("alertmanager-*"))


def test_the_charts_alert_rules_load_and_evaluate_in_prometheus(render: Render,
                                                                tmp_path: Path) -> None:
    # promtool checks them offline (test_chart_monitoring.py); this is the server itself. No
    # series exist here, so only the health is checked: an absent()-rule may rightly be pending.
    docs = render({**FULL, "evaluator": {"enabled": True}})
    rules = tmp_path / "chart-rules.yaml"
    spec = one(docs, "PrometheusRule")["spec"]
    rules.write_text(yaml.safe_dump(spec))
    with prometheus(tmp_path, [], [rules]) as prom:
        def evaluated() -> list[dict[str, Any]] | None:
            groups: list[dict[str, Any]] = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
            every = [r for g in groups for r in g["rules"]]
            return groups if every and all(r["health"] != "unknown" for r in every) else None

        groups = wait_for(evaluated, BOUND_S, "the chart's rules evaluated once")
    # Prometheus lists the groups sorted by name, not in file order.
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in spec["groups"])
    assert sorted(r["name"] for g in groups for r in g["rules"]) == sorted(
        r.get("alert") or r["record"] for g in spec["groups"] for r in g["rules"])
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
