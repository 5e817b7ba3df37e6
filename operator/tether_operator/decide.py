"""Pure: what the cluster looks like now → what to do about an AgentTask. No I/O here.

Reconcile from current state (docs/architecture.md, Conventions): the phase, attempt and
counters are derived from the task's status and its pods every time, so a restarted operator (or
a second replica taking over) reaches the same plan, and deterministic pod names make "create
the pod of attempt N" idempotent.

Failure kinds (issue: the operator):
- disruption — eviction, preemption, node loss (pod condition ``DisruptionTarget``), or the pod
  vanished: a new attempt resumes from the checkpoint; not a failure unless
  ``evictionsCountAsFailures``;
- the hard limit — the sidecar's summary (or live status) says BudgetExceeded: stop for good,
  gracefully, keeping the checkpoint;
- ``activeDeadlineSeconds`` — the task's whole lifetime, across attempts: Failed;
- anything else is a failed attempt, retried after an exponential backoff up to ``backoffLimit``;
- a pod that cannot start (a missing Secret or ConfigMap, an image that cannot be pulled, a
  claim that stays unbound; podstart.py): ``Ready=False`` with the cause and an Event at
  once, then Failed once the pod is ``start_timeout_seconds`` old and still blocked.

Every decision is made on the ledger (ledger.py): the figures of every finished pod are folded
into the status first, never lowering it, and the budget is released only once no pod of the
task can still spend. ``observedGeneration`` and ``hardLimitUSD`` are what the running sidecar
reports, or what the task's ConfigMap holds when no pod runs (spec_sync.py).

Conditions are stated here, by type (conditions.py merges them into the status).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .conditions import find, want
from .ledger import Settled, at_least, finished, money, settle, sidecar_summary
from .manifests import LABEL_ATTEMPT, object_names
from .podstart import look_again, start_blocker
from .settings import OperatorSettings

__all__ = ["TERMINAL", "Observed", "Plan", "decide", "ending", "sidecar_summary"]

Body = dict[str, Any]
TERMINAL = frozenset({"Succeeded", "Failed", "BudgetExceeded"})
_DISRUPTION_REASONS = frozenset({"Evicted", "Preempted", "Terminated", "NodeLost",
                                 "DeletionByTaintManager", "TerminationByKubelet"})
_SUMMARY_FIELDS = ("step", "spentUSD", "inputTokens", "outputTokens", "retries",
                   "lastCheckpoint", "traceID")


@dataclass(frozen=True)
class Observed:
    task: Body
    pods: list[Body]
    now: datetime
    live: Body | None = None  # the running sidecar's /status, when the poll reached it
    pod_warnings: list[Body] = field(default_factory=list)  # Warning Events of a pending pod
    # The spec the task's ConfigMap holds (what the next pod enforces): its "generation" and
    # "hardLimitUSD"; empty when it has not been read (the task's own spec is then taken).
    accepted: Body = field(default_factory=dict)


@dataclass
class Plan:
    status: dict[str, Any] = field(default_factory=dict)  # fields of .status to set
    conditions: list[Body] = field(default_factory=list)  # by type, merged into the old ones
    create_pod: int | None = None  # the attempt whose pod (and SA, ConfigMap, PVC) to ensure
    delete_pods: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue: float | None = None  # seconds
    release_budget: bool = False
    unpin: list[str] = field(default_factory=list)  # pods whose figures this plan records


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") if text else None


def attempt_of(pod: Body) -> int:
    try:
        return int(pod["metadata"]["labels"][LABEL_ATTEMPT])
    except (KeyError, ValueError):
        return 0


def _agent_exit(pod: Body) -> tuple[int | None, str, datetime | None]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == "agent":
            term = (cs.get("state") or {}).get("terminated") or {}
            return term.get("exitCode"), term.get("reason", ""), parse_time(term.get("finishedAt"))
    return None, "", None


def disrupted(pod: Body) -> bool:
    status = pod.get("status") or {}
    if status.get("reason") in _DISRUPTION_REASONS:
        return True
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def ending(phase: str, reason: str, message: str) -> list[Body]:
    """The conditions of a task that ended in ``phase`` (Succeeded, Failed, BudgetExceeded)."""
    ok = phase == "Succeeded"
    return [want("Complete", ok, reason, message),
            want("Failed", not ok, reason, message),
            want("Ready", ok, reason, message),
            want("Progressing", False, reason, message),
            want("BudgetExceeded", phase == "BudgetExceeded", reason if phase ==
                 "BudgetExceeded" else "WithinHardLimit", message)]


def _finish(phase: str, message: str, now: datetime, summary: Body, reason: str) -> Plan:
    if summary.get("unreadable"):
        message += (f"; the sidecar's final summary was unreadable ({summary['unreadable']}): "
                    "spend and step are the last live figures")
    status = {"phase": phase, "message": message, "completionTime": iso(now),
              **{k: summary[k] for k in _SUMMARY_FIELDS if summary.get(k) is not None}}
    kind = "Normal" if phase == "Succeeded" else "Warning"
    return Plan(status=status, conditions=ending(phase, reason, message),
                events=[(kind, reason, message)], release_budget=True)


def _next_attempt(o: Observed, attempt: int, *, eviction: bool, failure: bool,
                  why: str) -> Plan:
    status = o.task.get("status") or {}
    spec = o.task["spec"]
    pod_policy = (spec.get("retryPolicy") or {}).get("pod") or {}
    evictions = int(status.get("evictions", 0)) + (1 if eviction else 0)
    counts = failure or (eviction and pod_policy.get("evictionsCountAsFailures", False))
    failures = int(status.get("failures", 0)) + (1 if counts else 0)
    limit = int(pod_policy.get("backoffLimit", 3))
    if failures > limit:
        return _finish("Failed", f"{why}; {failures} failed attempts, over backoffLimit "
                       f"{limit}", o.now, {}, "BackoffLimitExceeded")
    patch: dict[str, Any] = {"attempt": attempt + 1, "evictions": evictions,
                             "failures": failures, "phase": "Running", "message": why}
    events = [("Warning", "Evicted" if eviction else "AttemptFailed",
               f"{why}; starting attempt {attempt + 1}"
               + (" from the last checkpoint" if eviction else ""))]
    conds = [want("Ready", False, "Evicted" if eviction else "AttemptFailed", why),
             want("Progressing", True, "Resuming" if eviction else "Retrying",
                  f"starting attempt {attempt + 1}")]
    return Plan(status=patch, conditions=conds, events=events, requeue=0.0)


def _deadline_left(o: Observed) -> float | None:
    deadline = o.task["spec"].get("activeDeadlineSeconds")
    start = parse_time((o.task.get("status") or {}).get("startTime"))
    if not deadline or start is None:
        return None
    return float(deadline) - (o.now - start).total_seconds()


def decide(o: Observed, settings: OperatorSettings) -> Plan:
    """The plan for the task as observed, on the ledger after every finished pod's figures."""
    settled = settle(o.task.get("status") or {}, o.pods)
    status = {**(o.task.get("status") or {}), **settled.figures}
    view = Observed({**o.task, "status": status}, o.pods, o.now, o.live, o.pod_warnings,
                    o.accepted)
    return _on_ledger(_decide(view, settings), view, settled)


