"""What the operator reports about an AgentTask: its ``status``, written only by the operator.

Follows the Kubernetes API conventions: a coarse ``phase`` for ``kubectl get``, standard
``conditions[]`` for anything a machine should act on, and ``observedGeneration`` so a reader can
tell whether the status reflects the current spec. Counters start at zero, so a fresh status is
valid as ``AgentTaskStatus()``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ._base import ApiModel
from ._units import Money

__all__ = ["AgentTaskPhase", "AgentTaskStatus", "Condition", "LastCheckpoint", "Timestamp"]


def _check_rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an RFC 3339 time: write e.g. \"2025-01-31T12:00:00Z\""
        ) from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: append Z for UTC")
    return value


Timestamp = Annotated[
    str, AfterValidator(_check_rfc3339), Field(json_schema_extra={"format": "date-time"})
]
"""An RFC 3339 time with a zone, kept as the string written (e.g. ``2025-01-31T12:00:00Z``)."""

AgentTaskPhase = Literal["Pending", "Running", "Succeeded", "Failed", "BudgetExceeded"]


class Condition(ApiModel):
    """One aspect of the object's state, as in metav1.Condition (e.g. type Ready, status True)."""

    type: str = Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
        description="Kind of condition in CamelCase, e.g. Ready, Admitted, BudgetExceeded.",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Why, in one CamelCase word a program can match, e.g. HardLimitReached.",
    )
    message: str = Field(
        "", max_length=32768, description="Why, in words for a person; may be empty."
    )
    last_transition_time: Timestamp = Field(
        description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


class LastCheckpoint(ApiModel):
    """The newest checkpoint the agent saved; a new pod resumes from it."""

    step: int = Field(0, ge=0, description="Agent step the checkpoint was taken at.")
    time: Timestamp | None = Field(None, description="When it was saved (RFC 3339).")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of its content, in hex."
    )


class AgentTaskStatus(ApiModel):
    """The observed state of an AgentTask, written by the operator."""

    phase: AgentTaskPhase = Field(
        "Pending",
        description="Pending, Running, Succeeded, Failed, or BudgetExceeded (stopped at the "
        "cost envelope's hard limit).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current conditions, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int = Field(
        0, ge=0, description="metadata.generation this status was computed from."
    )
    attempt: int = Field(0, ge=0, description="Pods started for the task so far (1 = first).")
    failures: int = Field(
        0, ge=0, description="Failed pods counted against retryPolicy.pod.backoffLimit."
    )
    pod_name: str | None = Field(None, description="The task's current (or last) pod.")
    step: int = Field(0, ge=0, description="Agent steps completed, across attempts.")
    spent_usd: Money = Field(
        Decimal("0"), alias="spentUSD", description="USD spent so far, across attempts."
    )
    reserved_usd: Money = Field(
        Decimal("0"), alias="reservedUSD", description="USD held for model calls in flight, as "
        "the running sidecar last reported; charged if the attempt ends without final figures."
    )
    input_tokens: int = Field(0, ge=0, description="Input tokens billed so far.")
    output_tokens: int = Field(0, ge=0, description="Output tokens billed so far.")
    hard_limit_usd: Money | None = Field(
        None, alias="hardLimitUSD", description="The hard limit in USD the running attempt "
        "enforces (spec.costEnvelope.hardLimitUSD once the operator and sidecar applied it; "
        "unset: not started yet)."
    )
    retries: int = Field(0, ge=0, description="Model and tool call retries so far.")
    evictions: int = Field(0, ge=0, description="Pods evicted or preempted so far.")
    last_checkpoint: LastCheckpoint | None = Field(
        None, description="The newest checkpoint (unset: none yet)."
    )
    trace_id: str | None = Field(
        None,
        alias="traceID",
        pattern=r"^[0-9a-f]{32}$",
        description="OpenTelemetry trace id of the task (32 hex digits), shared by all attempts.",
    )
    message: str = Field("", description="What is happening or went wrong, for a person.")
    start_time: Timestamp | None = Field(
        None, description="When the first pod started (RFC 3339)."
    )
    next_attempt_at: Timestamp | None = Field(
        None, description="After a failed pod: the next pod starts no earlier than this "
        "(RFC 3339), so failures back off."
    )
    completion_time: Timestamp | None = Field(
        None, description="When the task reached Succeeded, Failed or BudgetExceeded (RFC 3339)."
    )
