"""Which judges are at their daily cap, and the ``tether_eval_judge_cap_reached`` gauge.

A judge is capped when its ledger refuses a call's hold (:class:`judge.CapReached`): its
policies' rows stay queued until the cap is lifted — by the next UTC day, or by a change to the
Judge whose new ``perDayUSD`` leaves room for the call that was refused (the alert's advice:
raise the cap). A lowered cap needs nothing here: the changed Judge gets a new client whose
ledger, built from the day's spend, refuses its next call at once.

The gauge is 0 for every judge the evaluator knows, from the moment it learns of it, so a
dashboard or a ``max by`` alert sees the healthy state and not an absent series; 1 while capped;
the series is removed when the Judge goes. Its namespace: the evaluator's (in a cluster, every
Judge of it), and each namespace of a policy naming the judge (from a file, where a Judge has no
namespace of its own).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from .config import EvalConfig, JudgeSpec
from .metrics import EvalMetrics

__all__ = ["JudgeCaps"]

log = logging.getLogger(__name__)


class _Spent(Protocol):
    async def spent(self, judge: str, day: str) -> Decimal: ...


class _Client(Protocol):
    spec: JudgeSpec


def known(config: EvalConfig, namespace: str | None) -> set[tuple[str, str]]:
    """The (namespace, judge) pairs the gauge has a series for."""
    pairs = {(pol.namespace, pol.judge) for pol in config.policies.values()
             if pol.judge in config.judges}
    if namespace is not None:
        pairs |= {(namespace, judge) for judge in config.judges}
    return pairs


class JudgeCaps:
    def __init__(self, metrics: EvalMetrics) -> None:
        self.gauge = metrics.cap_reached
        self.capped: dict[str, tuple[str, str]] = {}  # judge -> (UTC day capped, namespace)
        self.refused: dict[str, Decimal] = {}  # judge -> the hold its ledger refused
        self.recheck: set[str] = set()  # capped judges changed since: is there room now?
        self.series: set[tuple[str, str]] = set()

    def learn(self, config: EvalConfig, namespace: str | None) -> None:
        """The gauge's series for the judges of ``config``: 0 for a new one (1 if capped),
        removed for one that is gone (and its cap forgotten)."""
        pairs = known(config, namespace)
        for judge in [j for j in self.capped if j not in config.judges]:
            self._forget(judge)
        for ns, judge in pairs - self.series:
            capped = self.capped.get(judge)
            self.gauge.labels(ns, judge).set(int(capped is not None and capped[1] == ns))
        for ns, judge in self.series - pairs:
            self.gauge.remove(ns, judge)
        self.series = pairs

    def cap(self, judge: str, namespace: str, day: str, hold: Decimal) -> None:
        self.capped[judge] = (day, namespace)
        self.refused[judge] = hold
        self.gauge.labels(namespace, judge).set(1)
        self.series.add((namespace, judge))

    def lift(self, judge: str) -> None:
        _, namespace = self.capped.pop(judge)
        self.refused.pop(judge, None)
        self.gauge.labels(namespace, judge).set(0)

    def _forget(self, judge: str) -> None:
        self.capped.pop(judge, None)
        self.refused.pop(judge, None)
        self.recheck.discard(judge)

    def changed(self, judge: str) -> None:
        """The Judge's spec changed: look again at its cap before the next batch."""
        if judge in self.capped:
            self.recheck.add(judge)

    def new_day(self, day: str) -> None:
        for judge, (capped_on, _) in list(self.capped.items()):
            if capped_on != day:
                self.lift(judge)

    async def look_again(self, clients: Mapping[str, _Client], store: _Spent) -> list[str]:
        """Lift the cap of each changed judge whose ``perDayUSD`` now has room for the call it
        refused, given what the store says was spent that day; returns those lifted. One that
        still has none stays capped (no gauge flap, no call)."""
        lifted = []
        for judge in sorted(self.recheck):
            client = clients.get(judge)
            if judge not in self.capped or client is None:
                continue
            day, _ = self.capped[judge]
            spent = await store.spent(judge, day)
            room = client.spec.cost_caps.per_day_usd - spent
            if self.refused.get(judge, Decimal(0)) <= room:
                log.info("Judge %s: perDayUSD %s leaves room now (%s USD spent on %s): "
                         "judging resumes", judge, client.spec.cost_caps.per_day_usd, spent, day)
                self.lift(judge)
                lifted.append(judge)
        self.recheck.clear()
        return lifted