def _on_ledger(plan: Plan, o: Observed, settled: Settled) -> Plan:
    """``plan`` with the ledger's figures (never lower), the pods it may unpin, the enforced
    generation and limit, and the budget released only once no pod can still spend."""
    status = o.task["status"]
    plan.status = {**settled.figures, **plan.status, **at_least(status, plan.status)}
    plan.unpin = settled.unpin
    plan.events += [("Warning", "FiguresCharged", note) for note in settled.notes]
    live = [p for p in o.pods if not finished(p)]
    if plan.release_budget and live:
        plan.release_budget = False  # a pod still ending may still spend: wait for it
        plan.requeue = 2.0 if plan.requeue is None else min(plan.requeue, 2.0)
    if not live and plan.create_pod is None:
        accepted = o.accepted or {}
        plan.status["observedGeneration"] = accepted.get(
            "generation", o.task["metadata"].get("generation", 0))
        plan.status["hardLimitUSD"] = str(accepted.get(
            "hardLimitUSD", o.task["spec"]["costEnvelope"]["hardLimitUSD"]))
    elif o.live and o.live.get("generation") is not None:
        plan.status["observedGeneration"] = int(o.live["generation"])
        if o.live.get("hardLimitUSD") is not None:
            plan.status["hardLimitUSD"] = str(o.live["hardLimitUSD"])
    return plan


