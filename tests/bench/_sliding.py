"""A second comparison alert: a sliding window checked after every judged sample.

Alert when the last ``size`` samples hold at most ``max_passes`` passes; after an alert the
window empties and must fill again. Checked at every sample it reacts sooner than a tumbling
window, but its many overlapping checks raise false alarms, so it needs a stricter threshold; its
run lengths have no simple closed form, so (size, max_passes) is chosen by simulation:

1. for each size on a grid, ``runs`` in-control streams; in each, the first time the window's
   pass count falls to each level ``c`` (one stream gives the run length of every threshold at
   once, capped at ``5 N``); the largest ``c`` whose mean run length reaches N;
2. for each size's threshold, the mean delay for a drop at the first sample (``runs`` streams);
3. the size with the smallest delay; its threshold is then checked on ``4 runs`` fresh streams
   and lowered by one while their mean run length is below N (never favour the window).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ["Sliding", "sliding_design"]


@dataclass(frozen=True)
class Sliding:
    size: int
    max_passes: int
    arl0_search: float  # the search's estimate of the in-control run length

    def start(self) -> _Running:
        return _Running(self.size, self.max_passes)


class _Running:
    __slots__ = ("buf", "max_passes", "passes", "size")

    def __init__(self, size: int, max_passes: int) -> None:
        self.size, self.max_passes = size, max_passes
        self.buf: deque[bool] = deque()
        self.passes = 0

    def update(self, passed: bool) -> bool:
        self.buf.append(passed)
        self.passes += passed
        if len(self.buf) < self.size:
            return False
        if len(self.buf) > self.size:
            self.passes -= self.buf.popleft()
        if self.passes > self.max_passes:
            return False
        self.buf.clear()
        self.passes = 0
        return True


def _first_hits(rng: random.Random, p: float, size: int, cap: int) -> dict[int, int]:
    """One stream: for each pass count c the window fell to, the sample count at which it first
    held at most c passes."""
    buf: deque[bool] = deque()
    passes, low, hits = 0, size + 1, {}
    draw = rng.random
    for t in range(1, cap + 1):
        x = draw() < p
        buf.append(x)
        passes += x
        if len(buf) > size:
            passes -= buf.popleft()
        if len(buf) == size and passes < low:
            for level in range(passes, low):
                hits[level] = t
            low = passes
    return hits


def _arl_by_level(rng: random.Random, p: float, size: int, runs: int, cap: int) -> dict[int, float]:
    streams = [_first_hits(rng, p, size, cap) for _ in range(runs)]
    levels = set().union(*streams)
    return {c: sum(s.get(c, cap) for s in streams) / runs for c in levels}


def _threshold(rng: random.Random, p0: float, size: int, n: int, runs: int) -> tuple[int, float]:
    arls = _arl_by_level(rng, p0, size, runs, 5 * n)
    feasible = [c for c, value in arls.items() if value >= n]
    c = max(feasible) if feasible else min(arls) - 1
    return c, arls.get(c, float(5 * n))


def _delay(rng: random.Random, p1: float, window: Sliding, runs: int, cap: int) -> float:
    total = 0
    for _ in range(runs):
        running, t = window.start(), 0
        while t < cap:
            t += 1
            if running.update(rng.random() < p1):
                break
        total += t
    return total / runs


def sliding_design(p0: float, p1: float, n: int, seed: int, runs: int = 150,
                   sizes: tuple[int, ...] = tuple(range(100, 425, 25))) -> Sliding:
    rng = random.Random(seed)
    candidates = []
    for size in sizes:
        c, value = _threshold(rng, p0, size, n, runs)
        if c >= 0:
            window = Sliding(size, c, value)
            candidates.append((_delay(rng, p1, window, runs, 20 * n), window))
    _, best = min(candidates, key=lambda pair: pair[0])
    c = best.max_passes
    while c >= 0:
        value = _arl_by_level(rng, p0, best.size, 4 * runs, 5 * n).get(c, float(5 * n))
        if value >= n:
            return Sliding(best.size, c, value)
        c -= 1
    raise ValueError(f"no sliding window of size {best.size} reaches {n} between false alarms")
