"""Rubrics, Judges and EvaluationPolicies that must be refused, each with the words the refusal
must contain (issue #10).

Shared by tests/integration/test_eval_crds.py (the API server refuses them, with these
messages) and tests/unit/test_evaluation_api.py (tether_api refuses them too, with the same
words), so the two gates cannot drift apart. ``cel=False`` marks the one rule CEL cannot state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
FILES = {"Rubric": "rubric.yaml", "Judge": "judge.yaml",
         "EvaluationPolicy": "evaluationpolicy.yaml"}
Spec = dict[str, Any]


@dataclass(frozen=True)
class InvalidEval:
    name: str
    kind: str
    mutate: Callable[[Spec], None]
    path: str  # the field the API server's message names
    words: str  # the words a person acts on, in the API server's refusal
    cel: bool = True  # False: a rule only tether_api (and so the operator) can check
    schema: bool = False  # True: the schema's own words (range, pattern), not our message


def sample(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / FILES[kind]).read_text())
    return doc


def invalid_object(case: InvalidEval) -> dict[str, Any]:
    obj = copy.deepcopy(sample(case.kind))
    obj["metadata"]["name"] = case.name
    case.mutate(obj["spec"])
    return obj


def _set(*path: str | int, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _drop(*path: str) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _both(spec: Spec) -> None:
    spec["checks"][0]["regex"] = "area"


def _neither(spec: Spec) -> None:
    del spec["checks"][0]["jsonSchema"]


def _repeated(spec: Spec) -> None:
    spec["checks"][1]["name"] = spec["checks"][0]["name"]


INVALID_EVAL = (
    InvalidEval("judge-latest", "Judge", _set("model", "name", value="gpt-4o-latest"),
                "spec.model.name", "not an alias containing latest"),
    InvalidEval("judge-latest-compatible", "Judge", lambda s: s["model"].update(
        provider="openai-compatible", name="llama-LATEST", baseURL="https://vllm.example/v1"),
        "spec.model.name", "not an alias containing latest"),
    InvalidEval("judge-undated", "Judge", _set("model", "name", value="gpt-4o"),
                "spec.model.name", "must end in a date snapshot"),
    InvalidEval("judge-undated-anthropic", "Judge", lambda s: s["model"].update(
        provider="anthropic", name="claude-3-5-sonnet"), "spec.model.name",
        "must end in a date snapshot"),
    InvalidEval("judge-even-samples", "Judge", _set("samples", value=4), "spec.samples",
                "samples must be odd"),
    InvalidEval("judge-ten-samples", "Judge", _set("samples", value=11), "spec.samples",
                "less than or equal to 9", schema=True),
    InvalidEval("judge-zero-call-cap", "Judge", _set("costCaps", "perCallUSD", value="0"),
                "spec.costCaps.perCallUSD", "perCallUSD must be above 0"),
    InvalidEval("judge-zero-day-cap", "Judge", _set("costCaps", "perDayUSD", value="0.00"),
                "spec.costCaps.perDayUSD", "perDayUSD must be above 0"),
    InvalidEval("judge-call-above-day", "Judge", _set("costCaps", "perCallUSD", value="6.00"),
                "spec.costCaps.perCallUSD", "must not exceed costCaps.perDayUSD"),
    InvalidEval("rubric-score-no-threshold", "Rubric", _drop("verdict", "passThreshold"),
                "spec.verdict.passThreshold", "required with kind score"),
    InvalidEval("rubric-passfail-threshold", "Rubric", _set("verdict", "kind",
                                                            value="pass_fail"),
                "spec.verdict.passThreshold", "not allowed with kind pass_fail"),
    InvalidEval("rubric-threshold-above-one", "Rubric",
                _set("verdict", "passThreshold", value="1.5"), "spec.verdict.passThreshold",
                "should match", schema=True),
    InvalidEval("policy-rate-above-one", "EvaluationPolicy",
                _set("sampling", "rate", value="1.1"), "spec.sampling.rate", "should match",
                schema=True),
    InvalidEval("policy-check-both", "EvaluationPolicy", _both, "spec.checks[0]",
                "exactly one of jsonSchema and regex"),
    InvalidEval("policy-check-neither", "EvaluationPolicy", _neither, "spec.checks[0]",
                "exactly one of jsonSchema and regex"),
    InvalidEval("policy-check-repeated", "EvaluationPolicy", _repeated, "spec.checks",
                "check names must be unique"),
    InvalidEval("policy-shift-zero", "EvaluationPolicy", _set("detector", "shift", value="0"),
                "spec.detector.shift", "shift must be above 0"),
    InvalidEval("policy-shift-above-baseline", "EvaluationPolicy",
                _set("detector", "shift", value="0.9"), "spec.detector.shift",
                "must be below detector.baselinePassRate"),
    InvalidEval("policy-baseline-one", "EvaluationPolicy",
                _set("detector", "baselinePassRate", value="1"),
                "spec.detector.baselinePassRate", "baselinePassRate must be below 1"),
    InvalidEval("policy-few-false-alarms", "EvaluationPolicy",
                _set("detector", "falseAlarmEvery", value=50), "spec.detector.falseAlarmEvery",
                "greater than or equal to 100", schema=True),
    InvalidEval("policy-every-not-duration", "EvaluationPolicy",
                _set("anchors", "every", value="six hours"), "spec.anchors.every",
                "must be a duration", schema=True),
    InvalidEval("policy-no-rubric", "EvaluationPolicy", _drop("rubricRef"), "spec.rubricRef",
                "Required value", schema=True),
    InvalidEval("policy-regex-does-not-compile", "EvaluationPolicy",
                _set("checks", 1, "regex", value="(unclosed"), "spec.checks.1",
                "does not compile", cel=False),
)
