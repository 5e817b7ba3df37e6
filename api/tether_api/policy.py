"""Policy models enforced by the sidecar and embedded in the AgentTask spec.

Defined once here; the sidecar enforces them and the operator renders them into the CRD schema.
Every default is documented on its field, with its unit.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ._base import ApiModel
from ._units import MONEY_PATTERN, Duration, Money, parse_duration

__all__ = [
    "FAILURE_CLASSES",
    "CallRetry",
    "CallRetryOverride",
    "CheckpointSpec",
    "ContextBudget",
    "ContextTiers",
    "CostEnvelope",
    "McpSpec",
    "ObservabilitySpec",
    "OnHardLimit",
    "PodRetry",
    "RetryPolicy",
    "ToolSpec",
    "VerifySpec",
]

# Failure classes a retry policy can name besides HTTP status codes (100-599).
#   timeout     the call did not answer within the tool's/model's timeout
#   connection  the connection was refused or reset before a response arrived
#   empty       a success status with an empty body
#   malformed   a body that should be JSON and is not
#   schema      the body does not match verify.schema
#   fields      the body lacks one of verify.requiredFields
#   tool_error  an MCP tool answered with a result marked isError
#   rpc_error   an MCP server answered a tools/call with a JSON-RPC error
FAILURE_CLASSES = frozenset({"timeout", "connection", "empty", "malformed", "schema", "fields",
                             "tool_error", "rpc_error"})

# The CRD mirrors _normalise_classes in CEL so the API server refuses what the sidecar would.
_FAILURE_CLASS_CEL = {
    "rule": "type(self) == int ? (self >= 100 && self <= 599) : "
    "(self.trim().lowerAscii() in " + repr(sorted(FAILURE_CLASSES)) + " || "
    "(self.trim().matches('^[0-9]{3}$') && int(self.trim()) >= 100 && int(self.trim()) <= 599))",
    "message": "unknown retry class: use an HTTP status (100-599) or one of "
    + ", ".join(sorted(FAILURE_CLASSES)),
}
FailureClass = Annotated[
    int | str,
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "maxLength": 16,
            "x-kubernetes-validations": [_FAILURE_CLASS_CEL],
        }
    ),
]


def _normalise_classes(values: list[int | str]) -> list[str]:
    out: list[str] = []
    for value in values:
        text = str(value).strip().lower()
        if (text.isdigit() and 100 <= int(text) <= 599) or text in FAILURE_CLASSES:
            out.append(text)
        else:
            raise ValueError(
                f"unknown retry class {value!r}: use an HTTP status (100-599) or one of "
                f"{', '.join(sorted(FAILURE_CLASSES))}"
            )
    return out


class OnHardLimit(StrEnum):
    STOP = "Stop"
    CHECKPOINT_AND_STOP = "CheckpointAndStop"


class CostEnvelope(ApiModel):
    """What the task may spend. The hard limit is a circuit breaker: a call whose worst-case cost
    would cross it is refused before it leaves the pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # A malformed amount has its own error; don't add a conversion error to it.
                    "rule": "!has(self.softLimitUSD) || "
                    f"!self.softLimitUSD.matches(r'{MONEY_PATTERN}') || "
                    f"!self.hardLimitUSD.matches(r'{MONEY_PATTERN}') || "
                    "double(self.softLimitUSD) <= double(self.hardLimitUSD)",
                    "message": "softLimitUSD must not exceed hardLimitUSD: "
                    "lower the soft limit or raise the hard one",
                    "fieldPath": ".softLimitUSD",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    )

    soft_limit_usd: Money | None = Field(
        None,
        alias="softLimitUSD",
        description="Past this many USD the sidecar warns (metric, log, response header); at "
        "most hardLimitUSD. A decimal string, e.g. \"4.00\".",
    )
    hard_limit_usd: Money = Field(
        alias="hardLimitUSD",
        description="Never spend more than this many USD over the whole task, pod restarts "
        "included: a call whose worst-case cost would cross it is refused. A decimal string, "
        "e.g. \"5.00\".",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Cap on input+output tokens over the whole task (none: no cap)."
    )
    on_hard_limit: OnHardLimit = Field(
        OnHardLimit.CHECKPOINT_AND_STOP,
        description="What the task does when the hard limit is hit: Stop, or "
        "CheckpointAndStop (a checkpoint is saved first).",
    )

    @model_validator(mode="after")
    def _soft_below_hard(self) -> CostEnvelope:
        if self.soft_limit_usd is not None and self.soft_limit_usd > self.hard_limit_usd:
            raise ValueError(
                f"softLimitUSD ({self.soft_limit_usd}) must not exceed hardLimitUSD "
                f"({self.hard_limit_usd}): lower the soft limit or raise the hard one"
            )
        return self

    @property
    def soft_or_hard(self) -> Decimal:
        return self.soft_limit_usd if self.soft_limit_usd is not None else self.hard_limit_usd


