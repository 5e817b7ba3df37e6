"""Pure: the record of a task that ended without sending one (``outcome: no_record``).

A task whose sidecar never delivered a record (killed with its volume, an outbox that never
reached the evaluator) would otherwise vanish from the counts: once it has been terminal for the
grace period with no record stored, the evaluator stores one for it, naming the policies that
select it (the operator's own matching, :mod:`tether_operator.evaluation`). It carries no text
and is never judged. A real record for the same ``(uid, attempt)`` arriving later replaces it
(:meth:`store.Store.put_record`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tether_operator.budgets import selects
from tether_operator.evaluation import entry, problem

__all__ = ["TERMINAL", "no_record"]

TERMINAL = frozenset({"Succeeded", "Failed", "BudgetExceeded"})


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def no_record(task: dict[str, Any], policies: list[dict[str, Any]], now: datetime,
              grace: timedelta) -> dict[str, Any] | None:
    """The placeholder record for ``task`` when it is due (terminal for ``grace``, selected by
    a valid policy), else None. The caller stores it only if no record of the task is in."""
    status = task.get("status") or {}
    done = status.get("completionTime")
    if status.get("phase") not in TERMINAL or not done or now - _time(done) < grace:
        return None
    chosen = sorted((p for p in policies if selects(p, task) and problem(p) is None),
                    key=lambda p: str(p["metadata"]["name"]))
    if not chosen:
        return None
    meta = task["metadata"]
    return {
        "version": 1, "uid": meta["uid"], "namespace": meta["namespace"], "task": meta["name"],
        "labels": meta.get("labels") or {}, "attempt": max(1, int(status.get("attempt") or 1)),
        "policies": [{"name": e["name"], "sampled": e["sampled"]}
                     for e in (entry(p, task) for p in chosen)],
        "outcome": "no_record", "answer": None, "instructions": None, "inputs": None,
        "redaction": {"ok": True, "findings": {}, "engine": "none (no record was sent)"},
        "finishedAt": done,
    }
