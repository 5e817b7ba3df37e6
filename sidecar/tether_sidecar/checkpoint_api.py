"""``PUT /checkpoint`` and ``GET /checkpoint``: the agent's state, kept on the PVC.

A PUT syncs the journal first and records its position in the checkpoint, so that a GET after a
restart tells the journal where the resumed agent stands (see journal.py). Writes are serialised
and run off the event loop: an fsync must not stall the calls in flight.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from .errors import BadRequest, NoCheckpoint
from .harness import Harness
from .tracing import ATTR

__all__ = ["CheckpointApi"]


class CheckpointApi:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self._lock = asyncio.Lock()
        self._since_ns = time.time_ns()

    async def put(self, request: web.Request) -> web.Response:
        h = self.h
        try:
            doc: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"checkpoint is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or "state" not in doc:
            raise BadRequest('checkpoint must be a JSON object {"step": N, "state": ...}')
        step = doc.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise BadRequest(f"step must be a non-negative integer, got {step!r}")
        async with self._lock:
            t0 = time.perf_counter()
            h.journal.sync()
            seq = h.journal.seq
            ckpt = await asyncio.to_thread(h.checkpoints.write, step, doc["state"], seq)
            h.metrics.checkpoint_seconds.labels(**h.metrics.base).observe(
                time.perf_counter() - t0)
            h.journal.append({"t": "checkpoint", "step": step, "gen": ckpt.generation})
            h.last_checkpoint, h.step = ckpt, step
            h.checkpoint_problem = None
            spent = h.ledger.spent_usd  # the step's cost: what was charged since the last one
            h.tracing.step_done(step, self._since_ns, {
                "tether.checkpoint.bytes": ckpt.size, "tether.checkpoint.sha256": ckpt.sha256,
                ATTR.COST: float(spent - h.spent_at_checkpoint), ATTR.SPENT: float(spent)})
            h.spent_at_checkpoint = spent
            self._since_ns = time.time_ns()
        return web.json_response({"step": step, "generation": ckpt.generation,
                                  "sha256": ckpt.sha256}, status=201)

    async def get(self, _: web.Request) -> web.Response:
        h = self.h
        ckpt = h.load_checkpoint()  # re-read: the volume is the truth, not our memory
        if ckpt is None:
            h.journal.resume_from(0)
            raise NoCheckpoint("no checkpoint yet: this is a fresh start")
        h.journal.resume_from(ckpt.journal_seq)
        return web.Response(body=orjson.dumps(ckpt.public()), content_type="application/json")
