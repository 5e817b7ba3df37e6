"""The sequential change detector: a Bernoulli CUSUM for a drop of the pass rate.

One judged sample at a time (pass or fail), constant state, alarm when the pass rate has moved from
the baseline ``p0`` to ``p1 = p0 - shift``. Pure: no I/O, no clock. The evaluator keeps one
:class:`Cusum` per policy and stores :meth:`Cusum.to_dict` in its database; ``tether eval detect``
runs the same class over stdin.

Why a CUSUM: for a step change of known size it is the fastest detector at a given false-alarm
rate (Lorden 1971; Moustakides 1986), where a fixed-window threshold alert needs more samples
(docs/evaluation.md, docs/benchmarks.md give the simulated figures).

Why integer increments: the log-likelihood-ratio increments ``ln(p1/p0)`` (a pass) and
``ln((1-p1)/(1-p0))`` (a fail) are replaced by the integers ``-down`` and ``+up`` whose ratio is
within 0.5 % of theirs (the integer-scaled Bernoulli CUSUM of Reynolds & Stoumbos, 1999). The
statistic then lives on the states ``0..threshold-1``, so the average run length of *this*
detector is solved exactly as a linear system (a banded Markov chain, Brook & Evans 1972), the
threshold is the smallest integer whose in-control run length reaches the user's "one false alarm
every N samples", and the stored state is an integer with no rounding drift across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Cusum", "Design", "DetectorError", "DetectorStateError", "arl", "design"]

# A threshold step of at most this many nats keeps the calibrated false-alarm spacing within a
# few per cent above N (the run length grows roughly like e^h).
_MAX_UNIT_NATS = 0.05
_RATIO_TOLERANCE = 0.005  # relative error allowed between up/down and the true LLR ratio
_MAX_STATES = 200_000  # beyond this the shift is too small to calibrate in reasonable time
STATE_VERSION = 1


class DetectorError(ValueError):
    """A detector parameter out of range; ``field`` names it (baseline, shift, falseAlarmEvery)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DetectorStateError(ValueError):
    """A stored state that does not fit this detector (other units, corrupt fields)."""


@dataclass(frozen=True)
class Design:
    """A calibrated detector: the integer increments, the threshold and what they achieve."""

    baseline: float  # p0, the in-control pass rate
    shift: float  # the drop to detect: p1 = baseline - shift
    false_alarm_every: int  # N: the in-control average run length asked for
    up: int  # added to the statistic on a fail
    down: int  # subtracted on a pass (floored at zero)
    threshold: int  # alarm when the statistic reaches it
    units_per_nat: float  # statistic / units_per_nat is the log-likelihood ratio in nats
    arl0: float  # exact in-control average run length of this detector (>= false_alarm_every)

    @property
    def p1(self) -> float:
        return self.baseline - self.shift

    @property
    def threshold_nats(self) -> float:
        return self.threshold / self.units_per_nat


def validate(baseline: float, shift: float, false_alarm_every: int) -> None:
    """Raise :class:`DetectorError` naming the first parameter out of range."""
    if not (math.isfinite(baseline) and 0.0 < baseline < 1.0):
        raise DetectorError("baseline", f"baseline pass rate must be strictly between 0 and 1, "
                            f"got {baseline}")
    if not (math.isfinite(shift) and 0.0 < shift < baseline and baseline - shift < baseline):
        raise DetectorError("shift", f"shift must be above 0 and below the baseline {baseline} "
                            f"(the pass rate to detect is baseline - shift > 0), got {shift}")
    if isinstance(false_alarm_every, bool) or not isinstance(false_alarm_every, int) \
            or false_alarm_every < 2:
        raise DetectorError("falseAlarmEvery", f"falseAlarmEvery must be an integer of at least "
                            f"2 samples, got {false_alarm_every!r}")


