"""The EvaluationPolicy resource (tether.dev/v1alpha1, issue #10): which AgentTasks are
evaluated, against which Rubric and Judge, how they are sampled, which deterministic checks run
over every answer, and the drift alarm. Re-exported by tether_api.evaluation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ._base import ApiModel
from ._units import Duration, Money
from .agentbudget import LabelSelector
from .agenttask import ConfigMapKeyRef, ObjectMeta
from .evaluation_rules import (
    CHECK_RULES,
    DETECTOR_RULES,
    UNIQUE_CHECKS,
    Fraction,
    LocalRef,
    check_detector,
    check_regex,
    unique_checks,
)
from .status import Condition

__all__ = ["AnchorsSpec", "Check", "DetectorSpec", "EvaluationPolicy", "EvaluationPolicySpec",
           "EvaluationPolicyStatus", "SamplingInclude", "SamplingSpec"]


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
        default_factory=SamplingInclude, description="Tasks judged whatever the hash says; "
        "outside the random sample, so the evaluator keeps them out of the sampled pass rate.")


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
        description="A regular expression (Python's regex module, the sidecar's) that must "
        "match somewhere in the answer (a JSON string answer as is, any other answer as its "
        "JSON text). Checked by the "
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
