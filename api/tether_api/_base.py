"""The base model every AgentTask/AgentBudget part derives from.

Fields are snake_case in Python and camelCase on the wire (the CRD's names). Unknown fields are
refused so a typo (``hardLimitUsd``) is named instead of silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["ApiModel"]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
        # Validators are built on first use, not at import: the sidecar validates only the
        # AgentTask, and building every model (budgets, statuses, evaluation) cost its start-up
        # ~6 ms of CPU (1.8 % of its instructions to ready; docs/benchmarks.md, footprint).
        defer_build=True,
    )
