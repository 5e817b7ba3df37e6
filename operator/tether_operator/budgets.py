"""Pure: AgentBudget admission. A task is admitted only when its whole hard limit can be held
against every budget that selects it (like a card pre-authorisation); the unspent part is
released when it ends, so the sum of tasks can never pass a budget.

Holds are listed per task UID in the budget's status (``reservations``), which makes taking and
releasing idempotent: a restarted operator repeating either changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .conditions import budget_conditions, merge

__all__ = ["held", "period_start", "release", "reserve", "resize", "selects", "with_totals"]

Body = dict[str, Any]


def _labels_match(selector: Body, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def selects(budget: Body, task: Body) -> bool:
    if budget["metadata"]["namespace"] != task["metadata"]["namespace"]:
        return False
    selector = budget["spec"].get("selector") or {}
    return _labels_match(selector, task["metadata"].get("labels") or {})


def period_start(period: str, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "Daily":
        return day
    if period == "Weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def with_totals(budget: Body, status: Body, now: datetime) -> Body:
    """Roll the period over if it ended (spend restarts at 0; holds stay), recompute totals
    and the conditions SoftLimitReached and Exhausted."""
    start = period_start(budget["spec"].get("period", "Monthly"), now)
    iso = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    spent = _money(status.get("spentUSD")) if status.get("periodStart") == iso else Decimal(0)
    holds = list(status.get("reservations") or [])
    reserved = sum((_money(h["amountUSD"]) for h in holds), Decimal(0))
    limit = _money(budget["spec"]["limitUSD"])
    generation = budget["metadata"].get("generation")
    return {**status, "periodStart": iso, "spentUSD": f"{spent:f}", "reservations": holds,
            "reservedUSD": f"{reserved:f}",
            # Clamped at 0, never negative: "remainingUSD == 0" is the one alert a user needs,
            # and the Exhausted condition (reason LimitSpent) says by how much it was passed.
            "remainingUSD": f"{max(Decimal(0), limit - spent - reserved):f}",
            "conditions": merge(status.get("conditions"),
                                budget_conditions(budget, spent, reserved), now, generation),
            "observedGeneration": generation}


def held(budget: Body, uid: str) -> Decimal | None:
    """What ``budget`` holds for the task ``uid``; None when it holds nothing for it."""
    hold = next((h for h in (budget.get("status") or {}).get("reservations") or []
                 if h["uid"] == uid), None)
    return None if hold is None else _money(hold["amountUSD"])


def reserve(budget: Body, task: Body, amount: Decimal, now: datetime, *,
            force: bool = False) -> Body | None:
    """The budget's new status with the task's hold, or None when it does not fit. With
    ``force`` it is taken even past the limit: a task already running when the budget
    appeared (the budget then shows Exhausted)."""
    status = with_totals(budget, budget.get("status") or {}, now)
    uid = task["metadata"]["uid"]
    if any(h["uid"] == uid for h in status["reservations"]):
        return status
    if amount > _money(status["remainingUSD"]) and not force:
        return None
    status["reservations"] = [*status["reservations"], {
        "task": task["metadata"]["name"], "uid": uid, "amountUSD": f"{amount:f}"}]
    return with_totals(budget, status, now)


def release(budget: Body, uid: str, spent: Decimal, now: datetime) -> Body | None:
    """The budget's new status without the task's hold and with its spend; None if no hold."""
    status = with_totals(budget, budget.get("status") or {}, now)
    holds = status["reservations"]
    if not any(h["uid"] == uid for h in holds):
        return None
    status["reservations"] = [h for h in holds if h["uid"] != uid]
    status["spentUSD"] = f"{_money(status['spentUSD']) + spent:f}"
    return with_totals(budget, status, now)


def resize(budget: Body, uid: str, amount: Decimal, now: datetime) -> Body | None:
    """The budget's new status with the task's hold changed to ``amount``; None when it holds
    nothing for the task, holds that already, or cannot hold the increase (a raised hard
    limit is applied only once every budget holds it: docs/lifecycle.md)."""
    status = with_totals(budget, budget.get("status") or {}, now)
    old = held({"status": status}, uid)
    if old is None or old == amount:
        return None
    if amount - old > _money(status["remainingUSD"]):
        return None
    status["reservations"] = [{**h, "amountUSD": f"{amount:f}"} if h["uid"] == uid else h
                              for h in status["reservations"]]
    return with_totals(budget, status, now)