def increments(p0: float, p1: float) -> tuple[int, int, float]:
    """(up, down, units per nat): integers whose ratio matches the LLR increments' within 0.5 %,
    the smaller one large enough that one unit is at most ``_MAX_UNIT_NATS`` unless the ratio is
    itself a ratio of small integers (then the LLR CUSUM itself moves on that coarser lattice)."""
    fail = math.log((1.0 - p1) / (1.0 - p0))  # > 0: a fail is evidence of the drop
    passed = math.log(p0 / p1)  # > 0: a pass is evidence against it
    small, big = min(fail, passed), max(fail, passed)
    ratio = big / small
    first = max(1, math.ceil(small / _MAX_UNIT_NATS))
    best: tuple[float, int, int] | None = None
    for k in range(first, first + 200):
        m = max(1, round(ratio * k))
        err = abs(m / k - ratio) / ratio
        if best is None or err < best[0]:
            best = (err, k, m)
        if err <= _RATIO_TOLERANCE:
            break
    assert best is not None
    _, k, m = best
    # In lowest terms: with a common factor g the statistic only visits multiples of g, so the
    # state would be g times larger for the same thresholds (60 % -> 40 %: 9/9 is 1/1).
    g = math.gcd(k, m)
    k, m = k // g, m // g
    up, down = (k, m) if fail <= passed else (m, k)
    return up, down, k / small


def arl(pass_rate: float, up: int, down: int, threshold: int) -> float:
    """Exact average run length from a zero statistic when each sample passes with
    ``pass_rate``: the expected number of samples up to and including the alarm.

    ``L[s] = 1 + p L[max(0, s-down)] + q L[s+up]`` with ``L[s] = 0`` for ``s >= threshold``:
    ``(I - P) L = 1`` with ``P`` banded (``down`` below the diagonal, ``up`` above). ``I - P`` is a
    nonsingular M-matrix (the chain is transient), so elimination without pivoting is stable;
    the cost is ``threshold * up * down``.
    """
    if threshold < 1 or up < 1 or down < 1 or not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"arl needs threshold, up, down >= 1 and 0 <= pass_rate <= 1, got "
                         f"{threshold}, {up}, {down}, {pass_rate}")
    n, p, q, width = threshold, pass_rate, 1.0 - pass_rate, up + down + 1
    band = [[0.0] * width for _ in range(n)]  # band[i][j - i + down] = A[i][j]
    for i in range(n):
        band[i][down] += 1.0
        band[i][max(0, i - down) - i + down] -= p
        if i + up < n:
            band[i][up + down] -= q
    rhs = [1.0] * n
    for k in range(n):  # forward elimination, rows k+1 .. k+down
        pivot_row = band[k]
        pivot = pivot_row[down]
        for i in range(k + 1, min(n, k + down + 1)):
            row = band[i]
            factor = row[k - i + down] / pivot
            if factor == 0.0:
                continue
            shift = k - i  # column j sits at j - k + down in row k, j - i + down in row i
            for col in range(down, min(width, n - k + down)):
                row[col + shift] -= factor * pivot_row[col]
            rhs[i] -= factor * rhs[k]
    out = [0.0] * n
    for i in range(n - 1, -1, -1):
        row = band[i]
        acc = rhs[i]
        for j in range(i + 1, min(n, i + up + 1)):
            acc -= row[j - i + down] * out[j]
        out[i] = acc / row[down]
    return out[0]


@lru_cache(maxsize=256)
def design(baseline: float, shift: float, false_alarm_every: int) -> Design:
    """The detector for a drop from ``baseline`` by ``shift`` with one false alarm every
    ``false_alarm_every`` in-control samples on average: the smallest integer threshold whose
    exact in-control run length reaches it. Cached."""
    validate(baseline, shift, false_alarm_every)
    p1 = baseline - shift
    up, down, units = increments(baseline, p1)
    threshold, value = _smallest_threshold(lambda h: arl(baseline, up, down, h), false_alarm_every,
                                           max(up, 1), shift)
    return Design(baseline, shift, false_alarm_every, up, down, threshold, units, value)


