"""What the evaluator judges with: rubrics, judges and policies, and its own settings.

The shapes are the CRDs' specs (docs/evaluation.md, "The evaluator"): ``Rubric``, ``Judge`` and
``EvaluationPolicy``. Until the evaluator watches them in a cluster it reads them from one YAML
file (``--config``), keyed by name; the models here are the subset the judging path reads, with
the CRDs' aliases, so the same documents load either way.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tether_api import CallRetry, ModelSpec

__all__ = ["ConfigError", "Detector", "EvalConfig", "Include", "JudgeSpec", "Policy",
           "RubricSpec", "Sampling", "load_config", "rubric_hash"]


class ConfigError(Exception):
    """The evaluator's configuration cannot work; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class VerdictKind(_Model):
    kind: Literal["pass_fail", "score"] = "pass_fail"
    pass_threshold: Decimal = Field(Decimal("0.7"), ge=0, le=1, alias="passThreshold")


class RubricSpec(_Model):
    instructions: str = Field(min_length=1)
    verdict: VerdictKind = Field(default_factory=VerdictKind)


class CostCaps(_Model):
    per_call_usd: Decimal = Field(gt=0, alias="perCallUSD")
    per_day_usd: Decimal = Field(gt=0, alias="perDayUSD")


# A judge's default: the calls' defaults, and a malformed or schema-breaking verdict retried (a
# sampled model may answer well the next time; the sidecar's default never retries them).
JUDGE_RETRY = CallRetry.model_validate({
    "maxAttempts": 3,
    "retryOn": [408, 429, 500, 502, 503, 504, 529, "timeout", "connection", "empty", "malformed",
                "schema"],
    "nonRetryable": [400, 401, 403, 404, 409, 422],
})


class JudgeSpec(_Model):
    model: ModelSpec
    seed: int = 0
    samples: int = Field(1, ge=1, le=9)
    cost_caps: CostCaps = Field(alias="costCaps")
    retry_policy: CallRetry = Field(default_factory=lambda: JUDGE_RETRY, alias="retryPolicy")
    max_output_tokens: int = Field(512, ge=16, le=8192, alias="maxOutputTokens")

    @field_validator("samples")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("samples must be odd (a majority vote needs no tie-break)")
        return v


class Include(_Model):
    failed: bool = False
    retried: bool = False


class Sampling(_Model):
    rate: Decimal = Field(Decimal("0.1"), ge=0, le=1)
    stratify_by: list[str] = Field(default_factory=list, alias="stratifyBy")
    include: Include = Field(default_factory=Include)


class Detector(_Model):
    baseline_pass_rate: Decimal = Field(Decimal("0.85"), gt=0, lt=1, alias="baselinePassRate")
    shift: Decimal = Field(Decimal("0.05"), gt=0, lt=1)
    false_alarm_every: int = Field(5000, ge=10, alias="falseAlarmEvery")


class Policy(_Model):
    namespace: str = "default"
    rubric: str = Field(alias="rubricRef")
    judge: str = Field(alias="judgeRef")
    sampling: Sampling = Field(default_factory=Sampling)
    detector: Detector = Field(default_factory=Detector)


class EvalConfig(_Model):
    rubrics: dict[str, RubricSpec] = Field(default_factory=dict)
    judges: dict[str, JudgeSpec] = Field(default_factory=dict)
    policies: dict[str, Policy] = Field(default_factory=dict)

    def check_refs(self) -> None:
        for name, pol in self.policies.items():
            if pol.rubric not in self.rubrics:
                raise ConfigError(f"policies.{name}.rubricRef: no rubric {pol.rubric!r}")
            if pol.judge not in self.judges:
                raise ConfigError(f"policies.{name}.judgeRef: no judge {pol.judge!r}")


def rubric_hash(spec: RubricSpec) -> str:
    """sha256 of the spec's canonical JSON (sorted keys, compact): stamped on every verdict."""
    doc = spec.model_dump(mode="json", by_alias=True)
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def load_config(path: Path) -> EvalConfig:
    try:
        doc = yaml.safe_load(path.read_text())
        cfg = EvalConfig.model_validate(doc or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from exc
    cfg.check_refs()
    return cfg
