"""A bounded work queue of task keys, as controller-runtime's: a key is queued at most once
and run by one worker at a time; woken while running, it runs once more after. The number of
workers bounds how many task bodies are in memory at once, however many tasks wake together.
"""

from __future__ import annotations

import asyncio
import logging
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
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._live: dict[Key, Body] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []

    async def reconcile(self, ns: str, name: str, live: Body | None = None) -> float | None:
        raise NotImplementedError

    def wake(self, ns: str, name: str, live: Body | None = None, delay: float = 0.0) -> None:
        key = (ns, name)
        if delay > 0:
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)
            return
        if not self._workers:
            self._workers = [asyncio.create_task(self._worker())
                             for _ in range(self._worker_count)]
        if live is not None:
            self._live[key] = live
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)  # a fired timer is forgotten: no entry per finished task
        self.wake(*key)

    @property
    def backlog(self) -> int:
        """Tasks waiting for a worker (a gauge for the operator's metrics)."""
        return len(self._queued)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._busy.add(key)
            requeue: float | None = None
            try:
                requeue = await self.reconcile(*key, live=self._live.pop(key, None))
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
