"""The sidecar's own settings (not the task's): flags, or TETHER_SIDECAR_* environment variables."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tether_api.envcheck import reject_unknown

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_SIDECAR_", extra="forbid")

    task: Path = Field(description="The AgentTask YAML (the same file a user applies).")
    state_dir: Path = Field(description="Ledger, journal, checkpoints, spans (the PVC).")
    secrets_dir: Path = Field(description="Mounted Secrets, laid out as DIR/<secret>/<key>.")
    port: int = Field(8181, ge=0, le=65535, description="Agent port, bound to 127.0.0.1 only.")
    ops_port: int = Field(9090, ge=0, le=65535, description="/metrics, /healthz, /readyz.")
    ops_host: str = Field("0.0.0.0", description="Where the ops port listens (probes, scrapes).")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body.")
    max_response_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest response body read whole from a model "
        "or tool, after decoding gzip/deflate; a larger one fails the attempt (too_large). "
        "Streamed model responses are relayed as they come, without this cap.")
    ca_bundle: Path | None = Field(
        None, description="A PEM file of CA certificates trusted for HTTPS upstreams in "
        "addition to the system store (a private CA or a TLS-inspecting proxy); a missing or "
        "invalid file is a start-up error.")
    attempt: int = Field(1, ge=1, description="Pod attempt number (the operator sets it).")
    summary_max_tokens: int = Field(1024, ge=64, description="Output cap of a summary call.")
    termination_log: Path = Field(Path("/dev/termination-log"),
                                  description="Where the final summary JSON is written.")
    grace_seconds: float = Field(20.0, ge=0, description="On SIGTERM, how long calls in flight "
                                 "may take to finish before they are recorded as aborted.")
    model_timeout_seconds: float = Field(
        600.0, gt=0, description="One model attempt's limit: to the whole response, or for a "
        "stream to its headers and between chunks. A long generation can take minutes; the "
        "retry policy's maxElapsed caps the whole call.")
    hold_wait_seconds: float = Field(
        30.0, ge=0, description="How long a model call that fits the envelope, but not beside "
        "the holds of calls in flight, waits for them to settle before it is refused as "
        "retryable (429 budget_contended).")
    prior_spent_usd: Decimal = Field(
        Decimal(0), ge=0, description="What earlier attempts of the task spent, USD (the "
        "operator passes status.spentUSD); the ledger starts at the larger of this and the "
        "journal's figure, so a PVC journal that holds those attempts is not counted twice.")
    prior_input_tokens: int = Field(0, ge=0, description="Input tokens of earlier attempts "
                                    "(status.inputTokens); max with the journal's, as above.")
    prior_output_tokens: int = Field(0, ge=0, description="Output tokens of earlier attempts "
                                     "(status.outputTokens); max with the journal's.")
    model_price: str | None = Field(
        None, description="The model's price as genai-prices states it, resolved by whoever "
        "starts the sidecar (the operator, tether run; pricing.resolve), so start-up need not "
        "load genai-prices' table; absent or another model's: resolved here.")
    task_poll_seconds: float = Field(
        1.0, gt=0, description="How often the task file is checked for a changed costEnvelope "
        "(a ConfigMap update arrives as an atomic symlink swap).")
    log_level: str = "INFO"
    evaluation: Any = Field(
        None, validation_alias="TETHER_EVALUATION", description="The task's evaluation "
        "policies (an eval_config.Evaluation), set by the operator; absent: no record is built "
        "or sent.")
    eval_retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between two deliveries of an evaluation record "
        "to the evaluator (exponential backoff with jitter up to this).")

    @field_validator("evaluation", mode="before")
    @classmethod
    def _evaluation(cls, value: Any) -> Any:
        if value is None:
            return None
        # Its models are built only for a task a policy selects: ~5 ms of start-up otherwise.
        from .eval_config import Evaluation

        try:
            return Evaluation.model_validate_json(value)
        except ValidationError as exc:
            raise ValueError("; ".join(
                ".".join(str(p) for p in e["loc"]) + ": " * bool(e["loc"]) + e["msg"]
                for e in exc.errors(include_url=False))) from None

    @model_validator(mode="after")
    def _no_unknown_env(self) -> Settings:
        reject_unknown("TETHER_SIDECAR_", type(self).model_fields)
        return self
