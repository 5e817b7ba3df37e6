"""The AgentBudget resource (tether.dev/v1alpha1): a spending limit over a set of AgentTasks.

GitOps owns the spec; the operator writes only the status. Admission reserves a task's whole hard
limit against the budget (a hold, like a card pre-authorisation) and releases the unspent part
when the task ends; ``status.reservations`` names each hold by task UID so a release is
idempotent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from ._base import ApiModel
from ._units import Money
from .agenttask import ObjectMeta
from .status import Condition, Timestamp

__all__ = [
    "AgentBudget",
    "AgentBudgetSpec",
    "AgentBudgetStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Reservation",
]

_NEEDS_VALUES = ("In", "NotIn")
class LabelSelectorRequirement(ApiModel):
    """A label test, as in metav1.LabelSelectorRequirement."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # values has no default in the CRD: absent is the same as empty.
                    "rule": "self.operator in ['In', 'NotIn'] "
                    "? has(self.values) && size(self.values) > 0 "
                    ": !has(self.values) || size(self.values) == 0",
                    "message": "operators In and NotIn need values; Exists and DoesNotExist "
                    "take none",
                    "fieldPath": ".values",
                }
            ]
        }
    )

    key: str = Field(
        min_length=1, max_length=317, description="Label key the test applies to."
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn (the label's value is / is not in values), Exists, DoesNotExist."
    )
    values: list[str] = Field(
        default_factory=list,
        description="Values for In and NotIn; empty for Exists and DoesNotExist.",
        json_schema_extra={"maxItems": 256},
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if (self.operator in _NEEDS_VALUES) != bool(self.values):
            raise ValueError(
                "operators In and NotIn need values; Exists and DoesNotExist take none"
            )
        return self


class LabelSelector(ApiModel):
    """Which AgentTasks in the namespace count against the budget, by label; the tests are
    ANDed, and an empty selector selects every AgentTask in the namespace."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels a task must carry, with these values."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Label tests a task must pass."
    )


class AgentBudgetSpec(ApiModel):
    """A spending limit per period over the AgentTasks the selector picks."""

    selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Which AgentTasks in this namespace draw on the budget (empty: all).",
    )
    period: Literal["Daily", "Weekly", "Monthly"] = Field(
        description="How often the budget resets: Daily, Weekly or Monthly; spending counts "
        "against the current period (see status.periodStart)."
    )
    limit_usd: Money = Field(
        alias="limitUSD", description="USD the selected tasks may spend in one period."
    )
    soft_limit_percent: int = Field(
        80,
        ge=1,
        le=100,
        description="Warn (condition, metric) once this percentage of limitUSD is spent or "
        "reserved.",
    )
    on_exhausted: Literal["Queue", "Reject"] = Field(
        "Queue",
        description="A task whose hard limit does not fit: Queue (wait for the next period or "
        "for holds to be released) or Reject (fail it at once).",
    )


class Reservation(ApiModel):
    """A hold on the budget for one admitted task."""

    task: str = Field(description="Name of the AgentTask.")
    uid: str = Field(
        min_length=1, description="UID of the AgentTask; a hold is released once per UID."
    )
    amount_usd: Money = Field(alias="amountUSD", description="USD held (its hard limit).")


class AgentBudgetStatus(ApiModel):
    """The observed state of an AgentBudget, written by the operator."""

    period_start: Timestamp | None = Field(
        None, description="Start of the current period (RFC 3339)."
    )
    spent_usd: Money = Field(
        Decimal("0"), alias="spentUSD", description="USD spent by finished tasks this period."
    )
    reserved_usd: Money = Field(
        Decimal("0"), alias="reservedUSD", description="USD held for running or admitted tasks."
    )
    remaining_usd: Money | None = Field(
        None,
        alias="remainingUSD",
        description="limitUSD minus spent and reserved, in USD, clamped at 0: never negative. "
        "0 means no task can be admitted (condition Exhausted); when spend passed the limit "
        "(limitUSD lowered), Exhausted's reason is LimitSpent.",
    )
    reservations: list[Reservation] = Field(
        default_factory=list,
        description="Holds of admitted tasks, one per task UID.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current conditions, one per type (e.g. SoftLimitReached, Exhausted).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int = Field(
        0, ge=0, description="metadata.generation this status was computed from."
    )


class AgentBudget(ApiModel):
    """An AgentBudget as stored in the cluster."""

    api_version: Literal["tether.dev/v1alpha1"] = "tether.dev/v1alpha1"
    kind: Literal["AgentBudget"] = "AgentBudget"
    metadata: ObjectMeta
    spec: AgentBudgetSpec
    status: AgentBudgetStatus = Field(default_factory=AgentBudgetStatus)
