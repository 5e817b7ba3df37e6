"""The sidecar's runtime state for one task: policies, ledger, counters, clients, telemetry.

Built once at start-up by :func:`Harness.create`, which refuses a configuration that cannot work
(invalid task, missing secret, unknown price) before anything listens.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether_api import AgentTask, InvalidAgentTask, usd

from . import taskfile
from .boundary import BoundaryStore
from .checkpoints import Checkpoint, CheckpointStore
from .context import ContextManager, TokenCounter
from .dialects import ANTHROPIC, OPENAI, Dialect
from .errors import SidecarError, StartupError
from .journal import Journal
from .ledger import Ledger
from .metrics import SidecarMetrics
from .pricing import Price
from .settings import Settings
from .task_span import TaskSpan
from .tracing import Tracing
from .upstream import Upstream, make_upstream
from .verify import Check, checks_for

if TYPE_CHECKING:
    from .eval_outbox import Evaluation
    from .responses_chains import ResponseChains

__all__ = ["Harness"]

log = logging.getLogger(__name__)


def read_secret(secrets_dir: Path, name: str, key: str) -> str:
    path = secrets_dir / name / key
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(
            f"spec.model.credentialsSecretRef: cannot read {path} ({exc.strerror}); mount "
            f"Secret {name!r} with key {key!r} at {secrets_dir}/{name}"
        ) from exc
    if not value:
        raise StartupError(f"spec.model.credentialsSecretRef: {path} is empty")
    return value


@dataclass
class Harness:
    task: AgentTask
    settings: Settings
    api_key: str | None
    price: Price
    ledger: Ledger
    context: ContextManager
    metrics: SidecarMetrics
    tracing: Tracing
    upstream: Upstream
    tool_checks: dict[str, list[Check]]
    journal: Journal
    checkpoints: CheckpointStore
    boundaries: BoundaryStore
    last_checkpoint: Checkpoint | None = None
    checkpoint_problem: str | None = None
    responses: ResponseChains | None = None  # responses seen, opened by the first Responses call
    generation: int | None = None  # the newest metadata.generation enforced entirely
    task_digest: bytes = b""  # of the task file last read (taskfile.py)
    config_error: str | None = None  # why the task file last read is not enforced
    replayed: int = 0
    orphans: int = 0
    spent_at_start: Decimal = Decimal(0)  # by earlier attempts (their orphans are charged now)
    spent_at_checkpoint: Decimal = Decimal(0)  # the cost of a step is what was charged since
    task_span: TaskSpan | None = None  # the task's start, and whether its span was sent
    in_flight: int = 0
    _calls: int = 0
    rng: random.Random = field(default_factory=random.Random)
    llm_calls: int = 0
    tool_calls: int = 0
    retries: int = 0
    verification_failures: int = 0  # tool calls that ended verification_failed
    evaluation: Evaluation | None = None  # with TETHER_EVALUATION only (app.py)
    compactions: int = 0
    step: int = 0
    ready: bool = False

    @property
    def phase(self) -> str:
        """BudgetExceeded once the breaker has tripped (the ledger owns it), else Running."""
        return "BudgetExceeded" if self.ledger.tripped else "Running"

    @property
    def dialect(self) -> Dialect:
        return ANTHROPIC if self.task.spec.model.provider == "anthropic" else OPENAI

    def next_call_id(self) -> str:
        """Unique across attempts (the attempt number leads), cheaper than a UUID."""
        self._calls += 1
        return f"{self.settings.attempt}.{self._calls}"

    @property
    def name(self) -> str:
        return self.task.metadata.name

    @classmethod
    def create(cls, settings: Settings) -> Harness:
        try:
            loaded = taskfile.load(settings.task)
        except InvalidAgentTask as exc:
            raise StartupError(str(exc)) from exc
        task = loaded.task
        spec = task.spec
        ref = spec.model.credentials_secret_ref
        api_key = read_secret(settings.secrets_dir, ref.name, ref.key) if ref else None
        price = Price(spec.model, settings.model_price)  # pre-resolved: pricing.py
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            probe = settings.state_dir / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StartupError(
                f"--state-dir {settings.state_dir}: not writable ({exc.strerror}); the task "
                "cannot run without its ledger and checkpoints"
            ) from exc
        journal = Journal(settings.state_dir / "journal.jsonl")
        recovered = journal.open()
        journal.append({"t": "attempt", "attempt": settings.attempt})
        # Earlier attempts' figures come from the journal (a PVC keeps it) or from the operator
        # (--prior-*, its status); the larger, never the sum: a PVC journal already holds what
        # the operator read from those attempts, and an emptyDir one holds nothing.
        ledger = Ledger(spec.cost_envelope,
                        spent_usd=max(recovered.spent_usd, settings.prior_spent_usd),
                        input_tokens=max(recovered.input_tokens, settings.prior_input_tokens),
                        output_tokens=max(recovered.output_tokens, settings.prior_output_tokens))
        if ledger.over_limit:  # spent before this attempt began: nothing more may be spent
            ledger.tripped = True
        if recovered.orphans:
            log.warning("Task %s: %d call(s) were in flight when the last attempt ended; charged "
                        "what was held for them (%s USD)", task.metadata.name, recovered.orphans,
                        recovered.orphan_usd)
        store = CheckpointStore(settings.state_dir / "checkpoints", spec.checkpoint.keep,
                                spec.checkpoint.max_bytes)
        # The context boundaries: their summaries seed the cache, so none is bought twice.
        boundaries = BoundaryStore(settings.state_dir / "context")
        context = ContextManager(spec.context_budget, spec.prompt_budget, TokenCounter())
        context.seed(boundaries.summaries())
        tracing = Tracing(
            namespace=task.metadata.namespace, task=task.metadata.name, uid=task.metadata.uid,
            attempt=settings.attempt, span_file=settings.state_dir / "spans.jsonl",
            otlp_endpoint=spec.observability.otlp_endpoint,
        )
        for call_id, usd_charged in recovered.orphan_calls:
            tracing.orphan(call_id, spec.model.name, float(usd_charged))
        h = cls(
            task=task,
            settings=settings,
            api_key=api_key,
            price=price,
            ledger=ledger,
            context=context,
            metrics=SidecarMetrics(task.metadata.namespace, task.metadata.name),
            tracing=tracing,
            upstream=make_upstream(settings.ca_bundle, settings.max_response_bytes, os.environ),
            tool_checks={t.name: checks_for(t.verify) for t in spec.tools},
            journal=journal,
            checkpoints=store,
            boundaries=boundaries,
            orphans=recovered.orphans,
            spent_at_start=ledger.spent_usd - recovered.orphan_usd,
            # Journalled before the last checkpoint (the operator's prior figure when the journal
            # holds no history): the step in progress is charged what came after.
            spent_at_checkpoint=ledger.spent_usd - recovered.spent_usd + recovered.checkpoint_spent,
            task_span=TaskSpan.open(settings.state_dir, settings.attempt, tracing.started_ns),
            generation=loaded.generation,
            task_digest=loaded.digest,
        )
        try:
            h.load_checkpoint()
        except SidecarError as exc:
            # Start anyway: GET /checkpoint answers with this error, so the agent cannot
            # mistake the damage for a fresh start; /status shows it too.
            log.error("Task %s: %s", task.metadata.name, exc.reason)
        return h

    def load_checkpoint(self) -> Checkpoint | None:
        """The latest valid checkpoint (also sets ``step``); damage is logged and counted."""
        before = self.checkpoints.corrupt_seen
        try:
            ckpt = self.checkpoints.latest()
        except SidecarError as exc:
            self.checkpoint_problem = exc.reason
            raise
        finally:
            damaged = self.checkpoints.corrupt_seen - before
            if damaged:
                self.metrics.checkpoint_corrupt.labels(**self.metrics.base).inc(damaged)
        self.last_checkpoint = ckpt
        if ckpt is not None:
            self.step = max(self.step, ckpt.step)
        return ckpt

    def status(self) -> dict[str, Any]:
        ledger, env = self.ledger, self.ledger.envelope  # the envelope enforced now
        return {
            "phase": self.phase,
            "generation": self.generation,
            "step": self.step or self.llm_calls,
            "attempt": self.settings.attempt,
            "spentUSD": usd(ledger.spent_usd),
            "reservedUSD": usd(ledger.reserved_usd),
            "softLimitUSD": usd(env.soft_limit_usd) if env.soft_limit_usd is not None else None,
            "hardLimitUSD": usd(env.hard_limit_usd),
            "inputTokens": ledger.input_tokens,
            "outputTokens": ledger.output_tokens,
            "retries": self.retries,
            "limitHits": {"soft": ledger.soft_hits, "hard": ledger.hard_hits,
                          "contended": ledger.contended},
            "llmCalls": self.llm_calls,
            "toolCalls": self.tool_calls,
            "compactions": self.compactions,
            "traceID": self.tracing.trace_id_hex,
            "priceSource": self.price.source,
            "replayed": self.replayed,
            "orphans": self.orphans,
            "lastCheckpoint": None if self.last_checkpoint is None else {
                "step": self.last_checkpoint.step, "sha256": self.last_checkpoint.sha256,
                "time": datetime.fromtimestamp(self.last_checkpoint.time, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")},
            "checkpointProblem": self.checkpoint_problem,
            "configError": self.config_error,
            "evaluation": None if self.evaluation is None else self.evaluation.status(),
        }

    async def aclose(self) -> None:
        await self.upstream.aclose()
        self.journal.close()
        self.tracing.shutdown()
