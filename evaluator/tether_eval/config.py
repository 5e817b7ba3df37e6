"""What the evaluator judges with: Rubrics, Judges and EvaluationPolicies, by name.

The specs are the CRDs' own models (:mod:`tether_api.evaluation`,
:mod:`tether_api.evaluation_policy`). Until the evaluator watches them in a cluster it reads them
from one YAML file (``TETHER_EVAL_CONFIG``)::

    rubrics:  {NAME: <Rubric spec>}
    judges:   {NAME: <Judge spec>}
    policies: {NAME: {namespace: NS, spec: <EvaluationPolicy spec>}}
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether_api.evaluation import JudgeSpec, RubricSpec, rubric_hash
from tether_api.evaluation_policy import EvaluationPolicySpec

__all__ = ["ConfigError", "EvalConfig", "JudgeSpec", "Policy", "RubricSpec", "load_config",
           "rubric_hash"]


class ConfigError(Exception):
    """The evaluator's configuration cannot work; the message names the field."""


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1)
    spec: EvaluationPolicySpec
    # metadata.creationTimestamp in a cluster: records received before it are not taken up
    # later (:mod:`backfill`); unset in a file.
    created: datetime | None = None

    @property
    def judge(self) -> str:
        return self.spec.judge_ref.name

    @property
    def rubric(self) -> str:
        return self.spec.rubric_ref.name


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rubrics: dict[str, RubricSpec] = Field(default_factory=dict)
    judges: dict[str, JudgeSpec] = Field(default_factory=dict)
    policies: dict[str, Policy] = Field(default_factory=dict)

    def check_refs(self) -> None:
        for name, pol in self.policies.items():
            if pol.rubric not in self.rubrics:
                raise ConfigError(f"policies.{name}.spec.rubricRef: no rubric {pol.rubric!r}")
            if pol.judge not in self.judges:
                raise ConfigError(f"policies.{name}.spec.judgeRef: no judge {pol.judge!r}")


def load_config(path: Path) -> EvalConfig:
    try:
        doc = yaml.safe_load(path.read_text())
        cfg = EvalConfig.model_validate(doc or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"TETHER_EVAL_CONFIG {path}: {exc}") from exc
    cfg.check_refs()
    return cfg
