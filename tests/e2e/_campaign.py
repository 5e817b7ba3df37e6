"""The spend conservation campaign's pure part (issue #9): the seeded plan of tasks, budgets and
events, the scripted model's bill attributed to tasks, and the four invariants as a table.

Nothing here talks to the cluster; ``test_spend_campaign.py`` runs the plan and hands what it
saw to ``check``. Money is Decimal throughout, and every price is a whole number of USD per
million tokens, so each call costs a whole number of micro-dollars and the task status (six
decimals) can match the bill exactly.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["EVENT_KINDS", "Event", "Observed", "Plan", "TaskPlan", "bill", "check",
           "make_plan", "script", "table"]

STEPS = 8  # model turns of the script: 7 tool-calling steps, then the answer
MAX_TOKENS = 512  # what the reference agent asks for on every call
MILLION = Decimal(1_000_000)
TEAMS = ("a", "b", "c")
EVENT_KINDS = ("agent-exit", "sidecar-kill", "evict", "hard-edit", "soft-edit", "delete",
               "budget-edit")
_TAG = re.compile(r"Campaign task (c\d+)\.")


@dataclass(frozen=True)
class Event:
    kind: str  # one of EVENT_KINDS but agent-exit and budget-edit (those are planned apart)
    at_step: int  # applied once the task's status shows this step, while its pod runs
    factor: Decimal = Decimal(1)  # hard-edit: new hard = old * factor; soft-edit: of hard


@dataclass(frozen=True)
class TaskPlan:
    name: str
    team: str | None  # the AgentBudget selecting it (label team=<team>), or none
    checkpoint: bool
    price_in: Decimal  # USD per million tokens
    price_out: Decimal
    hard: Decimal
    exit_at: int  # the agent exits 1 after this step (0: never), every attempt that reaches it
    events: tuple[Event, ...]

    @property
    def instructions(self) -> str:
        return f"Campaign task {self.name}. Write the records."  # the bill's attribution key

    def cost(self, usage: dict[str, int]) -> Decimal:
        return (usage["input_tokens"] * self.price_in
                + usage["output_tokens"] * self.price_out) / MILLION


@dataclass(frozen=True)
class Plan:
    seed: int
    turns: tuple[tuple[int, int], ...]  # (input, output) tokens the model bills per turn
    tasks: tuple[TaskPlan, ...]
    budgets: dict[str, Decimal]  # team -> limitUSD
    budget_edits: tuple[tuple[int, str, Decimal], ...]  # (after n tasks created, team, factor)


def make_plan(seed: int, count: int) -> Plan:
    rng = random.Random(seed)
    turns = tuple((rng.randint(300, 900), rng.randint(20, 80)) for _ in range(STEPS))
    tasks = tuple(_task(rng, i, turns) for i in range(count))
    budgets = {t: sum((p.hard for p in tasks if p.team == t), Decimal("0.05")) * Decimal("1.2")
               for t in TEAMS}
    edits = tuple((count * k // 4, rng.choice(TEAMS), Decimal(rng.choice(["0.8", "1.1", "1.5"])))
                  for k in (1, 2, 3))
    return Plan(seed, turns, tasks, {t: v.quantize(Decimal("0.0001")) for t, v in budgets.items()},
                edits)


def _task(rng: random.Random, i: int, turns: tuple[tuple[int, int], ...]) -> TaskPlan:
    price_in, price_out = Decimal(rng.choice([1, 2, 4])), Decimal(rng.choice([4, 8, 16]))
    full = sum((i_ * price_in + o * price_out for i_, o in turns), Decimal(0)) / MILLION
    # Some envelopes are far too small for the whole run, some just short, most ample.
    hard = (full * Decimal(rng.choice(["0.4", "0.7", "1.0", "1.5", "2.0", "2.5"])))
    hard = hard.quantize(Decimal("0.0001"))
    reach = max(1, _reach(turns, price_in, price_out, hard) - 1)  # events come before the end
    events: list[Event] = []
    for kind, p in (("sidecar-kill", 0.3), ("evict", 0.2), ("hard-edit", 0.2),
                    ("soft-edit", 0.15), ("delete", 0.12)):
        if rng.random() < p:
            factor = {"hard-edit": rng.choice(["0.5", "0.8", "1.5"]), "soft-edit": "0.5"}
            events.append(Event(kind, rng.randint(1, reach), Decimal(factor.get(kind, "1"))))
    events.sort(key=lambda e: (e.kind == "delete", e.at_step))  # a deletion comes last
    return TaskPlan(name=f"c{i:02d}", team=rng.choice([*TEAMS, None]),
                    checkpoint=rng.random() >= 0.35, price_in=price_in, price_out=price_out,
                    hard=hard, exit_at=rng.randint(1, min(4, reach)) if rng.random() < 0.2 else 0,
                    events=tuple(events))


def _reach(turns: tuple[tuple[int, int], ...], price_in: Decimal, price_out: Decimal,
           hard: Decimal) -> int:
    """Steps an uninterrupted run gets through before a call's worst case no longer fits
    (roughly: the sidecar's hold counts the prompt as it estimates it)."""
    spent, steps = Decimal(0), 0
    for inp, outp in turns:
        if spent + (inp * price_in + MAX_TOKENS * price_out) / MILLION > hard:
            break
        spent += (inp * price_in + outp * price_out) / MILLION
        steps += 1
    return steps


def script(plan: Plan) -> dict[str, Any]:
    """The scripted model's script: the reference agent's steps, with the plan's usage."""
    out: list[dict[str, Any]] = []
    for i, (inp, outp) in enumerate(plan.turns[:-1]):
        out.append({"content": f"step {i}", "delay": 0.6,
                    "tool_calls": [{"id": f"call_{i}", "name": "search", "arguments": {"i": i}}],
                    "usage": {"input_tokens": inp, "output_tokens": outp}})
    inp, outp = plan.turns[-1]
    out.append({"content": f"FINAL after {STEPS} steps",
                "usage": {"input_tokens": inp, "output_tokens": outp}})
    return {"model": "gpt-4o", "turns": out}


@dataclass
class Bill:
    usd: dict[str, Decimal] = field(default_factory=dict)  # task name -> billed
    costliest: dict[str, Decimal] = field(default_factory=dict)  # task name -> one call's most
    unattributed: int = 0  # answered requests naming no campaign task (must stay 0)


def bill(plan: Plan, requests: list[dict[str, Any]]) -> Bill:
    """What the model billed each task: its request log's usage x the task's pricing."""
    by_name = {p.name: p for p in plan.tasks}
    out = Bill()
    for r in requests:
        if r.get("usage") is None:
            continue  # an error answer bills nothing
        found = _TAG.search(str((r.get("body") or {}).get("messages")))
        task = by_name.get(found.group(1)) if found else None
        if task is None:
            out.unattributed += 1
            continue
        cost = task.cost(r["usage"])
        out.usd[task.name] = out.usd.get(task.name, Decimal(0)) + cost
        out.costliest[task.name] = max(out.costliest.get(task.name, Decimal(0)), cost)
    return out


@dataclass
class Observed:
    """What the run saw: every task's status over time (from a watch), the final figures."""

    spent_series: dict[str, list[Decimal]] = field(default_factory=dict)
    reserved_max: dict[str, Decimal] = field(default_factory=dict)  # status.reservedUSD, if any
    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # last status, deleted too
    lowered_at: dict[str, Decimal] = field(default_factory=dict)  # spend when lowered/enforced
    hard_final: dict[str, Decimal] = field(default_factory=dict)  # the spec's last hard limit
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # team -> final status
    deleted: set[str] = field(default_factory=set)
    edited: dict[str, tuple[float, Decimal]] = field(default_factory=dict)  # (when, new hard)
    enforced_after: dict[str, float] = field(default_factory=dict)  # seconds to hardLimitUSD
    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # the task ended before the event


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def check(plan: Plan, seen: Observed, billed: Bill) -> tuple[list[tuple[str, str]], list[str]]:
    """The invariant table's rows and every violation, each naming the task and the figures."""
    bad: list[str] = []
    overs = {p.name: _task_violations(p, seen, billed, bad) for p in plan.tasks}
    worst = max(overs, key=lambda n: overs[n], default=None)
    total_bill = sum(billed.usd.values(), Decimal(0))
    total_status = sum((_money(s.get("spentUSD")) for s in seen.final.values()), Decimal(0))
    if total_status < total_bill:
        bad.append(f"2: all tasks' statuses show {total_status}, the model billed {total_bill}")
    if billed.unattributed:
        bad.append(f"2: {billed.unattributed} billed requests name no campaign task")
    total_budgets, holds_left = _budget_violations(plan, seen, billed, bad)
    bad += _coverage(seen, total_bill)
    applied = ", ".join(f"{k} {seen.applied[k]}" for k in EVENT_KINDS if seen.applied[k])
    phases = Counter("deleted" if n in seen.deleted else str(s.get("phase"))
                     for n, s in seen.final.items())
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(seen.skipped.items()))
    rows = [("seed", str(plan.seed)), ("tasks", str(len(plan.tasks))),
            ("checkpoint.enabled false", str(sum(not p.checkpoint for p in plan.tasks))),
            ("phases at the end", ", ".join(f"{k} {n}" for k, n in sorted(phases.items()))),
            ("events applied", applied or "none"), ("events not reached", skipped or "none"),
            ("model bill (USD)", f"{total_bill}"), ("sum of task status (USD)", f"{total_status}"),
            ("sum of budgets' spentUSD (USD)", f"{total_budgets}"),
            ("budgeted tasks' bill (USD)", f"{_budgeted_bill(plan, billed)}"),
            ("max overshoot over hard limit (USD)", "0" if worst is None or overs[worst] <= 0
             else f"{overs[worst]} ({worst}; one call {billed.costliest.get(worst)})"),
            ("holds in flight taken from", "status.reservedUSD (most seen) and the costliest "
             "billed call" if seen.reserved_max else "the costliest call billed to the task"),
            ("budget holds left", str(holds_left)),
            ("hard-limit edits enforced while running", _lag(seen)),
            ("violations", str(len(bad)))]
    return rows, bad


