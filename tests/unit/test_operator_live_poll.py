"""The live-status loop's liveness evidence: progress is each sidecar's poll ending, so a
round over many sidecars that do not answer is seen as slow, not stuck (the ops port's
/healthz fails after a minute without progress, and a kubelet would restart the operator)."""

from __future__ import annotations

import socket

import httpx

from tether_operator.handlers import poll_live
from tether_operator.metrics import OperatorMetrics
from tether_operator.reconcile import Reconciler
from tether_operator.settings import OperatorSettings


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_each_sidecar_polled_is_progress() -> None:
    settings = OperatorSettings(sidecar_ops_port=_closed_port())
    rec = Reconciler(None, settings, OperatorMetrics())  # type: ignore[arg-type]
    for i in range(5):
        rec.tasks[("ns", f"t{i}")] = {"phase": "Running", "podName": f"t{i}-a1"}
        rec.pod_ips[("ns", f"t{i}-a1")] = "127.0.0.1"
    rec.tasks[("ns", "done")] = {"phase": "Succeeded", "podName": "done-a1"}
    rec.pod_ips[("ns", "done-a1")] = "127.0.0.1"
    ticks: list[int] = []
    async with httpx.AsyncClient(timeout=2.0) as http:
        await poll_live(rec, http, resync=False, progress=lambda: ticks.append(1))
    assert len(ticks) == 5  # one per running task's sidecar, none for the finished one
