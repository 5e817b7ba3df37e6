"""The completion benchmark's tasks, their grading and their price (issue #11, contract 2).

`make_tasks(n, seed)` is the seeded task list every arm (and the cluster run) gets: each task
reads 20-40 keys in order through the bench tool double and answers the count and total of its
records; a long task reads big pages on its odd steps, so its history cannot fit the model
double's context window without compaction. `grade()` judges one task's end; `price_usd()` is
what the model double's bill costs, priced with genai-prices as the sidecar prices it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tether_examples.bench_faults import FaultMix, Key, draw, fault_for, load_mix, record_value

__all__ = ["MIX_PATH", "MODEL", "BenchTask", "Outcome", "grade", "make_tasks", "mix",
           "price_usd"]

MIX_PATH = Path(__file__).with_name("completion_mix.yaml")
MODEL = "gpt-4o"  # the model double's name; a real one, so genai-prices has its price
INSTRUCTIONS = ("Call the tool for every key in `keys`, in order (lookup for keys with -r, "
                "read_page for keys with -p), then answer with the number of records and the "
                "total of their values.")
OutcomeKind = Literal["completed", "silent_wrong", "explicit_failure"]


@lru_cache(maxsize=1)
def mix() -> FaultMix:
    return load_mix(MIX_PATH)


@dataclass(frozen=True)
class BenchTask:
    seed: int
    index: int
    steps: int
    long: bool  # its history overflows the model's context window without a budget
    keys: tuple[str, ...]
    expected: str  # the correct final answer
    faults: tuple[tuple[int, str, bool], ...]  # (step, kind, persistent) at each first attempt

    @property
    def id(self) -> str:
        return f"s{self.seed}-t{self.index:05d}"

    @property
    def possible(self) -> bool:
        """False when a persistent fault makes the task impossible for any agent."""
        return not any(persistent for _, _, persistent in self.faults)

    @property
    def inputs(self) -> dict[str, list[str]]:
        return {"keys": list(self.keys)}

    def user_message(self) -> str:
        """The user message the reference agent builds from instructions and inputs."""
        import json
        return INSTRUCTIONS + f"\nInputs: {json.dumps(self.inputs)}"


def _task(seed: int, index: int, fm: FaultMix) -> BenchTask:
    spec = fm.tasks
    low, high = int(spec["minSteps"]), int(spec["maxSteps"])
    steps = low + int(draw(seed, index, "steps") * (high - low + 1))
    long = draw(seed, index, "long") < float(spec["longFraction"])
    keys = tuple(str(Key(seed, index, "page" if long and step % 2 else "record", step))
                 for step in range(steps))
    records = [k for k in keys if "-r" in k]
    expected = (f"DONE s{seed}-t{index:05d}: {len(records)} records, total "
                f"{sum(record_value(k) for k in records)}")
    faults = tuple((step, f.kind, f.persistent) for step in range(steps)
                   if (f := fault_for(fm, seed, index, step, 0)) is not None)
    return BenchTask(seed, index, steps, long, keys, expected, faults)


def make_tasks(n: int, seed: int) -> list[BenchTask]:
    """The first `n` tasks of `seed`: the same list on every call."""
    fm = mix()
    return [_task(seed, index, fm) for index in range(n)]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    usd: float  # what the provider billed for the task


def grade(task: BenchTask, phase_or_exit: str | int, answer: str | None,
          billed_usd: float) -> Outcome:
    """Completed: reported success with the correct answer. Silent wrong: reported success with
    another answer. Explicit failure: a non-zero exit, a phase other than Succeeded, no answer,
    or the model's own ``CANNOT COMPLETE``."""
    ok = phase_or_exit == 0 or phase_or_exit == "Succeeded"
    text = (answer or "").strip()
    if not ok or not text or text.startswith("CANNOT COMPLETE"):
        return Outcome("explicit_failure", billed_usd)
    return Outcome("completed" if text == task.expected else "silent_wrong", billed_usd)


@lru_cache(maxsize=1)
def _prices() -> tuple[Decimal, Decimal]:
    from genai_prices import Usage, calc_price
    one = calc_price(Usage(input_tokens=1_000_000), model_ref=MODEL, provider_id="openai")
    out = calc_price(Usage(output_tokens=1_000_000), model_ref=MODEL, provider_id="openai")
    return one.total_price, out.total_price


def price_usd(input_tokens: int, output_tokens: int) -> float:
    """USD of a bill at gpt-4o's genai-prices price (flat per token, no cache tokens here)."""
    per_in, per_out = _prices()
    return float((per_in * input_tokens + per_out * output_tokens) / 1_000_000)