def _task_violations(p: TaskPlan, seen: Observed, billed: Bill, bad: list[str]) -> Decimal:
    """Invariants 1-3 for one task, appended to ``bad``; returns its overshoot."""
    st = seen.final.get(p.name, {})
    spent, got = _money(st.get("spentUSD")), billed.usd.get(p.name, Decimal(0))
    # 1. Over the hard limit in force by more than the holds in flight: status.reservedUSD when
    # the status shows it, else one call's worst case, the costliest call the model billed the
    # task (the agent makes one at a time). A lowered limit is in force once the sidecar reports
    # enforcing it (status.hardLimitUSD; the lag is the table's "enforced" row): until then the
    # old one is, so the floor is the spend when it was lowered or when it took effect.
    limit = max(seen.hard_final.get(p.name, p.hard), seen.lowered_at.get(p.name, Decimal(0)))
    holds = max(seen.reserved_max.get(p.name, Decimal(0)),
                billed.costliest.get(p.name, Decimal(0)))
    over = spent - limit
    if over > holds:
        bad.append(f"1: {p.name} spent {spent} over its hard limit {limit} by {over}, more "
                   f"than the holds in flight ({holds})")
    if spent < got:  # 2. per task: the status holds every billed dollar
        bad.append(f"2: {p.name} status shows {spent}, the model billed it {got} "
                   f"(checkpoint {p.checkpoint}, phase {st.get('phase')})")
    drops = [(a, b) for a, b in itertools.pairwise(seen.spent_series.get(p.name, [])) if b < a]
    if drops:  # 3. status spend never decreases
        bad.append(f"3: {p.name} status spend went down: {drops[:3]}")
    return over


