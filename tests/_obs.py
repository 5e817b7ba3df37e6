"""A real observability stack for the tests: Prometheus, Alertmanager and Jaeger as subprocesses
(issue #11, item 3).

Each context manager starts one binary on free 127.0.0.1 ports with a temp data dir and a
generated config, waits until it answers (Prometheus and Alertmanager on /-/ready, Jaeger on its
query API and its OTLP port), and stops it on exit (terminate, wait, then kill). The binaries
come from hack/observability.sh (Debian bookworm's packages) and hack/jaeger.sh (built from its Go
module); the make targets pass them as $PROMETHEUS, $ALERTMANAGER and $JAEGER. A binary that
exits before it is ready fails the test with the end of its log.

Not here: what is scraped or alerted on. The caller gives the scrape targets, the rule files and
the webhook receiver; issue #11's scenario tests reuse these with the chart's rules.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from .e2e._settings import TETHER_CACHE
from .e2e._tools import find_tool

__all__ = ["Jaeger", "alertmanager", "free_port", "get_json", "jaeger", "prometheus",
           "wait_for"]

T = TypeVar("T")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A port nothing listens on now; the binary binds it a moment later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(check: Callable[[], T | None], timeout: float, what: str,
             proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> T:
    """Poll ``check`` until it returns something other than None; fail naming ``what`` after
    ``timeout`` seconds, or at once if ``proc`` has exited (with the end of ``log``)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode}\n{tail(log)}",
                        pytrace=False)
        got = check()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{tail(log)}", pytrace=False)
        time.sleep(0.1)  # a poll interval, not a wait for an outcome


def tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def answers(url: str) -> bool | None:
    """True when ``url`` answers 200; None while it refuses or errs (still starting)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return True if resp.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def listens(port: int) -> bool | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return None


@contextmanager
def running(argv: Sequence[str], workdir: Path, name: str, ready: Callable[[], bool | None],
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its output in workdir/<name>.log until ``ready``; stop it on exit."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**os.environ, **(env or {})})
    try:
        wait_for(ready, READY_TIMEOUT_S, f"{name} ({argv[0]}) becoming ready", proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cached(name: str) -> list[Path]:
    """The binaries hack/observability.sh extracted, newest package version last."""
    return sorted((TETHER_CACHE / "tools").glob(f"{name}-*/{name}"), reverse=True)


def prometheus_binary() -> str:
    return find_tool("prometheus", "PROMETHEUS", "hack/observability.sh prometheus",
                     *cached("prometheus"))


def alertmanager_binary() -> str:
    return find_tool("alertmanager", "ALERTMANAGER", "hack/observability.sh alertmanager",
                     *cached("alertmanager"))


def jaeger_binary() -> str:
    return find_tool("jaeger", "JAEGER", "hack/jaeger.sh", *cached("jaeger"))


@contextmanager
def prometheus(workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (),
               alertmanager_url: str | None = None,
               scrape_configs: Sequence[dict[str, Any]] = (),
               binary: str | None = None) -> Iterator[str]:
    """A Prometheus scraping ``targets`` (host:port, job "test") and the jobs of
    ``scrape_configs`` (Prometheus's own form, e.g. tests/e2e/_monitoring.py's discovery), by
    default every second, evaluating ``rule_files`` every second and sending alerts to
    ``alertmanager_url``; yields its base URL. ``binary`` replaces Debian's prometheus (which
    lacks the Kubernetes discovery: hack/prometheus-kubernetes.sh)."""
    port = free_port()
    jobs = [{"job_name": "test", "static_configs": [{"targets": list(targets)}]}] \
        if targets or not scrape_configs else []
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs + list(scrape_configs),
    }
    if alertmanager_url:
        host = alertmanager_url.split("://", 1)[-1].rstrip("/")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [binary or prometheus_binary(), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, workdir, "prometheus", lambda: answers(f"{url}/-/ready")):
        yield url


@contextmanager
def alertmanager(workdir: Path, webhook_url: str) -> Iterator[str]:
    """An Alertmanager routing every alert to ``webhook_url``, grouped by alert name, sent at
    once and re-checked every second (so a resolution reaches the receiver within seconds);
    yields its base URL."""
    port = free_port()
    config = {
        "route": {"receiver": "webhook", "group_by": ["alertname"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "webhook",
                       "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    # --cluster.listen-address= turns off the gossip cluster, which would bind 0.0.0.0:9094.
    argv = [alertmanager_binary(), f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with running(argv, workdir, "alertmanager", lambda: answers(f"{url}/-/ready")):
        yield url


@dataclass(frozen=True)
class Jaeger:
    otlp_http: str  # base URL; spans go to {otlp_http}/v1/traces
    query: str  # base URL of the query HTTP API (/api/traces/{traceID})


def jaeger_config(otlp_port: int, query_port: int, grpc_port: int) -> dict[str, Any]:
    """Jaeger v1.76's all-in-one (cmd/jaeger/internal/all-in-one.yaml) cut to OTLP over HTTP in,
    memory storage, the query API out, all on the given ports; no self-metrics (port 8888)."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": [],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            # Its factory turns its own tracing on, exporting to localhost:4317 (someone else's
            # collector, or nothing: then each stop waits 10 s for the flush to time out).
            "jaeger_query": {"storage": {"traces": "mem"}, "enable_tracing": False,
                             "http": {"endpoint": f"127.0.0.1:{query_port}"},
                             "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}},
            "jaeger_storage": {"backends": {"mem": {"memory": {"max_traces": 10000}}}},
        },
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "mem"}},
    }


@contextmanager
def jaeger(workdir: Path) -> Iterator[Jaeger]:
    """A Jaeger all-in-one with in-memory storage, OTLP over HTTP in and the query API out."""
    otlp_port, query_port, grpc_port = free_port(), free_port(), free_port()
    (workdir / "jaeger.yaml").write_text(
        yaml.safe_dump(jaeger_config(otlp_port, query_port, grpc_port)))
    found = Jaeger(f"http://127.0.0.1:{otlp_port}", f"http://127.0.0.1:{query_port}")
    argv = [jaeger_binary(), f"--config={workdir / 'jaeger.yaml'}"]

    def ready() -> bool | None:
        return answers(f"{found.query}/api/services") and listens(otlp_port)

    with running(argv, workdir, "jaeger", ready):
        yield found