def _decide(o: Observed, settings: OperatorSettings) -> Plan:
    status = o.task.get("status") or {}
    running = [p for p in o.pods if not finished(p) and not p["metadata"].get(
        "deletionTimestamp")]
    if status.get("phase") in TERMINAL:
        return Plan(delete_pods=[p["metadata"]["name"] for p in running], release_budget=True)
    attempt = max([int(status.get("attempt") or 0)] + [attempt_of(p) for p in o.pods])
    if attempt == 0:
        return _first_attempt(o)
    left = _deadline_left(o)
    if left is not None and left <= 0:
        plan = _finish("Failed", f"activeDeadlineSeconds "
                       f"({o.task['spec']['activeDeadlineSeconds']}) passed", o.now, {},
                       "DeadlineExceeded")
        plan.delete_pods = [p["metadata"]["name"] for p in running]
        return plan
    current = next((p for p in o.pods if attempt_of(p) == attempt), None)
    if current is None:
        return _without_pod(o, attempt, status)
    if o.live and o.live.get("phase") == "BudgetExceeded":
        plan = _finish("BudgetExceeded", "hard limit reached: stopping gracefully; the "
                       "checkpoint is kept", o.now, o.live, "HardLimit")
        plan.delete_pods = [current["metadata"]["name"]]
        return plan
    if current["metadata"].get("deletionTimestamp") and not finished(current):
        return Plan(requeue=1.0)  # wait: two sidecars must never share the journal
    plan = _with_pod(o, attempt, current, status, settings)
    if left is not None and not finished(current):  # an edited deadline wakes us in time
        plan.requeue = left if plan.requeue is None else min(plan.requeue, left)
    return plan


def _first_attempt(o: Observed) -> Plan:
    return Plan(status={"phase": "Running", "attempt": 1, "startTime": iso(o.now),
                        "failures": 0, "evictions": 0}, create_pod=1,
                conditions=[want("Ready", False, "PodStarting", "starting attempt 1"),
                            want("Progressing", True, "Started", "starting attempt 1"),
                            want("BudgetExceeded", False, "WithinHardLimit",
                                 "the hard limit has not been reached")],
                events=[("Normal", "Started", "starting attempt 1")])


def _without_pod(o: Observed, attempt: int, status: Body) -> Plan:
    expected = object_names(o.task, attempt)["pod"]
    if status.get("podName") == expected:  # we created it, and it is gone
        plan = _next_attempt(o, attempt, eviction=True, failure=False,
                             why=f"pod {expected} disappeared (deleted or evicted)")
        held = money(status.get("reservedUSD"))
        if held:  # gone unread (its finalizer removed by someone): charge the hold
            charged = money(status.get("spentUSD")) + held
            plan.status.update(spentUSD=f"{charged:f}", reservedUSD="0")
            plan.events.append(("Warning", "FiguresCharged", f"pod {expected} vanished "
                                f"unread: charged its {held:f} USD of holds in flight"))
        return plan
    not_before = parse_time(status.get("nextAttemptAt"))
    if not_before is not None and o.now < not_before:
        return Plan(requeue=(not_before - o.now).total_seconds())
    return Plan(create_pod=attempt, status={"phase": "Running"})


