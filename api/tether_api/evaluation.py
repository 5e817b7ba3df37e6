"""The evaluation resources (tether.dev/v1alpha1): Rubric, Judge and EvaluationPolicy (issue #10).

A policy selects AgentTasks by label (like an AgentBudget), names a Rubric (what a good answer
is) and a Judge (the pinned model that applies it), and says which tasks are sampled for
judging and which deterministic checks run over every answer. The evaluator writes the status of
all three; users and GitOps own the specs.

Every rule is written twice on purpose: as CEL in the CRD (the API server refuses the object)
and as a pydantic validator (the evaluator and the operator refuse the same object read another
way). One rule CEL cannot state: that ``checks[].regex`` compiles under Python's ``re`` (the
sidecar's engine, not CEL's RE2); the model checks it, and the operator leaves such a policy out
of a task's pod with a Warning Event on the policy (tether_operator.evaluation).
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    field_validator,
    model_validator,
)

from ._base import ApiModel
from ._units import Duration, Money
from .agentbudget import LabelSelector
from .agenttask import ConfigMapKeyRef, ModelSpec, ObjectMeta
from .evaluation_rules import (
    CAPS_RULES,
    CHECK_RULES,
    DETECTOR_RULES,
    FRACTION_PATTERN,
    PINNED_RULES,
    RUBRIC_IMMUTABLE,
    SAMPLES_RULE,
    UNIQUE_CHECKS,
    VERDICT_RULES,
    check_caps,
    check_detector,
    check_pinned,
    check_regex,
    check_samples,
    check_verdict,
    unique_checks,
)
from .policy import CallRetry
from .status import Condition

__all__ = [
    "Check",
    "CostCaps",
    "DetectorSpec",
    "EvaluationPolicy",
    "EvaluationPolicySpec",
    "EvaluationPolicyStatus",
    "Fraction",
    "Judge",
    "JudgeModelSpec",
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


def _to_fraction(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{value!r} is not a fraction: write a quoted decimal between 0 and 1, "
                         "e.g. \"0.1\"")
    if not re.fullmatch(FRACTION_PATTERN, text):
        raise ValueError(f"{value!r} is not a fraction: a quoted decimal between 0 and 1 with at "
                         "most 6 decimals, e.g. \"0.1\"")
    return Decimal(text)


Fraction = Annotated[
    Decimal,
    BeforeValidator(_to_fraction),
    PlainSerializer(lambda v: format(v, "f"), return_type=str),
    Field(json_schema_extra={"type": "string", "pattern": FRACTION_PATTERN, "maxLength": 8}),
]
"""A decimal between 0 and 1 written as a string (``"0.1"``): exact, unlike a float."""

_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class LocalRef(ApiModel):
    """An object of the given kind in the policy's own namespace."""

    name: str = Field(pattern=_NAME, max_length=253, description="Name of the object.")


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
    retry_policy: CallRetry = Field(
        default_factory=CallRetry,
        description="Retry of one judge call (as an AgentTask's retryPolicy.calls); a verdict "
        "that is not the expected JSON counts as class malformed.")

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


# --- EvaluationPolicy --------------------------------------------------------------------------

class SamplingInclude(ApiModel):
    """Tasks judged whatever the hash says. They are outside the random sample: the evaluator
    keeps them out of the sampled pass rate."""

    failed: bool = Field(False, description="Judge every task that ended Failed or "
                         "BudgetExceeded.")
    retried: bool = Field(False, description="Judge every task that needed more than one pod "
                          "(attempt above 1).")


class SamplingSpec(ApiModel):
    """Which tasks the judge sees. A task is sampled when the first 8 bytes of sha256(its UID),
    read as a fraction of 2^64, fall below rate: two policies with the same rate sample the same
    tasks, and a lower rate's sample is part of a higher one's."""

    rate: Fraction = Field(
        description="Fraction of the selected tasks judged, a decimal string from 0 to 1, e.g. "
        "\"0.1\". Every task still gets the deterministic checks.")
    stratify_by: list[str] = Field(
        default_factory=list,
        description="Task label keys whose values split the counts into strata (e.g. "
        "[tether.dev/agent-version]): a drift in one stratum is not hidden by the others. Each "
        "stratum is sampled at rate; a task without the label is in that key's <none> stratum.",
        json_schema_extra={"maxItems": 8, "items": {"type": "string", "maxLength": 317}})
    include: SamplingInclude = Field(
        default_factory=SamplingInclude, description="Tasks judged whatever the hash says.")