_DEFAULT_RETRY_ON: list[int | str] = [
    408, 429, 500, 502, 503, 504, 529, "timeout", "connection", "empty",
]
# A body that is not the JSON it should be does not fix itself on a retry: retried without
# limit it is the founding incident (a tool answering garbage, retried in a loop, $800 in 40
# minutes). Like schema drift it fails at once unless a policy lists it in retryOn.
_DEFAULT_NON_RETRYABLE: list[int | str] = [400, 401, 403, 404, 409, 422, "malformed", "schema",
                                           "fields"]


class CallRetry(ApiModel):
    """Retry of one model or tool call: exponential backoff with jitter and caps."""

    max_attempts: int = Field(4, ge=1, le=100, description="Attempts in all, the first included.")
    initial_interval: Duration = Field("500ms", description="Wait before the first retry.")
    backoff_coefficient: float = Field(2.0, ge=1.0, le=10.0, description="Growth per retry.")
    maximum_interval: Duration = Field("30s", description="Cap on one wait.")
    max_elapsed: Duration = Field(
        "120s", description="Cap on the whole call, waits and attempts included."
    )
    jitter: float = Field(
        0.2, ge=0.0, le=1.0, description="Each wait is drawn from [w·(1-jitter), w]."
    )
    retry_on: list[FailureClass] = Field(
        default_factory=lambda: list(_DEFAULT_RETRY_ON),
        description="Failure classes retried: HTTP statuses (100-599) or timeout, connection, "
        "empty, malformed, schema, fields, tool_error, rpc_error (the last two: MCP tools).",
        json_schema_extra={"maxItems": 64},  # CRD only: CEL cost bound
    )
    non_retryable: list[FailureClass] = Field(
        default_factory=lambda: list(_DEFAULT_NON_RETRYABLE),
        description="Failure classes never retried; wins over retryOn. Same values as retryOn.",
        json_schema_extra={"maxItems": 64},  # CRD only: CEL cost bound
    )

    @field_validator("retry_on", "non_retryable")
    @classmethod
    def _norm(cls, v: list[int | str]) -> list[str]:
        return _normalise_classes(v)

    def seconds(
        self, field: Literal["initial_interval", "maximum_interval", "max_elapsed"]
    ) -> float:
        return parse_duration(getattr(self, field))

    def is_retryable(self, failure_class: str) -> bool:
        """A class is retried when listed in retryOn and not in nonRetryable; a 5xx not named
        either way is retried, any other unnamed class is not."""
        if failure_class in self.non_retryable:
            return False
        if failure_class in self.retry_on:
            return True
        return failure_class.isdigit() and failure_class.startswith("5")


