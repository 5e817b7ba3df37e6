"""The completion benchmark's figures: one arm's summary, several seeds' medians, the table, the
plot. Pure functions of the graded results, so tests/unit checks them without running a task."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench._completion_tasks import BenchTask, Outcome

__all__ = ["ARMS", "Graded", "combine", "plot", "summarise", "table"]

ARMS = ("direct", "verification", "tether")
_KEYS = ("tasks", "completed", "silentWrong", "explicitFailures", "usdPerCompleted",
         "completionPct", "silentWrongPct", "completedOfPossiblePct", "usd", "seconds")


@dataclass(frozen=True)
class Graded:
    task: BenchTask
    outcome: Outcome
    answer: str


def _causes(g: Graded) -> list[str]:
    """What the task met: its first-attempt faults' kinds, and context overflow if long."""
    return sorted({kind for _, kind, _ in g.task.faults} | ({"context_overflow"}
                                                            if g.task.long else set()))


def summarise(graded: list[Graded], seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    """One arm on one seed: the issue's fields, percentages, and per-fault silent wrongs."""
    kinds = Counter(g.outcome.kind for g in graded)
    usd = sum(g.outcome.usd for g in graded)
    possible = [g for g in graded if g.task.possible]
    n, done = len(graded), kinds["completed"]
    silent_by: Counter[str] = Counter()
    for g in graded:
        if g.outcome.kind == "silent_wrong":
            silent_by.update(_causes(g) or ["none"])
    return {
        "tasks": n, "completed": done, "silentWrong": kinds["silent_wrong"],
        "explicitFailures": kinds["explicit_failure"],
        "usdPerCompleted": round(usd / done, 6) if done else None,
        "completionPct": round(100 * done / n, 2) if n else None,
        "silentWrongPct": round(100 * kinds["silent_wrong"] / n, 2) if n else None,
        "possible": len(possible),
        "completedOfPossiblePct": round(100 * sum(g.outcome.kind == "completed"
                                                  for g in possible) / len(possible), 2)
        if possible else None,
        "usd": round(usd, 6), "seconds": round(seconds, 1),
        "silentWrongBy": dict(sorted(silent_by.items())), **extra,
    }


def combine(per_seed: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Several seeds: per arm the median of each figure, its [min, max] and each seed's."""
    if len(per_seed) == 1:
        return next(iter(per_seed.values()))
    out: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        runs = [s[arm] for s in per_seed.values() if arm in s]
        if not runs:
            continue
        med: dict[str, Any] = {"seeds": list(per_seed)}
        for key in _KEYS:
            values = [r[key] for r in runs if r.get(key) is not None]
            med[key] = statistics.median(values) if values else None
            med.setdefault("spread", {})[key] = [min(values), max(values)] if values else None
        med["perSeed"] = {seed: s[arm] for seed, s in per_seed.items() if arm in s}
        out[arm] = med
    return out


def table(result: dict[str, dict[str, Any]]) -> str:
    head = (f"{'arm':<13}{'tasks':>7}{'done':>7}{'done %':>8}{'silent':>8}{'explicit':>9}"
            f"{'done/possible %':>17}{'$/done':>10}{'$ total':>10}{'s':>8}")
    lines = [head, "-" * len(head)]
    result = {arm: result[arm] for arm in ARMS if arm in result}
    for arm, r in result.items():
        lines.append(
            f"{arm:<13}{r['tasks']:>7}{r['completed']:>7}{_f(r['completionPct']):>8}"
            f"{r['silentWrong']:>8}{r['explicitFailures']:>9}"
            f"{_f(r['completedOfPossiblePct']):>17}{_f(r['usdPerCompleted'], 4):>10}"
            f"{_f(r['usd'], 2):>10}{_f(r['seconds'], 0):>8}")
    for arm, r in result.items():
        if r.get("silentWrongBy"):
            lines.append(f"{arm} silent wrongs by what the task met: {r['silentWrongBy']}")
    return "\n".join(lines)


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(per_seed: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    """Completion and silent-wrong % per arm: bars at the median over seeds, min-max whiskers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ARMS if all(a in s for s in per_seed.values())]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, title, colour in (
            (axes[0], "completionPct", "completed (correct answer), %", "#3b7dd8"),
            (axes[1], "silentWrongPct", "silent wrong answers, %", "#d8533b")):
        values = [[s[a][key] for s in per_seed.values()] for a in arms]
        med = [statistics.median(v) for v in values]
        err = [[m - min(v) for m, v in zip(med, values, strict=True)],
               [max(v) - m for m, v in zip(med, values, strict=True)]]
        ax.bar(arms, med, yerr=err, capsize=6, color=colour)
        for x, m in enumerate(med):
            ax.text(x, m + 1, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 105)
    tasks = next(iter(per_seed.values()))[arms[0]]["tasks"]
    fig.suptitle(f"Completion benchmark: {tasks} tasks per seed, seeds "
                 f"{', '.join(str(s) for s in per_seed)} (median, min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
