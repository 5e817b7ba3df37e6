"""The dashboard's counter panels (events, spend, tokens, the p99s' buckets) count a labelled
counter's first event (hack/dashboards.py ``_increase``). Such a series is born by its first
event, at 1 — a task's first eviction, its one soft-limit hit, its first model call's cost —
and ``increase()`` or ``rate()`` sees nothing before a series' first sample, so such a panel
showed 0 for every one of them. promtool's rule unit tests evaluate the committed panel
queries on a series born at 1 and one that was there before.

Needs promtool (hack/promtool.sh; the make targets pass it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from .test_chart_monitoring import promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "tether" / "dashboards" / "tether.json"
WINDOW = "5s"  # $__rate_interval for a 1 s scrape


def query(title: str, legend: str) -> str:
    board = json.loads(DASHBOARD.read_text())
    [expr] = [t["expr"] for p in board["panels"] if p["title"] == title
              for t in p.get("targets", []) if t["legendFormat"] == legend]
    return str(expr).replace("$__rate_interval", WINDOW).replace("$namespace", "team-a")


def run(tmp_path: Path, series: list[dict[str, str]],
        tests: list[tuple[str, str, list[dict[str, object]]]]) -> subprocess.CompletedProcess[str]:
    """promtool test rules: ``series`` every second from 0 s, then each (expr, time, samples)."""
    (tmp_path / "none.yaml").write_text("groups: []\n")
    doc = {"rule_files": ["none.yaml"], "evaluation_interval": "1s", "tests": [{
        "interval": "1s", "input_series": series,
        "promql_expr_test": [{"expr": e, "eval_time": t, "exp_samples": s}
                             for e, t, s in tests]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run([promtool(), "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_first_eviction_shows_in_the_evictions_panel(tmp_path: Path) -> None:
    evictions = query("Evictions and resumes", "evictions")
    # Task t1 evicted once at 10 s (its series born at 1); t2's counter went 1 -> 2 at 20 s.
    series = [{"series": 'tether_task_evictions_total{namespace="team-a",task="t1"}',
               "values": "_x10 1x30"},
              {"series": 'tether_task_evictions_total{namespace="team-a",task="t2"}',
               "values": "1x19 2x20"}]
    out = run(tmp_path, series, [
        (evictions, "12s", [{"labels": "{}", "value": 1}]),  # t1's first eviction
        (evictions, "17s", [{"labels": "{}", "value": 0}]),  # nothing new in the window
        (evictions, "40s", [{"labels": "{}", "value": 0}]),
    ])
    assert out.returncode == 0, out.stdout + out.stderr


def test_increase_alone_misses_it(tmp_path: Path) -> None:
    """Why the pattern: the plain increase() panel said 0 while t1 was evicted."""
    series = [{"series": 'tether_task_evictions_total{namespace="team-a",task="t1"}',
               "values": "_x10 1x30"}]
    plain = f'sum(increase(tether_task_evictions_total{{namespace=~"team-a"}}[{WINDOW}]))'
    out = run(tmp_path, series, [(plain, "12s", [{"labels": "{}", "value": 0}])])
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_later_event_counts_by_increase(tmp_path: Path) -> None:
    hits = query("Cost envelope limit hits", "{{limit}}")
    series = [{"series": 'tether_budget_limit_hits_total{namespace="team-a",task="t",limit="soft"}',
               "values": "1x9 2x20"}]
    out = run(tmp_path, series, [
        (hits, "8s", [{"labels": '{limit="soft"}', "value": 0}]),  # there before: no event
        (hits, "12s", [{"labels": '{limit="soft"}', "value": 1}]),  # the second hit, at 10 s
        (hits, "30s", [{"labels": '{limit="soft"}', "value": 0}]),
    ])
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_panel_rates_a_counter() -> None:
    """rate() misses a first event as increase() does: every counter panel counts by the
    first-event rule over a window (hack/dashboards.py _increase)."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert not [e for e in exprs if "rate(" in e]


def test_a_tasks_one_model_call_shows_in_spend(tmp_path: Path) -> None:
    spend = query("Spend, USD per hour", "{{namespace}}")
    # Task t's only model call settled 0.25 USD at 10 s: its cost series is born by it.
    series = [{"series": 'tether_cost_usd_total{namespace="team-a",task="t",model="m"}',
               "values": "_x10 0.25x60"}]
    out = run(tmp_path, series, [
        (spend, "5s", []),
        (spend, "12s", [{"labels": '{namespace="team-a"}', "value": 0.25}]),
        (spend, "60s", [{"labels": '{namespace="team-a"}', "value": 0.25}]),  # the last hour
    ])
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_tasks_one_checkpoint_shows_in_the_p99(tmp_path: Path) -> None:
    p99 = query("Sidecar overhead and checkpoint time, p99", "checkpoint")
    # Task t's one checkpoint took under 0.1 s, at 10 s: its buckets are born by it.
    bucket = 'tether_checkpoint_seconds_bucket{namespace="team-a",task="t",le="%s"}'
    series = [{"series": bucket % le, "values": "_x10 1x30"} for le in ("0.1", "+Inf")]
    out = run(tmp_path, series, [(p99, "12s", [{"labels": "{}", "value": 0.099}])])
    assert out.returncode == 0, out.stdout + out.stderr