def _with_pod(o: Observed, attempt: int, pod: Body, status: Body,
              settings: OperatorSettings) -> Plan:
    name = pod["metadata"]["name"]
    phase = (pod.get("status") or {}).get("phase")
    base: dict[str, Any] = {} if status.get("podName") == name else {"podName": name}
    if phase in (None, "Pending", "Running"):
        return _live_pod(o, attempt, pod, base, settings)
    summary = sidecar_summary(pod)
    if summary.get("phase") == "BudgetExceeded":
        return _finish("BudgetExceeded", f"hard limit reached: spent {summary.get('spentUSD')} "
                       f"of {summary.get('hardLimitUSD')} USD", o.now, summary, "HardLimit")
    # Before Succeeded: an agent stopped by SIGTERM may exit 0 without having finished; a
    # pod kept readable by its finalizer shows that exit (the pod gone, it was an eviction).
    if disrupted(pod) or pod["metadata"].get("deletionTimestamp"):
        return _next_attempt(o, attempt, eviction=True, failure=False,
                             why=f"pod {name} was disrupted or deleted")
    if phase == "Succeeded":
        return _finish("Succeeded", "the agent finished", o.now, summary, "Succeeded")
    if (pod.get("status") or {}).get("reason") == "DeadlineExceeded":
        return _finish("Failed", "activeDeadlineSeconds passed", o.now, summary,
                       "DeadlineExceeded")
    code, reason, finished = _agent_exit(pod)
    plan = _next_attempt(o, attempt, eviction=False, failure=True,
                         why=f"attempt {attempt}: the agent exited with code {code}"
                         + (f" ({reason})" if reason and reason != "Error" else ""))
    if plan.status.get("attempt"):
        failures = int(plan.status["failures"])
        delay = min(settings.backoff_base_seconds * 2 ** (failures - 1),
                    settings.backoff_max_seconds)
        plan.status["nextAttemptAt"] = iso((finished or o.now) + timedelta(seconds=delay))
    return plan


def _live_pod(o: Observed, attempt: int, pod: Body, base: Body,
              settings: OperatorSettings) -> Plan:
    """A pod not finished: Ready when it is; the cause and a deadline when it cannot start."""
    name = pod["metadata"]["name"]
    status = {**base, "phase": "Running"}
    progressing = want("Progressing", True, "AttemptRunning", f"attempt {attempt}: pod {name}")
    blocker = start_blocker(pod, o.pod_warnings)
    if blocker is None:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        cond = (want("Ready", True, "PodReady", f"pod {name} is running, its harness ready")
                if ready else want("Ready", False, "PodStarting", f"pod {name} is starting"))
        return Plan(status=status, conditions=[cond, progressing],
                    requeue=look_again(pod, o.now, settings.status_poll_seconds))
    reason, message = blocker
    timeout = settings.start_timeout_seconds
    created = parse_time(pod["metadata"].get("creationTimestamp")) or o.now
    left = (created + timedelta(seconds=timeout) - o.now).total_seconds()
    if left <= 0:
        plan = _finish("Failed", f"pod {name} could not start within {timeout:g} s "
                       f"(TETHER_OPERATOR_START_TIMEOUT_SECONDS): {message}", o.now, {}, reason)
        plan.delete_pods = [name]
        return plan
    old = find((o.task.get("status") or {}).get("conditions"), "Ready") or {}
    events = [] if old.get("reason") == reason else [
        ("Warning", reason, f"pod {name} cannot start: {message}; the task fails if it still "
         f"cannot in {left:.0f} s")]
    return Plan(status=status, conditions=[want("Ready", False, reason, message), progressing],
                events=events, requeue=left)
