"""The spend campaign's checker without a cluster: a clean run passes, and each of the four
invariants, fed the figures of the bug it is there for, names the task and the figures.
(The campaign itself is test_spend_campaign.py, on the real node.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import _campaign
from ._campaign import Observed, Plan

D = Decimal


def _plan() -> Plan:
    return _campaign.make_plan(7, 4)


def _request(task: str, inp: int, out: int) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": f"Campaign task {task}. Write the records."}]}
    return {"body": body, "usage": {"input_tokens": inp, "output_tokens": out}}


def _clean(plan: Plan) -> tuple[Observed, _campaign.Bill]:
    """Every task billed one call and showing exactly that; budgets settled."""
    billed = _campaign.bill(plan, [_request(p.name, 1000, 10) for p in plan.tasks])
    seen = Observed()
    for p in plan.tasks:
        spent = billed.usd[p.name]
        seen.final[p.name] = {"phase": "Succeeded", "spentUSD": f"{spent}"}
        seen.spent_series[p.name] = [D(0), spent]
    for team in plan.budgets:
        owed = sum((billed.usd[p.name] for p in plan.tasks if p.team == team), D(0))
        seen.budgets[team] = {"spentUSD": f"{owed}", "reservedUSD": "0", "reservations": []}
    for kind in _campaign.EVENT_KINDS:
        seen.applied[kind] += 1
    return seen, billed


def _violations(seen: Observed, billed: _campaign.Bill, plan: Plan) -> list[str]:
    return _campaign.check(plan, seen, billed)[1]


def test_a_clean_run_has_no_violation_and_a_full_table() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    rows, bad = _campaign.check(plan, seen, billed)
    assert bad == []
    assert dict(rows)["tasks"] == "4" and dict(rows)["budget holds left"] == "0"
    assert _campaign.table(rows).startswith("| check")


def test_a_billed_call_attributed_to_its_task_by_the_instructions() -> None:
    plan = _plan()
    p = plan.tasks[0]
    billed = _campaign.bill(plan, [_request(p.name, 1000, 10), {"body": None, "usage": None}])
    assert billed.usd == {p.name: (1000 * p.price_in + 10 * p.price_out) / 1_000_000}
    assert billed.unattributed == 0


def test_1_spend_past_the_hard_limit_beyond_one_call() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    p = plan.tasks[1]
    seen.final[p.name]["spentUSD"] = f"{p.hard * 3 + D(1)}"  # a fresh envelope per attempt
    assert any(v.startswith(f"1: {p.name} spent") for v in _violations(seen, billed, plan))


def test_2_spend_the_status_lost() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    p = plan.tasks[2]
    seen.final[p.name]["spentUSD"] = "0"  # an attempt without a checkpoint volume restarted at $0
    bad = _violations(seen, billed, plan)
    assert any(v.startswith(f"2: {p.name} status shows 0") for v in bad)
    assert any(v.startswith("2: all tasks' statuses") for v in bad)


def test_2_spend_the_budget_never_counted() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    team = next(p.team for p in plan.tasks if p.team)
    seen.budgets[team]["spentUSD"] = "0"  # a deleted task's tail never reached the budget
    assert any(v.startswith(f"2: budget {team} spent 0") for v in _violations(seen, billed, plan))


def test_3_status_spend_going_down() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    p = plan.tasks[0]
    seen.spent_series[p.name] = [D("0.01"), D(0), billed.usd[p.name]]
    assert any(v.startswith(f"3: {p.name}") for v in _violations(seen, billed, plan))


def test_4_a_hold_left_behind() -> None:
    plan = _plan()
    seen, billed = _clean(plan)
    team = next(iter(plan.budgets))
    seen.budgets[team].update(reservedUSD="0.5", reservations=[{"task": "c00", "uid": "u"}])
    assert any(v.startswith(f"4: budget {team} still holds") for v in _violations(seen, billed,
                                                                                 plan))


def test_a_run_that_billed_nothing_or_skipped_an_event_kind_proves_nothing() -> None:
    plan = _plan()
    seen, _ = _clean(plan)
    del seen.applied["evict"]
    bad = _violations(seen, _campaign.bill(plan, []), plan)
    assert "0: no evict event was applied (every task ended first; see the phases)" in bad
    assert "0: the model billed nothing: no task made a model call" in bad
