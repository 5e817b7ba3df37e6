"""The incident replay's monitoring: the chart's alert rules as helm renders them, a webhook
receiver that stamps what Alertmanager posts, and Prometheus's view of one alert.

The rules are never copied: :func:`chart_rules` runs ``helm template`` on charts/tether with the
PrometheusRule on and writes its ``spec`` (every group, the ``tether-tasks`` group with
``TetherTaskSoftLimitReached`` among them) as a Prometheus rules file. The durations are the
chart's defaults unless the caller overrides some (``metrics.prometheusRule.durations``).

The receiver calls ``probe`` (the sidecar's ``/status``, say) the moment a notification arrives
and keeps its answer with the notification, so "the alert reached the receiver while the task was
still running" is an observed fact, not a comparison of two clocks.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .._obs import get_json
from ..e2e._settings import REPO_ROOT
from ..e2e._tools import helm

__all__ = ["Notification", "Receiver", "alert", "chart_rules", "receiver"]

SOFT_ALERT = "TetherTaskSoftLimitReached"
HARD_ALERT = "TetherTaskHardLimitReached"


def chart_rules(path: Path, durations: dict[str, str] | None = None) -> dict[str, Any]:
    """Render the chart's PrometheusRule with helm and write its spec to ``path`` (a Prometheus
    rules file); returns the spec."""
    values = {"metrics": {"serviceMonitor": {"enabled": True},
                          "prometheusRule": {"enabled": True, "durations": durations or {}}}}
    values_file = path.with_suffix(".values.yaml")
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run([helm(), "template", "tether", str(REPO_ROOT / "charts" / "tether"),
                          "-n", "tether-system", "-f", str(values_file)],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"helm template charts/tether failed:\n{out.stderr}")
    [rule] = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    path.write_text(yaml.safe_dump(spec))
    return spec


@dataclass(frozen=True)
class Notification:
    at: float  # time.time() when it arrived
    status: str  # firing | resolved
    alertnames: tuple[str, ...]
    probe: Any  # what ``probe`` answered at that moment
    body: dict[str, Any]


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook receiver on 127.0.0.1: stamps every notification."""

    def __init__(self, probe: Callable[[], Any] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.probe = probe
        self.notifications: list[Notification] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def first(self, alertname: str, status: str = "firing") -> Notification | None:
        with self.lock:
            return next((n for n in self.notifications
                         if n.status == status and alertname in n.alertnames), None)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        at = time.time()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        probe = self.server.probe() if self.server.probe else None
        names = tuple(a["labels"]["alertname"] for a in body.get("alerts", [])
                      if a.get("status") == body.get("status"))
        with self.server.lock:
            self.server.notifications.append(
                Notification(at, body.get("status", ""), names, probe, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the notifications are the record


@contextmanager
def receiver(probe: Callable[[], Any] | None = None) -> Iterator[Receiver]:
    server = Receiver(probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def alert(prom: str, alertname: str) -> dict[str, Any] | None:
    """Prometheus's active alert ``alertname`` (state pending or firing, activeAt), or None."""
    alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    found: dict[str, Any] | None = next(
        (a for a in alerts if a["labels"]["alertname"] == alertname), None)
    return found


def epoch(rfc3339: str) -> float:
    """Prometheus's activeAt (RFC 3339, nanoseconds, Z) as seconds since the epoch."""
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float("0." + frac[:6]) if frac else 0.0)
