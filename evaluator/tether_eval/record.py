"""The task record (sidecar → evaluator, ``POST /v1/records``) and the judge's verdict, as models.

The record's shape is the contract in docs/evaluation.md ("The record"): version 1, idempotent on
``(uid, attempt)``. Validation refuses what the evaluator could not count or judge correctly, and
says which field is wrong; it does not check what the sidecar alone knows (the checks' reasons).
A record whose redaction failed carries no text: ``answer``, ``instructions`` and ``inputs`` must
be null, so a failed redaction can never smuggle raw text into the store.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

__all__ = ["Check", "Deterministic", "LimitHits", "PolicyRef", "Record", "Redaction", "Verdict"]

Outcome = Literal["answered", "no_answer", "budget_exceeded", "no_record"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class PolicyRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    sampled: StrictBool


class Redaction(_Model):
    ok: StrictBool
    findings: dict[str, int] = Field(default_factory=dict)
    engine: str = ""


class Check(_Model):
    policy: str
    name: str
    passed: StrictBool
    reason: str = ""


class LimitHits(_Model):
    soft: int = Field(0, ge=0)
    hard: int = Field(0, ge=0)


class Deterministic(_Model):
    checks: list[Check] = Field(default_factory=list)
    retries: int = Field(0, ge=0)
    verification_failures: int = Field(0, ge=0, alias="verificationFailures")
    limit_hits: LimitHits = Field(default_factory=LimitHits, alias="limitHits")
    spent_usd: Decimal = Field(Decimal(0), ge=0, alias="spentUSD")


class Record(_Model):
    version: Literal[1]
    uid: str = Field(min_length=1, max_length=128)
    namespace: str = Field(min_length=1, max_length=253)
    task: str = Field(min_length=1, max_length=253)
    labels: dict[str, str] = Field(default_factory=dict)
    attempt: int = Field(ge=1)
    policies: list[PolicyRef] = Field(min_length=1)
    outcome: Outcome
    answer: Any = None
    instructions: str | None = None
    inputs: Any = None
    redaction: Redaction
    deterministic: Deterministic = Field(default_factory=Deterministic)
    finished_at: datetime = Field(alias="finishedAt")

    @model_validator(mode="after")
    def _unredacted_carries_no_text(self) -> Record:
        if not self.redaction.ok and (self.answer is not None or self.instructions is not None
                                      or self.inputs is not None):
            raise ValueError("redaction.ok is false: answer, instructions and inputs must be "
                             "null (a record that could not be redacted carries no text)")
        return self


class Verdict(_Model):
    """What the judge must answer, exactly: anything else is ``malformed_verdict`` (strict: a
    string "true" or "0.9" is not a boolean or a number)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, strict=True)

    passed: StrictBool = Field(alias="pass")
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    reason: str = Field(max_length=4000)