def _budget_violations(plan: Plan, seen: Observed, billed: Bill, bad: list[str]
                       ) -> tuple[Decimal, int]:
    """Invariant 2 for budgets and 4, appended to ``bad``; returns (Σ spentUSD, holds left)."""
    total, holds_left = Decimal(0), 0
    for team in plan.budgets:
        bst = seen.budgets.get(team, {})
        team_bill = sum((billed.usd.get(p.name, Decimal(0)) for p in plan.tasks
                         if p.team == team), Decimal(0))
        total += _money(bst.get("spentUSD"))
        if _money(bst.get("spentUSD")) < team_bill:
            bad.append(f"2: budget {team} spent {bst.get('spentUSD')}, the model billed its "
                       f"tasks {team_bill}")
        left = bst.get("reservations") or []
        holds_left += len(left)
        if left or _money(bst.get("reservedUSD")) != 0:  # 4. no hold left behind
            bad.append(f"4: budget {team} still holds {bst.get('reservedUSD')} for "
                       f"{[h.get('task') for h in left]} after every task ended")
    return total, holds_left


def _coverage(seen: Observed, total_bill: Decimal) -> list[str]:
    """A campaign that billed nothing or skipped a kind of event has shown nothing about it."""
    bad = [f"0: no {kind} event was applied (every task ended first; see the phases)"
           for kind in EVENT_KINDS if not seen.applied[kind]]
    if total_bill == 0:
        bad.append("0: the model billed nothing: no task made a model call")
    return bad


def _lag(seen: Observed) -> str:
    """How many hard-limit edits status.hardLimitUSD showed enforced while the task still ran
    (after it ends the operator shows the spec's), and the slowest (a record, never asserted)."""
    if not seen.edited:
        return "none edited"
    slowest = max(seen.enforced_after.values(), default=0.0)
    return (f"{len(seen.enforced_after)} of {len(seen.edited)}"
            + (f", slowest after {slowest:.1f} s" if seen.enforced_after else ""))


def _budgeted_bill(plan: Plan, billed: Bill) -> Decimal:
    return sum((billed.usd.get(p.name, Decimal(0)) for p in plan.tasks if p.team), Decimal(0))


def table(rows: list[tuple[str, str]]) -> str:
    """The rows as a Markdown table, as docs/benchmarks.md shows them."""
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'check'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)
