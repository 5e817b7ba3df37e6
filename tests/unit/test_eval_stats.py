"""Pass-rate and score intervals, the judge's imperfection, anchor attribution
(tether_eval.stats; the rules in docs/evaluation.md, "Statistical layer")."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from tether_eval.stats import (
    AnchorCheck,
    anchors_moved,
    attribute,
    score_interval,
    seen_pass_rate,
    true_pass_rate,
    wilson,
)


@pytest.mark.parametrize(("k", "n", "lower", "upper"), [
    # 95 % bounds from the closed form; Newcombe (1998), table I, gives 0.2553-0.3662 for 81/263
    (5, 10, 0.236593, 0.763407), (0, 10, 0.0, 0.277533), (10, 10, 0.722467, 1.0),
    (81, 263, 0.255289, 0.366210),
])
def test_wilson_bounds(k: int, n: int, lower: float, upper: float) -> None:
    got = wilson(k, n)
    assert got.point == pytest.approx(k / n)
    assert got.lower == pytest.approx(lower, abs=1e-6)
    assert got.upper == pytest.approx(upper, abs=1e-6)


def test_wilson_covers_the_true_rate_about_as_often_as_asked() -> None:
    rng = random.Random(7)
    p, n, trials = 0.9, 40, 4000  # near 1 and small n: where the normal interval under-covers
    hits = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        b = wilson(k, n)
        hits += b.lower <= p <= b.upper
    assert 0.93 <= hits / trials <= 0.975


def test_wilson_edges_and_errors() -> None:
    assert wilson(0, 0) == wilson(0, 0, 0.99)
    assert (wilson(0, 0).lower, wilson(0, 0).upper) == (0.0, 1.0)
    assert wilson(5, 10, 0.99).lower < wilson(5, 10, 0.9).lower
    for bad in ((11, 10), (-1, 10), (0, -1)):
        with pytest.raises(ValueError, match="passes"):
            wilson(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson(1, 2, 1.0)


def test_score_interval_from_running_sums() -> None:
    rng = random.Random(8)
    scores = [rng.betavariate(8, 2) for _ in range(500)]
    got = score_interval(len(scores), sum(scores), sum(s * s for s in scores))
    mean, sd = statistics.fmean(scores), statistics.stdev(scores)
    assert got.point == pytest.approx(mean)
    assert got.upper - got.point == pytest.approx(1.959964 * sd / math.sqrt(500), rel=1e-4)
    assert score_interval(1, 0.4, 0.16) == type(got)(0.4, 0.0, 1.0)
    assert score_interval(3, 3.0, 3.0) == type(got)(1.0, 1.0, 1.0)  # no spread, clamped


def test_judge_mapping_both_ways() -> None:
    assert seen_pass_rate(0.85, 0.9, 0.9) == pytest.approx(0.78)
    assert seen_pass_rate(0.80, 0.9, 0.9) == pytest.approx(0.74)
    for p in (0.0, 0.3, 0.85, 1.0):
        assert true_pass_rate(seen_pass_rate(p, 0.95, 0.8), 0.95, 0.8) == pytest.approx(p)
    with pytest.raises(ValueError, match="carries no information"):
        seen_pass_rate(0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="sensitivity"):
        seen_pass_rate(0.5, 1.2, 0.9)


def test_anchor_test_sees_a_move_and_not_noise() -> None:
    assert anchors_moved(AnchorCheck(90, 100, 70, 100)) == -1
    assert anchors_moved(AnchorCheck(70, 100, 90, 100)) == 1
    assert anchors_moved(AnchorCheck(90, 100, 87, 100)) == 0
    assert anchors_moved(AnchorCheck(100, 100, 100, 100)) == 0
    with pytest.raises(ValueError, match="anchor counts"):
        anchors_moved(AnchorCheck(5, 0, 1, 10))


STEADY, DOWN, UP = AnchorCheck(90, 100, 89, 100), AnchorCheck(90, 100, 60, 100), \
    AnchorCheck(60, 100, 90, 100)


@pytest.mark.parametrize(("alarm", "anchors", "expected"), [
    (True, STEADY, "agent"), (True, DOWN, "judge"), (True, UP, "both"),
    (True, None, "unknown"), (True, AnchorCheck(9, 10, 9, 10), "unknown"),
    (False, DOWN, "judge"), (False, UP, "judge"), (False, STEADY, "none"), (False, None, "none"),
])
def test_attribution_rule(alarm: bool, anchors: AnchorCheck | None, expected: str) -> None:
    assert attribute(alarm, anchors) == expected
