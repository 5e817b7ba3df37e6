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
from .evaluation import PolicyBook
from .kube import Kube
from .ledger import POD_FINALIZER, STATUS_FIELDS, finished, pinned
from .metrics import OperatorMetrics
from .podcache import PodCache
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
                 blocker: Blocker = guards.credentials) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.blocker = blocker  # guards.py: why a pod must not be created (contract 6)
        self.pods = PodCache()  # fed by the pod watch (handlers.py) and our own creates
        self._own_writes: dict[Key, str] = {}  # resourceVersion of each task's last write
        self.book = BudgetBook(kube, settings, metrics, self._write, lambda: _now())
        self.book.on_room = self.wake_queued
        self.specs = SpecSync(kube, self.book)
        self.policies = PolicyBook(kube, settings.evaluator_url)  # TETHER_EVALUATION (#10)
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

    async def reconcile(self, ns: str, name: str, live: Body | None = None,
                        verify: bool = False) -> float | None:
        """One pass for the task; ``verify`` (the resync's pass) reads its pods fresh."""
        task = await self.kube.get_task(ns, name)
        if task is None:
            await self._own_pods(ns, name, None, fresh=True)  # unpins what its pods left pinned
            self.metrics.task_phase(ns, name, None)
            self.specs.forget((ns, name))
            self._own_writes.pop((ns, name), None)
            return None
        if task["metadata"].get("deletionTimestamp"):
            pods, _ = await self._own_pods(ns, name, task, fresh=True)
            return await on_deletion(self.kube, self.book, self._write, self.settings,
                                     task, pods, _now())
        status = task.get("status") or {}
        admission: list[Body] = []
        if status.get("phase") not in TERMINAL and not admitted(status):
            requeue, admission = await self.book.admit(task)  # no pod for a queued task
            if not admission:
                return requeue
        pods, strays_run = await self._own_pods(ns, name, task, fresh=verify)
        if strays_run:
            return 2.0  # an earlier task's pods of the same name still end: ours take them
        return await self._run(task, pods, live, admission)

    async def _pods(self, ns: str, name: str, task: Body | None, fresh: bool) -> list[Body]:
        """The pods labelled for task ``name``: from the pod watch's index, read from the API
        server where a stale index would cost (podcache.py): ``fresh``, or the pod the status
        names is not in the index (an attempt is never counted lost on the index's word)."""
        if fresh and task is None:
            self.pods.replace(ns, name, await self.kube.pods_of(ns, name))
        elif fresh:
            for pod in self.pods.of(ns, name):
                found = await self.kube.get_pod(ns, pod["metadata"]["name"])
                if found is None or found["metadata"]["uid"] != pod["metadata"]["uid"]:
                    self.pods.gone(ns, name, pod["metadata"]["name"])
                if found is not None:
                    self.pods.seen(found)
        pods = self.pods.of(ns, name)
        named = ((task or {}).get("status") or {}).get("podName")
        if named and all(p["metadata"]["name"] != named for p in pods):
            self.pods.replace(ns, name, await self.kube.pods_of(ns, name))
            pods = self.pods.of(ns, name)
        return pods

    async def _own_pods(self, ns: str, name: str, task: Body | None, fresh: bool = False
                        ) -> tuple[list[Body], bool]:
        """The task's own pods, and whether pods of another task of that name still run;
        unpins those others' pods when their task is gone or they ended."""
        pods = await self._pods(ns, name, task, fresh)
        uid = task["metadata"]["uid"] if task else ""
        strays = [p for p in pods if not _owned(p, uid)]
        for pod in strays:  # a deleted task's, or one of the same name before it
            if pinned(pod) and (task is None or finished(pod)):
                await self.kube.unpin_pod(pod, POD_FINALIZER)
        return ([p for p in pods if p not in strays],
                any(not finished(p) for p in strays))

    async def _run(self, task: Body, pods: list[Body], live: Body | None,
                   admission: list[Body]) -> float | None:
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
        plan.conditions += admission + conds  # admission: written with the first status
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
        written = await self.kube.apply_task_status(task, new)
        self._own_writes[(meta["namespace"], meta["name"])] = written["metadata"][
            "resourceVersion"]
        return written

    def echo(self, ns: str, name: str, resource_version: str | None) -> bool:
        """Whether a task event only brings back this reconciler's own last status write: the
        pass that wrote it already acted on that state (and asked for a timer if it must look
        again), so it wakes nothing (a third of the passes at scale)."""
        if resource_version and self._own_writes.get((ns, name)) == resource_version:
            del self._own_writes[(ns, name)]
            return True
        return False

    async def _apply(self, task: Body, plan: Plan, pods: list[Body] | None = None
                     ) -> float | None:
        """Carry ``plan`` out; a delay when a guard says to wait before the pod."""
        meta = task["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if plan.status.get("evictions", 0) > int((task.get("status") or {}).get("evictions", 0)):
            self.metrics.evictions.labels(ns, name).inc()
        if plan.create_pod is not None:  # what the pod about to be made will enforce
            plan.status.update(self._accepted(task))
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

    def _accepted(self, task: Body) -> Body:
        """The generation and hard limit the attempt's pod enforces: the ConfigMap's when it
        has been read, else the spec's (the ConfigMap is made from it)."""
        meta, spec = task["metadata"], task["spec"]
        synced = self.specs.synced.get((meta["namespace"], meta["name"]))
        accepted = synced[2] if synced and synced[0] == meta["uid"] else {
            "generation": meta.get("generation", 0),
            "hardLimitUSD": str(spec["costEnvelope"]["hardLimitUSD"])}
        return {"observedGeneration": accepted.get("generation", 0),
                "hardLimitUSD": accepted["hardLimitUSD"]}

    async def _stop(self, task: Body, found: tuple[str, str]) -> str:
        """Record a guard's verdict: "wait" (StaleObjects: a deleted task's objects still
        being collected) or "failed" (the task now is)."""
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
        """Ensure the attempt's objects; a delay when a guard says to wait.

        The ConfigMap and the claim are created, then checked only when one of that name
        already existed (guards.claim): a new object is this task's by construction, so the
        usual start costs no read. The pod's status name is written by the reconcile its
        creation wakes (decide: ``podName`` set means the pod was made)."""
        found = await self.blocker(self.kube, task)
        if found is not None:
            return 2.0 if await self._stop(task, found) == "wait" else None
        spec, meta = task["spec"], task["metadata"]
        await self.kube.ensure(manifests.service_account(task))
        config_map = manifests.config_map(task)
        made, found = await guards.claim(self.kube, config_map, meta["uid"])
        if made:  # it holds the spec as read: no need to read it back (spec_sync.py)
            self.specs.made(task)
        if found is None and (spec.get("checkpoint") or {}).get("enabled", True):
            _, found = await guards.claim(self.kube, manifests.pvc(task), meta["uid"])
        if found is not None:
            return 2.0 if await self._stop(task, found) == "wait" else None
        left = None
        start = (task.get("status") or {}).get("startTime")
        if spec.get("activeDeadlineSeconds") and start:
            elapsed = (_now() - datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ")).total_seconds()
            left = int(spec["activeDeadlineSeconds"] - elapsed)
        pod = manifests.pod(task, attempt, self.settings, left,
                            await self.policies.env_for(task))
        # Pinned from birth: its final figures are read before it can go (ledger.py).
        pod["metadata"]["finalizers"] = [*pod["metadata"].get("finalizers", []), POD_FINALIZER]
        created = await self.kube.create(pod)
        if created is None:  # made before (an answer lost, a restart): index it as it is
            existing = await self.kube.get_pod(meta["namespace"], pod["metadata"]["name"])
            if existing is not None:
                self.pods.seen(existing)
            return None
        self.pods.seen(created)  # read-your-writes: the next reconcile must see it
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

