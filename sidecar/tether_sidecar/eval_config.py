"""``TETHER_EVALUATION``: what the operator tells the sidecar about a task's evaluation policies.

Set on the sidecar only when an EvaluationPolicy of the namespace selects the task (issue #10,
"Who does what", step 1); absent otherwise, and then nothing of the evaluation code is loaded.
Parsed at start-up by :class:`~tether_sidecar.settings.Settings`: a malformed value stops the
sidecar naming the variable, instead of a task whose record silently never leaves.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Check", "Evaluation", "Include", "Policy"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Check(_Model):
    """One deterministic check over the final answer: exactly one of a JSON Schema or a regex."""

    name: str = Field(min_length=1)
    target: Literal["answer"] = "answer"
    json_schema: dict[str, Any] | None = Field(None, alias="jsonSchema")
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Check:
        if (self.json_schema is None) == (self.regex is None):
            raise ValueError(f"check {self.name!r}: give exactly one of jsonSchema or regex")
        return self


class Include(_Model):
    """Whether failed or retried tasks are always judged: the evaluator's decision, from the
    record's outcome and facts; accepted here because the operator hands the policy whole."""

    failed: bool = False
    retried: bool = False


class Policy(_Model):
    name: str = Field(min_length=1)
    checks: list[Check] = Field(default_factory=list)
    sampled: bool = False
    include: Include = Include()


class Evaluation(_Model):
    evaluator_url: str = Field(alias="evaluatorURL", pattern=r"^https?://")
    policies: list[Policy] = Field(min_length=1)
