"""tether's API types: the AgentTask and AgentBudget resources, their status, the policies
the sidecar enforces, and the evaluation resources (Rubric, Judge, EvaluationPolicy; sampling.py
says which tasks a policy judges).

Pure data and validation (pydantic); no I/O beyond reading a YAML file, no Kubernetes client.
The operator renders these into CRD schemas (tether_operator.crdgen); the sidecar reads the same
YAML a user applies.

The evaluation resources and the AgentBudget are imported on first use (``tether_api.Rubric``,
…): the sidecar, which imports this package to read its task, never needs them and their models
cost ~3 % of its start-up (docs/benchmarks.md, the footprint section).
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._units import Duration, Money, parse_duration
from .agenttask import (
    API_VERSION,
    PLAINTEXT_MESSAGE,
    AgentSpec,
    AgentTask,
    AgentTaskSpec,
    CABundle,
    ConfigMapKeyRef,
    InvalidAgentTask,
    ModelSpec,
    SecretKeyRef,
    load_agenttask,
    parse_agenttask,
    usd,
)
from .edits import EDITS, IMMUTABLE_MESSAGE, EditKind, edit_rules, immutable_fields
from .policy import (
    FAILURE_CLASSES,
    CallRetry,
    CallRetryOverride,
    CheckpointSpec,
    ContextBudget,
    ContextTiers,
    CostEnvelope,
    McpSpec,
    ObservabilitySpec,
    OnHardLimit,
    PodRetry,
    RetryPolicy,
    ToolSpec,
    VerifySpec,
)
from .status import AgentTaskPhase, AgentTaskStatus, Condition, LastCheckpoint, Timestamp

if TYPE_CHECKING:
    from .agentbudget import (
        AgentBudget,
        AgentBudgetSpec,
        AgentBudgetStatus,
        LabelSelector,
        LabelSelectorRequirement,
        Reservation,
    )
    from .evaluation import (
        EvaluationPolicy,
        EvaluationPolicySpec,
        EvaluationPolicyStatus,
        Judge,
        JudgeSpec,
        JudgeStatus,
        Rubric,
        RubricSpec,
        RubricStatus,
        rubric_hash,
    )

# name -> the module that defines it, imported when the name is first asked for (docstring)
_LAZY = {name: "evaluation" for name in (
    "EvaluationPolicy", "EvaluationPolicySpec", "EvaluationPolicyStatus", "Judge", "JudgeSpec",
    "JudgeStatus", "Rubric", "RubricSpec", "RubricStatus", "rubric_hash")} | {
    name: "agentbudget" for name in (
        "AgentBudget", "AgentBudgetSpec", "AgentBudgetStatus", "LabelSelector",
        "LabelSelectorRequirement", "Reservation")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "EDITS",
    "FAILURE_CLASSES",
    "IMMUTABLE_MESSAGE",
    "PLAINTEXT_MESSAGE",
    "AgentBudget",
    "AgentBudgetSpec",
    "AgentBudgetStatus",
    "AgentSpec",
    "AgentTask",
    "AgentTaskPhase",
    "AgentTaskSpec",
    "AgentTaskStatus",
    "CABundle",
    "CallRetry",
    "CallRetryOverride",
    "CheckpointSpec",
    "Condition",
    "ConfigMapKeyRef",
    "ContextBudget",
    "ContextTiers",
    "CostEnvelope",
    "Duration",
    "EditKind",
    "EvaluationPolicy",
    "EvaluationPolicySpec",
    "EvaluationPolicyStatus",
    "InvalidAgentTask",
    "Judge",
    "JudgeSpec",
    "JudgeStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LastCheckpoint",
    "McpSpec",
    "ModelSpec",
    "Money",
    "ObservabilitySpec",
    "OnHardLimit",
    "PodRetry",
    "Reservation",
    "RetryPolicy",
    "Rubric",
    "RubricSpec",
    "RubricStatus",
    "SecretKeyRef",
    "Timestamp",
    "ToolSpec",
    "VerifySpec",
    "edit_rules",
    "immutable_fields",
    "load_agenttask",
    "parse_agenttask",
    "parse_duration",
    "rubric_hash",
    "usd",
]
