"""The completion table (issue #11 item 1): the same seeded tasks in three arms, graded.

    python -m tests.bench.completion --tasks N --seed S [--seeds S1,S2,S3]
        [--arms direct,verification,tether] [--concurrency K] [--plot docs/completion.png]

Tasks: tests/bench/_completion_tasks.py; fault mix: tests/bench/completion_mix.yaml; doubles:
tether_examples.bench_model and bench_tools, served from this process on 127.0.0.1. The direct
and verification arms run in threads (tests/bench/_completion_direct.py); each tether task is a
``tether run`` of the reference agent (tests/bench/_completion_tether.py), K at a time. Prints a
table, then as its LAST line one JSON object ``{"direct": {...}, "verification": {...},
"tether": {...}}`` (with several seeds: medians, ``spread`` [min, max] and ``perSeed``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.bench._completion_direct import run_direct_task
from tests.bench._completion_report import ARMS, Graded, combine, plot, summarise, table
from tests.bench._completion_tasks import BenchTask, grade, make_tasks, mix, price_usd
from tests.bench._completion_tether import run_tether_task
from tether_examples import bench_model, bench_tools
from tether_examples._serve import serve_in_thread

__all__ = ["Doubles", "main", "play_arm", "run_arm", "run_seed"]


class Doubles:
    """The model and tool doubles, served from this process for the block's duration."""

    def __init__(self, stack: ExitStack) -> None:
        self.model = stack.enter_context(serve_in_thread(bench_model.build_app(mix())))
        self.tools = stack.enter_context(serve_in_thread(bench_tools.build_app(mix())))

    def bills(self, run: str) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"{self.model}/_bench/{run}/bills", timeout=30).json()
        return doc

    def faults(self, run: str) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"{self.tools}/_bench/{run}/faults", timeout=30).json()
        return doc


def _runner(arm: str, d: Doubles, run: str, workdir: Path,
            stack: ExitStack) -> Callable[[BenchTask], tuple[str | int, str]]:
    if arm == "tether":
        return lambda t: run_tether_task(t, d.model, d.tools, run, workdir)
    client = openai.OpenAI(base_url=f"{d.model}/{run}/v1", api_key="bench-double-checks-none")
    http = stack.enter_context(httpx.Client(timeout=mix().tool_timeout))
    tools_url, verify = f"{d.tools}/bench/{run}", arm == "verification"
    return lambda t: run_direct_task(t, client, http, tools_url, verify)


def play_arm(arm: str, tasks: list[BenchTask], d: Doubles, concurrency: int,
             workdir: Path) -> tuple[list[Graded], float, dict[str, Any]]:
    """Run `tasks` in one arm: each graded, the seconds it took, the faults and overflows met.
    The run's name keeps the arm's attempts and bill apart from the other arms'."""
    run = f"{arm}-{tasks[0].seed}" if tasks else arm
    started = time.monotonic()
    with ExitStack() as stack, ThreadPoolExecutor(concurrency) as pool:
        one = _runner(arm, d, run, workdir, stack)
        ends = list(pool.map(one, tasks))
    seconds = time.monotonic() - started
    bills, faults = d.bills(run), d.faults(run)
    graded = []
    for task, (phase, answer) in zip(tasks, ends, strict=True):
        bill = bills.get(task.id, {"input_tokens": 0, "output_tokens": 0})
        usd = price_usd(bill["input_tokens"], bill["output_tokens"])
        graded.append(Graded(task, grade(task, phase, answer, usd), answer))
    injected = sum(len(v) for v in faults.values())
    overflows = sum(b.get("overflows", 0) for b in bills.values())
    return graded, seconds, {"seed": tasks[0].seed if tasks else None,
                             "toolFaultsInjected": injected, "contextOverflows": overflows}


def run_arm(arm: str, tasks: list[BenchTask], d: Doubles, concurrency: int,
            workdir: Path) -> dict[str, Any]:
    """One arm's summary on `tasks`."""
    return summarise(*play_arm(arm, tasks, d, concurrency, workdir))


def run_seed(seed: int, n: int, arms: list[str], d: Doubles, concurrency: int,
             workdir: Path) -> dict[str, dict[str, Any]]:
    tasks = make_tasks(n, seed)
    out = {}
    for arm in arms:
        out[arm] = run_arm(arm, tasks, d, concurrency, workdir / arm)
        print(f"seed {seed} {arm}: {out[arm]['completed']}/{n} completed, "
              f"{out[arm]['silentWrong']} silent wrong, {out[arm]['seconds']} s",
              file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.completion",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks per seed")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--seeds", help="comma-separated seeds (overrides --seed)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="write the PNG here")
    parser.add_argument("--workdir", type=Path, help="state dirs (default: a temporary dir)")
    parser.add_argument("--merge", nargs="+", metavar="[SEED=]OUTPUT",
                        help="run nothing: combine earlier runs' saved outputs (their last "
                        "lines); SEED= names the seed of a one-seed run's output")
    args = parser.parse_args(argv)
    if args.merge:
        return _report(_merged(args.merge), args.plot)
    arms = [a for a in args.arms.split(",") if a]
    if unknown := set(arms) - set(ARMS):
        parser.error(f"unknown arm(s) {', '.join(sorted(unknown))}: use {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        doubles = Doubles(stack)
        per_seed = {}
        for seed in seeds:
            for arm in arms:
                (workdir / str(seed) / arm).mkdir(parents=True, exist_ok=True)
            per_seed[seed] = run_seed(seed, args.tasks, arms, doubles, args.concurrency,
                                      workdir / str(seed))
    return _report(per_seed, args.plot)


def _merged(outputs: list[str]) -> dict[int, dict[str, dict[str, Any]]]:
    """Each seed's arms from earlier runs' JSON lines (one seed's, or several seeds' perSeed)."""
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for spec in outputs:
        named, _, path = spec.rpartition("=")
        last = json.loads(Path(path).read_text().strip().splitlines()[-1])
        for arm, figures in last.items():
            seed = figures.get("seed", named)
            if not figures.get("perSeed") and not seed:
                raise SystemExit(f"{path}: a one-seed output needs its seed: SEED={path}")
            seeds = figures.get("perSeed") or {seed: figures}
            for seed, one in seeds.items():
                per_seed.setdefault(int(seed), {})[arm] = one
    return per_seed


def _report(per_seed: dict[int, dict[str, dict[str, Any]]], plot_to: Path | None) -> int:
    result = combine(per_seed)
    print(table(result))
    if plot_to:
        plot(per_seed, plot_to)
        print(f"plot written to {plot_to}")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
