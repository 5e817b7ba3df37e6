"""The completion benchmark's fault mix and schedule: which fault a call gets, as a pure function.

A TEST DOUBLE's helper, shared by the tool double (`bench_tools`), the model double
(`bench_model`) and the benchmark (tests/bench/completion.py), so all three agree on what was
injected. The mix is the YAML file tests/bench/completion_mix.yaml (its comments say where each
rate comes from); `fault_for(mix, seed, task, step, attempt)` is the schedule: one hash of
(seed, task, step) picks the fault of the call's first attempt; a later attempt gets the same
fault only when that fault is persistent.

Keys carry everything the doubles need, so one double serves every seed and task:
``s<seed>-t<task>-<r|p><step>`` (r: a record the answer needs, p: a page to read).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Fault", "FaultMix", "Key", "fault_for", "load_mix", "page_text", "parse_key",
           "record_value"]

_KEY = re.compile(r"^s(\d+)-t(\d+)-([rp])(\d+)$")


@dataclass(frozen=True)
class Fault:
    kind: str  # a key of the mix: http_5xx, rate_limit, timeout, ...
    persistent: bool
    rate: float
    statuses: tuple[int, ...] = ()
    retry_after: int | None = None

    def status(self, salt: int) -> int:
        """The HTTP status of an error fault (several 5xx statuses rotate by `salt`)."""
        return self.statuses[salt % len(self.statuses)] if self.statuses else 0


@dataclass(frozen=True)
class FaultMix:
    tool: tuple[Fault, ...]
    model: tuple[Fault, ...]
    tool_timeout: float
    tasks: dict[str, Any]


@dataclass(frozen=True)
class Key:
    seed: int
    task: int
    kind: str  # "record" or "page"
    step: int

    def __str__(self) -> str:
        return f"s{self.seed}-t{self.task:05d}-{self.kind[0]}{self.step:02d}"


def parse_key(text: str) -> Key | None:
    match = _KEY.match(text)
    if match is None:
        return None
    seed, task, kind, step = match.groups()
    return Key(int(seed), int(task), "record" if kind == "r" else "page", int(step))


def _faults(data: dict[str, Any], where: str) -> tuple[Fault, ...]:
    out = []
    for kind, spec in data.items():
        if not isinstance(spec, dict) or not 0 <= float(spec.get("rate", -1)) <= 1:
            raise ValueError(f"{where}.{kind}: needs a rate between 0 and 1")
        statuses = spec.get("statuses") or ([spec["status"]] if "status" in spec else [])
        out.append(Fault(kind, bool(spec.get("persistent", False)), float(spec["rate"]),
                         tuple(int(s) for s in statuses), spec.get("retryAfter")))
    if sum(f.rate for f in out) > 1:
        raise ValueError(f"{where}: the rates add up to more than 1")
    return tuple(out)


def load_mix(path: str | Path) -> FaultMix:
    """The mix from its YAML file; ValueError naming the bad entry."""
    data = yaml.safe_load(Path(path).read_text())
    return FaultMix(_faults(data["tool"], "tool"), _faults(data.get("model", {}), "model"),
                    float(data["toolTimeoutSeconds"]), dict(data["tasks"]))


def draw(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(faults: tuple[Fault, ...], u: float) -> Fault | None:
    edge = 0.0
    for fault in faults:
        edge += fault.rate
        if u < edge:
            return fault
    return None


def fault_for(mix: FaultMix, seed: int, task: int, step: int | str, attempt: int,
              *, model: bool = False) -> Fault | None:
    """The fault of attempt `attempt` (0 = first) of the call (seed, task, step), or None."""
    faults = mix.model if model else mix.tool
    fault = _pick(faults, draw(seed, task, "model" if model else "tool", step))
    if fault is None or (attempt > 0 and not fault.persistent):
        return None
    return fault


def record_value(key: str) -> int:
    """The value the tool double answers for a record key (and the ground truth of a task)."""
    return int(draw("value", key) * 10_000)


def page_text(key: str, chars: int) -> str:
    """A page's filler text: `chars` characters, no digits (nothing in it looks like a value)."""
    words = ("the", "tide", "log", "for", "this", "page", "shows", "nothing", "of", "note")
    out: list[str] = []
    i = int(draw("page", key) * 10)
    while sum(len(w) + 1 for w in out) < chars:
        out.append(words[i % len(words)])
        i += 1
    return " ".join(out)[:chars]
