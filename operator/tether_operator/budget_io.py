"""AgentBudget I/O: take, resize and release a task's holds; count tasks a new budget selects.

The arithmetic is pure (budgets.py); this module only reads and writes budget status with
optimistic concurrency (replace with the resourceVersion read, again on a conflict), and the
task finalizer ``tether.dev/budget-release`` that makes a deletion wait for the release.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from . import budgets
from .conditions import find, want
from .decide import TERMINAL, ending, iso
from .kube import Conflict, Kube
from .ledger import money
from .metrics import OperatorMetrics
from .settings import OperatorSettings

__all__ = ["FINALIZER", "BudgetBook", "admitted"]

log = logging.getLogger(__name__)
FINALIZER = "tether.dev/budget-release"
Body = dict[str, Any]
Writer = Callable[[Body, Body, list[Body]], Awaitable[Body]]


def admitted(status: Body) -> bool:
    return any(c.get("type") == "Admitted" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _resizer(uid: str, amount: Decimal, at: datetime) -> Callable[[Body], Body | None]:
    return lambda b: budgets.resize(b, uid, amount, at)


def _forced(task: Body, amount: Decimal, at: datetime) -> Callable[[Body], Body | None]:
    return lambda b: budgets.reserve(b, task, amount, at, force=True)


class BudgetBook:
    def __init__(self, kube: Kube, settings: OperatorSettings, metrics: OperatorMetrics,
                 write: Writer, clock: Callable[[], datetime] = now) -> None:
        self.kube, self.settings, self.metrics = kube, settings, metrics
        self.write, self.clock = write, clock
        self.on_room: Callable[[str], None] = lambda ns: None  # wakes queued tasks
        self._names: dict[str, set[str]] = {}  # budget names per namespace, as last seen
        self._listed: set[str] = set()  # namespaces read since start

    async def cas(self, budget: Body, change: Callable[[Body], Body | None]
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
            await self._events(budget, new)
            return new
        return False

    async def _events(self, budget: Body, new: Body) -> None:
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

    async def refresh(self, budget: Body) -> None:
        """Recompute a budget's totals and conditions after its spec changed; writes only when
        something differs. Also sets its gauges, so a restarted operator shows them."""
        at, status = self.clock(), budget.get("status") or {}
        written = await self.cas(budget, lambda b: (None if (new := budgets.with_totals(
            b, b.get("status") or {}, at)) == (b.get("status") or {}) else new))
        if written is None and status.get("spentUSD") is not None:
            meta = budget["metadata"]
            self.metrics.budget(meta["namespace"], meta["name"], budget["spec"]["limitUSD"],
                                status["spentUSD"], status.get("reservedUSD") or "0")
            soft = find(status.get("conditions"), "SoftLimitReached") or {}
            self.metrics.budget_soft_limit.labels(meta["namespace"], meta["name"]).set(
                1 if soft.get("status") == "True" else 0)

    async def _pin(self, task: Body) -> bool:
        """Put the budget finalizer on ``task``; True when it had to be added."""
        meta = task["metadata"]
        if FINALIZER in (meta.get("finalizers") or []):
            return False
        await self.kube.patch_task_finalizers(
            meta["namespace"], meta["name"], [*(meta.get("finalizers") or []), FINALIZER],
            meta["resourceVersion"])
        return True

    async def admit(self, task: Body) -> tuple[float | None, list[Body]]:
        """Hold the task's hard limit on every budget that selects it. Admitted: (None, the
        ``Admitted`` condition for the caller to write with the first attempt's status, so
        the holds are on record before any pod); else (the delay before trying again, or
        None after rejecting it; []), with the refusal already written."""
        meta = task["metadata"]
        selecting = [b for b in await self.budgets_in(meta["namespace"])
                     if budgets.selects(b, task)]
        at = self.clock()
        amount = Decimal(task["spec"]["costEnvelope"]["hardLimitUSD"])
        if selecting and await self._pin(task):
            return 0.0, []  # the finalizer first, so a deletion can never leak a hold
        held: list[Body] = []
        for budget in selecting:
            result = await self.cas(budget, lambda b: budgets.reserve(b, task, amount, at))
            if not result:
                return await self._refuse(task, budget, held, amount, result is False), []
            held.append(budget)
        names = ", ".join(b["metadata"]["name"] for b in selecting) or "none select it"
        return None, [want("Admitted", True, "Reserved", f"{amount} USD held on budgets: "
                           f"{names}")]

    def seen(self, budget: Body, deleted: bool) -> None:
        """A budget event from the watch: which namespaces have budgets."""
        ns, name = budget["metadata"]["namespace"], budget["metadata"]["name"]
        names = self._names.setdefault(ns, set())
        (names.discard if deleted else names.add)(name)

    async def budgets_in(self, ns: str) -> list[Body]:
        """The namespace's budgets, read fresh; no read where the budget watch has shown none
        since the namespace was last read (a budget made in that instant is counted by
        ``adopt`` when its event arrives, as one made after the task)."""
        if ns in self._listed and not self._names.get(ns):
            return []
        found = await self.kube.list_budgets(ns)
        self._listed.add(ns)
        self._names[ns] = {b["metadata"]["name"] for b in found}
        return found

    async def _refuse(self, task: Body, budget: Body, held: list[Body], amount: Decimal,
                      contended: bool) -> float | None:
        uid, at = task["metadata"]["uid"], self.clock()
        for taken in held:
            await self.cas(taken, lambda b: budgets.release(b, uid, Decimal(0), at))
        if contended:
            return 1.0
        bname = budget["metadata"]["name"]
        remaining = (budget.get("status") or {}).get("remainingUSD", budget["spec"]["limitUSD"])
        message = (f"budget {bname} cannot hold {amount} USD (remaining {remaining} of "
                   f"{budget['spec']['limitUSD']} this {budget['spec'].get('period', 'Monthly')}"
                   " period)")
        if budget["spec"].get("onExhausted", "Queue") == "Reject":
            await self.write(task, {"phase": "Failed", "message": message,
                                    "completionTime": iso(at)},
                             [want("Admitted", False, "BudgetExhausted", message),
                              *ending("Failed", "BudgetExhausted", message)])
            await self.kube.event(task, "Warning", "BudgetExhausted", message)
            return None
        if (task.get("status") or {}).get("message") != message:
            await self.write(task, {"phase": "Pending", "message": message},
                             [want("Admitted", False, "Queued", message),
                              want("Progressing", False, "Queued", message)])
            await self.kube.event(task, "Normal", "Queued", message)
        return self.settings.queue_poll_seconds

    async def resize(self, task: Body, amount: Decimal, *, grow: bool) -> str | None:
        """Change the task's hold on every budget that holds one to ``amount`` (only raises
        with ``grow``, only lowers without); None when done, else the name of a budget that
        cannot hold the increase (those already raised are put back)."""
        meta, at = task["metadata"], self.clock()
        uid, done = meta["uid"], list[tuple[Body, Decimal]]()
        for budget in await self.budgets_in(meta["namespace"]):
            old = budgets.held(budget, uid)
            if old is None or old == amount or (amount > old) != grow:
                continue
            result = await self.cas(budget, _resizer(uid, amount, at))
            if result is False:
                raise Conflict(409, "Conflict", f"budget {budget['metadata']['name']} kept "
                               "changing")
            if result is None and budgets.held(
                    await self.kube.get_budget(meta["namespace"], budget["metadata"]["name"]),
                    uid) != amount:
                for back, was in done:
                    await self.cas(back, _resizer(uid, was, at))
                return str(budget["metadata"]["name"])
            done.append((budget, old))
        return None

    async def release(self, task: Body, spent: Decimal | None = None) -> None:
        """Release the task's holds, charging ``spent`` (default: its status spend), then drop
        its finalizer."""
        meta = task["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        if spent is None:
            spent = money((task.get("status") or {}).get("spentUSD"))
        at = self.clock()
        for budget in await self.budgets_in(meta["namespace"]):
            result = await self.cas(budget, lambda b: budgets.release(b, meta["uid"], spent, at))
            if result is False:
                raise Conflict(409, "Conflict",
                               f"budget {budget['metadata']['name']} kept changing")
        await self.kube.patch_task_finalizers(
            meta["namespace"], meta["name"],
            [f for f in meta.get("finalizers") or [] if f != FINALIZER], meta["resourceVersion"])
        self.on_room(meta["namespace"])  # room was just made in these budgets

    async def adopt(self, budget: Body) -> list[str]:
        """Hold on ``budget`` for the admitted, unfinished tasks it selects that it holds
        nothing for (it was created, or its selector changed, after they were admitted): even
        past its limit, since they already run. Returns the tasks it now counts."""
        ns, at, counted = budget["metadata"]["namespace"], self.clock(), []
        for task in await self.kube.list_tasks(ns):
            status = task.get("status") or {}
            if (status.get("phase") in TERMINAL or not admitted(status)
                    or task["metadata"].get("deletionTimestamp")
                    or not budgets.selects(budget, task)
                    or budgets.held(budget, task["metadata"]["uid"]) is not None):
                continue
            await self._pin(task)
            amount = money(status.get("hardLimitUSD")
                           or task["spec"]["costEnvelope"]["hardLimitUSD"])
            new = await self.cas(budget, _forced(task, amount, at))
            if isinstance(new, dict):
                counted.append(task["metadata"]["name"])
                budget = await self.kube.get_budget(ns, budget["metadata"]["name"])
        return counted
