"""The AgentTask resource (tether.dev/v1alpha1): what a user applies, and what the sidecar reads.

``load_agenttask`` is the one way in from YAML: it refuses a bad task with every problem named by
its path (``spec.costEnvelope.softLimitUSD: ...``), so nothing half-valid is ever run.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ._base import ApiModel
from ._units import Money
from .policy import (
    CheckpointSpec,
    ContextBudget,
    CostEnvelope,
    EvaluationSpec,
    ObservabilitySpec,
    RetryPolicy,
    ToolSpec,
)

__all__ = [
    "API_VERSION",
    "AgentSpec",
    "AgentTask",
    "AgentTaskSpec",
    "InvalidAgentTask",
    "ModelSpec",
    "load_agenttask",
]

API_VERSION = "tether.dev/v1alpha1"

_DEFAULT_BASE_URL = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class EnvVar(ApiModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    value: str = ""


class AgentSpec(ApiModel):
    image: str = Field(description="The agent's container image.")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    resources: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )


class TaskInput(ApiModel):
    instructions: str = Field(min_length=1, description="The permanent context tier.")
    inputs: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )


class SecretKeyRef(ApiModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")


class Pricing(ApiModel):
    input_per_m_tok: Money = Field(alias="inputPerMTok", description="USD per million tokens.")
    output_per_m_tok: Money = Field(alias="outputPerMTok", description="USD per million tokens.")


class ModelSpec(ApiModel):
    provider: Literal["openai", "anthropic", "openai-compatible"]
    name: str = Field(min_length=1)
    base_url: str | None = Field(None, alias="baseURL", pattern=r"^https?://")
    credentials_secret_ref: SecretKeyRef | None = None
    context_window: int = Field(128_000, ge=256, description="Tokens.")
    default_max_tokens: int = Field(
        4096, ge=1, description="Output tokens reserved when a request names no max_tokens."
    )
    pricing: Pricing | None = Field(None, description="Overrides genai-prices.")

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> ModelSpec:
        if self.provider == "openai-compatible" and not self.base_url:
            raise ValueError("provider openai-compatible needs baseURL (e.g. http://vllm:8000/v1)")
        return self

    @property
    def upstream_base(self) -> str:
        return (self.base_url or _DEFAULT_BASE_URL[self.provider]).rstrip("/")


class AgentTaskSpec(ApiModel):
    agent: AgentSpec
    task: TaskInput
    model: ModelSpec
    tools: list[ToolSpec] = Field(default_factory=list)
    cost_envelope: CostEnvelope
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    context_budget: ContextBudget = Field(default_factory=ContextBudget)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    observability: ObservabilitySpec = Field(default_factory=ObservabilitySpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    active_deadline_seconds: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _unique_tools(self) -> AgentTaskSpec:
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tools: names must be unique, repeated: {', '.join(dupes)}")
        return self

    @property
    def prompt_budget(self) -> int:
        return self.context_budget.max_tokens or self.model.context_window

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


class ObjectMeta(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    namespace: str = "default"
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class AgentTask(ApiModel):
    api_version: Literal["tether.dev/v1alpha1"] = "tether.dev/v1alpha1"
    kind: Literal["AgentTask"] = "AgentTask"
    metadata: ObjectMeta
    spec: AgentTaskSpec


class InvalidAgentTask(ValueError):
    """The task cannot run as written; ``str()`` lists each problem by field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid AgentTask:\n{lines}")


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling against `kubectl explain agenttask.spec`)"
        problems.append(f"{path}: {msg}")
    return problems


def parse_agenttask(data: Any, source: str = "<agenttask>") -> AgentTask:
    if not isinstance(data, dict):
        raise InvalidAgentTask(source, ["(top level): expected a mapping with metadata and spec"])
    try:
        return AgentTask.model_validate(data)
    except ValidationError as exc:
        raise InvalidAgentTask(source, _describe(exc)) from exc


def load_agenttask(path: str | Path) -> AgentTask:
    """Read an AgentTask from YAML (the same file a user applies with kubectl)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidAgentTask(str(p), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidAgentTask(str(p), [f"not valid YAML: {exc}"]) from exc
    return parse_agenttask(data, str(p))


def usd(value: Decimal) -> str:
    """Money for people and JSON: fixed point, no exponent."""
    return format(value.quantize(Decimal("0.000001")), "f")
