"""Measurement loops: sequential latency and throughput at N in flight, targets interleaved.

Targets take turns in rounds (A, B, C, D, then B, C, D, A, …: the order rotates so no target is
always first after a pause), each round a block of calls, so slow drift on a shared, noisy machine
(other builds, thermal, page cache) lands on every target alike. Every loop is bounded by a call
count and by a deadline; a target that errors is dropped for the rest of that phase and reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._client import AsyncConn, BadResponse, SyncConn
from ._http import request_bytes

__all__ = ["Target", "concurrent", "sequential", "summary"]

HOST = "127.0.0.1"
PATH = "/v1/chat/completions"


@dataclass
class Target:
    name: str
    port: int
    errors: list[str] = field(default_factory=list)

    def request(self, body: bytes) -> bytes:
        return request_bytes(HOST, self.port, PATH, body)


def _rotations(targets: list[Target], rounds: int) -> list[list[Target]]:
    k = len(targets)
    if not k:
        return []
    return [targets[r % k:] + targets[:r % k] for r in range(rounds)]


def summary(lat_ns: list[int]) -> dict[str, float]:
    """Milliseconds: p50, p90, p99, mean, stdev, min, max, n."""
    if len(lat_ns) < 2:
        return {"n": len(lat_ns)}
    ms = [x / 1e6 for x in lat_ns]
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50": q[49], "p90": q[89], "p99": q[98],
            "mean": statistics.fmean(ms), "stdev": statistics.stdev(ms),
            "min": min(ms), "max": max(ms)}


def sequential(targets: list[Target], body: bytes, n: int, warmup: int, block: int,
               deadline: float) -> dict[str, Any]:
    """One call at a time per target. Returns per target: all latencies and per-round medians."""
    live = [t for t in targets if not t.errors]
    conns = {t.name: SyncConn(HOST, t.port) for t in live}
    reqs = {t.name: t.request(body) for t in live}
    lat: dict[str, list[int]] = {t.name: [] for t in live}
    rounds: dict[str, list[float]] = {t.name: [] for t in live}
    clock = time.perf_counter_ns
    try:
        for t in live:
            _guard(t, lambda t=t: [conns[t.name].call(reqs[t.name]) for _ in range(warmup)])
        n_rounds = -(-n // block)
        done = 0
        for order in _rotations(live, n_rounds):
            if time.monotonic() > deadline:
                break
            for t in order:
                if t.errors:
                    continue
                conn, req, out = conns[t.name], reqs[t.name], []

                def run(conn: SyncConn = conn, req: bytes = req, out: list[int] = out) -> None:
                    conn.fresh()
                    for _ in range(block):
                        t0 = clock()
                        conn.call(req)
                        out.append(clock() - t0)
                _guard(t, run)
                lat[t.name] += out
                if out:
                    rounds[t.name].append(statistics.median(out) / 1e6)
            done += 1
    finally:
        for c in conns.values():
            c.close()
    return {"latency_ns": lat, "round_p50_ms": rounds, "rounds": done}


def _guard(t: Target, fn: Callable[[], object]) -> None:
    try:
        fn()
    except (BadResponse, OSError) as exc:
        t.errors.append(f"{type(exc).__name__}: {exc}")


async def _round(conns: list[AsyncConn], req: bytes, calls: int, lat: list[int],
                 timeout: float) -> float:
    left = [calls]
    clock = time.perf_counter_ns

    async def worker(conn: AsyncConn) -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = clock()
            await conn.call(req)
            lat.append(clock() - t0)

    await asyncio.wait_for(asyncio.gather(*(c.fresh() for c in conns)), timeout)
    t0 = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(*(worker(c) for c in conns), return_exceptions=True), timeout)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return time.perf_counter() - t0


async def concurrent(targets: list[Target], body: bytes, total: int, in_flight: int,
                     rounds: int, deadline: float) -> dict[str, Any]:
    """``in_flight`` connections per target, each looping; ``total`` calls per target."""
    live = [t for t in targets if not t.errors]
    conns = {t.name: [AsyncConn(HOST, t.port) for _ in range(in_flight)] for t in live}
    reqs = {t.name: t.request(body) for t in live}
    lat: dict[str, list[int]] = {t.name: [] for t in live}
    secs: dict[str, float] = {t.name: 0.0 for t in live}
    calls: dict[str, int] = {t.name: 0 for t in live}
    per_round = max(in_flight, total // rounds)
    try:
        for t in live:  # warm-up: open every connection, let the proxy's pool grow
            await _aguard(t, _round(conns[t.name], reqs[t.name], 4 * in_flight, [],
                                    max(1.0, deadline - time.monotonic())))
        for order in _rotations(live, rounds):
            for t in order:
                remaining = deadline - time.monotonic()
                if t.errors or remaining <= 0:
                    continue
                out: list[int] = []
                took = await _aguard(t, _round(conns[t.name], reqs[t.name], per_round, out,
                                               remaining))
                if took is not None:
                    secs[t.name] += took
                    calls[t.name] += len(out)
                    lat[t.name] += out
    finally:
        for cs in conns.values():
            for c in cs:
                await c.close()
    return {"latency_ns": lat, "seconds": secs, "calls": calls}


async def _aguard(t: Target, coro: Any) -> float | None:
    try:
        took: float = await coro
        return took
    except (BadResponse, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            TimeoutError) as exc:
        t.errors.append(f"{type(exc).__name__}: {exc}")
        return None
