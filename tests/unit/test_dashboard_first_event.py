"""The dashboard's event panels count a labelled counter's first event (hack/dashboards.py
``_increase``). Such a series is born by its first event, at 1 — a task's first eviction, its one
soft-limit hit — and ``increase()`` sees no increase before a series' first sample, so an
``increase()`` panel showed 0 for every one of them. promtool's rule unit tests evaluate the
committed panel queries on a series born at 1 and one that was there before.

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
