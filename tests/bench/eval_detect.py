"""The change detector against the best fixed-window alert, by simulation (issue #10, "What must
be measured").

    python -m tests.bench.eval_detect                       # full run, ~2-3 minutes on one core
    python -m tests.bench.eval_detect --runs 200 --seed 7   # a short run (~10 s)

A pass rate falls from 85 % to 80 %; the detectors are set for one false alarm every 5,000
in-control samples. Measured, with the same random samples fed to both detectors in each run:

- samples to detect, change at sample 0 (both detectors fresh) and after a burn-in (1,000 to
  1,999 in-control samples, uniform, so the change falls anywhere in a window; alarms during the
  burn-in restart the detector as in production; delay = samples from the change to the first
  alarm, the alarming one included);
- in-control samples to the first false alarm (ARL0);
- the same with a judge of 90 % sensitivity and specificity between the agent and the detectors
  (each verdict drawn from the agent's true outcome; the detectors set in the judge's terms,
  ``tether_eval.stats.seen_pass_rate``).

The CUSUM is ``tether_eval.detect.Cusum`` (the evaluator's own code). The fixed window is
``tests.bench._window``: tumbling windows of W judged samples, alert when a window has at most c
passes, (W, c) chosen by exhaustive exact search (docs/evaluation.md writes the rule down); and
``tests.bench._sliding``: the last W samples checked after every sample, (W, c) chosen by
simulation (``--sliding-runs``; its docstring writes the rule down).
Means with 95 % confidence intervals, medians with their 95 % order-statistic intervals, and the
exact figures from the Markov chain / binomial beside the simulated ones. The last output line is
one JSON object, also written to _out/bench/eval_detect.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether_eval.detect import Cusum, arl, design
from tether_eval.stats import seen_pass_rate

from ._sliding import sliding_design
from ._window import spread, window_design

ROOT = Path(__file__).resolve().parents[2]
P0, P1, N = 0.85, 0.80, 5000
JUDGE_SE = JUDGE_SP = 0.90
BURN_IN = (1000, 2000)
# Two tumbling windows (the best for a change at a window start, the best for a change anywhere
# in one) and a sliding one.
WINDOWS = {"window": "start", "window_phase": "phase"}
COMPARED = (*WINDOWS, "sliding")
GOAL = {"samples_to_detect_max": 400, "false_alarm_every_min": 5000}
_CAP = 100 * N  # a run that has not alarmed by then is recorded at the cap (none did)


def _sampler(rng: random.Random, p: float, judge: tuple[float, float] | None) -> Any:
    """One verdict: the agent passes with p; a judge (se, sp) then reports it, imperfectly."""
    draw = rng.random
    if judge is None:
        return lambda: draw() < p
    se, sp = judge
    return lambda: draw() < (se if draw() < p else 1.0 - sp)


def run_once(fresh: list[Any], before: Any, after: Any, change_at: int) -> list[int]:
    """Feed the same samples to fresh detectors (``fresh``: factories); samples from
    ``change_at`` come from ``after``. Returns each one's delay: samples from the change to its
    first alarm at or after it (counting the alarming one)."""
    updates = [make().update for make in fresh]
    delays: list[int | None] = [None] * len(updates)
    pending, i = len(updates), 0
    while pending and i < change_at + _CAP:
        passed = before() if i < change_at else after()
        for k, update in enumerate(updates):
            if update(passed) and i >= change_at and delays[k] is None:
                delays[k] = i - change_at + 1
                pending -= 1
        i += 1
    return [_CAP if d is None else d for d in delays]


def scenario(p0: float, p1: float, runs: int, arl0_runs: int, seed: int,
             judge: tuple[float, float] | None = None, sliding_runs: int = 100) -> dict[str, Any]:
    """The detectors for a drop p0 -> p1 of the agent's pass rate (through ``judge``)."""
    s0, s1 = (p0, p1) if judge is None else (seen_pass_rate(p0, *judge),
                                             seen_pass_rate(p1, *judge))
    d = design(round(s0, 12), round(s0 - s1, 12), N)
    windows = {name: window_design(s0, s1, N, criterion=crit) for name, crit in WINDOWS.items()}
    sliding = sliding_design(s0, s1, N, seed + 100, runs=sliding_runs)
    fresh = [lambda: Cusum(d)] + [w.start for w in windows.values()] + [sliding.start]
    rng = random.Random(seed)
    pre, post = _sampler(rng, p0, judge), _sampler(rng, p1, judge)
    at_zero = [run_once(fresh, pre, post, 0) for _ in range(runs)]
    burned = [run_once(fresh, pre, post, rng.randrange(*BURN_IN)) for _ in range(runs)]
    in_control = [run_once(fresh, pre, pre, 0) for _ in range(arl0_runs)]
    out: dict[str, Any] = {"agent": {"p0": p0, "p1": p1}, "seen": {"p0": s0, "p1": s1},
                           "judge": None if judge is None else {"se": judge[0], "sp": judge[1]}}
    for k, name in enumerate(("cusum", *COMPARED)):
        out[name] = {"delay_change_at_0": spread([r[k] for r in at_zero]),
                     "delay_after_burn_in": spread([r[k] for r in burned]),
                     "arl0": spread([r[k] for r in in_control])}
        if k:  # share of runs in which the CUSUM alarmed first after the burn-in, same samples
            out[name]["cusum_first"] = sum(r[0] < r[k] for r in burned) / runs
    out["cusum"]["design"] = {"up": d.up, "down": d.down, "threshold": d.threshold,
                              "threshold_nats": round(d.threshold_nats, 4)}
    out["cusum"]["exact"] = {"arl0": d.arl0,
                             "delay_change_at_0": arl(s1, d.up, d.down, d.threshold)}
    for name, w in windows.items():
        out[name]["design"] = {"size": w.size, "max_passes": w.max_passes}
        out[name]["exact"] = {"arl0": w.arl0, "delay_change_at_0": w.arl1}
    out["sliding"]["design"] = {"size": sliding.size, "max_passes": sliding.max_passes,
                                "arl0_search": sliding.arl0_search}
    return out


