"""The evaluation resources (tether.dev/v1alpha1): Rubric, Judge and EvaluationPolicy (issue #10).

A policy selects AgentTasks by label (like an AgentBudget), names a Rubric (what a good answer
is) and a Judge (the pinned model that applies it), and says which tasks are sampled for
judging and which deterministic checks run over every answer. The evaluator writes the status of
all three; users and GitOps own the specs. The policy's models are in evaluation_policy.py,
re-exported here; the rules and small value types in evaluation_rules.py.

Every rule is written twice on purpose: as CEL in the CRD (the API server refuses the object)
and as a pydantic validator (the evaluator and the operator refuse the same object read another
way). One rule CEL cannot state: that ``checks[].regex`` compiles under the ``regex`` module (the
sidecar's engine, not CEL's RE2); the model checks it, and the operator leaves such a policy out
of a task's pod with a Warning Event on the policy (tether_operator.evaluation).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, JsonValue, field_validator, model_validator

from ._base import ApiModel
from ._units import Money
from .agenttask import ModelSpec, ObjectMeta
from .evaluation_policy import (
    AnchorsSpec,
    Check,
    DetectorSpec,
    EvaluationPolicy,
    EvaluationPolicySpec,
    EvaluationPolicyStatus,
    SamplingInclude,
    SamplingSpec,
)
from .evaluation_rules import (
    CAPS_RULES,
    PINNED_RULES,
    RUBRIC_IMMUTABLE,
    SAMPLES_RULE,
    VERDICT_RULES,
    Fraction,
    LocalRef,
    check_caps,
    check_pinned,
    check_samples,
    check_verdict,
)
from .policy import _DEFAULT_NON_RETRYABLE, _DEFAULT_RETRY_ON, CallRetry, FailureClass
from .status import Condition

__all__ = [
    "AnchorsSpec",
    "Check",
    "CostCaps",
    "DetectorSpec",
    "EvaluationPolicy",
    "EvaluationPolicySpec",
    "EvaluationPolicyStatus",
    "Fraction",
    "Judge",
    "JudgeModelSpec",
    "JudgeRetry",
    "JudgeSpec",
    "JudgeStatus",
    "LocalRef",
    "Rubric",
    "RubricSpec",
    "RubricStatus",
    "SamplingInclude",
    "SamplingSpec",
    "Verdict",
    "rubric_hash",
]


# --- Rubric ------------------------------------------------------------------------------------

class Verdict(ApiModel):
    """What the judge returns for one answer, and when it counts as a pass."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": VERDICT_RULES})

    kind: Literal["pass_fail", "score"] = Field(
        description="pass_fail: the judge's pass decides; score: the judge's score (0 to 1) "
        "decides, a pass when it reaches passThreshold.")
    pass_threshold: Fraction | None = Field(
        None, description="kind score only: the lowest score that passes, a decimal string "
        "between 0 and 1, e.g. \"0.7\".")

    @model_validator(mode="after")
    def _threshold(self) -> Verdict:
        check_verdict(self.kind, self.pass_threshold)
        return self


class RubricSpec(ApiModel):
    """The judge's instructions. Immutable: a verdict is always read against the rubric it was
    made with (its contentHash is on every verdict)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [RUBRIC_IMMUTABLE]})

    instructions: str = Field(
        min_length=1, max_length=32768,
        description="The rubric the judge applies: what a good answer to these tasks does and "
        "does not do, in plain words. The task's instructions and its answer are given to the "
        "judge beside it.")
    verdict: Verdict = Field(description="How the judge's answer becomes a pass or a fail.")


class RubricStatus(ApiModel):
    """The observed state of a Rubric, written by the evaluator."""

    content_hash: str | None = Field(
        None, pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256 of the spec's canonical JSON, as stamped on every verdict made "
        "with it (tether_api.evaluation.rubric_hash).")
    conditions: list[Condition] = Field(
        default_factory=list, description="Current conditions, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    observed_generation: int = Field(
        0, ge=0, description="metadata.generation this status was computed from.")


class Rubric(ApiModel):
    api_version: Literal["tether.dev/v1alpha1"] = "tether.dev/v1alpha1"
    kind: Literal["Rubric"] = "Rubric"
    metadata: ObjectMeta
    spec: RubricSpec
    status: RubricStatus = Field(default_factory=RubricStatus)


def rubric_hash(spec: RubricSpec | dict[str, Any]) -> str:
    """``sha256:<hex>`` of the spec's canonical JSON (sorted keys, no spaces, defaults filled):
    the same rubric written two ways hashes the same."""
    model = spec if isinstance(spec, RubricSpec) else RubricSpec.model_validate(spec)
    doc = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- Judge -------------------------------------------------------------------------------------

def _model_rules() -> list[JsonValue]:
    """ModelSpec's own rules (baseURL, plaintext) and the pinning ones."""
    extra = ModelSpec.model_config.get("json_schema_extra")
    rules = extra.get("x-kubernetes-validations") if isinstance(extra, dict) else None
    return [*(rules if isinstance(rules, list) else []), *PINNED_RULES]


