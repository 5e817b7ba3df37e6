"""tether's API types: the AgentTask spec and the policies the sidecar enforces.

Pure data and validation (pydantic); no I/O beyond reading a YAML file, no Kubernetes client.
The operator renders these into CRD schemas; the sidecar reads the same YAML a user applies.
"""

from ._units import Duration, Money, parse_duration
from .agenttask import (
    API_VERSION,
    AgentSpec,
    AgentTask,
    AgentTaskSpec,
    InvalidAgentTask,
    ModelSpec,
    load_agenttask,
    parse_agenttask,
    usd,
)
from .policy import (
    FAILURE_CLASSES,
    CallRetry,
    CallRetryOverride,
    CheckpointSpec,
    ContextBudget,
    ContextTiers,
    CostEnvelope,
    EvaluationSpec,
    ObservabilitySpec,
    OnHardLimit,
    PodRetry,
    RetryPolicy,
    ToolSpec,
    VerifySpec,
)

__all__ = [
    "API_VERSION",
    "FAILURE_CLASSES",
    "AgentSpec",
    "AgentTask",
    "AgentTaskSpec",
    "CallRetry",
    "CallRetryOverride",
    "CheckpointSpec",
    "ContextBudget",
    "ContextTiers",
    "CostEnvelope",
    "Duration",
    "EvaluationSpec",
    "InvalidAgentTask",
    "ModelSpec",
    "Money",
    "ObservabilitySpec",
    "OnHardLimit",
    "PodRetry",
    "RetryPolicy",
    "ToolSpec",
    "VerifySpec",
    "load_agenttask",
    "parse_agenttask",
    "parse_duration",
    "usd",
]
