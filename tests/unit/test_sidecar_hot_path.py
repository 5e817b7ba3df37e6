"""The per-call shortcuts keep their results: cached metric children and step span ids."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from tether_sidecar.metrics import SidecarMetrics
from tether_sidecar.tracing import ATTR, Tracing, step_span_id


def _series(m: SidecarMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(m.registry).decode().splitlines():
        if line.startswith(("tether_llm_", "tether_cost_")) and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_llm_metrics_count_exactly_and_create_series_only_when_counted() -> None:
    m = SidecarMetrics("ns", "t")
    m.llm("gpt-4o", "replayed")
    assert not any(k.startswith(("tether_llm_tokens", "tether_cost")) for k in _series(m))
    for _ in range(3):
        m.llm("gpt-4o", "ok", 10, 4, 0.25)
    m.llm("gpt-4o", "lost", 0, 7, 0.0)
    got = _series(m)
    labels = 'model="gpt-4o",namespace="ns",task="t"'
    assert got['tether_llm_calls_total{model="gpt-4o",namespace="ns",outcome="ok",task="t"}'] == 3
    assert got['tether_llm_calls_total{model="gpt-4o",namespace="ns",outcome="lost",task="t"}'] == 1
    assert got[f'tether_llm_tokens_total{{{labels},type="input"}}'] == 30
    assert got[f'tether_llm_tokens_total{{{labels},type="output"}}'] == 19
    assert got[f"tether_cost_usd_total{{{labels}}}"] == 0.75


def test_call_spans_are_children_of_their_step_across_many_steps(tmp_path: Path) -> None:
    t = Tracing(namespace="ns", task="t", uid=None, attempt=1, span_file=tmp_path / "s.jsonl",
                otlp_endpoint=None)
    try:
        for step in [*range(1, 200), 3, 150, 3]:  # past the cache's size, and back again
            span = t.start("chat m", {ATTR.STEP: step})
            assert span.parent_id == step_span_id(t.trace_id, step)
        assert t.start("chat m", {}).parent_id == t.attempt_span
    finally:
        t.shutdown()
