"""A deleted task waits for its final figures before its budgets are released (issue #9, 4).

While the task's finalizer (``tether.dev/budget-release``) holds it: its pods are deleted
gracefully (the sidecar gets SIGTERM and writes its final summary as its termination message;
the pod finalizer ``tether.dev/attempt-figures`` keeps the pod readable), each finished pod's
figures are folded into the status, and only then are the budgets released with that spend.
A pod still not finished ``deletion_wait_seconds`` after the deletion (a lost node, a kubelet
that does not answer) is given up on: the task is charged its whole budget hold (the
charge-the-hold rule, docs/lifecycle.md), an Event says so, and its pod is unpinned.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import budgets
from .budget_io import BudgetBook, Writer
from .decide import parse_time
from .kube import Kube
from .ledger import POD_FINALIZER, finished, money, pinned, settle
from .settings import OperatorSettings

__all__ = ["on_deletion"]

log = logging.getLogger(__name__)
Body = dict[str, Any]


async def on_deletion(kube: Kube, book: BudgetBook, write: Writer, settings: OperatorSettings,
                      task: Body, pods: list[Body], now: datetime) -> float | None:
    """One step of a deletion; the delay before the next, or None when it is done."""
    meta = task["metadata"]
    live = [p for p in pods if not finished(p)]
    for pod in live:
        if not pod["metadata"].get("deletionTimestamp"):
            await kube.delete_pod(meta["namespace"], pod["metadata"]["name"])
    settled = settle(task.get("status") or {}, pods)
    if settled.figures:
        task = await write(task, settled.figures, [])
    for note in settled.notes:
        await kube.event(task, "Warning", "FiguresCharged", note)
    for pod in pods:
        if pod["metadata"]["name"] in settled.unpin:
            await kube.unpin_pod(pod, POD_FINALIZER)
    if not live:
        await book.release(task)
        return None
    deleted = parse_time(meta.get("deletionTimestamp")) or now
    left = settings.deletion_wait_seconds - (now - deleted).total_seconds()
    if left > 0:
        return min(left, 2.0)  # pod events wake us sooner
    await _give_up(kube, book, task, live)
    return None


async def _give_up(kube: Kube, book: BudgetBook, task: Body, live: list[Body]) -> None:
    meta = task["metadata"]
    holds = [h for b in await kube.list_budgets(meta["namespace"])
             if (h := budgets.held(b, meta["uid"])) is not None]
    spent = max([money((task.get("status") or {}).get("spentUSD")), *holds])
    names = ", ".join(p["metadata"]["name"] for p in live)
    message = (f"pod {names} did not report its final figures within "
               f"TETHER_OPERATOR_DELETION_WAIT_SECONDS of the deletion: charged the whole "
               f"budget hold, {spent:f} USD")
    log.warning("Agenttask %s/%s: %s", meta["namespace"], meta["name"], message)
    await kube.event(task, "Warning", "FiguresNotReported", message)
    for pod in live:
        if pinned(pod):
            await kube.unpin_pod(pod, POD_FINALIZER)
    await book.release(task, Decimal(spent))
