"""A bounded work queue of task keys, as controller-runtime's: a key is queued at most once
and run by one worker at a time; woken while running, it runs once more after. The number of
workers bounds how many task bodies are in memory at once, however many tasks wake together.

Two lanes: what an event, a timer or a new figure wakes runs first; the periodic resync (the
safety net under missed events, every task not finished) goes in a low lane that workers take
from only when nothing else waits. At 10,000 tasks a resync is 10,000 reconciles, more than a
resync period's worth of work here: in one lane it starved the tasks whose pods were still to
be made (all 10,000 pods took minutes, against ~30 tasks/s when the queue is free).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from .kube import ApiError, Conflict

__all__ = ["WorkQueue"]

log = logging.getLogger("tether_operator.reconcile")  # the reconcile's log, as before
Body = dict[str, Any]
Key = tuple[str, str]


class WorkQueue:
    """Scheduling for the subclass's ``reconcile``: wake-ups, timers, workers."""

    def _init_queue(self, workers: int) -> None:
        self._worker_count = workers
        self._high: deque[Key] = deque()
        self._queued: set[Key] = set()  # in the high lane
        self._low: deque[Key] = deque()
        self._low_queued: set[Key] = set()
        self._ready = asyncio.Event()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._live: dict[Key, Body] = {}
        self._verify: set[Key] = set()  # resyncs owed: read the task's pods fresh
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []

    async def reconcile(self, ns: str, name: str, live: Body | None = None,
                        verify: bool = False) -> float | None:
        raise NotImplementedError

    def wake_low(self, ns: str, name: str) -> None:
        """Queue a resync of the task in the low lane (nothing if it is queued or running). The
        run that serves it, a resync's or an event's that took its place, verifies what the
        pod watch said (``verify``)."""
        key = (ns, name)
        if key in self._busy or key in self._queued or key in self._low_queued:
            return
        self._verify.add(key)
        self._start_workers()
        self._low_queued.add(key)
        self._low.append(key)
        self._ready.set()

    def _start_workers(self) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._worker())
                             for _ in range(self._worker_count)]

    def wake(self, ns: str, name: str, live: Body | None = None, delay: float = 0.0) -> None:
        key = (ns, name)
        if delay > 0:
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)
            return
        self._start_workers()
        if live is not None:
            self._live[key] = live
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._low_queued.discard(key)  # this run does the resync's work: not twice
            self._queued.add(key)
            self._high.append(key)
            self._ready.set()

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)  # a fired timer is forgotten: no entry per finished task
        self.wake(*key)

    @property
    def backlog(self) -> int:
        """Tasks waiting for a worker, both lanes (a gauge for the operator's metrics)."""
        return len(self._queued) + len(self._low_queued)

    async def _next(self) -> Key:
        """The next key to run: the high lane first; a low one only when it is empty."""
        while True:
            if self._high:
                key = self._high.popleft()
                self._queued.discard(key)
                return key
            while self._low:
                key = self._low.popleft()
                if key in self._low_queued:  # else an event's run took its place
                    self._low_queued.discard(key)
                    return key
            self._ready.clear()
            await self._ready.wait()

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._busy.add(key)
            requeue: float | None = None
            try:
                verify = key in self._verify
                self._verify.discard(key)
                requeue = await self.reconcile(*key, live=self._live.pop(key, None),
                                               verify=verify)
            except Conflict:
                requeue = 0.2
            except ApiError as exc:
                log.warning("Reconciling agenttask %s/%s failed: %s; retrying", *key, exc)
                requeue = 5.0
            except Exception:  # a bug must not kill the worker; logged, retried later
                log.exception("Reconciling agenttask %s/%s failed", *key)
                requeue = 30.0
            finally:
                self._busy.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.wake(*key)
            elif requeue is not None:
                self.wake(*key, delay=max(requeue, 0.05))
