"""Pure: one spend ledger per task across attempts (issue #9: spend is never lost). No I/O here.

Every attempt's pod carries the finalizer ``tether.dev/attempt-figures`` from its creation, so a
finished, deleted or evicted pod stays readable until its figures are in the task's status: the
sidecar's termination summary (cumulative: each attempt's sidecar starts from the figures of
the ones before it, handed over as ``--prior-*``), folded in by ``max``, so the status spend
never goes down and reading the same pod twice counts nothing twice. Only then is the finalizer
removed (``Settled.unpin``).

An attempt whose summary is missing or unreadable (the sidecar was SIGKILLed, OOM-killed, or
never wrote one) is charged what it may have spent: its last live ``spentUSD`` plus its last
live ``reservedUSD`` (the holds of calls in flight, which may have reached the provider) — the
charge-the-hold rule (docs/lifecycle.md). A pod whose sidecar never ran (never scheduled, or
no container ever started) sent nothing and is charged nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tether_api import AgentTaskStatus

from .manifests import SIDECAR

__all__ = ["MONOTONE", "POD_FINALIZER", "STATUS_FIELDS", "Settled", "at_least", "finished",
           "money", "pinned", "settle", "sidecar_summary"]

Body = dict[str, Any]
log = logging.getLogger(__name__)
POD_FINALIZER = "tether.dev/attempt-figures"
MONOTONE = ("spentUSD", "inputTokens", "outputTokens", "step", "retries")
_FINISHED = frozenset({"Succeeded", "Failed"})
# The status fields the CRD declares (it is generated from this model): server-side apply
# refuses any other, a merge patch drops it.
STATUS_FIELDS = frozenset(AgentTaskStatus.model_json_schema(by_alias=True)["properties"])


def money(value: Any) -> Decimal:
    """A USD figure from a status or a sidecar's report; absent is 0. One that is not a number
    (a sidecar of another version, a hand edit) counts as 0 — never lowering a status, since
    figures are only ever raised — and is logged, because spend it stood for is not counted."""
    if value in (None, ""):
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        log.warning("A spend figure is not a number (%r); counted as 0", value)
        return Decimal(0)


def at_least(old: Body, new: Body) -> Body:
    """The monotone figures of ``new`` raised to ``old``'s where ``old`` is higher (the
    status never goes down), as status fields; fields ``new`` lacks are left out."""
    out: Body = {}
    for key in MONOTONE:
        if new.get(key) is None:
            continue
        if key == "spentUSD":
            out[key] = f"{max(money(old.get(key)), money(new[key])):f}"
        else:
            out[key] = max(int(old.get(key) or 0), int(new[key]))
    return out


def finished(pod: Body) -> bool:
    """Nothing more can happen in ``pod``: it ended, or it is deleted before reaching a node."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in _FINISHED:
        return True
    return (phase in (None, "Pending") and bool(pod["metadata"].get("deletionTimestamp"))
            and not (pod.get("spec") or {}).get("nodeName"))


def sidecar_summary(pod: Body) -> Body:
    """The sidecar's final summary from its termination message ({} if it wrote none;
    ``{"unreadable": why}`` if it is not a JSON object)."""
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") == SIDECAR:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                try:
                    doc = json.loads(message)
                except ValueError as exc:
                    return {"unreadable": f"not JSON ({exc})"}
                return doc if isinstance(doc, dict) else {"unreadable": "not a JSON object"}
    return {}


def pinned(pod: Body) -> bool:
    return POD_FINALIZER in (pod["metadata"].get("finalizers") or [])


def _sidecar_ran(pod: Body) -> bool:
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") == SIDECAR:
            state = cs.get("state") or {}
            return bool(state.get("running") or state.get("terminated")
                        or cs.get("lastState", {}).get("terminated"))
    return False


@dataclass
class Settled:
    figures: Body = field(default_factory=dict)  # status fields: the ledger after these pods
    unpin: list[str] = field(default_factory=list)  # pods whose figures are in ``figures``
    notes: list[str] = field(default_factory=list)  # holds charged for want of a summary


def settle(status: Body, pods: list[Body]) -> Settled:
    """Fold the final figures of every finished pod still pinned into ``status``'s ledger."""
    out, ledger = Settled(), dict(status)
    done = [p for p in pods if pinned(p) and finished(p)]
    for pod in sorted(done, key=lambda p: str(p["metadata"].get("name"))):
        name = pod["metadata"]["name"]
        summary = sidecar_summary(pod)
        if summary.get("spentUSD") is not None and not summary.get("unreadable"):
            ledger.update(at_least(ledger, summary))
            ledger.update({k: summary[k] for k in ("lastCheckpoint", "traceID")
                           if summary.get(k) is not None})
        elif _sidecar_ran(pod):
            held = money(ledger.get("reservedUSD"))
            charged = money(ledger.get("spentUSD")) + held
            why = summary.get("unreadable") or "none was written"
            out.notes.append(f"pod {name}: no final figures from its sidecar ({why}); charged "
                             f"its last live spend plus its {held:f} USD of holds in flight: "
                             f"{charged:f} USD")
            ledger["spentUSD"], ledger["reservedUSD"] = f"{charged:f}", "0"
        out.unpin.append(name)
    if done and not any(not finished(p) for p in pods):
        ledger["reservedUSD"] = "0"  # no pod runs: no call can be in flight
    out.figures = {k: v for k, v in ledger.items() if status.get(k) != v}
    return out
