"""The completion benchmark's fault schedule and task list (tests/bench/completion_mix.yaml):
deterministic, transient faults pass on the next attempt, persistent ones do not, and the
rates drawn are the rates written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.bench._completion_tasks import make_tasks, mix
from tether_examples.bench_faults import fault_for, load_mix, parse_key, record_value


def test_the_schedule_is_a_function_of_seed_task_step_attempt() -> None:
    fm = mix()
    first = [fault_for(fm, 7, t, s, 0) for t in range(50) for s in range(40)]
    again = [fault_for(fm, 7, t, s, 0) for t in range(50) for s in range(40)]
    other_seed = [fault_for(fm, 8, t, s, 0) for t in range(50) for s in range(40)]
    assert first == again
    assert first != other_seed


def test_a_transient_fault_passes_on_the_next_attempt_a_persistent_one_stays() -> None:
    fm = mix()
    seen = {"transient": 0, "persistent": 0}
    for task in range(400):
        for step in range(40):
            fault = fault_for(fm, 1, task, step, 0)
            if fault is None:
                assert fault_for(fm, 1, task, step, 1) is None
                continue
            later = [fault_for(fm, 1, task, step, a) for a in (1, 2, 5)]
            if fault.persistent:
                seen["persistent"] += 1
                assert later == [fault] * 3
            else:
                seen["transient"] += 1
                assert later == [None] * 3
    assert seen["transient"] > 0 and seen["persistent"] > 0


def test_the_drawn_rates_are_the_rates_written() -> None:
    fm = mix()
    n = 200_000
    drawn = Counter(f.kind for i in range(n) if (f := fault_for(fm, 3, i, 0, 0)) is not None)
    for fault in fm.tool:
        expected = fault.rate * n
        assert abs(drawn[fault.kind] - expected) < 5 * expected**0.5 + 5, fault.kind


def test_the_mix_names_every_fault_kind_of_the_issue() -> None:
    kinds = {f.kind for f in mix().tool}
    assert kinds == {"http_5xx", "rate_limit", "timeout", "connection_reset", "empty_body",
                     "malformed_body", "missing_field", "schema_drift", "unauthorized"}
    assert {f.kind for f in mix().model} == {"rate_limit", "http_5xx"}


def test_a_mix_whose_rates_exceed_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "mix.yaml"
    bad.write_text("tool:\n  a: {rate: 0.7}\n  b: {rate: 0.4}\ntoolTimeoutSeconds: 1\n"
                   "tasks: {}\n")
    with pytest.raises(ValueError, match="more than 1"):
        load_mix(bad)


def test_tasks_are_seeded_long_ones_read_pages_and_expected_is_the_records_total() -> None:
    tasks = make_tasks(200, 20261201)
    assert tasks == make_tasks(200, 20261201)
    assert tasks != make_tasks(200, 20261202)
    assert all(20 <= t.steps <= 40 and len(t.keys) == t.steps for t in tasks)
    long = [t for t in tasks if t.long]
    assert 20 < len(long) < 80  # longFraction 0.25
    for t in long:
        assert {parse_key(k).kind for k in t.keys[1::2]} == {"page"}  # type: ignore[union-attr]
    t = tasks[0]
    records = [k for k in t.keys if "-r" in k]
    assert t.expected == (f"DONE {t.id}: {len(records)} records, total "
                          f"{sum(record_value(k) for k in records)}")
    assert t.possible == all(not p for _, _, p in t.faults)