def measure(runs: int, arl0_runs: int, seed: int, sliding_runs: int = 100) -> dict[str, Any]:
    perfect = scenario(P0, P1, runs, arl0_runs, seed, sliding_runs=sliding_runs)
    judged = scenario(P0, P1, runs, arl0_runs, seed + 1, (JUDGE_SE, JUDGE_SP), sliding_runs)
    cusum = perfect["cusum"]
    met = (cusum["delay_after_burn_in"]["mean"] <= GOAL["samples_to_detect_max"]
           and cusum["delay_change_at_0"]["mean"] <= GOAL["samples_to_detect_max"]
           and cusum["exact"]["arl0"] >= GOAL["false_alarm_every_min"])
    return {"falseAlarmEvery": N, "runs": runs, "arl0Runs": arl0_runs, "seed": seed,
            "slidingRuns": sliding_runs,
            "perfectJudge": perfect, "judge90": judged, "goal": {**GOAL, "met": met}}


def _row(name: str, r: dict[str, Any]) -> str:
    def ci(s: dict[str, Any]) -> str:
        return f"{s['mean']:7.1f} [{s['mean_ci'][0]:.0f}, {s['mean_ci'][1]:.0f}]"
    exact = (f"exact {r['exact']['delay_change_at_0']:.1f} / {r['exact']['arl0']:.0f}"
             if "exact" in r else "(simulated only)")
    return (f"  {name:<12} {ci(r['delay_change_at_0'])}  {ci(r['delay_after_burn_in'])}  "
            f"{ci(r['arl0'])}   {exact}   {r['design']}")


def render(result: dict[str, Any]) -> str:
    lines = [f"N = {N}, {result['runs']} runs per delay, {result['arl0Runs']} for ARL0, "
             f"seed {result['seed']}; mean [95 % CI]"]
    for key in ("perfectJudge", "judge90"):
        sc = result[key]
        lines.append(f"{key}: agent {sc['agent']['p0']} -> {sc['agent']['p1']}, seen "
                     f"{sc['seen']['p0']:.4f} -> {sc['seen']['p1']:.4f}")
        lines.append("           delay, change at 0     delay, after burn-in   ARL0")
        lines += [_row(name, sc[name]) for name in ("cusum", *COMPARED)]
    return "\n".join(lines)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                         capture_output=True, check=False)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4000, help="runs per delay figure")
    parser.add_argument("--arl0-runs", type=int, help="runs for ARL0 (default: runs / 2)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--sliding-runs", type=int, default=100,
                        help="streams per candidate in the sliding window's search")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = measure(args.runs, args.arl0_runs or max(1, args.runs // 2), args.seed,
                     args.sliding_runs)
    result.update(date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), commit=_commit(),
                  seconds=round(time.monotonic() - started, 1))
    print(render(result))
    out = ROOT / "_out" / "bench" / "eval_detect.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
