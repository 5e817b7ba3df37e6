"""tether's API types: the AgentTask and AgentBudget resources, their status, and the policies
the sidecar enforces.

Pure data and validation (pydantic); no I/O beyond reading a YAML file, no Kubernetes client.
The operator renders these into CRD schemas (tether_operator.crdgen); the sidecar reads the same
YAML a user applies.
"""

from ._units import Duration, Money, parse_duration
from .agentbudget import (
    AgentBudget,
    AgentBudgetSpec,
    AgentBudgetStatus,
    LabelSelector,
    LabelSelectorRequirement,
    Reservation,
)
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
    "InvalidAgentTask",
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
    "SecretKeyRef",
    "Timestamp",
    "ToolSpec",
    "VerifySpec",
    "edit_rules",
    "immutable_fields",
    "load_agenttask",
    "parse_agenttask",
    "parse_duration",
    "usd",
]
