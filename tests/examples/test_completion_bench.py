"""A seeded slice of the completion benchmark (tests/bench/completion.py) through all three
arms, with the real doubles, the official openai SDK and ``tether run``: 12 tasks covering a
long one and every tool fault kind of the mix on a record the answer needs.

What must hold: every arm accounts for every task; under tether no answer is silently wrong
and every task a persistent fault does not make impossible is completed; in the direct arm
every injected fault on a record, and every long task, IS a silent wrong answer, which is what
the harness prevents; the CLI's last line is the JSON the issue specifies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.bench import completion
from tests.bench._completion_report import ARMS, Graded, summarise
from tests.bench._completion_tasks import BenchTask, make_tasks, mix

SEED = 20261130


def _slice() -> list[BenchTask]:
    """12 tasks: a long one, then for each tool fault kind the first task with it on a record
    step, then tasks without faults."""
    pool = make_tasks(1500, SEED)
    picked = [next(t for t in pool if t.long)]
    for kind in (f.kind for f in mix().tool):
        if not any(_record_faults(t, kind) for t in picked):
            picked.append(next(t for t in pool if _record_faults(t, kind) and not t.long))
    clean = (t for t in pool if not t.faults and not t.long and t not in picked)
    return picked + [next(clean) for _ in range(12 - len(picked))]


def _record_faults(task: BenchTask, kind: str | None = None) -> list[str]:
    return [k for step, k, _ in task.faults
            if "-r" in task.keys[step] and (kind is None or k == kind)]


@pytest.fixture(scope="module")
def doubles() -> Iterator[completion.Doubles]:
    with ExitStack() as stack:
        yield completion.Doubles(stack)


@pytest.fixture(scope="module")
def graded(doubles: completion.Doubles,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Graded]]:
    tasks, work = _slice(), tmp_path_factory.mktemp("completion")
    return {arm: completion.play_arm(arm, tasks, doubles, 2, work)[0] for arm in ARMS}


def test_the_slice_covers_a_long_task_and_every_fault_kind() -> None:
    tasks = _slice()
    assert len(tasks) == 12 and any(t.long for t in tasks)
    assert {k for t in tasks for k in _record_faults(t)} == {f.kind for f in mix().tool}


def test_every_arm_accounts_for_every_task(graded: dict[str, list[Graded]]) -> None:
    for arm, results in graded.items():
        s = summarise(results, 1.0, {})
        assert s["completed"] + s["silentWrong"] + s["explicitFailures"] == s["tasks"] == 12, arm


def test_tether_is_never_silently_wrong_and_completes_every_possible_task(
        graded: dict[str, list[Graded]]) -> None:
    for g in graded["tether"]:
        expected = "completed" if g.task.possible else "explicit_failure"
        assert g.outcome.kind == expected, (g.task.id, g.task.faults, g.answer)
        assert g.outcome.usd > 0


def test_the_direct_arm_turns_each_fault_on_a_record_into_a_silent_wrong_answer(
        graded: dict[str, list[Graded]]) -> None:
    for g in graded["direct"]:
        met = bool(_record_faults(g.task)) or g.task.long
        assert g.outcome.kind == ("silent_wrong" if met else "completed"), (
            g.task.id, g.task.faults, g.answer)


def test_verification_fails_explicitly_where_it_cannot_complete(
        graded: dict[str, list[Graded]]) -> None:
    for g in graded["verification"]:
        assert g.outcome.kind != "silent_wrong", (g.task.id, g.answer)
        if g.task.long or not g.task.possible:
            assert g.outcome.kind == "explicit_failure", (g.task.id, g.answer)


def test_the_cli_prints_the_table_then_the_json_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "completion.png"
    assert completion.main(["--tasks", "2", "--seed", str(SEED), "--plot", str(plot)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == set(ARMS)
    for arm in ARMS:
        assert {"tasks", "completed", "silentWrong", "explicitFailures",
                "usdPerCompleted"} <= set(last[arm])
        assert last[arm]["tasks"] == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