def _smallest_threshold(run_length: Callable[[int], float], n: int, start: int,
                        shift: float) -> tuple[int, float]:
    """The smallest h with run_length(h) >= n (run_length grows with h), and its value.

    Doubling brackets it; then, since the run length grows about exponentially in h, a step
    interpolating log(run length) lands within a unit or two of the answer; a bisection step
    follows any interpolation step that did not halve the bracket, so the worst case is twice
    plain bisection and the usual case a handful of solves."""
    lo, lo_value, hi = 0, 1.0, start  # run_length(lo) < n <= run_length(hi); h = 0 alarms at once
    while (hi_value := run_length(hi)) < n:
        lo, lo_value, hi = hi, hi_value, hi * 2
        if hi > _MAX_STATES:
            raise DetectorError("shift", f"shift {shift} is too small to calibrate for one false "
                                f"alarm every {n} samples; use a larger shift")
    interpolate = True
    while hi - lo > 1:
        width = hi - lo
        if interpolate:
            span = math.log(hi_value) - math.log(max(lo_value, 1.0))
            guess = lo + (math.log(n) - math.log(max(lo_value, 1.0))) * width / span
            mid = min(hi - 1, max(lo + 1, round(guess)))
        else:
            mid = (lo + hi) // 2
        value = run_length(mid)
        if value >= n:
            hi, hi_value = mid, value
        else:
            lo, lo_value = mid, value
        interpolate = not interpolate or 2 * (hi - lo) <= width
    return hi, hi_value


class Cusum:
    """The running detector: feed it samples in order; :meth:`update` says when it alarms.

    After an alarm the statistic restarts at zero (the next alarm needs fresh evidence).
    """

    __slots__ = ("alarms", "design", "samples", "statistic")

    def __init__(self, design: Design, statistic: int = 0, samples: int = 0,
                 alarms: int = 0) -> None:
        self.design = design
        self.statistic = statistic  # in units: 0 .. threshold - 1
        self.samples = samples  # samples seen since the detector was created
        self.alarms = alarms

    @classmethod
    def for_params(cls, baseline: float, shift: float, false_alarm_every: int) -> Cusum:
        return cls(design(baseline, shift, false_alarm_every))

    def update(self, passed: bool) -> bool:
        """Take one judged sample; True when it raises an alarm (the statistic then restarts)."""
        d = self.design
        self.samples += 1
        if passed:
            self.statistic = max(0, self.statistic - d.down)
            return False
        self.statistic += d.up
        if self.statistic < d.threshold:
            return False
        self.statistic = 0
        self.alarms += 1
        return True

    @property
    def statistic_nats(self) -> float:
        """The statistic as a log-likelihood ratio (``tether_eval_cusum``)."""
        return self.statistic / self.design.units_per_nat

    def to_dict(self) -> dict[str, Any]:
        d = self.design
        return {"version": STATE_VERSION, "baseline": d.baseline, "shift": d.shift,
                "falseAlarmEvery": d.false_alarm_every, "up": d.up, "down": d.down,
                "threshold": d.threshold, "statistic": self.statistic,
                "samples": self.samples, "alarms": self.alarms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cusum:
        """The detector a :meth:`to_dict` saved. Raises :class:`DetectorStateError` when the
        stored units differ from this version's calibration of the same parameters (the caller
        starts afresh and says so) or a field is missing or out of range."""
        if data.get("version") != STATE_VERSION:
            raise DetectorStateError(f"detector state version {data.get('version')!r}; "
                                     f"this build reads version {STATE_VERSION}")
        try:
            params = (float(data["baseline"]), float(data["shift"]), int(data["falseAlarmEvery"]))
            units = (int(data["up"]), int(data["down"]), int(data["threshold"]))
            statistic, samples, alarms = (int(data["statistic"]), int(data["samples"]),
                                          int(data["alarms"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DetectorStateError(f"detector state is missing or mistypes a field: "
                                     f"{exc!r}") from exc
        try:
            d = design(*params)
        except DetectorError as exc:
            raise DetectorStateError(f"stored detector parameters are out of range: {exc}") from exc
        if units != (d.up, d.down, d.threshold):
            raise DetectorStateError(f"stored detector units (up, down, threshold) {units} differ "
                                     f"from this build's {(d.up, d.down, d.threshold)}")
        if not 0 <= statistic < d.threshold or samples < 0 or alarms < 0:
            raise DetectorStateError(f"stored detector statistic {statistic} is outside "
                                     f"0..{d.threshold - 1} or a count is negative")
        return cls(d, statistic, samples, alarms)
