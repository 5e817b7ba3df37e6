"""The sidecar's errors, and what the agent sees for each.

    SidecarError                 status, error_class, reason  -> JSON error to the agent
    ├── BadRequest               400  malformed JSON, missing fields, bad parameters
    │   ├── NotFound             404  unknown tool or route
    │   ├── PayloadTooLarge      413  body over the size limit
    │   └── ResultConflict       409  result_conflict (a different answer than the one stored)
    ├── ToolCallFailed           502  retryable_exhausted | non_retryable | verification_failed
    ├── ModelCallFailed          upstream status; retryable_exhausted | non_retryable
    ├── BudgetExceeded           402  budget_exceeded (hard limit or token cap: the breaker trips)
    ├── BudgetContended          429  budget_contended (fits, but not beside the holds in flight;
    │                                 retryable: Retry-After, x-should-retry: true)
    ├── ContextBudgetExceeded    400  context_budget_exceeded
    ├── NoCheckpoint             404  no_checkpoint (a fresh start)
    ├── StorageTooLarge          413  checkpoint_too_large
    ├── CheckpointCorrupt        500  checkpoint_corrupt (every generation damaged)
    ├── StorageFailed            507  checkpoint_write_failed (the volume is full or failing)
    └── JournalWriteFailed       507  journal_write_failed (a call it cannot record is refused)
    StartupError                 the sidecar cannot start as configured (exit code 2)

Foreign errors (aiohttp, httpx, OS) are mapped at the boundary where they occur, with
``raise Ours(...) from exc`` so the cause stays in the log.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "BudgetContended",
    "BudgetExceeded",
    "CheckpointCorrupt",
    "ContextBudgetExceeded",
    "JournalWriteFailed",
    "ModelCallFailed",
    "NoCheckpoint",
    "NotFound",
    "PayloadTooLarge",
    "ResultConflict",
    "SidecarError",
    "StartupError",
    "StorageFailed",
    "StorageTooLarge",
    "ToolCallFailed",
]


class SidecarError(Exception):
    status = 500
    error_class = "internal"
    # Seconds after which the agent may send the same request again; None: do not retry it.
    retry_after: float | None = None

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"class": self.error_class, "reason": self.reason, **self.details}}


class BadRequest(SidecarError):
    status = 400
    error_class = "bad_request"


class NotFound(BadRequest):
    status = 404
    error_class = "not_found"


class PayloadTooLarge(BadRequest):
    status = 413
    error_class = "payload_too_large"


class ToolCallFailed(SidecarError):
    status = 502

    def __init__(self, error_class: str, reason: str, **details: Any) -> None:
        super().__init__(reason, **details)
        self.error_class = error_class


class ModelCallFailed(SidecarError):
    """The model call failed for good. ``status`` is the provider's last status (502 when there
    was none); the agent's SDK is told not to retry, since the sidecar already did."""

    def __init__(self, error_class: str, reason: str, status: int, **details: Any) -> None:
        super().__init__(reason, **details)
        self.error_class = error_class
        self.status = status


class BudgetExceeded(SidecarError):
    # 402: the OpenAI and Anthropic SDKs do not retry it (they retry 408/409/429/5xx).
    status = 402
    error_class = "budget_exceeded"


class BudgetContended(SidecarError):
    """The call fits the envelope, but not beside the holds of the calls in flight, and they
    did not settle within ``--hold-wait-seconds``. Not the hard limit: the task goes on, and
    the SDKs retry a 429 (honouring Retry-After)."""

    status = 429
    error_class = "budget_contended"
    retry_after = 1.0


class ContextBudgetExceeded(SidecarError):
    status = 400
    error_class = "context_budget_exceeded"


class ResultConflict(BadRequest):
    """The task's answer is final once stored: the evaluation record may already have left."""

    status = 409
    error_class = "result_conflict"


class StartupError(Exception):
    """Configuration that cannot work; the message says what to change."""


class NoCheckpoint(SidecarError):
    status = 404
    error_class = "no_checkpoint"


class StorageTooLarge(SidecarError):
    status = 413
    error_class = "checkpoint_too_large"


class CheckpointCorrupt(SidecarError):
    status = 500
    error_class = "checkpoint_corrupt"


class StorageFailed(SidecarError):
    # 507 Insufficient Storage (RFC 4918 §11.5): the state could not be stored.
    status = 507
    error_class = "checkpoint_write_failed"


class JournalWriteFailed(SidecarError):
    """Without its journal record a call could be paid twice or repeat a side effect after a
    restart, so it is refused instead."""

    status = 507
    error_class = "journal_write_failed"
