"""Pass rates and scores with intervals, the judge's imperfection, and judge-vs-agent attribution.

Pure functions over counts (the evaluator keeps counts, not samples): no I/O. The rules are
written down in docs/evaluation.md, "Statistical layer".

- :func:`wilson` — the Wilson score interval for k passes in n (``tether_eval_pass_rate{bound}``):
  unlike the normal ("Wald") interval it stays inside [0, 1] and keeps its coverage near 0 and 1
  and at small n (Brown, Cai & DasGupta 2001).
- :func:`score_interval` — mean score with a normal interval from running sums, clamped to [0, 1].
- :func:`seen_pass_rate` / :func:`true_pass_rate` — a judge with sensitivity ``se`` and
  specificity ``sp`` sees an agent pass rate ``p`` as ``p*se + (1-p)*(1-sp)``; set the detector's
  baseline and shift in the judge's terms with them.
- :func:`anchors_moved` and :func:`attribute` — a two-proportion test of the frozen anchor set's
  re-judged pass rate against its stored baseline, and the rule that names an alarm's cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

__all__ = ["AnchorCheck", "Attribution", "Interval", "anchors_moved", "attribute",
           "score_interval", "seen_pass_rate", "true_pass_rate", "wilson"]

Attribution = Literal["none", "agent", "judge", "both", "unknown"]


@dataclass(frozen=True)
class Interval:
    point: float
    lower: float
    upper: float


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(passes: int, n: int, confidence: float = 0.95) -> Interval:
    """The pass rate k/n with its Wilson score interval. n = 0 gives point 0 and bounds [0, 1]
    (nothing is known yet; the metric still has all three series)."""
    if n < 0 or not 0 <= passes <= n:
        raise ValueError(f"need 0 <= passes <= n, got passes={passes} n={n}")
    z = _z(confidence)
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    p = passes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # At k = 0 or k = n the exact bound is the end point; floating point may miss it by 1e-17.
    lower = 0.0 if passes == 0 else max(0.0, centre - half)
    upper = 1.0 if passes == n else min(1.0, centre + half)
    return Interval(p, lower, upper)


def score_interval(n: int, total: float, total_sq: float, confidence: float = 0.95) -> Interval:
    """Mean score from running sums (count, sum, sum of squares) with a normal interval on the
    mean (sample variance), clamped to [0, 1] where scores live. Fewer than 2 scores: no spread
    is known, the bounds are [0, 1]."""
    if n < 0:
        raise ValueError(f"score count must be >= 0, got {n}")
    z = _z(confidence)
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    mean = total / n
    if n < 2:
        return Interval(mean, 0.0, 1.0)
    variance = max(0.0, (total_sq - n * mean * mean) / (n - 1))  # rounding can dip below 0
    half = z * math.sqrt(variance / n)
    return Interval(mean, max(0.0, mean - half), min(1.0, mean + half))


def _check_rates(se: float, sp: float) -> None:
    for name, value in (("sensitivity", se), ("specificity", sp)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"judge {name} must be in [0, 1], got {value}")
    if se + sp <= 1.0:
        raise ValueError(f"judge sensitivity + specificity must exceed 1 (got {se} + {sp}): "
                         "such a judge carries no information about the agent's pass rate")


def seen_pass_rate(p: float, se: float, sp: float) -> float:
    """The pass rate a judge reports for an agent whose true pass rate is ``p``: true passes it
    calls pass (``se``) plus true fails it misses (``1 - sp``)."""
    _check_rates(se, sp)
    return p * se + (1.0 - p) * (1.0 - sp)


def true_pass_rate(seen: float, se: float, sp: float) -> float:
    """The inverse (Rogan-Gladen): the agent pass rate behind a judge-reported one, clamped to
    [0, 1]."""
    _check_rates(se, sp)
    return min(1.0, max(0.0, (seen + sp - 1.0) / (se + sp - 1.0)))


@dataclass(frozen=True)
class AnchorCheck:
    """The frozen anchor set: its stored baseline verdicts and its latest re-judging."""

    baseline_passes: int
    baseline_n: int
    passes: int
    n: int


def anchors_moved(check: AnchorCheck, alpha: float = 0.01) -> int:
    """-1 when the re-judged anchors pass significantly less than their baseline, +1 when
    significantly more, 0 when not (two-sided pooled two-proportion z-test at ``alpha``)."""
    b, n0, k, n1 = check.baseline_passes, check.baseline_n, check.passes, check.n
    if n0 <= 0 or n1 <= 0 or not 0 <= b <= n0 or not 0 <= k <= n1:
        raise ValueError(f"anchor counts out of range: {check}")
    pooled = (b + k) / (n0 + n1)
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1))
    diff = k / n1 - b / n0
    if spread == 0.0:  # every verdict alike on both sides: no movement to see
        return 0
    p_value = 2.0 * (1.0 - NormalDist().cdf(abs(diff) / spread))
    if p_value >= alpha:
        return 0
    return 1 if diff > 0 else -1


def attribute(agent_alarm: bool, anchors: AnchorCheck | None, alpha: float = 0.01,
              min_anchors: int = 30) -> Attribution:
    """Name the cause of a production alarm (or of an anchor-only move).

    ``anchors`` is the latest re-judging since the alarm's samples were judged (None: none yet).
    Anchors "moved" by :func:`anchors_moved`; they are "steady" when they did not move and at
    least ``min_anchors`` were re-judged (fewer cannot rule out a moved judge).

    ===============  =============  =========================================================
    production alarm anchors        attribution
    ===============  =============  =========================================================
    yes              steady         agent   (the judge reads the anchors as before)
    yes              moved down     judge   (the judge passes less: it explains the drop)
    yes              moved up       both    (the judge moved, but upwards: the agent dropped)
    yes              None / few     unknown (re-judge the anchors before blaming either)
    no               moved          judge   (anchor-only drift)
    no               otherwise      none
    ===============  =============  =========================================================
    """
    moved = 0 if anchors is None else anchors_moved(anchors, alpha)
    if not agent_alarm:
        return "judge" if moved else "none"
    if moved < 0:
        return "judge"
    if moved > 0:
        return "both"
    if anchors is None or anchors.n < min_anchors:
        return "unknown"
    return "agent"
