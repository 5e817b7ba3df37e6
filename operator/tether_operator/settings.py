"""Operator settings: TETHER_OPERATOR_* environment variables, each with a documented default."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tether_api.envcheck import reject_unknown

__all__ = ["OperatorSettings"]

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    return _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.exists() else "default"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_OPERATOR_", extra="forbid")

    sidecar_image: str = Field(f"docker.io/tether/sidecar:{version('tether')}",
                               description="Image of the harness sidecar; the default is "
                               "tagged with this operator's own version (not :latest, so "
                               "IfNotPresent finds it offline).")
    image_pull_policy: str = Field("IfNotPresent", description="For the sidecar image.")
    sidecar_cpu: str = Field("100m", description="Sidecar CPU request.")
    sidecar_memory: str = Field(
        "96Mi", description="Sidecar memory request: measured ~64 MB at rest and ~81 MB after "
        "1,000 calls near the context budget (docs/benchmarks.md), with headroom.")
    sidecar_memory_limit: str = Field(
        "256Mi", description="Sidecar memory limit: room for the tokenizer (~125 MB, loaded "
        "only for the rare exact count) and its count cache on top of the usual footprint.")
    sidecar_memory_limit_evaluated: str = Field(
        "384Mi", description="Sidecar memory limit of a task an EvaluationPolicy selects: the "
        "redactor (Presidio's recognizers, +~89 MB, docs/evaluation.md) loads at the task's end "
        "on top of the usual footprint and the tokenizer's room.")
    run_as_user: int = Field(65532, description="UID of both containers (PSS restricted).")
    grace_seconds: int = Field(30, ge=1, description="Pod terminationGracePeriodSeconds.")
    sidecar_grace_seconds: float = Field(
        20.0, description="How long calls in flight may finish after SIGTERM (< grace_seconds).")
    status_poll_seconds: float = Field(5.0, gt=0, description="Live status poll of running pods.")
    live_polls_per_second: float = Field(
        200.0, gt=0, description="At most this many sidecars polled per second: with more "
        "running tasks than a round's share, each round polls the next ones in turn, so each "
        "task's live figures come less often instead of the loop taking the operator's CPU.")
    resync_seconds: float = Field(60.0, gt=0, description="Every task not finished is "
                                  "reconciled at least this often, events or not.")
    queue_poll_seconds: float = Field(3.0, gt=0, description="Re-check of queued tasks.")
    backoff_base_seconds: float = Field(10.0, ge=0, description="First retry delay after a "
                                        "failed pod; doubles per failure.")
    backoff_max_seconds: float = Field(300.0, ge=0, description="Cap on that delay.")
    start_timeout_seconds: float = Field(
        180.0, gt=0, description="A pod that cannot start (a missing Secret or ConfigMap, an "
        "image that cannot be pulled, a claim left unbound) fails the task once it is this "
        "many seconds old and still blocked; its cause is a condition and an Event at once.")
    deletion_wait_seconds: float = Field(
        60.0, ge=0, description="A deleted task's pods are stopped gracefully and their final "
        "figures awaited this long before its budgets are released; past it the task is "
        "charged its whole budget hold (docs/lifecycle.md).")
    workers: int = Field(16, ge=1, description="Tasks reconciled at once; more wait in the "
                         "work queue (bounds memory when a thousand tasks arrive together).")
    ops_port: int = Field(8000, description="/metrics, /healthz and /readyz; 0 = off.")
    ops_host: str = Field("0.0.0.0", description="Address the ops port binds.")
    leader_election: bool = Field(True, description="Run as one leader and standbys on a "
                                  "Lease; off only when a single replica is guaranteed.")
    lease_name: str = Field("tether-operator", description="The coordination.k8s.io Lease.")
    lease_namespace: str = Field(default_factory=_own_namespace, description="Its namespace: "
                                 "the operator's own (POD_NAMESPACE, else the service "
                                 "account's), else default.")
    lease_seconds: float = Field(15.0, gt=0, description="A standby takes over after seeing "
                                 "the Lease unrenewed this long.")
    lease_deadline_seconds: float = Field(10.0, gt=0, description="A leader that cannot renew "
                                          "this long stops leading (< lease_seconds).")
    lease_renew_seconds: float = Field(2.0, gt=0, description="How often the leader renews.")
    sidecar_ops_port: int = Field(9090, description="The sidecar's ops port (status, metrics).")
    sidecar_http_proxy: str = Field("", description="HTTP_PROXY of every sidecar (its model "
                                    "and tool calls); empty: none.")
    sidecar_https_proxy: str = Field("", description="HTTPS_PROXY of every sidecar; empty: "
                                     "none.")
    sidecar_no_proxy: str = Field("", description="NO_PROXY of every sidecar (hosts reached "
                                  "directly, e.g. .svc,.cluster.local); empty: none.")
    evaluator_url: str = Field(
        "", pattern=r"^(https?://.+)?$", description="Where sidecars send evaluation records "
        "(TETHER_EVALUATION.evaluatorURL), e.g. http://tether-evaluator.tether-system.svc:8080; "
        "empty: no task gets evaluation, whatever EvaluationPolicies select it.")

    context: str | None = Field(None, description="Out of a cluster: the kubeconfig context "
                                "to use instead of the current one.")

    @model_validator(mode="after")
    def _checks(self) -> OperatorSettings:
        reject_unknown("TETHER_OPERATOR_", type(self).model_fields)
        if not self.lease_renew_seconds < self.lease_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "need TETHER_OPERATOR_LEASE_RENEW_SECONDS < LEASE_DEADLINE_SECONDS < "
                f"LEASE_SECONDS, got {self.lease_renew_seconds} < "
                f"{self.lease_deadline_seconds} < {self.lease_seconds}")
        return self