class Check(ApiModel):
    """A deterministic check the sidecar runs over a task's final answer: exactly one of
    jsonSchema and regex."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": CHECK_RULES})

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$", max_length=63,
                      description="Unique name of the check (metrics label check).")
    target: Literal["answer"] = Field(
        "answer", description="What the check reads: answer (the JSON the agent gave to "
        "Harness.finish).")
    json_schema: dict[str, Any] | None = Field(
        None, alias="jsonSchema",
        description="A JSON Schema (draft 2020-12) the answer must match.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    regex: str | None = Field(
        None, max_length=1024,
        description="A Python regular expression that must match somewhere in the answer "
        "(a JSON string answer as is, any other answer as its JSON text). Checked by the "
        "operator: one that does not compile keeps the policy out of new pods, with a Warning "
        "Event on the policy.")

    @model_validator(mode="after")
    def _one(self) -> Check:
        check_regex(self.json_schema, self.regex)
        return self


class DetectorSpec(ApiModel):
    """The drift alarm over judged samples (a Bernoulli CUSUM): it alarms when the pass rate
    falls from baselinePassRate by shift, tuned to alarm falsely about once in falseAlarmEvery
    samples."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": DETECTOR_RULES})

    baseline_pass_rate: Fraction = Field(
        description="The pass rate the agent has when all is well, e.g. \"0.85\"; above shift, "
        "below 1.")
    shift: Fraction = Field(
        Decimal("0.05"), description="The fall in pass rate worth an alarm, e.g. \"0.05\" (from "
        "0.85 to 0.80); above 0, below baselinePassRate.")
    false_alarm_every: int = Field(
        5000, ge=100, le=10_000_000,
        description="Samples between false alarms on average when nothing changed (the "
        "in-control run length); at least 100. Larger: fewer false alarms, later true ones.")

    @model_validator(mode="after")
    def _order(self) -> DetectorSpec:
        check_detector(self.baseline_pass_rate, self.shift)
        return self


class AnchorsSpec(ApiModel):
    """Fixed answers with known verdicts, judged on a schedule: a change in their pass rate is
    the judge drifting, not the agent (condition JudgeDrift)."""

    config_map_ref: ConfigMapKeyRef = Field(
        description="A ConfigMap key holding the anchors as JSON lines, one "
        "{\"instructions\", \"answer\", \"expected\": {\"pass\": bool}} per line.")
    every: Duration = Field("6h", description="How often the anchors are judged, e.g. \"6h\".")


class EvaluationPolicySpec(ApiModel):
    """Continuous evaluation of the AgentTasks the selector picks."""

    selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Which AgentTasks of this namespace are evaluated, by label (empty: all).")
    rubric_ref: LocalRef = Field(description="The Rubric the judge applies.")
    judge_ref: LocalRef = Field(description="The Judge that applies it.")
    sampling: SamplingSpec = Field(
        description="Which tasks the judge sees. A task is sampled when the first 8 bytes of "
        "sha256(its UID), read as a fraction of 2^64, fall below rate: two policies with the "
        "same rate sample the same tasks, and a lower rate's sample is part of a higher one's.")
    checks: list[Check] = Field(
        default_factory=list,
        description="Deterministic checks over every selected task's answer, sampled or not; "
        "names unique.",
        json_schema_extra={"maxItems": 32, "x-kubernetes-validations": [UNIQUE_CHECKS]})
    detector: DetectorSpec | None = Field(
        None, description="The drift alarm (condition Degraded); unset: pass rates only, no "
        "alarm.")
    anchors: AnchorsSpec | None = Field(
        None, description="Anchor answers that watch the judge itself (unset: none).")

    @field_validator("checks")
    @classmethod
    def _unique(cls, v: list[Check]) -> list[Check]:
        unique_checks([c.name for c in v])
        return v


class EvaluationPolicyStatus(ApiModel):
    """The observed state of an EvaluationPolicy, written by the evaluator only."""

    observed_generation: int = Field(0, ge=0, description="metadata.generation this status "
                                     "was computed from.")
    records: int = Field(0, ge=0, description="Task records received (every selected task).")
    samples: int = Field(0, ge=0, description="Records chosen for judging.")
    judged: int = Field(0, ge=0, description="Samples with a verdict.")
    pass_rate: float | None = Field(None, description="Passes per verdict, 0 to 1.")
    pass_rate_lower: float | None = Field(None, description="Lower bound of the pass rate's "
                                          "95 % Wilson interval.")
    pass_rate_upper: float | None = Field(None, description="Upper bound of that interval.")
    mean_score: float | None = Field(None, description="Mean judge score, 0 to 1.")
    cusum: float | None = Field(None, description="The drift statistic now; the alarm sounds "
                                "at its threshold.")
    alarms: int = Field(0, ge=0, description="Drift alarms raised since creation.")
    anchor_pass_rate: float | None = Field(None, description="Pass rate of the last anchor "
                                           "round, 0 to 1.")
    judge_spent_today_usd: Money | None = Field(
        None, alias="judgeSpentTodayUSD", description="USD this policy's judging spent this "
        "UTC day.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Degraded (agent drift alarmed), JudgeDrift "
        "(anchors moved), JudgeCapReached, RedactionFailures.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


class EvaluationPolicy(ApiModel):
    api_version: Literal["tether.dev/v1alpha1"] = "tether.dev/v1alpha1"
    kind: Literal["EvaluationPolicy"] = "EvaluationPolicy"
    metadata: ObjectMeta
    spec: EvaluationPolicySpec
    status: EvaluationPolicyStatus = Field(default_factory=EvaluationPolicyStatus)
