"""The completion table on the real node, its pure part: which tasks are evicted when, what
the cluster showed of each ended task, and the figures and table made of it
(``completion_cluster.py`` runs the tasks; nothing here talks to the cluster).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.bench._completion_tasks import BenchTask, grade, price_usd

__all__ = ["SPEND_TOLERANCE", "Finished", "answer_of", "bill_usd", "eviction_plan", "summarise",
           "table"]


@dataclass(frozen=True)
class Finished:
    """What the cluster showed of one ended task."""

    id: str
    phase: str
    status: dict[str, Any]
    answer: str | None  # the agent's printed answer, None when it printed none
    evicted: bool  # the planned eviction was sent
    log_tail: str = ""  # the agent's log's end when no answer was found in it


# What the reference agent writes to stderr on its way to an answer; all it prints to stdout is
# the answer. The kubelet's log holds both streams, copied apart, so their lines can arrive in
# either order: the answer is told by what it is not, never by where it stands.
_PROGRESS = re.compile(r"^(step \d+ done|continuing from context boundary .*)$")


def answer_of(log: str) -> str | None:
    """The agent's answer in its container log: every line but its progress lines."""
    text = "\n".join(line for line in log.splitlines() if not _PROGRESS.match(line)).strip()
    return text or None


def eviction_plan(ids: list[str], steps: dict[str, int], seed: int, fraction: float
                  ) -> dict[str, int]:
    """Task id -> the checkpointed step after which its pod is evicted: a seeded
    ``fraction`` of the tasks, each at a seeded step that leaves at least 5 steps to run."""
    rng = random.Random(f"{seed}/evictions")
    chosen = rng.sample(ids, round(len(ids) * fraction))
    return {i: rng.randint(2, max(2, steps[i] - 5)) for i in sorted(chosen)}



def bill_usd(bill: dict[str, Any]) -> Decimal:
    """What the model double billed one task, at the price the sidecar uses (genai-prices)."""
    return Decimal(str(price_usd(int(bill["input_tokens"]), int(bill["output_tokens"]))))



SPEND_TOLERANCE = Decimal("0.000001")  # a micro-dollar: float rounding of the bill, no more


def summarise(tasks: list[BenchTask], finished: dict[str, Finished], missed: set[str],
              bills: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The tether arm's figures in the local bench's shape, plus the cluster's own: evictions
    sent, tasks resumed on a later attempt, and every task whose spend differs from its bill."""
    kinds: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    total, resumed, mismatches, notable = Decimal(0), 0, [], []
    for task in tasks:
        done = finished[task.id]
        billed = bill_usd(bills.get(task.id) or {"input_tokens": 0, "output_tokens": 0})
        outcome = grade(task, done.phase, done.answer, float(billed))
        kinds[outcome.kind] += 1
        phases[done.phase] += 1
        total += billed
        st = done.status
        if done.evicted and int(st.get("attempt") or 1) >= 2 and st.get("evictions"):
            resumed += 1
        spent = Decimal(str(st.get("spentUSD") or 0))
        if abs(spent - billed) > SPEND_TOLERANCE:
            mismatches.append({"task": task.id, "spentUSD": f"{spent}", "billedUSD": f"{billed}",
                               "evicted": done.evicted, "phase": done.phase})
        if outcome.kind != "completed":
            notable.append({"task": task.id, "outcome": outcome.kind, "phase": done.phase,
                            "possible": task.possible, "evicted": done.evicted,
                            "answer": (done.answer or "")[:120], "log": done.log_tail,
                            "message": str(st.get("message") or "")[:200]})
    completed = kinds["completed"]
    return {"tether": {
        "tasks": len(tasks), "completed": completed, "silentWrong": kinds["silent_wrong"],
        "explicitFailures": kinds["explicit_failure"],
        "usdPerCompleted": round(float(total / completed), 6) if completed else None,
        "usd": round(float(total), 6), "seconds": round(seconds, 1),
        "impossible": sum(not t.possible for t in tasks),
        "evicted": sum(f.evicted for f in finished.values()), "resumed": resumed,
        "evictionsMissed": len(missed), "phases": dict(phases),
        "spendMismatches": mismatches, "notCompleted": notable}}


def table(figures: dict[str, Any]) -> str:
    t = figures["tether"]
    rate = f"{100 * t['completed'] / t['tasks']:.1f} %" if t["tasks"] else "-"
    rows = [("tasks", t["tasks"]), ("completed", f"{t['completed']} ({rate})"),
            ("silent wrong", t["silentWrong"]), ("explicit failures", t["explicitFailures"]),
            ("impossible (persistent fault)", t["impossible"]),
            ("USD per completed", t["usdPerCompleted"]), ("evicted", t["evicted"]),
            ("resumed after eviction", t["resumed"]),
            ("evictions missed (ended first)", t["evictionsMissed"]),
            ("spend != bill", len(t["spendMismatches"])), ("seconds", t["seconds"])]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'tether on the node'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    lines += [f"not completed: {n}" for n in t["notCompleted"]]
    lines += [f"spend mismatch: {m}" for m in t["spendMismatches"]]
    return "\n".join(lines)
