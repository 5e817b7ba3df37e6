"""Anchors: a frozen set of answers with known verdicts, re-judged on a schedule, so a change in
the judge shows apart from a change in the agent (docs/evaluation.md, "Anchors").

The policy's ``anchors.configMapRef`` names a ConfigMap key of JSON lines, one
``{"instructions", "answer", "expected": {"pass": bool}}`` each (``inputs`` optional). At start
and every ``anchors.every`` the whole set goes through the same judge path as a record (the
policy's Rubric and Judge, its samples and vote, its caps and journal), and the run's counts are
stored. The first run is the baseline; :func:`stats.attribute` tests the latest against it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import Policy, RubricSpec
from .judge import JudgeClient, vote
from .stats import AnchorCheck

__all__ = ["Anchor", "AnchorRun", "AnchorSource", "AnchorsError", "check_of", "file_source",
           "judge_anchors", "parse_anchors"]

AnchorSource = Callable[[Policy], Awaitable[str]]  # the ConfigMap key's text


class AnchorsError(Exception):
    """The anchor set cannot be read or parsed; the message names where and what to fix."""


class _Expected(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    passed: bool = Field(alias="pass")


class Anchor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    instructions: str
    inputs: Any = None
    answer: Any
    expected: _Expected


@dataclass(frozen=True)
class AnchorRun:
    passes: int
    n: int
    agreed: int  # verdicts equal to the expected one (the judge's accuracy on the set)


def parse_anchors(text: str, where: str) -> list[Anchor]:
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Anchor.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise AnchorsError(f"{where} line {no}: not an anchor {{\"instructions\", "
                               f"\"answer\", \"expected\": {{\"pass\": bool}}}}: {exc}") from exc
    if not out:
        raise AnchorsError(f"{where}: no anchors (one JSON object per line)")
    return out


def file_source(directory: Path) -> AnchorSource:
    """Anchors from DIR/<configmap>/<key>: a mounted ConfigMap, or files without a cluster."""
    async def read(policy: Policy) -> str:
        assert policy.spec.anchors is not None
        ref = policy.spec.anchors.config_map_ref
        path = directory / ref.name / ref.key
        try:
            return path.read_text()
        except OSError as exc:
            raise AnchorsError(f"anchors of ConfigMap {ref.name} key {ref.key}: cannot read "
                               f"{path} ({exc}); mount the ConfigMap there") from exc
    return read


async def judge_anchors(client: JudgeClient, rubric: RubricSpec, rubric_hash: str,
                        policy: str, anchors: list[Anchor], run_at: str,
                        on_cost: Callable[[float], None]) -> AnchorRun:
    """Judge every anchor as a record is judged (raises ``judge.CapReached`` at the cap). A
    failed judgement (an outage, a malformed verdict) is left out of the counts: it says
    nothing about how the judge reads the anchors."""
    passes = agreed = judged = 0
    for i, a in enumerate(anchors):
        material = {"instructions": a.instructions, "inputs": a.inputs, "answer": a.answer,
                    "outcome": "answered", "checks": []}
        key = (f"anchor:{run_at}:{i}", 0, policy)
        answers = [await client.sample(key, s, client.body(rubric, material, s), on_cost)
                   for s in range(client.spec.samples)]
        row = vote(answers, rubric, rubric_hash, client.name, "anchor")
        if row.verdict == "judge_failed":
            continue
        judged += 1
        passes += row.verdict == "pass"
        agreed += (row.verdict == "pass") == a.expected.passed
    return AnchorRun(passes, judged, agreed)


def check_of(runs: list[tuple[str, int, int, int]]) -> AnchorCheck | None:
    """The latest run against the first (the baseline); None before any run."""
    if not runs:
        return None
    (_, bp, bn, _), (_, p, n, _) = runs[0], runs[-1]
    return AnchorCheck(baseline_passes=bp, baseline_n=bn, passes=p, n=n)