class CallRetryOverride(ApiModel):
    """A tool's partial override of the task's call retry policy; unset fields inherit."""

    max_attempts: int | None = Field(
        None, ge=1, le=100, description="Attempts in all, the first included (unset: inherit)."
    )
    initial_interval: Duration | None = Field(
        None, description="Wait before the first retry, e.g. \"500ms\" (unset: inherit)."
    )
    backoff_coefficient: float | None = Field(
        None, ge=1.0, le=10.0, description="Growth of the wait per retry (unset: inherit)."
    )
    maximum_interval: Duration | None = Field(
        None, description="Cap on one wait, e.g. \"30s\" (unset: inherit)."
    )
    max_elapsed: Duration | None = Field(
        None, description="Cap on the whole call, waits included, e.g. \"2m\" (unset: inherit)."
    )
    jitter: float | None = Field(
        None, ge=0.0, le=1.0, description="Fraction each wait may be shortened by at random "
        "(unset: inherit)."
    )
    retry_on: list[FailureClass] | None = Field(
        None,
        description="Failure classes retried, replacing the task's list (unset: inherit).",
        json_schema_extra={"maxItems": 64},  # CRD only: CEL cost bound
    )
    non_retryable: list[FailureClass] | None = Field(
        None,
        description="Failure classes never retried, replacing the task's list (unset: inherit).",
        json_schema_extra={"maxItems": 64},  # CRD only: CEL cost bound
    )

    @field_validator("retry_on", "non_retryable")
    @classmethod
    def _norm(cls, v: list[int | str] | None) -> list[str] | None:
        return None if v is None else _normalise_classes(v)

    def apply(self, base: CallRetry) -> CallRetry:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class PodRetry(ApiModel):
    """Retry of the whole pod: a failed pod is replaced and resumes from the last checkpoint."""

    backoff_limit: int = Field(3, ge=0, le=100, description="Failed pods before the task fails.")
    evictions_count_as_failures: bool = Field(
        False, description="Count evictions/preemptions against backoffLimit."
    )


class RetryPolicy(ApiModel):
    """How failures are retried: single model/tool calls by the sidecar, whole pods by the
    operator."""

    calls: CallRetry = Field(
        default_factory=CallRetry,
        description="Retry of one model or tool call, inside the sidecar.",
    )
    pod: PodRetry = Field(
        default_factory=PodRetry,
        description="Retry of the whole pod by the operator.",
    )


class VerifySpec(ApiModel):
    """Checks a tool's response must pass to count as a success; each names its failure class."""

    expect_status: list[int] = Field(
        default_factory=lambda: [200, 201, 202, 204],
        description="HTTP statuses (100-599) that count as success.",
        json_schema_extra={"items": {"type": "integer", "minimum": 100, "maximum": 599}},
    )
    non_empty: bool = Field(True, description="An empty body is a failure (class empty).")
    required_fields: list[str] = Field(
        default_factory=list,
        description="Top-level (or dotted) JSON fields that must be present (class fields).",
    )
    schema_: dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="JSON Schema the body must match (class schema).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"expectStatus holds {bad}: HTTP statuses are 100-599")
        return v

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from jsonschema import Draft202012Validator, SchemaError

            try:
                Draft202012Validator.check_schema(v)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return v


class McpSpec(ApiModel):
    """An MCP server (Streamable HTTP transport) the agent reaches at /mcp/{name} through the
    sidecar, which applies the harness to every tools/call."""

    url: str = Field(
        pattern=r"^https?://",
        description="The server's MCP endpoint, an http:// or https:// URL, e.g. "
        "http://search-mcp.tools.svc:8000/mcp.",
        json_schema_extra={
            "maxLength": 2048,
            "x-kubernetes-validations": [
                {
                    "rule": "self.startsWith('http://') || self.startsWith('https://')",
                    "message": "mcp.url must start with http:// or https://, "
                    "e.g. http://search-mcp.tools.svc:8000/mcp",
                }
            ],
        },
    )
    allowed_tools: list[str] | None = Field(
        None,
        description="The server's tools the agent may see and call (unset: all of them); "
        "others are left out of tools/list and refused on tools/call.",
        json_schema_extra={"maxItems": 256, "items": {"type": "string", "maxLength": 128}},
    )


