"""The live-status loop's liveness evidence: progress is each sidecar's poll ending, so a
round over many sidecars that do not answer is seen as slow, not stuck (the ops port's
/healthz fails after a minute without progress, and a kubelet would restart the operator)."""

from __future__ import annotations

import socket

import httpx

from tether_operator.handlers import _this_round, poll_live
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


async def test_a_round_polls_its_share_in_turn() -> None:
    """More running tasks than a round's share (polls per second times the poll period): each round
    polls the next share, and over enough rounds every sidecar is polled."""
    settings = OperatorSettings(sidecar_ops_port=_closed_port(), live_polls_per_second=1.0,
                                status_poll_seconds=3.0)
    rec = Reconciler(None, settings, OperatorMetrics())  # type: ignore[arg-type]
    for i in range(7):
        rec.tasks[("ns", f"t{i}")] = {"phase": "Running", "podName": f"t{i}-a1"}
        rec.pod_ips[("ns", f"t{i}-a1")] = "127.0.0.1"
    polled: list[int] = []
    async with httpx.AsyncClient(timeout=2.0) as http:
        for _ in range(3):
            polled.append(0)
            await poll_live(rec, http, resync=False,
                            progress=lambda: polled.__setitem__(-1, polled[-1] + 1))
    assert polled == [3, 3, 3]  # a share of 3 each round, not all 7
    rec.poll_cursor = 0
    rounds = [_this_round(rec, list(range(7))) for _ in range(3)]
    assert rounds == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]  # in turn, from where the last stopped
