"""Operator settings: TETHER_OPERATOR_* environment variables, each with a documented default."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OperatorSettings"]


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_OPERATOR_", extra="forbid")

    sidecar_image: str = Field("docker.io/tether/sidecar:latest",
                               description="Image of the harness sidecar.")
    image_pull_policy: str = Field("IfNotPresent", description="For the sidecar image.")
    sidecar_cpu: str = Field("100m", description="Sidecar CPU request.")
    sidecar_memory: str = Field("192Mi", description="Sidecar memory request.")
    sidecar_memory_limit: str = Field(
        "384Mi", description="Sidecar memory limit: ~70 MB at rest, ~100 MB more once the "
        "tokenizer loads for a long prompt.")
    run_as_user: int = Field(65532, description="UID of both containers (PSS restricted).")
    grace_seconds: int = Field(30, ge=1, description="Pod terminationGracePeriodSeconds.")
    sidecar_grace_seconds: float = Field(
        20.0, description="How long calls in flight may finish after SIGTERM (< grace_seconds).")
    status_poll_seconds: float = Field(5.0, gt=0, description="Live status poll of running pods.")
    resync_seconds: float = Field(60.0, gt=0, description="Every task not finished is "
                                  "reconciled at least this often, events or not.")
    queue_poll_seconds: float = Field(3.0, gt=0, description="Re-check of queued tasks.")
    backoff_base_seconds: float = Field(10.0, ge=0, description="First retry delay after a "
                                        "failed pod; doubles per failure.")
    backoff_max_seconds: float = Field(300.0, ge=0, description="Cap on that delay.")
    metrics_port: int = Field(8000, description="Prometheus metrics of the operator; 0 = off.")
    sidecar_ops_port: int = Field(9090, description="The sidecar's ops port (status, metrics).")
