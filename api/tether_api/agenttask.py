"""The AgentTask resource (tether.dev/v1alpha1): what a user applies, and what the sidecar reads.

``load_agenttask`` is the one way in from YAML: it refuses a bad task with every problem named by
its path (``spec.costEnvelope.softLimitUSD: ...``), so nothing half-valid is ever run.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from ._base import ApiModel
from ._units import Money
from .policy import (
    CheckpointSpec,
    ContextBudget,
    CostEnvelope,
    ObservabilitySpec,
    RetryPolicy,
    ToolSpec,
)

__all__ = [
    "API_VERSION",
    "PLAINTEXT_MESSAGE",
    "AgentSpec",
    "AgentTask",
    "AgentTaskSpec",
    "CABundle",
    "ConfigMapKeyRef",
    "InvalidAgentTask",
    "ModelSpec",
    "SecretKeyRef",
    "load_agenttask",
    "yaml_loader",
]

API_VERSION = "tether.dev/v1alpha1"

PLAINTEXT_MESSAGE = (
    "baseURL must start with https://: the API key and prompts would cross the network "
    "unencrypted; use https, or set spec.model.allowPlaintextHTTP: true for an in-cluster "
    "server or a test double"
)

_DEFAULT_BASE_URL = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class EnvVar(ApiModel):
    """An environment variable of the agent container."""

    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="Variable name, e.g. LOG_LEVEL."
    )
    value: str = Field("", description="Its value, as plain text (no secrets: the sidecar "
                       "holds the model credentials).")


class AgentSpec(ApiModel):
    """The agent's container: it talks only to the sidecar on 127.0.0.1."""

    image: str = Field(description="The agent's container image, e.g. "
                       "docker.io/tether/agent:0.1.0 (a fixed tag: :latest means pull Always).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="As in a Pod: Always, IfNotPresent or Never (unset: Kubernetes' "
        "default, Always for :latest).")
    command: list[str] = Field(
        default_factory=list,
        description="Entrypoint, replacing the image's ENTRYPOINT (unset: the image's).",
    )
    args: list[str] = Field(
        default_factory=list,
        description="Arguments to the entrypoint, replacing the image's CMD (unset: the image's).",
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables for the agent container."
    )
    resources: dict[str, Any] = Field(
        default_factory=dict,
        description="CPU and memory requests and limits of the agent container, as in a Pod "
        "(e.g. {limits: {memory: 512Mi}}).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class TaskInput(ApiModel):
    """What the agent is asked to do: the permanent context tier, never compacted."""

    instructions: str = Field(
        min_length=1, description="What the agent must do, in plain words."
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form structured inputs handed to the agent with the instructions.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class SecretKeyRef(ApiModel):
    """A key in a Secret in the task's namespace."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Name of the Secret."
    )
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", description="Key within the Secret.")


class ConfigMapKeyRef(ApiModel):
    """A key in a ConfigMap in the task's namespace."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Name of the ConfigMap."
    )
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", description="Key within the ConfigMap.")


class CABundle(ApiModel):
    """PEM CA certificates the sidecar trusts for the model and tools, besides the system ones
    (a provider or proxy behind a private CA). Exactly one of the two references."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.configMapKeyRef) != has(self.secretKeyRef)",
                    "message": "caBundle needs exactly one of configMapKeyRef and secretKeyRef",
                }
            ]
        }
    )

    config_map_key_ref: ConfigMapKeyRef | None = Field(
        None, description="A ConfigMap key holding the PEM bundle (CA certificates are public)."
    )
    secret_key_ref: SecretKeyRef | None = Field(
        None, description="A Secret key holding the PEM bundle."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CABundle:
        if (self.config_map_key_ref is None) == (self.secret_key_ref is None):
            raise ValueError("caBundle needs exactly one of configMapKeyRef and secretKeyRef")
        return self


class Pricing(ApiModel):
    """Model prices in USD per million tokens."""

    input_per_m_tok: Money = Field(
        alias="inputPerMTok", description="USD per million input tokens, e.g. \"2.50\"."
    )
    output_per_m_tok: Money = Field(
        alias="outputPerMTok", description="USD per million output tokens, e.g. \"10.00\"."
    )


class ModelSpec(ApiModel):
    """The LLM the agent talks to through the sidecar, which holds the credentials."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.provider != 'openai-compatible' || has(self.baseURL)",
                    "message": "provider openai-compatible needs baseURL "
                    "(e.g. https://vllm.example:8000/v1)",
                    "fieldPath": ".baseURL",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "!has(self.baseURL) || self.baseURL.startsWith('https://') || "
                    "(has(self.allowPlaintextHTTP) && self.allowPlaintextHTTP)",
                    "message": PLAINTEXT_MESSAGE,
                    "fieldPath": ".baseURL",
                    "reason": "FieldValueForbidden",
                },
            ]
        }
    )

    provider: Literal["openai", "anthropic", "openai-compatible"] = Field(
        description="Wire format and default endpoint: openai, anthropic, or openai-compatible "
        "(any server speaking the OpenAI API; needs baseURL)."
    )
    name: str = Field(min_length=1, description="Model name sent to the provider, e.g. gpt-4o.")
    base_url: str | None = Field(
        None,
        alias="baseURL",
        pattern=r"^https?://",
        description="Provider endpoint, an https:// URL (unset: the provider's public API); "
        "http:// only with allowPlaintextHTTP.",
    )
    allow_plaintext_http: bool = Field(
        False,
        alias="allowPlaintextHTTP",
        description="Allow an http:// baseURL: the API key and every prompt then cross the "
        "network unencrypted. For an in-cluster server or a test double only.",
    )
    ca_bundle: CABundle | None = Field(
        None,
        description="Extra CA certificates the sidecar trusts for the model and tools (unset: "
        "the system store only).",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the provider's API key; only the sidecar reads it.",
    )
    context_window: int = Field(
        128_000, ge=256, description="The model's context window, in tokens."
    )
    default_max_tokens: int = Field(
        4096, ge=1, description="Output tokens reserved when a request names no max_tokens."
    )
    pricing: Pricing | None = Field(
        None, description="Prices to charge, overriding the genai-prices table."
    )

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> ModelSpec:
        if self.provider == "openai-compatible" and not self.base_url:
            raise ValueError(
                "provider openai-compatible needs baseURL (e.g. https://vllm.example:8000/v1)")
        if (self.base_url and not self.base_url.startswith("https://")
                and not self.allow_plaintext_http):
            raise ValueError(PLAINTEXT_MESSAGE)
        return self

    @property
    def upstream_base(self) -> str:
        return (self.base_url or _DEFAULT_BASE_URL[self.provider]).rstrip("/")


