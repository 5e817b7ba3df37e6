"""The ensure path for an AgentTask: read, decide, apply. The only writer of task status.

One path for create and resume (docs/architecture.md, Conventions): whatever woke it up (a task
event, a pod event, a budget change, a timer), ``Reconciler.run`` reads the task and its pods
fresh from the API server, asks ``decide`` for a plan and applies it. Runs for one task are
serialised and coalesced. Status is written whole by server-side apply (field manager
``tether-operator``) carrying the resourceVersion it was computed from, so a second replica (or
a stale read) gets a conflict and reconciles again instead of double-counting; conditions are
merged by type in conditions.py, so one that is not restated is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from . import budgets, manifests
from .conditions import find, merge, spend_conditions, want
from .decide import TERMINAL, Observed, Plan, decide, ending, iso
from .kube import ApiError, Conflict, Kube
from .metrics import OperatorMetrics
from .settings import OperatorSettings

__all__ = ["FINALIZER", "Reconciler"]

log = logging.getLogger(__name__)
FINALIZER = "tether.dev/budget-release"
Body = dict[str, Any]
Key = tuple[str, str]


def _admitted(status: Body) -> bool:
    return any(c.get("type") == "Admitted" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, metrics: OperatorMetrics) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        # The work queue (as controller-runtime's): a key is queued at most once, run by one
        # worker at a time; woken while running, it runs once more after. ``workers`` bounds
        # how many task bodies are in memory at once, however many tasks wake together.
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._live: dict[Key, Body] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        # Kept by the watch events (handlers.py): what the live-status round needs, small.
        self.tasks: dict[Key, Body] = {}  # phase, podName and the live fields last seen
        self.pod_ips: dict[Key, str | None] = {}

    def wake_queued(self, ns: str) -> None:
        """Room may have been made in a budget: re-check the tasks waiting in ``ns``."""
        for (task_ns, name), seen in list(self.tasks.items()):
            if task_ns == ns and seen.get("phase") in (None, "Pending"):
                self.wake(ns, name)

    # --- scheduling: a bounded work queue, one run at a time per task -----------------------

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
                             for _ in range(self.settings.workers)]
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

    # --- one reconcile ----------------------------------------------------------------------

    async def reconcile(self, ns: str, name: str, live: Body | None = None) -> float | None:
        task = await self.kube.get_task(ns, name)
        if task is None:
            self.metrics.task_phase(ns, name, None)
            return None
        if task["metadata"].get("deletionTimestamp"):
            await self._release(task)
            return None
        status = task.get("status") or {}
        if status.get("phase") not in TERMINAL and not _admitted(status):
            requeue = await self._admit(task)
            if requeue is not None or (task := await self.kube.get_task(ns, name)) is None:
                return requeue
        pods = await self.kube.pods_of(ns, name)
        # Only a pod on a node can fail to mount (docs/operator.md, pods that cannot start).
        warnings = [e for p in pods if (p.get("status") or {}).get("phase") == "Pending"
                    and (p.get("spec") or {}).get("nodeName")
                    for e in await self.kube.pod_warnings(ns, p["metadata"]["uid"])]
        plan = decide(Observed(task, pods, _now(), live, warnings), self.settings)
        await self._apply(task, plan)
        phase = plan.status.get("phase") or (task.get("status") or {}).get("phase")
        self.metrics.task_phase(ns, name, phase)
        return plan.requeue

    async def _write(self, task: Body, fields: Body, conds: list[Body]) -> Body:
        """Apply ``fields`` and ``conds`` onto the task's status as read (nothing when that
        changes nothing); the task as written."""
        meta, old = task["metadata"], task.get("status") or {}
        new = {k: v for k, v in {**old, **fields}.items() if v is not None}
        new["conditions"] = merge(old.get("conditions"),
                                  [*conds, *spend_conditions(task["spec"], new)], _now(),
                                  meta.get("generation"))
        new["observedGeneration"] = meta.get("generation", 0)
        if new == old:
            return task
        return await self.kube.apply_task_status(task, new)

    async def _apply(self, task: Body, plan: Plan) -> None:
        meta = task["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if plan.status.get("evictions", 0) > int((task.get("status") or {}).get("evictions", 0)):
            self.metrics.evictions.labels(ns, name).inc()
        task = await self._write(task, plan.status, plan.conditions)
        if plan.create_pod is not None:
            await self._start_pod(task, plan.create_pod)
        for pod in plan.delete_pods:
            await self.kube.delete_pod(ns, pod)
        for event in plan.events:
            await self.kube.event(task, *event)
        if plan.release_budget:
            await self._release(task)  # as written: with the spend this plan recorded

    async def _start_pod(self, task: Body, attempt: int) -> None:
        spec = task["spec"]
        await self.kube.ensure(manifests.service_account(task))
        await self.kube.ensure(manifests.config_map(task))
        if (spec.get("checkpoint") or {}).get("enabled", True):
            await self.kube.ensure(manifests.pvc(task))
        left = None
        start = (task.get("status") or {}).get("startTime")
        if spec.get("activeDeadlineSeconds") and start:
            elapsed = (_now() - datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ")).total_seconds()
            left = int(spec["activeDeadlineSeconds"] - elapsed)
        pod = manifests.pod(task, attempt, self.settings, left)
        created = await self.kube.ensure(pod)
        meta = task["metadata"]
        await self._write(task, {"podName": pod["metadata"]["name"]}, [])
        if created:
            log.info("Created pod %s for agenttask %s/%s", pod["metadata"]["name"],
                     meta["namespace"], meta["name"])
            if attempt > 1:
                self.metrics.resumes.labels(meta["namespace"], meta["name"]).inc()

    # --- budgets ----------------------------------------------------------------------------

    async def _cas(self, budget: Body, change: Callable[[Body], Body | None]
                   ) -> Body | bool | None:
        """Apply ``change`` to a budget's status with optimistic concurrency; returns the new
        status, None when ``change`` declined, False when it kept conflicting."""
        ns, name = budget["metadata"]["namespace"], budget["metadata"]["name"]
        for _ in range(20):
            new = change(budget)
            if new is None:
                return None
            try:
                await self.kube.replace_budget_status(budget, new)
            except Conflict:
                budget = await self.kube.get_budget(ns, name)
                continue
            self.metrics.budget(ns, name, budget["spec"]["limitUSD"], new["spentUSD"],
                                new["reservedUSD"])
            await self._budget_events(budget, new)
            return new
        return False

    async def _budget_events(self, budget: Body, new: Body) -> None:
        """An Event and the soft-limit gauge when SoftLimitReached or Exhausted changes."""
        meta = budget["metadata"]
        soft = find(new.get("conditions"), "SoftLimitReached") or {}
        self.metrics.budget_soft_limit.labels(meta["namespace"], meta["name"]).set(
            1 if soft.get("status") == "True" else 0)
        old = (budget.get("status") or {}).get("conditions")
        for type_ in ("SoftLimitReached", "Exhausted"):
            cur, was = find(new.get("conditions"), type_), find(old, type_) or {}
            if cur and cur["status"] != was.get("status", "False"):
                kind = "Warning" if cur["status"] == "True" else "Normal"
                await self.kube.event_on({"kind": "AgentBudget", **budget}, kind,
                                         cur["reason"], cur["message"])

    async def refresh_budget(self, budget: Body) -> None:
        """Recompute a budget's totals and conditions after its spec changed (a new limit or
        softLimitPercent); writes only when something differs. Also sets the budget's gauges,
        so a restarted operator shows them before the next hold or release."""
        now = _now()
        status = budget.get("status") or {}
        written = await self._cas(budget, lambda b: (None if (new := budgets.with_totals(
            b, b.get("status") or {}, now)) == (b.get("status") or {}) else new))
        if written is None and status.get("spentUSD") is not None:
            meta = budget["metadata"]
            self.metrics.budget(meta["namespace"], meta["name"], budget["spec"]["limitUSD"],
                                status["spentUSD"], status.get("reservedUSD") or "0")
            soft = find(status.get("conditions"), "SoftLimitReached") or {}
            self.metrics.budget_soft_limit.labels(meta["namespace"], meta["name"]).set(
                1 if soft.get("status") == "True" else 0)

    async def _admit(self, task: Body) -> float | None:
        """Hold the task's hard limit on every budget that selects it; None when admitted,
        else the delay before trying again (or None after rejecting it)."""
        meta = task["metadata"]
        selecting = [b for b in await self.kube.list_budgets(meta["namespace"])
                     if budgets.selects(b, task)]
        now = _now()
        amount = Decimal(task["spec"]["costEnvelope"]["hardLimitUSD"])
        if selecting and FINALIZER not in (meta.get("finalizers") or []):
            await self.kube.patch_task_finalizers(
                meta["namespace"], meta["name"], [*(meta.get("finalizers") or []), FINALIZER],
                meta["resourceVersion"])
            return 0.0  # the finalizer first, so a deletion can never leak a hold
        held: list[Body] = []
        for budget in selecting:
            result = await self._cas(budget, lambda b: budgets.reserve(b, task, amount, now))
            if not result:
                return await self._refuse(task, budget, held, amount, result is False)
            held.append(budget)
        names = ", ".join(b["metadata"]["name"] for b in selecting) or "none select it"
        await self._write(task, {"phase": "Pending"}, [
            want("Admitted", True, "Reserved", f"{amount} USD held on budgets: {names}")])
        return None

    async def _refuse(self, task: Body, budget: Body, held: list[Body], amount: Decimal,
                      contended: bool) -> float | None:
        uid, now = task["metadata"]["uid"], _now()
        for taken in held:
            await self._cas(taken, lambda b: budgets.release(b, uid, Decimal(0), now))
        if contended:
            return 1.0
        bname = budget["metadata"]["name"]
        remaining = (budget.get("status") or {}).get("remainingUSD", budget["spec"]["limitUSD"])
        message = (f"budget {bname} cannot hold {amount} USD (remaining {remaining} of "
                   f"{budget['spec']['limitUSD']} this {budget['spec'].get('period', 'Monthly')}"
                   " period)")
        if budget["spec"].get("onExhausted", "Queue") == "Reject":
            await self._write(task, {"phase": "Failed", "message": message,
                                     "completionTime": iso(now)},
                              [want("Admitted", False, "BudgetExhausted", message),
                               *ending("Failed", "BudgetExhausted", message)])
            await self.kube.event(task, "Warning", "BudgetExhausted", message)
            return None
        status = task.get("status") or {}
        if status.get("message") != message:
            await self._write(task, {"phase": "Pending", "message": message},
                              [want("Admitted", False, "Queued", message),
                               want("Progressing", False, "Queued", message)])
            await self.kube.event(task, "Normal", "Queued", message)
        return self.settings.queue_poll_seconds

    async def _release(self, task: Body) -> None:
        meta = task["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        spent = Decimal(str((task.get("status") or {}).get("spentUSD") or 0))
        now = _now()
        for budget in await self.kube.list_budgets(meta["namespace"]):
            result = await self._cas(budget, lambda b: budgets.release(b, meta["uid"], spent, now))
            if result is False:
                raise Conflict(409, "Conflict",
                               f"budget {budget['metadata']['name']} kept changing")
        await self.kube.patch_task_finalizers(
            meta["namespace"], meta["name"],
            [f for f in meta.get("finalizers") or [] if f != FINALIZER], meta["resourceVersion"])
        self.wake_queued(meta["namespace"])  # room was just made in these budgets

