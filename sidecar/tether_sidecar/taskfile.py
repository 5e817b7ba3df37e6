"""The task file, read at start and re-read while the task runs: live edits of the envelope.

The operator rewrites the task's ConfigMap when the spec changes (issue #9, contract 2) and
kubelet swaps the mounted file atomically (a new timestamped directory, then the ``..data``
symlink renamed onto it), so the file is read through its path on every check — an open handle
would keep the old version — every ``--task-poll-seconds``, and parsed only when its content
hash changes.

What a new version does (docs/operator.md has the table of every field):

* ``spec.costEnvelope`` (hard, soft, maxTokens) is **live**: enforced from the next call on. A
  hard limit (or token cap) lowered below what is already spent trips the breaker at once.
* ``spec.retryPolicy.pod`` and ``spec.activeDeadlineSeconds`` are live too, but the operator's
  to apply: ignored here.
* any other change is taken **from the next attempt**: not applied here, and ``generation``
  (the newest ``metadata.generation`` this process enforces entirely) stays where it was.
* a file that does not parse, is not a valid AgentTask, or names another task is logged,
  counted (``tether_sidecar_config_reload_failures_total``), shown in ``/status.configError``,
  and ignored: the old spec stays enforced.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tether_api import AgentTask, InvalidAgentTask, parse_agenttask, usd
from tether_api.agenttask import yaml_loader

if TYPE_CHECKING:
    from .harness import Harness

__all__ = ["Loaded", "check", "load"]

log = logging.getLogger(__name__)

# Applied live: this process the envelope, the operator the rest (fields by their Python name).
_LIVE: dict[str, Any] = {"cost_envelope": True, "active_deadline_seconds": True,
                         "retry_policy": {"pod"}}


@dataclass(frozen=True)
class Loaded:
    task: AgentTask
    generation: int | None
    digest: bytes


def _read(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).digest()


def _parse(path: Path, data: bytes, digest: bytes) -> Loaded:
    """Raises InvalidAgentTask naming the file and each problem."""
    try:
        doc = yaml.load(data, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        raise InvalidAgentTask(str(path), [f"not valid YAML: {exc}"]) from exc
    task = parse_agenttask(doc, str(path))
    generation = (doc.get("metadata") or {}).get("generation")
    if generation is not None and (not isinstance(generation, int) or generation < 0):
        raise InvalidAgentTask(str(path), [f"metadata.generation: {generation!r} is not a "
                                           "non-negative integer"])
    return Loaded(task, generation, digest)


def load(path: Path) -> Loaded:
    """The task file at start-up."""
    try:
        data, digest = _read(path)
    except OSError as exc:
        raise InvalidAgentTask(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    return _parse(path, data, digest)


def _next_attempt_fields(task: AgentTask) -> dict[str, Any]:
    return task.spec.model_dump(exclude=_LIVE)


def check(h: Harness) -> None:
    """Re-read the task file; apply what changed (see the module docstring)."""
    path = h.settings.task
    try:
        data, digest = _read(path)
    except OSError as exc:
        _refuse(h, path, f"cannot read the file: {exc.strerror}",
                hashlib.sha256(str(exc).encode()).digest())
        return
    if digest == h.task_digest:
        return
    try:
        new = _parse(path, data, digest)
    except InvalidAgentTask as exc:
        _refuse(h, path, "; ".join(exc.problems), digest)
        return
    meta, now = h.task.metadata, new.task.metadata
    if (now.namespace, now.name, now.uid) != (meta.namespace, meta.name, meta.uid):
        _refuse(h, path, f"it now describes task {now.namespace}/{now.name} (uid {now.uid}), "
                f"not {meta.namespace}/{meta.name} (uid {meta.uid})", digest)
        return
    h.task_digest, h.config_error = digest, None
    _apply_envelope(h, new)
    if _next_attempt_fields(new.task) == _next_attempt_fields(h.task):
        h.generation = new.generation
    else:
        changed = sorted(k for k, v in _next_attempt_fields(new.task).items()
                         if _next_attempt_fields(h.task)[k] != v)
        log.info("Task %s: generation %s changes %s, taken from the next attempt; enforcing "
                 "its costEnvelope now, generation %s entirely", h.name, new.generation,
                 ", ".join(changed), h.generation)


def _apply_envelope(h: Harness, new: Loaded) -> None:
    ledger, env = h.ledger, new.task.spec.cost_envelope
    if env == ledger.envelope:
        return
    soft_before = ledger.soft_passed
    tripped = ledger.apply(env)
    log.info("Task %s: cost envelope now hard %s USD, soft %s, maxTokens %s (generation %s)",
             h.name, usd(env.hard_limit_usd),
             usd(env.soft_limit_usd) if env.soft_limit_usd is not None else "none",
             env.max_tokens, new.generation)
    if tripped:
        h.metrics.limit_hit("hard")
        ledger.hard_hits += 1
        log.warning("Task %s: the new hard limit %s USD (or token cap) is already spent (%s "
                    "USD): no further model or tool calls", h.name, usd(env.hard_limit_usd),
                    usd(ledger.spent_usd))
    if ledger.soft_passed and not soft_before:
        h.metrics.limit_hit("soft")
        ledger.soft_hits += 1
        log.warning("Task %s passed its new soft limit: spent %s USD", h.name,
                    usd(ledger.spent_usd))


def _refuse(h: Harness, path: Path, problem: str, digest: bytes) -> None:
    if digest == h.task_digest:
        return  # this very problem was reported already
    h.task_digest, h.config_error = digest, f"{path}: {problem}"
    h.metrics.config_reload_failures.labels(**h.metrics.base).inc()
    log.warning("Task file %s not applied, the spec of generation %s stays enforced: %s", path,
                h.generation, problem)