class AgentTaskSpec(ApiModel):
    """An agent run on the harness: what it runs, what it may call, and what it may spend."""

    agent: AgentSpec = Field(description="The agent's container.")
    task: TaskInput = Field(description="What the agent is asked to do.")
    model: ModelSpec = Field(description="The LLM, reached only through the sidecar.")
    tools: list[ToolSpec] = Field(
        default_factory=list,
        description="Tools the agent may call through the sidecar; names must be unique.",
        json_schema_extra={
            "maxItems": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(t, self.exists_one(u, u.name == t.name))",
                    "message": "tool names must be unique: rename or remove the repeated tool",
                }
            ],
        },
    )
    cost_envelope: CostEnvelope = Field(description="What the task may spend, in USD.")
    retry_policy: RetryPolicy = Field(
        default_factory=RetryPolicy, description="How failed calls and failed pods are retried."
    )
    context_budget: ContextBudget = Field(
        default_factory=ContextBudget, description="When and how the prompt is compacted."
    )
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec,
        description="The task's volume for checkpoints, spend ledger and call journal.",
    )
    observability: ObservabilitySpec = Field(
        default_factory=ObservabilitySpec, description="Traces: where they go, what they hold."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Wall-clock limit on the task, in seconds (unset: none)."
    )

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
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        raise InvalidAgentTask(str(p), [f"not valid YAML: {exc}"]) from exc
    return parse_agenttask(data, str(p))


def yaml_loader() -> Any:
    """PyYAML's safe loader in C (libyaml's, ``CSafeLoader``) when PyYAML was built with it,
    else the pure-Python ``SafeLoader``: the same documents, parsed ~10x faster (the sidecar
    reads its task at start-up and on every change of the file)."""
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def usd(value: Decimal) -> str:
    """Money for people and JSON: fixed point, no exponent."""
    return format(value.quantize(Decimal("0.000001")), "f")
