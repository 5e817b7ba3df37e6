"""The ensure path for an AgentTask: read, decide, apply. The only writer of task status.

One path for create and resume (docs/architecture.md, Conventions): whatever woke it up (a task
event, a pod event, a budget change, a timer), ``Reconciler.run`` reads the task and its pods
fresh from the API server, asks ``decide`` for a plan and applies it. Runs for one task are
serialised and coalesced. Status is written whole by server-side apply (field manager
``tether-operator``) carrying the resourceVersion it was computed from, so a second replica (or
a stale read) gets a conflict and reconciles again instead of double-counting; conditions are
merged by type in conditions.py, so one that is not restated is kept.

Beside it: budget_io.py (holds on AgentBudgets), spec_sync.py (live edits through the
ConfigMap), deletion.py (a deleted task waits for its final figures), guards.py (why a pod must
not be made). The lifecycle they implement is in docs/lifecycle.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from . import guards, manifests
from .budget_io import FINALIZER, BudgetBook, admitted
from .conditions import merge, spend_conditions, want
from .decide import TERMINAL, Observed, Plan, decide, ending, iso
from .deletion import on_deletion
from .kube import Kube
from .ledger import POD_FINALIZER, STATUS_FIELDS, finished, pinned
from .metrics import OperatorMetrics
from .settings import OperatorSettings
from .spec_sync import SpecSync
from .workqueue import WorkQueue

__all__ = ["FINALIZER", "Blocker", "Reconciler"]

log = logging.getLogger(__name__)
Body = dict[str, Any]
Key = tuple[str, str]
Blocker = Callable[[Kube, Body], Awaitable[tuple[str, str] | None]]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _owned(pod: Body, uid: str) -> bool:
    return any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences") or [])


class Reconciler(WorkQueue):
    def __init__(self, kube: Kube, settings: OperatorSettings, metrics: OperatorMetrics,
                 blocker: Blocker = guards.blocker) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.blocker = blocker  # guards.py: why a pod must not be created (contract 6)
        self.book = BudgetBook(kube, settings, metrics, self._write, lambda: _now())
        self.book.on_room = self.wake_queued
        self.specs = SpecSync(kube, self.book)
        self._init_queue(settings.workers)
        # Kept by the watch events (handlers.py): what the live-status round needs, small.
        self.tasks: dict[Key, Body] = {}  # phase, podName and the live fields last seen
        self.pod_ips: dict[Key, str | None] = {}
        self.poll_cursor = 0  # where the next live round starts when it cannot poll them all

    def wake_queued(self, ns: str) -> None:
        """Room may have been made in a budget: re-check the tasks waiting in ``ns``."""
        for (task_ns, name), seen in list(self.tasks.items()):
            if task_ns == ns and seen.get("phase") in (None, "Pending"):
                self.wake(ns, name)

    # --- one reconcile ----------------------------------------------------------------------

    async def reconcile(self, ns: str, name: str, live: Body | None = None) -> float | None:
        task = await self.kube.get_task(ns, name)
        if task is None:
            await self._own_pods(ns, name, None)  # unpins what its pods left pinned
            self.metrics.task_phase(ns, name, None)
            self.specs.forget((ns, name))
            return None
        if task["metadata"].get("deletionTimestamp"):
            pods, _ = await self._own_pods(ns, name, task)
            return await on_deletion(self.kube, self.book, self._write, self.settings,
                                     task, pods, _now())
        status = task.get("status") or {}
        if status.get("phase") not in TERMINAL and not admitted(status):
            requeue = await self.book.admit(task)  # no pod is listed for a queued task
            if requeue is not None or (task := await self.kube.get_task(ns, name)) is None:
                return requeue
        pods, strays_run = await self._own_pods(ns, name, task)
        if strays_run:
            return 2.0  # an earlier task's pods of the same name still end: ours take them
        return await self._run(task, pods, live)

    async def _own_pods(self, ns: str, name: str, task: Body | None
                        ) -> tuple[list[Body], bool]:
        """The task's own pods, and whether pods of another task of that name still run;
        unpins those others' pods when their task is gone or they ended."""
        pods = await self.kube.pods_of(ns, name)
        uid = task["metadata"]["uid"] if task else ""
        strays = [p for p in pods if not _owned(p, uid)]
        for pod in strays:  # a deleted task's, or one of the same name before it
            if pinned(pod) and (task is None or finished(pod)):
                await self.kube.unpin_pod(pod, POD_FINALIZER)
        return ([p for p in pods if p not in strays],
                any(not finished(p) for p in strays))

    async def _run(self, task: Body, pods: list[Body], live: Body | None) -> float | None:
        meta = task["metadata"]
        ns, name = meta["namespace"], meta["name"]
        # Only a pod on a node can fail to mount (docs/operator.md, pods that cannot start).
        warnings = [e for p in pods if (p.get("status") or {}).get("phase") == "Pending"
                    and (p.get("spec") or {}).get("nodeName")
                    for e in await self.kube.pod_warnings(ns, p["metadata"]["uid"])]
        accepted: Body = {}
        conds: list[Body] = []
        events: list[Any] = []
        status = task.get("status") or {}
        if status.get("phase") not in TERMINAL and status.get("attempt"):  # a ConfigMap exists
            accepted, conds, events = await self.specs.sync(
                task, any(not finished(p) for p in pods))
        plan = decide(Observed(task, pods, _now(), live, warnings, accepted), self.settings)
        plan.conditions += conds
        plan.events += events
        wait = await self._apply(task, plan, pods)
        phase = plan.status.get("phase") or (task.get("status") or {}).get("phase")
        self.metrics.task_phase(ns, name, phase)
        return plan.requeue if wait is None else wait

    async def _write(self, task: Body, fields: Body, conds: list[Body]) -> Body:
        """Apply ``fields`` and ``conds`` onto the task's status as read (nothing when that
        changes nothing); the task as written."""
        meta, old = task["metadata"], task.get("status") or {}
        new = {k: v for k, v in {**old, **fields}.items() if v is not None}
        new["conditions"] = merge(old.get("conditions"),
                                  [*conds, *spend_conditions(task["spec"], new)], _now(),
                                  meta.get("generation"))
        new.setdefault("observedGeneration", meta.get("generation", 0))
        new = {k: v for k, v in new.items() if k in STATUS_FIELDS}
        old = {k: v for k, v in old.items() if k in STATUS_FIELDS}
        if new == old:
            return task
        return await self.kube.apply_task_status(task, new)

    async def _apply(self, task: Body, plan: Plan, pods: list[Body] | None = None
                     ) -> float | None:
        """Carry ``plan`` out; a delay when a guard says to wait before the pod."""
        meta = task["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if plan.status.get("evictions", 0) > int((task.get("status") or {}).get("evictions", 0)):
            self.metrics.evictions.labels(ns, name).inc()
        task = await self._write(task, plan.status, plan.conditions)
        for pod in pods or []:  # their figures are in the status just written
            if pod["metadata"]["name"] in plan.unpin:
                await self.kube.unpin_pod(pod, POD_FINALIZER)
        wait = None if plan.create_pod is None else await self._start_pod(task, plan.create_pod)
        for pod_name in plan.delete_pods:
            await self.kube.delete_pod(ns, pod_name)
        for event in plan.events:
            await self.kube.event(task, *event)
        if plan.release_budget:
            await self.book.release(task)  # as written: with the spend this plan recorded
        return wait

    async def _blocked(self, task: Body) -> str | None:
        """What a guard says about this task's pod: None (go), "wait" (StaleObjects: a
        deleted task's objects still being collected) or "failed" (the task now is)."""
        found = await self.blocker(self.kube, task)
        if found is None:
            return None
        reason, message = found
        if reason == "StaleObjects":
            await self._write(task, {}, [want("Ready", False, reason, message)])
            return "wait"
        await self._write(task, {"phase": "Failed", "message": message,
                                 "completionTime": iso(_now())},
                          [want("Admitted", False, reason, message),
                           *ending("Failed", reason, message)])
        await self.kube.event(task, "Warning", reason, message)
        return "failed"

    async def _start_pod(self, task: Body, attempt: int) -> float | None:
        """Ensure the attempt's objects; a delay when a guard says to wait."""
        blocked = await self._blocked(task)
        if blocked is not None:
            return 2.0 if blocked == "wait" else None
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
        # Pinned from birth: its final figures are read before it can go (ledger.py).
        pod["metadata"]["finalizers"] = [*pod["metadata"].get("finalizers", []), POD_FINALIZER]
        created = await self.kube.ensure(pod)
        meta = task["metadata"]
        synced = self.specs.synced.get((meta["namespace"], meta["name"]))
        accepted = synced[2] if synced and synced[0] == meta["uid"] else {
            "generation": meta.get("generation", 0),
            "hardLimitUSD": str(spec["costEnvelope"]["hardLimitUSD"])}  # the file just made
        await self._write(task, {"podName": pod["metadata"]["name"],
                                 "observedGeneration": accepted.get("generation", 0),
                                 "hardLimitUSD": accepted["hardLimitUSD"]}, [])
        if created:
            log.info("Created pod %s for agenttask %s/%s", pod["metadata"]["name"],
                     meta["namespace"], meta["name"])
            if attempt > 1:
                self.metrics.resumes.labels(meta["namespace"], meta["name"]).inc()
        return None

    # --- budgets (budget_io.py) ---------------------------------------------------------------

    async def refresh_budget(self, budget: Body) -> None:
        """A budget's event: totals and conditions; when it is new or its spec changed, also
        the running tasks it selects and holds nothing for (budget_io.BudgetBook.adopt). Its
        own status writes (every hold and release) list no task."""
        changed = (budget.get("status") or {}).get("observedGeneration") != budget[
            "metadata"].get("generation")
        await self.book.refresh(budget)
        if not changed:
            return
        counted = await self.book.adopt(budget)
        if counted:
            log.info("Agentbudget %s/%s now counts running tasks %s", budget["metadata"][
                "namespace"], budget["metadata"]["name"], ", ".join(counted))

    async def _admit(self, task: Body) -> float | None:
        return await self.book.admit(task)

