"""The operator's Prometheus metrics, created at start-up.

Names are a contract (docs/architecture.md, Metrics).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["OperatorMetrics"]


class _Phases(Collector):
    def __init__(self) -> None:
        self.phase: dict[tuple[str, str], str] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("tether_tasks", "AgentTasks by phase.",
                                   labels=["namespace", "phase"])
        for (ns, phase), n in sorted(Tally((ns, p) for (ns, _), p in self.phase.items()).items()):
            family.add_metric([ns, phase], n)
        yield family


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.phases = _Phases()
        self.registry.register(self.phases)
        self.evictions = Counter("tether_task_evictions", "Attempts ended by a disruption "
                                 "(eviction, preemption, node loss, deleted pod).",
                                 ["namespace", "task"], registry=self.registry)
        self.resumes = Counter("tether_task_resumes", "Pods started for an attempt after the "
                               "first (resuming from the checkpoint).", ["namespace", "task"],
                               registry=self.registry)
        self.leader = Gauge("tether_operator_leader", "1 on the replica that leads (holds the "
                            "Lease), 0 on a standby.", registry=self.registry)
        self.queue_depth = Gauge("tether_operator_queue_depth", "Tasks woken and waiting for a "
                                 "reconcile worker.", registry=self.registry)
        self.budget_spent = Gauge("tether_budget_spent_usd", "Settled spend in the budget's "
                                  "period, USD.", ["namespace", "budget"], registry=self.registry)
        self.budget_reserved = Gauge("tether_budget_reserved_usd", "Held for running tasks, USD.",
                                     ["namespace", "budget"], registry=self.registry)
        self.budget_soft_limit = Gauge(
            "tether_budget_soft_limit_reached", "1 while the budget's spend plus holds is at or "
            "over limitUSD * softLimitPercent / 100, else 0.", ["namespace", "budget"],
            registry=self.registry)
        self.budget_limit = Gauge("tether_budget_limit_usd", "The budget's limit, USD.",
                                  ["namespace", "budget"], registry=self.registry)

    def task_phase(self, ns: str, name: str, phase: str | None) -> None:
        if phase is None:
            self.phases.phase.pop((ns, name), None)
        else:
            self.phases.phase[(ns, name)] = phase

    def budget(self, ns: str, name: str, limit: str, spent: str, reserved: str) -> None:
        self.budget_limit.labels(ns, name).set(float(limit))
        self.budget_spent.labels(ns, name).set(float(spent))
        self.budget_reserved.labels(ns, name).set(float(reserved))
