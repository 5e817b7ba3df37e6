"""The operator's ops port: ``/metrics``, ``/healthz`` (liveness), ``/readyz`` (readiness).

- ``/healthz`` answers 200 while the event loop turns and, on the leader, kopf and the live-status
  loop are running; 503 naming what stopped. A wedged loop does not answer at all, which the
  kubelet's probe timeout treats as a failure too.
- ``/readyz`` answers 200 when this replica can do its part: the leader once kopf has logged in
  and started its watches; a standby while it can read the Lease (so a rolling update of the
  Deployment is not stuck behind a standby). 503 with the reason otherwise.
Both answer JSON: ``{"role": "leader"|"standby"|"starting", "ok": bool, "reason": str}``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .leader import Lease
from .metrics import OperatorMetrics

__all__ = ["Health", "serve"]


@dataclass
class Health:
    lease: Lease | None = None  # None: leader election off, this replica always leads
    kopf_ready: asyncio.Event = field(default_factory=asyncio.Event)
    kopf_task: asyncio.Task[None] | None = None
    live_tick: float | None = None  # monotonic time the live-status loop last went round
    live_stall: float = 60.0  # longer than this without a round: unhealthy

    @property
    def role(self) -> str:
        if self.lease is not None and not self.lease.leading:
            return "standby"
        return "leader" if self.kopf_task is not None else "starting"

    def liveness(self) -> tuple[bool, str]:
        if self.kopf_task is not None and self.kopf_task.done():
            return False, "kopf has stopped"
        if self.live_tick is not None and time.monotonic() - self.live_tick > self.live_stall:
            return False, f"live-status loop stalled for {time.monotonic() - self.live_tick:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        alive, why = self.liveness()
        if not alive:
            return False, why
        if self.role == "standby":
            assert self.lease is not None
            age = time.monotonic() - self.lease.last_read
            if age > 2 * self.lease.duration:
                return False, f"cannot read the lease (last read {age:.0f} s ago)"
            return True, f"standing by for {self.lease.holder}"
        if not self.kopf_ready.is_set():
            return False, "kopf is logging in and starting its watches"
        return True, "leading"


async def serve(port: int, host: str, health: Health, metrics: OperatorMetrics) -> web.AppRunner:
    def answer(check: tuple[bool, str]) -> web.Response:
        ok, reason = check
        return web.Response(status=200 if ok else 503, content_type="application/json",
                            body=orjson.dumps({"role": health.role, "ok": ok, "reason": reason}))

    async def healthz(_: web.Request) -> web.Response:
        return answer(health.liveness())

    async def readyz(_: web.Request) -> web.Response:
        return answer(health.readiness())

    async def scrape(_: web.Request) -> web.Response:
        metrics.leader.set(1 if health.role == "leader" else 0)
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
