"""``tether trace DIR`` renders the task, the orphans of a killed attempt and each attempt's own
cost from the span file the sidecar writes (tracing.py, task_span.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether_cli.trace import render

S = 1_000_000_000


def span(name: str, attempt: int, start: int, end: int, **attributes: Any) -> dict[str, Any]:
    return {"traceId": "ab" * 16, "spanId": f"{hash(name) & 0xffff:016x}", "parentId": None,
            "name": name, "start": start * S, "end": end * S, "status": "UNSET",
            "attempt": attempt, "attributes": attributes, "events": []}


def write(tmp_path: Path, spans: list[dict[str, Any]]) -> Path:
    (tmp_path / "spans.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))
    return tmp_path


def test_the_task_orphans_and_attempt_costs_are_shown(tmp_path: Path) -> None:
    out = render(write(tmp_path, [
        span("chat gpt-4o", 2, 10, 10, **{"gen_ai.operation.name": "chat",
             "tether.orphan.call_id": "1.2", "tether.outcome": "orphan",
             "tether.cost_usd": 0.1}),
        span("attempt 2", 2, 10, 20, **{"tether.cost_usd": 0.1, "tether.spent_usd": 0.15}),
        span("task t1", 2, 0, 20, **{"tether.task.phase": "Succeeded", "tether.attempts": 2,
                                     "tether.spent_usd": 0.15}),
    ]))
    assert "call 1.2 was in flight when its attempt was killed; charged $0.100000 by attempt 2" \
        in out
    assert "attempt 2: 10.0s, $0.100000" in out
    assert "task t1: Succeeded after 2 attempt(s), 20.0s, $0.150000 spent" in out
    assert "$0.100000 on model calls" in out


def test_a_trace_without_its_task_span_says_why_it_may_be_missing(tmp_path: Path) -> None:
    out = render(write(tmp_path, [span("attempt 1", 1, 0, 5, **{"tether.cost_usd": 0.0})]))
    assert out.splitlines()[-1].startswith("no task span: the task has not ended")
