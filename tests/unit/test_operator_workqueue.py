"""The reconciler's work queue: bounded concurrency, one run per task at a time, coalesced
wake-ups, a run more when woken while running, and errors retried rather than lost. The
reconcile itself is replaced by a recorder (the queue is what is under test), and the ops
port's health logic is checked on the same objects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tether_operator.kube import ApiError, Conflict
from tether_operator.metrics import OperatorMetrics
from tether_operator.ops import Health
from tether_operator.reconcile import Reconciler
from tether_operator.settings import OperatorSettings


class Recorder(Reconciler):
    def __init__(self, workers: int, hold: float = 0.02) -> None:
        super().__init__(None, OperatorSettings(workers=workers), OperatorMetrics())  # type: ignore[arg-type]
        self.hold, self.active, self.most = hold, set[tuple[str, str]](), 0
        self.runs: list[tuple[str, str]] = []
        self.lives: list[Any] = []
        self.fail: dict[tuple[str, str], list[Exception]] = {}

    async def reconcile(self, ns: str, name: str, live: Any = None,
                        verify: bool = False) -> float | None:
        key = (ns, name)
        assert key not in self.active, f"{key} reconciled twice at once"
        self.active.add(key)
        self.most = max(self.most, len(self.active))
        self.runs.append(key)
        self.lives.append(live)
        try:
            await asyncio.sleep(self.hold)
            if self.fail.get(key):
                raise self.fail[key].pop(0)
        finally:
            self.active.discard(key)
        return None


async def until(cond: Any, what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def settle(rec: Recorder) -> None:
    for _ in range(500):
        await asyncio.sleep(0.01)
        if not rec.active and rec.backlog == 0 and not rec._again:
            return
    raise AssertionError("queue did not drain")


async def test_bounded_and_coalesced() -> None:
    rec = Recorder(workers=3)
    for i in range(20):
        for _ in range(5):  # five wake-ups of a queued task: one run
            rec.wake("ns", f"t{i}")
    await settle(rec)
    assert sorted(rec.runs) == sorted(("ns", f"t{i}") for i in range(20))
    assert rec.most == 3  # never more than the workers, and they were all used


async def test_woken_while_running_runs_once_more_with_the_live_status() -> None:
    rec = Recorder(workers=4, hold=0.1)
    rec.wake("ns", "a")
    await until(lambda: ("ns", "a") in rec.active, "running")
    rec.wake("ns", "a")
    rec.wake("ns", "a", live={"phase": "BudgetExceeded"})
    await settle(rec)
    assert rec.runs == [("ns", "a"), ("ns", "a")]  # once more, not twice more, never at once
    assert rec.lives == [None, {"phase": "BudgetExceeded"}]


async def test_failures_are_retried_not_lost() -> None:
    rec = Recorder(workers=2)
    rec.fail[("ns", "c")] = [Conflict(409, "Conflict", "changed")]
    rec.fail[("ns", "u")] = [ApiError(0, "Unreachable", "down")]
    rec.wake("ns", "c")
    rec.wake("ns", "u")
    await until(lambda: rec.runs.count(("ns", "c")) == 2, "conflict retried (after 0.2 s)")
    assert rec.runs.count(("ns", "u")) == 1  # an API failure waits 5 s: still scheduled
    assert ("ns", "u") in rec._timers


async def test_health_follows_kopf_and_the_live_loop() -> None:
    health = Health(live_stall=60)
    assert health.role == "starting" and health.readiness()[0] is False
    health.kopf_task = asyncio.create_task(asyncio.sleep(3600))
    assert health.readiness() == (False, "kopf is logging in and starting its watches")
    health.kopf_ready.set()
    health.live_tick = time.monotonic()
    assert health.readiness() == (True, "leading") and health.liveness()[0]
    health.live_tick = time.monotonic() - 61
    assert health.liveness()[0] is False and "stalled" in health.liveness()[1]
    health.live_tick = time.monotonic()
    health.kopf_task.cancel()
    await asyncio.sleep(0)
    assert health.liveness() == (False, "kopf has stopped")


async def test_fired_timers_are_forgotten() -> None:
    rec = Recorder(workers=1)
    rec.wake("ns", "t", delay=0.05)
    assert ("ns", "t") in rec._timers
    await until(lambda: rec.runs == [("ns", "t")], "the delayed run")
    assert rec._timers == {}


async def test_resync_waits_behind_events() -> None:
    """A resync of every task (low lane) never delays what an event woke: with one worker
    busy on the first resync, an event's task runs next, before the other 49 resyncs."""
    rec = Recorder(workers=1)
    for i in range(50):
        rec.wake_low("ns", f"r{i}")
    await until(lambda: rec.runs, "the first resync to start")
    rec.wake("ns", "event")
    rec.wake_low("ns", "event")  # already queued: not twice
    assert rec.backlog == 50  # 49 resyncs and the event, both lanes counted
    await settle(rec)
    assert rec.runs[:2] == [("ns", "r0"), ("ns", "event")]
    assert len(rec.runs) == 51 and rec.runs.count(("ns", "event")) == 1


async def test_a_resync_of_a_running_task_is_dropped() -> None:
    rec = Recorder(workers=2, hold=0.05)
    rec.wake("ns", "a")
    await until(lambda: rec.active, "a to run")
    rec.wake_low("ns", "a")  # running now: the run in progress reads it fresh anyway
    await settle(rec)
    assert rec.runs == [("ns", "a")]


async def test_an_event_takes_the_place_of_a_queued_resync() -> None:
    """A task woken by an event while its resync waits in the low lane runs once, not twice."""
    rec = Recorder(workers=1)
    rec.wake_low("ns", "busy")
    await until(lambda: rec.runs, "the first resync to start")
    rec.wake_low("ns", "b")
    rec.wake("ns", "b")
    await settle(rec)
    assert rec.runs == [("ns", "busy"), ("ns", "b")]
