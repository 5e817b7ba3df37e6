"""``tether trace DIR``: the span file of a run as a tree: task, attempts, steps, calls, retries,
cost. ``tether.cost_usd`` is each span's own cost (a call's, a step's calls', an attempt's
charges); ``tether.spent_usd`` the task's running total (docs/sidecar.md, Observability)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["load_spans", "render"]


def load_spans(state_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """The spans, oldest first, and how many torn lines (a killed process's last write) were
    skipped; the renderer says so."""
    path = state_dir / "spans.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no span file at {path}: was a task run with this state dir?")
    spans, torn = [], 0
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                spans.append(json.loads(line))
            except ValueError:
                torn += 1
    return sorted(spans, key=lambda s: s["start"]), torn


def _secs(span: dict[str, Any]) -> float:
    return float(span["end"] - span["start"]) / 1e9


def _call_line(span: dict[str, Any]) -> str:
    a = span["attributes"]
    parts = [f"{span['name']:<28}"]
    if a.get("tether.replayed"):
        parts.append("replayed from the journal (not sent, not charged)")
    elif a.get("gen_ai.operation.name") == "chat":
        parts.append(f"{a.get('gen_ai.usage.input_tokens', '?')}→"
                     f"{a.get('gen_ai.usage.output_tokens', '?')} tok")
        parts.append(f"${a.get('tether.cost_usd', 0):.6f}")
        if a.get("tether.context.compaction"):
            parts.append(f"[compacted: {a['tether.context.compaction']}]")
    else:
        parts.append(f"{a.get('tether.outcome', '?')}")
        parts.append(f"{a.get('tether.attempts', 1)} attempt(s)")
    if span["status"] == "ERROR":
        parts.append(f"ERROR {a.get('tether.outcome', '')} {a.get('error.type', '')}".rstrip())
    parts.append(f"{_secs(span) * 1000:.0f} ms")
    lines = ["  ".join(parts)]
    for event in span.get("events", []):
        if event["name"] == "retry":
            e = event["attributes"]
            lines.append(f"      ↻ attempt {e.get('attempt')} failed ({e.get('class')}); "
                         f"waited {e.get('delay_s', 0):.2f}s")
    return "\n".join(lines)


def _task_line(spans: list[dict[str, Any]]) -> str:
    task = next((s for s in spans if s["name"].startswith("task ")), None)
    if task is None:  # task_span.py: sent only by the attempt that ends the task
        return ("no task span: the task has not ended, or the attempt that ended it was killed "
                "before sending it")
    a = task["attributes"]
    return (f"{task['name']}: {a.get('tether.task.phase')} after {a.get('tether.attempts')} "
            f"attempt(s), {_secs(task):.1f}s, ${a.get('tether.spent_usd', 0):.6f} spent")


def render(state_dir: Path) -> str:
    spans, torn = load_spans(state_dir)
    if not spans:
        return "no spans yet"
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    steps: dict[int, dict[str, Any]] = {}
    attempts = [s for s in spans if s["name"].startswith("attempt ")]
    for span in spans:
        step = span["attributes"].get("tether.step")
        if span["name"].startswith("step "):
            steps[int(step)] = span
        elif isinstance(step, int):
            by_step[step].append(span)
    cost = sum(s["attributes"].get("tether.cost_usd", 0.0) for s in spans
               if s["attributes"].get("gen_ai.operation.name") == "chat")
    out = [f"trace {spans[0]['traceId']} · {len(attempts) or 1} attempt(s) · "
           f"{len(steps)} step(s) checkpointed · ${cost:.6f} on model calls"]
    for n in sorted(set(by_step) | set(steps)):
        calls = by_step.get(n, [])
        step_cost = sum(c["attributes"].get("tether.cost_usd", 0.0) for c in calls)
        done = "checkpointed" if n in steps else "not checkpointed (interrupted)"
        out.append(f"step {n}  {len(calls)} call(s)  ${step_cost:.6f}  {done}")
        out.extend("  " + _call_line(c) for c in calls)
    for span in spans:
        if span["attributes"].get("tether.orphan.call_id"):
            out.append(f"{span['name']}: call {span['attributes']['tether.orphan.call_id']} was "
                       "in flight when its attempt was killed; charged "
                       f"${span['attributes'].get('tether.cost_usd', 0):.6f} by attempt "
                       f"{span['attempt']}")
    for a in attempts:
        attrs = a["attributes"]
        out.append(f"{a['name']}: {_secs(a):.1f}s, ${attrs.get('tether.cost_usd', 0):.6f}, "
                   f"{attrs.get('tether.aborted_calls', 0)} call(s) aborted at stop")
    out.append(_task_line(spans))
    if torn:
        out.append(f"({torn} torn line(s) in spans.jsonl skipped: written by a killed process)")
    return "\n".join(out)
