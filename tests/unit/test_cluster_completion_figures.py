"""The cluster completion table's pure part (tests/bench/completion_cluster_figures.py): the
seeded eviction plan, and the figures made of what the cluster showed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.bench._completion_tasks import make_tasks
from tests.bench.completion_cluster_figures import (
    Finished,
    answer_of,
    bill_usd,
    eviction_plan,
    summarise,
)

SEED = 20261201


def test_eviction_plan_is_seeded_and_leaves_steps_to_run() -> None:
    tasks = make_tasks(40, SEED)
    steps = {t.id: t.steps for t in tasks}
    plan = eviction_plan(list(steps), steps, SEED, 0.25)
    assert plan == eviction_plan(list(steps), steps, SEED, 0.25)
    assert plan != eviction_plan(list(steps), steps, SEED + 1, 0.25)
    assert len(plan) == 10
    assert all(2 <= at <= steps[i] - 5 for i, at in plan.items())


def _status(attempt: int, spent: Decimal, evictions: int = 0) -> dict[str, Any]:
    return {"phase": "Succeeded", "attempt": attempt, "evictions": evictions,
            "spentUSD": f"{spent}"}


def test_figures_count_outcomes_resumes_and_spend_mismatches() -> None:
    a, b, c = make_tasks(3, SEED)
    bill = {"input_tokens": 10_000, "output_tokens": 500}
    usd = bill_usd(bill)
    finished = {
        a.id: Finished(a.id, "Succeeded", _status(2, usd, 1), a.expected, evicted=True),
        b.id: Finished(b.id, "Succeeded", _status(1, usd + Decimal("0.01")), "DONE: wrong",
                       evicted=False),
        c.id: Finished(c.id, "Failed", {**_status(1, usd), "phase": "Failed"}, None,
                       evicted=True),  # evicted, but never resumed: attempt 1
    }
    got = summarise([a, b, c], finished, {b.id}, {t.id: bill for t in (a, b, c)}, 12.0)["tether"]
    assert (got["tasks"], got["completed"], got["silentWrong"], got["explicitFailures"]) == \
        (3, 1, 1, 1)
    assert (got["evicted"], got["resumed"], got["evictionsMissed"]) == (2, 1, 1)
    assert [m["task"] for m in got["spendMismatches"]] == [b.id]
    assert got["usdPerCompleted"] == round(float(3 * usd), 6)
    assert {n["task"]: n["outcome"] for n in got["notCompleted"]} == {
        b.id: "silent_wrong", c.id: "explicit_failure"}


def test_the_answer_is_found_wherever_the_kubelet_put_its_line() -> None:
    # stdout and stderr reach the log apart: the answer can come before the last step line.
    answer = "DONE s20261203-t00078: 27 records, total 146054"
    assert answer_of(f"step 1 done\n{answer}\nstep 2 done\n") == answer
    assert answer_of(f"step 1 done\ncontinuing from context boundary 3 (5 messages)\n"
                     f"step 2 done\n{answer}\n") == answer
    assert answer_of("step 1 done\nstep 2 done\n") is None