class ToolSpec(ApiModel):
    """A tool the agent calls through the sidecar, which forwards, verifies and retries: an HTTP
    tool (url; POST /tools/{name}) or an MCP server (mcp; /mcp/{name})."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.url) != has(self.mcp)",
                    "message": "a tool needs exactly one of url (an HTTP tool) and mcp (an MCP "
                    "server): set one, remove the other",
                }
            ]
        }
    )

    name: str = Field(
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$",
        description="Unique name; the agent calls POST /tools/{name} (or /mcp/{name}). Letters, "
        "digits, _ . -; at most 63 characters.",
        json_schema_extra={"maxLength": 63},
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="An HTTP tool: where the sidecar sends the call, an http:// or https:// URL "
        "(exactly one of url and mcp).",
        json_schema_extra={
            "maxLength": 2048,
            "x-kubernetes-validations": [
                {
                    "rule": "self.startsWith('http://') || self.startsWith('https://')",
                    "message": "url must start with http:// or https://, "
                    "e.g. http://search.tools.svc:8080/query",
                }
            ],
        },
    )
    mcp: McpSpec | None = Field(
        None,
        description="An MCP server instead of an HTTP tool (exactly one of url and mcp); verify, "
        "retry, sideEffects and timeout apply to each of its tools/call.",
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="HTTP method the sidecar uses for the call."
    )
    timeout: Duration = Field(
        "30s", description="Time allowed for one attempt, e.g. \"30s\"; past it the attempt "
        "fails with class timeout."
    )
    side_effects: bool | None = Field(
        None,
        description="The call changes the world: never retried after it may have reached the "
        "tool, unless idempotencyHeader is set; journalled so a resumed task does not repeat "
        "it. Unset: false for an HTTP tool; for an MCP server, each tool by its annotations with "
        "the MCP spec's defaults for absent ones: side-effecting unless marked readOnlyHint, or "
        "both destructiveHint false and idempotentHint true. false: none of the server's "
        "tools, whatever its annotations.",
    )
    idempotency_header: str | None = Field(
        None,
        description="Header the tool reads an idempotency key from (e.g. Idempotency-Key); "
        "the sidecar sends a stable key per call so retries are safe.",
    )
    verify: VerifySpec = Field(
        default_factory=VerifySpec,
        description="Checks a response must pass to count as a success.",
    )
    retry: CallRetryOverride | None = Field(
        None, description="Overrides of retryPolicy.calls for this tool; unset fields inherit."
    )

    @model_validator(mode="after")
    def _url_or_mcp(self) -> ToolSpec:
        if (self.url is None) == (self.mcp is None):
            raise ValueError("a tool needs exactly one of url (an HTTP tool) and mcp (an MCP "
                             "server): set one, remove the other")
        return self


class ContextTiers(ApiModel):
    """Which messages are never summarised: the permanent tier (system prompt and the first
    `permanentMessages` non-system messages, i.e. the task) and the working tier (the last
    `workingMessages` messages plus the last keepLastToolResults tool results)."""

    permanent_messages: int = Field(1, ge=0, description="Leading non-system messages kept.")
    working_messages: int = Field(2, ge=0, description="Trailing messages kept verbatim.")


class ContextBudget(ApiModel):
    """How big the agent's prompt may grow before the sidecar compacts it."""

    max_tokens: int | None = Field(
        None, ge=256, description="Prompt budget in tokens (default: the model's contextWindow)."
    )
    compact_at: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Compact when the prompt reaches this fraction of maxTokens; above 0, at most "
        "1.",
    )
    strategy: Literal["summarize", "truncate"] = Field(
        "summarize",
        description="How old messages are compacted: summarize (by the model) or truncate (drop).",
    )
    keep_last_tool_results: int = Field(
        3, ge=0, description="The last N tool results are kept verbatim."
    )
    tiers: ContextTiers = Field(
        default_factory=ContextTiers, description="Which messages are never compacted."
    )


class CheckpointSpec(ApiModel):
    """The volume where the agent's checkpoints, the spend ledger and the call journal live."""

    enabled: bool = Field(
        True, description="Give the task a volume for checkpoints, ledger and journal."
    )
    size: str = Field(
        "1Gi",
        pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$",
        description="Size of the PersistentVolumeClaim, e.g. 1Gi.",
    )
    storage_class_name: str | None = Field(
        None, description="StorageClass of the claim (unset: the cluster's default class)."
    )
    keep: int = Field(3, ge=1, le=100, description="Checkpoint generations kept on the volume.")
    max_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest checkpoint accepted, in bytes."
    )


class ObservabilitySpec(ApiModel):
    """Where traces go and how much of a tool call they record."""

    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint for traces, e.g. http://otel-collector:4318 (unset: "
        "traces go only to the file on the task's volume).",
    )
    tool_io: Literal["full", "redacted", "none"] = Field(
        "redacted",
        alias="toolIO",
        description="Tool bodies in spans: verbatim, shape only (keys, types, sizes), or none.",
    )
