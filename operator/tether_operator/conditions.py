"""Pure: status conditions by the Kubernetes API conventions (metav1.Condition). No I/O here.

A decision names the conditions it knows (type, status, reason, message); ``merge`` folds them
into the ones already on the object: types not named are kept as they are (``Admitted``
survives completion), and ``lastTransitionTime`` moves only when a type's status changes —
a new reason or message alone is not a transition (API conventions, "Typical status
properties"). Every merged condition carries the generation it was computed from.

The table of types, meanings and reasons is in docs/operator.md (Conditions and Events).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["budget_conditions", "find", "merge", "spend_conditions", "want"]

Body = dict[str, Any]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def want(type_: str, status: bool | None, reason: str, message: str) -> Body:
    """A condition as a decision states it (no time, no generation yet); None is Unknown."""
    text = "Unknown" if status is None else "True" if status else "False"
    return {"type": type_, "status": text, "reason": reason, "message": message}


def find(conditions: list[Body] | None, type_: str) -> Body | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def merge(old: list[Body] | None, new: list[Body], now: datetime,
          generation: int | None) -> list[Body]:
    """``old`` with ``new`` folded in by type, in a stable order (old types first)."""
    merged = {c["type"]: dict(c) for c in old or []}
    for cond in new:
        prev = merged.get(cond["type"])
        keep = (prev is not None and prev.get("status") == cond["status"]
                and prev.get("lastTransitionTime"))
        stamped = {**cond, "lastTransitionTime": prev["lastTransitionTime"] if keep and prev
                   else _iso(now)}
        if generation is not None:
            stamped["observedGeneration"] = generation
        merged[cond["type"]] = stamped
    return list(merged.values())


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def spend_conditions(spec: Body, status: Body) -> list[Body]:
    """A task's ``SoftLimitReached`` from its spend so far and ``costEnvelope.softLimitUSD``
    (absent when the task has no soft limit)."""
    soft = (spec.get("costEnvelope") or {}).get("softLimitUSD")
    if soft in (None, ""):
        return []
    spent, limit = _money(status.get("spentUSD")), _money(soft)
    if spent >= limit:
        return [want("SoftLimitReached", True, "SoftLimitReached",
                     f"spent {spent} USD, at or over the soft limit {limit} USD")]
    return [want("SoftLimitReached", False, "BelowSoftLimit",
                 f"spent {spent} of the soft limit {limit} USD")]


def budget_conditions(budget: Body, spent: Decimal, reserved: Decimal) -> list[Body]:
    """An AgentBudget's ``SoftLimitReached`` (spent + reserved at or over limit *
    softLimitPercent) and ``Exhausted`` (nothing more fits: spent + reserved at or over the
    limit; reason LimitSpent when the spend alone reached it)."""
    spec = budget["spec"]
    limit = _money(spec["limitUSD"])
    percent = int(spec.get("softLimitPercent", 80))
    used = spent + reserved
    soft = limit * percent / 100
    out = [want("SoftLimitReached", True, "SoftLimitReached",
                f"{used} USD spent or held, at or over {percent}% of {limit} USD")
           if used >= soft else
           want("SoftLimitReached", False, "BelowSoftLimit",
                f"{used} USD spent or held, under {percent}% of {limit} USD")]
    if spent >= limit:
        out.append(want("Exhausted", True, "LimitSpent",
                        f"{spent} USD spent of {limit} USD this period"))
    elif used >= limit:
        out.append(want("Exhausted", True, "FullyHeld",
                        f"{spent} USD spent and {reserved} USD held of {limit} USD: no task "
                        "can be admitted until holds are released"))
    else:
        out.append(want("Exhausted", False, "RoomLeft",
                        f"{limit - used} USD of {limit} USD can still be held"))
    return out