class JudgeModelSpec(ModelSpec):
    """The judge's model, as an AgentTask's spec.model, pinned to a snapshot so that a provider's
    silent update cannot move the verdicts."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _model_rules()})

    name: str = Field(
        min_length=1, max_length=256,
        description="A pinned model snapshot, e.g. gpt-4o-2024-08-06 or "
        "claude-3-5-sonnet-20241022: never an alias containing latest; for openai and anthropic "
        "it must end in a date (-YYYY-MM-DD or -YYYYMMDD).")

    @model_validator(mode="after")
    def _pinned(self) -> JudgeModelSpec:
        check_pinned(self.provider, self.name)
        return self


class CostCaps(ApiModel):
    """What judging may spend, in USD; at the daily cap judging stops until the next UTC day."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": CAPS_RULES})

    per_call_usd: Money = Field(
        alias="perCallUSD", description="Most one judge call (all its samples) may cost; a "
        "call that could cost more is refused. Above 0, at most perDayUSD, e.g. \"0.05\".")
    per_day_usd: Money = Field(
        alias="perDayUSD", description="Most the judge may spend per UTC day over every policy "
        "that names it. Above 0, e.g. \"5.00\".")

    @model_validator(mode="after")
    def _caps(self) -> CostCaps:
        check_caps(self.per_call_usd, self.per_day_usd)
        return self


# A judge at temperature 0 can still break its JSON once, and the next call usually does not:
# its malformed verdict is retried (an AgentTask's tools keep malformed non-retryable).
_JUDGE_RETRY_ON: list[int | str] = [*_DEFAULT_RETRY_ON, "malformed"]
_JUDGE_NON_RETRYABLE: list[int | str] = [c for c in _DEFAULT_NON_RETRYABLE if c != "malformed"]


class JudgeRetry(CallRetry):
    """Retry of one judge call: the calls' policy, with a malformed verdict retried by default."""

    retry_on: list[FailureClass] = Field(
        default_factory=lambda: list(_JUDGE_RETRY_ON),
        description="Failure classes retried: HTTP statuses (100-599) or timeout, connection, "
        "empty, malformed (a verdict that is not the expected JSON), schema, fields.",
        json_schema_extra={"maxItems": 64})
    non_retryable: list[FailureClass] = Field(
        default_factory=lambda: list(_JUDGE_NON_RETRYABLE),
        description="Failure classes never retried; wins over retryOn. Same values as retryOn.",
        json_schema_extra={"maxItems": 64})


class JudgeSpec(ApiModel):
    """A model used as a judge: always at temperature 0, with a fixed seed and a majority vote."""

    model: JudgeModelSpec = Field(description="The judge's model, reached as a task's model is.")
    seed: int = Field(0, ge=0, le=2**31 - 1,
                      description="Seed sent with every judge call (where the provider honours "
                      "one), so a verdict can be reproduced.")
    samples: int = Field(
        1, ge=1, le=9,
        description="Judge calls per answer; the majority verdict counts. Odd, 1 to 9, so a "
        "vote cannot tie.",
        json_schema_extra={"x-kubernetes-validations": [SAMPLES_RULE]})
    cost_caps: CostCaps = Field(description="Spending caps of this judge, in USD.")
    retry_policy: JudgeRetry = Field(
        default_factory=JudgeRetry,
        description="Retry of one judge call (as an AgentTask's retryPolicy.calls); a verdict "
        "that is not the expected JSON counts as class malformed, retried by default (unlike a "
        "tool's malformed result).")

    @field_validator("samples")
    @classmethod
    def _odd(cls, v: int) -> int:
        return check_samples(v)


class JudgeStatus(ApiModel):
    """The observed state of a Judge, written by the evaluator."""

    spent_today_usd: Money | None = Field(
        None, alias="spentTodayUSD", description="USD spent on judge calls this UTC day.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Current conditions, one per type (e.g. "
        "JudgeCapReached).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    observed_generation: int = Field(
        0, ge=0, description="metadata.generation this status was computed from.")


class Judge(ApiModel):
    api_version: Literal["tether.dev/v1alpha1"] = "tether.dev/v1alpha1"
    kind: Literal["Judge"] = "Judge"
    metadata: ObjectMeta
    spec: JudgeSpec
    status: JudgeStatus = Field(default_factory=JudgeStatus)
