"""Every Prometheus metric the evaluator exports, in one place (docs/evaluation.md, "Metrics").

Registered in a registry owned by the :class:`EvalMetrics` instance, made at start-up, not at
import. Labels are namespace, policy, judge and fixed sets (outcome, verdict, bound, kind): never
a task name, a uid or any text of a record.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EvalMetrics"]

_NP = ["namespace", "policy"]
_REDACTION_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class EvalMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.records = Counter("tether_eval_records", "Task records stored, by outcome.",
                               [*_NP, "outcome"], registry=r)
        self.checks = Counter("tether_eval_checks", "Deterministic checks by result "
                              "(passed, failed).", [*_NP, "check", "result"], registry=r)
        self.samples = Counter("tether_eval_samples", "Judged samples by verdict (pass, fail, "
                               "judge_failed).", [*_NP, "verdict"], registry=r)
        self.pass_rate = Gauge("tether_eval_pass_rate", "Judged pass rate, with the Wilson 95 % "
                               "interval's bounds (bound: point, lower, upper).",
                               [*_NP, "bound"], registry=r)
        self.score_mean = Gauge("tether_eval_score_mean", "Mean judge score.", _NP, registry=r)
        self.cusum = Gauge("tether_eval_cusum", "The change detector's statistic.", _NP,
                           registry=r)
        self.cusum_threshold = Gauge("tether_eval_cusum_threshold", "The statistic's alarm "
                                     "threshold.", _NP, registry=r)
        self.alarms = Counter("tether_eval_alarms", "Change alarms (kind: agent, judge).",
                              [*_NP, "kind"], registry=r)
        self.anchor_pass_rate = Gauge("tether_eval_anchor_pass_rate", "Pass rate of the last "
                                      "anchor run.", _NP, registry=r)
        self.judge_cost = Counter("tether_eval_judge_cost_usd", "Spend on judge calls, USD.",
                                  ["namespace", "judge"], registry=r)
        self.cap_reached = Gauge("tether_eval_judge_cap_reached", "1 while the judge's daily "
                                 "cap stops judging.", ["namespace", "judge"], registry=r)
        self.redaction_failures = Counter("tether_eval_redaction_failures", "Records that could "
                                          "not be redacted: counted, never judged.",
                                          ["namespace"], registry=r)
        self.redaction_seconds = Histogram("tether_eval_redaction_seconds", "Time to redact one "
                                           "record in the evaluator.",
                                           buckets=_REDACTION_BUCKETS, registry=r)
