"""Live edits: the task's ConfigMap follows its spec, once the operator has accepted it.

The sidecar re-reads its task file when the kubelet swaps the mounted ConfigMap (issue #9,
contract 2), so writing the ConfigMap is what applies an edit. A raised hard limit is written
only once every AgentBudget holding the task holds the increase; if one cannot, the ConfigMap
keeps the spec it has (the running sidecar keeps enforcing the old limit) and the task shows
``EditApplied=False``, reason ``BudgetCannotHold``, with an Event; it is tried again on every
reconcile. A lowered hard limit is written at once and the holds shrink once it is enforced:
the sidecar reports it (``status.hardLimitUSD``), or no pod runs. What the ConfigMap holds is
the *accepted* spec: its generation and hard limit feed ``observedGeneration`` and
``hardLimitUSD`` when no pod runs (decide.py).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import yaml

from . import manifests
from .budget_io import BudgetBook
from .conditions import find, want
from .kube import Kube
from .ledger import money

__all__ = ["NUDGE_ANNOTATION", "SpecSync"]

log = logging.getLogger(__name__)
Body = dict[str, Any]
Key = tuple[str, str]
NUDGE_ANNOTATION = "tether.dev/task-generation"


def _accepted(cm: Body) -> Body:
    doc = yaml.safe_load((cm.get("data") or {}).get("agenttask.yaml") or "{}") or {}
    out: Body = {"hardLimitUSD": str(money(
        ((doc.get("spec") or {}).get("costEnvelope") or {}).get("hardLimitUSD")))}
    generation = (doc.get("metadata") or {}).get("generation")
    if generation is not None:
        out["generation"] = int(generation)
    return out


class SpecSync:
    def __init__(self, kube: Kube, book: BudgetBook) -> None:
        self.kube, self.book = kube, book
        self.synced: dict[Key, tuple[str, int, Body]] = {}  # uid, generation, accepted
        self.shrink: dict[Key, Decimal] = {}  # holds to lower once the limit is enforced

    def made(self, task: Body) -> None:
        """The task's ConfigMap was just created from ``task``: it holds this generation."""
        meta = task["metadata"]
        hard = money(task["spec"]["costEnvelope"]["hardLimitUSD"])
        generation = int(meta.get("generation") or 0)
        self.synced[(meta["namespace"], meta["name"])] = (
            meta["uid"], generation, {"generation": generation, "hardLimitUSD": f"{hard:f}"})

    def forget(self, key: Key) -> None:
        self.synced.pop(key, None)
        self.shrink.pop(key, None)

    async def sync(self, task: Body, pod_runs: bool) -> tuple[Body, list[Body], list[Any]]:
        """The accepted spec ({} before the ConfigMap exists), conditions and events."""
        meta, status = task["metadata"], task.get("status") or {}
        key, uid = (meta["namespace"], meta["name"]), meta["uid"]
        generation = int(meta.get("generation") or 0)
        cached = self.synced.get(key)
        if cached and cached[:2] == (uid, generation):
            await self._shrink(task, key, pod_runs)
            return cached[2], [], []
        cm = await self.kube.get_config_map(meta["namespace"],
                                            manifests.object_names(task, 0)["cm"])
        if cm is None or all(o.get("uid") != uid for o in
                             cm["metadata"].get("ownerReferences") or []):
            return {}, [], []  # not created yet, or another task's (guards.py: StaleObjects)
        desired = manifests.config_map(task)
        old = _accepted(cm)
        new_hard = money(task["spec"]["costEnvelope"]["hardLimitUSD"])
        if desired["data"] != cm.get("data"):
            if new_hard > money(old["hardLimitUSD"]):
                refused = await self.book.resize(task, new_hard, grow=True)
                if refused is not None:
                    return old, *self._refused(status, refused, new_hard, old)
            await self.kube.save(desired, cm["metadata"]["resourceVersion"])
            log.info("Updated configmap %s/%s to generation %s", meta["namespace"],
                     desired["metadata"]["name"], generation)
            await self._nudge(task, generation, pod_runs)
        accepted = {"generation": generation, "hardLimitUSD": f"{new_hard:f}"}
        self.synced[key] = (uid, generation, accepted)
        if new_hard < money(old["hardLimitUSD"]):
            self.shrink[key] = new_hard
        await self._shrink(task, key, pod_runs)
        applied = want("EditApplied", True, "Applied", f"generation {generation} is in the "
                       "task's ConfigMap")
        return accepted, [applied] if find(status.get("conditions"), "EditApplied") else [], []

    async def _nudge(self, task: Body, generation: int, pod_runs: bool) -> None:
        """Make the kubelet refresh the running pod's ConfigMap volume now.

        The kubelet rewrites a mounted ConfigMap on its periodic pod sync (``syncFrequency``,
        1 min by default), not when the ConfigMap changes: a lowered hard limit would go
        unenforced for up to a minute (measured: 12 s and counting in the spend campaign). Any
        change to the pod object makes the kubelet sync that pod, volumes included, at once
        (measured: the new file in ~1 s); the annotation also shows which generation was sent."""
        pod = (task.get("status") or {}).get("podName")
        if pod_runs and pod:
            await self.kube.annotate_pod(task["metadata"]["namespace"], pod,
                                         {NUDGE_ANNOTATION: str(generation)})

    def _refused(self, status: Body, budget: str, amount: Decimal, old: Body
                 ) -> tuple[list[Body], list[Any]]:
        message = (f"budget {budget} cannot hold the raised hard limit {amount:f} USD: the "
                   f"running attempt keeps enforcing {old['hardLimitUSD']} USD (retried on "
                   "every reconcile; lower the limit or make room in the budget)")
        was = find(status.get("conditions"), "EditApplied") or {}
        events = [] if was.get("message") == message else [
            ("Warning", "BudgetCannotHold", message)]
        return [want("EditApplied", False, "BudgetCannotHold", message)], events

    async def _shrink(self, task: Body, key: Key, pod_runs: bool) -> None:
        """Lower the holds to a lowered limit once nothing enforces the old one."""
        amount = self.shrink.get(key)
        enforced = (task.get("status") or {}).get("hardLimitUSD")
        if amount is None or (pod_runs and (enforced is None or money(enforced) > amount)):
            return
        await self.book.resize(task, amount, grow=False)
        del self.shrink[key]
