"""The comparison detector (a fixed-window threshold alert) and the summary statistics.

The alert the field uses (docs/evaluation.md): tumbling windows of ``size`` judged samples; at
the end of each window, alert when it holds at most ``max_passes`` passes; the next window starts
empty. Its figures are exact from the binomial: a window alerts with probability
``P = P(Binomial(size, p) <= max_passes)``, so the samples to the first alert, from a window
start, average ``size / P``.

The best one for a false-alarm rate is found by exhaustive search: every size up to 1,000 and,
for each, every threshold whose in-control ``size / P0`` reaches N, keeping the pair with the
fewest samples to detect the drop (``size / P1``, change at a window start, the window's best
case; ``criterion="phase"`` adds ``(size - 1) / 2`` for a change at a random point).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["Window", "spread", "window_design"]


@dataclass(frozen=True)
class Window:
    size: int
    max_passes: int
    arl0: float  # exact in-control samples to the first alert
    arl1: float  # exact samples to detect, change at a window start

    def start(self) -> _Running:
        return _Running(self.size, self.max_passes)


class _Running:
    __slots__ = ("count", "max_passes", "passes", "size")

    def __init__(self, size: int, max_passes: int) -> None:
        self.size, self.max_passes, self.count, self.passes = size, max_passes, 0, 0

    def update(self, passed: bool) -> bool:
        self.count += 1
        self.passes += passed
        if self.count < self.size:
            return False
        alert = self.passes <= self.max_passes
        self.count = self.passes = 0
        return alert


def window_design(p0: float, p1: float, n: int, max_size: int = 1000,
                  criterion: str = "start") -> Window:
    """The best tumbling window for one false alarm every ``n`` in-control samples."""
    lp0, lq0, lp1, lq1 = math.log(p0), math.log1p(-p0), math.log(p1), math.log1p(-p1)
    best: tuple[float, Window] | None = None
    for size in range(1, max_size + 1):
        cdf0 = cdf1 = 0.0
        log_fact = math.lgamma(size + 1)
        for passes in range(size + 1):
            log_choose = log_fact - math.lgamma(passes + 1) - math.lgamma(size - passes + 1)
            cdf0 += math.exp(log_choose + passes * lp0 + (size - passes) * lq0)
            cdf1 += math.exp(log_choose + passes * lp1 + (size - passes) * lq1)
            arl0 = size / cdf0 if cdf0 > 0 else math.inf
            if arl0 < n:
                break  # higher thresholds alert even more often in control
            if cdf1 == 0:
                continue
            cost = size / cdf1 + ((size - 1) / 2 if criterion == "phase" else 0.0)
            if best is None or cost < best[0]:
                best = (cost, Window(size, passes, arl0, size / cdf1))
    if best is None:
        raise ValueError(f"no window up to {max_size} samples reaches {n} between false alarms")
    return best[1]


def spread(values: list[int]) -> dict[str, Any]:
    """Mean with a normal 95 % interval, median with its 95 % order-statistic interval, p10/p90."""
    s = sorted(values)
    n = len(s)
    mean = statistics.fmean(s)
    half = 1.96 * statistics.stdev(s) / math.sqrt(n) if n > 1 else math.inf
    # ranks n/2 -+ 1.96 sqrt(n)/2 bound the median with ~95 % confidence (binomial, normal approx)
    lo = max(0, math.floor(n / 2 - 0.98 * math.sqrt(n)))
    hi = min(n - 1, math.ceil(n / 2 + 0.98 * math.sqrt(n)))
    deciles = statistics.quantiles(s, n=10) if n > 1 else [s[0]] * 9
    return {"n": n, "mean": mean, "mean_ci": [mean - half, mean + half],
            "median": statistics.median(s), "median_ci": [s[lo], s[hi]],
            "p10": deciles[0], "p90": deciles[8]}
