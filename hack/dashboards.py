"""Generate the chart's Grafana dashboard (charts/tether/dashboards/tether.json) from code with
the Grafana Foundation SDK, so every panel is reviewed as code and the JSON is never hand-edited.

    python hack/dashboards.py [--check]

The panels are declared in ROWS below: one entry per panel with its title, description, unit and
PromQL queries. Queries use only metrics the operator, the sidecars and the evaluator export
(tests/unit/test_dashboards.py checks it against their registries). Panel ids count up in
order, rows included, so the output is the same on every run. ``--check`` writes nothing and
exits 1 with a diff when the committed JSON drifted.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as enums
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

TARGET = Path(__file__).resolve().parents[1] / "charts" / "tether" / "dashboards" / "tether.json"
# Every panel reads the data source picked in the dashboard's own variable, so one JSON works
# with whatever Prometheus the platform's Grafana has.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
# The $namespace variable offers the tasks' namespaces and the operator releases' own.
NAMESPACES = 'label_values({__name__=~"tether_tasks|tether_operator_leader"}, namespace)'


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    width: int = 8


def _increase(metric: str, by: str, window: str = "$__rate_interval") -> str:
    """Events in each window. A labelled counter's series is born by its first event, at 1 (a
    task's first eviction, its one soft-limit hit, the first redaction failure since the
    evaluator started), and increase() sees nothing before a series' first sample: such a
    panel would show 0 for every first event. Series born inside the window count from 0 (their
    value), the others by increase()."""
    series, agg = f"{metric}{{{NS}}}", f"sum by ({by})" if by else "sum"
    return (f"{agg} (({series} unless {series} offset {window})"
            f" or increase({series}[{window}]))")


def _budget_ratio(metric: str) -> str:
    def of(m: str) -> str:
        return f"max by (namespace, budget) ({m}{{{NS}}})"
    return f"{of(metric)} / ({of('tether_budget_limit_usd')} > 0)"


def _eval(metric: str, extra: str = "") -> str:
    return f"max by (namespace, policy) ({metric}{{{NS}{extra}}})"


def _p99(metric: str, by: str) -> str:
    """The 99th percentile of the interval's observations, a first one included (the buckets
    are born by it, as a counter is)."""
    return f"histogram_quantile(0.99, {_increase(metric + '_bucket', by)})"


# The replicas' own series (leader, queue) carry their release's namespace (and its job, the
# operator's Service name); the others the tasks'. All are filtered by $namespace, and the
# panels keep a release's namespace and job apart, so two releases in one Prometheus do not mix.
OPERATOR = [
    Panel("Leader, per replica", "1 on the replica holding the Lease, 0 on standbys.", "short",
          ((f"max by (namespace, pod) (tether_operator_leader{{{NS}}})",
            "{{namespace}}/{{pod}}"),)),
    Panel("Work queue", "Tasks woken and waiting for a reconcile worker, per release.", "short",
          ((f"max by (namespace, job) (tether_operator_queue_depth{{{NS}}})",
            "{{namespace}}/{{job}}"),)),
    Panel("AgentTasks by phase", "AgentTasks counted by the leading operator, per phase.", "short",
          ((f"sum by (phase) (max by (namespace, phase) (tether_tasks{{{NS}}}))", "{{phase}}"),)),
    Panel("Evictions and resumes",
          "Attempts ended by a disruption, and pods started to resume from the checkpoint.",
          "short",
          ((_increase("tether_task_evictions_total", ""), "evictions"),
           (_increase("tether_task_resumes_total", ""), "resumes")),
          width=12),
    Panel("AgentBudgets: spent and held / limit",
          "Settled spend and holds for running tasks, as a share of each AgentBudget's limit.",
          "percentunit",
          ((_budget_ratio("tether_budget_spent_usd"), "{{namespace}}/{{budget}} spent"),
           (_budget_ratio("tether_budget_reserved_usd"), "{{namespace}}/{{budget}} held")),
          width=12),
]

SIDECARS = [
    # Spend and tokens are summed over a window, not rated, for the same reason: a task's
    # series are born by its first model call, whose cost rate() never sees.
    Panel("Spend, USD per hour", "Settled spend on model calls in the hour to each point.",
          "currencyUSD",
          ((_increase("tether_cost_usd_total", "namespace", "1h"), "{{namespace}}"),)),
    Panel("Tokens per minute", "Tokens billed by the model provider in the minute to each "
          "point, by type.", "short",
          ((_increase("tether_llm_tokens_total", "type", "1m"), "{{type}}"),)),
    Panel("Cost envelope limit hits",
          "soft: warned; hard: call refused and the task stops; contended: refused for now.",
          "short", ((_increase("tether_budget_limit_hits_total", "limit"), "{{limit}}"),)),
    # Calls by outcome and retries are counted, not rated: a failure class often happens once
    # in a pod's life, and rate() shows 0 for a series born by its only event (_increase).
    Panel("Tool calls by outcome",
          "Tool calls in each interval: ok, retried_ok, retryable_exhausted, non_retryable, "
          "verification_failed, budget_exceeded.", "short",
          ((_increase("tether_tool_calls_total", "outcome"), "{{outcome}}"),)),
    Panel("Retries", "Retried attempts in each interval, by kind (model, tool) and failure "
          "class.", "short",
          ((_increase("tether_retries_total", "kind, class"), "{{kind}} {{class}}"),)),
    Panel("Sidecar overhead and checkpoint time, p99",
          "Time spent in the sidecar itself (upstream excluded), and to write a checkpoint.", "s",
          ((_p99("tether_call_overhead_seconds", "le, kind"), "overhead {{kind}}"),
           (_p99("tether_checkpoint_seconds", "le"), "checkpoint"))),
    Panel("Model calls by outcome", "Model calls in each interval by final outcome: the "
          "failure classes that reached the agent.", "short",
          ((_increase("tether_llm_calls_total", "outcome"), "{{outcome}}"),), width=12),
    Panel("Context compactions", "Prompts compacted to fit the context budget, by strategy.",
          "short",
          ((_increase("tether_context_compactions_total", "strategy"), "{{strategy}}"),),
          width=12),
]

EVALUATION = [
    Panel("Judged pass rate, Wilson 95 % bounds",
          "The evaluator's judged pass rate per policy with its Wilson 95 % interval "
          "(tether_eval_pass_rate).", "percentunit",
          ((_eval("tether_eval_pass_rate", ', bound="point"'), "{{namespace}}/{{policy}}"),
           (_eval("tether_eval_pass_rate", ', bound="lower"'), "{{namespace}}/{{policy}} lower"),
           (_eval("tether_eval_pass_rate", ', bound="upper"'), "{{namespace}}/{{policy}} upper")),
          width=12),
    Panel("Drift detector: CUSUM vs threshold",
          "The change detector's statistic and the threshold it alarms at; it restarts at 0 "
          "after each alarm (TetherEvalDrift).", "short",
          ((_eval("tether_eval_cusum"), "{{namespace}}/{{policy}}"),
           (_eval("tether_eval_cusum_threshold"), "{{namespace}}/{{policy}} threshold")),
          width=12),
    Panel("Judged samples by verdict, per hour",
          "pass, fail and judge_failed (never counted as a pass).", "short",
          ((_increase("tether_eval_samples_total", "namespace, policy, verdict", "1h"),
            "{{namespace}}/{{policy}} {{verdict}}"),)),
    Panel("Judge spend, USD per hour",
          "Judge calls' cost in the hour to each point; TetherEvalJudgeCapReached when a judge "
          "reaches its perDayUSD.",
          "currencyUSD",
          ((_increase("tether_eval_judge_cost_usd_total", "namespace, judge", "1h"),
            "{{namespace}}/{{judge}}"),
           (f"max by (namespace, judge) (tether_eval_judge_cap_reached{{{NS}}})",
            "{{namespace}}/{{judge}} cap reached"))),
    Panel("Redaction failures per hour",
          "Records whose redaction failed: counted, never judged (TetherEvalRedactionFailures).",
          "short",
          ((_increase("tether_eval_redaction_failures_total", "namespace", "1h"),
            "{{namespace}}"),)),
]

ROWS = [
    ("Operator", OPERATOR),
    ("Harness sidecars (metrics.podMonitor.enabled)", SIDECARS),
    ("Evaluation (evaluator.enabled)", EVALUATION),
]


def _timeseries(panel: Panel, panel_id: int) -> timeseries.Panel:
    built = (timeseries.Panel().id(panel_id).title(panel.title).description(panel.description)
             .datasource(DATASOURCE).unit(panel.unit).height(8).span(panel.width)
             .legend(common.VizLegendOptions().display_mode(enums.LegendDisplayMode.LIST)
                     .placement(enums.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(common.VizTooltipOptions().mode(enums.TooltipDisplayMode.MULTI)
                      .sort(enums.SortOrder.NONE)))
    for ref, (expr, legend) in zip("ABCDEFGH", panel.queries, strict=False):
        built.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                          .ref_id(ref).datasource(DATASOURCE))
    return built


def _variables(board: dashboard.Dashboard) -> dashboard.Dashboard:
    return (board
            .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                           .type("prometheus"))
            .with_variable(dashboard.QueryVariable("namespace").label("Namespace")
                           .datasource(DATASOURCE).query(NAMESPACES)
                           .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                           .multi(True).include_all(True).all_value(".*")
                           .current(VariableOption(text="All", value="$__all"))))


def build() -> dict[str, Any]:
    board = (dashboard.Dashboard("tether").uid("tether-overview").tags(["tether"]).editable()
             .refresh("30s").time("now-6h", "now"))
    board = _variables(board)
    panel_id = 0
    for title, panels in ROWS:
        panel_id += 1
        board.with_row(dashboard.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board.with_panel(_timeseries(panel, panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def generate() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None, target: Path = TARGET) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff on drift")
    args = parser.parse_args(argv)
    want = generate()
    if args.check:
        have = target.read_text() if target.exists() else ""
        if have != want:
            sys.stderr.writelines(difflib.unified_diff(
                have.splitlines(keepends=True), want.splitlines(keepends=True),
                str(target), "generated"))
            print(f"{target} is out of date: run `python hack/dashboards.py`", file=sys.stderr)
            return 1
        return 0
    target.write_text(want)
    print(f"Wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
