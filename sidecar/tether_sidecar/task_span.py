"""The task span: the root of a task's trace (task → attempt → step → call), sent once, by the
attempt that ends the task.

A task outlives its pods, so its start is kept on the state volume (``task-span.json``), written
durably by the first attempt before it serves; a later attempt reads it. The attempt that ends
the task sends ``task {name}`` from that start to its own end, with the final phase, the total
spend and the number of attempts, then records on the volume that it did: an attempt the
operator still starts afterwards (an eviction after the answer) sends no second one.

What ends the task, as the sidecar sees it when it stops: the breaker tripped (the operator
finishes the task BudgetExceeded on that summary), or the agent's answer is stored (``PUT
/result``; the agent then exits and the task Succeeds). The sidecar does not see the agent's exit
code, so an agent that answers and then exits non-zero, and is retried, has its task span sent
by the attempt that answered.

An attempt killed before it sends the span (SIGKILL past the grace period, a lost node) leaves
the attempts pointing at a root that never arrives. Nothing invents it later from figures it did
not see: if the operator starts another attempt (a pod gone unread is an eviction to it), that
one ends the task again (a resumed agent re-reports its answer) and sends it; if not, the trace
has no root and the task's status holds the figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .checkpoints import write_durably
from .tracing import ATTR, Span, Tracing, task_span_id

__all__ = ["TaskSpan"]

log = logging.getLogger(__name__)
FILE = "task-span.json"


@dataclass
class TaskSpan:
    path: Path
    start_ns: int
    first_attempt: int
    sent_by: int | None = None  # the attempt that sent it

    @classmethod
    def open(cls, state_dir: Path, attempt: int, start_ns: int) -> TaskSpan:
        """The task's record, created (durably) by the first attempt to run, which began at
        ``start_ns`` (its attempt span's start)."""
        path = state_dir / FILE
        try:
            doc = orjson.loads(path.read_bytes())
            return cls(path, int(doc["startNs"]), int(doc["firstAttempt"]), doc.get("sentBy"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Written atomically, so only outside damage gets here; the task span then starts
            # at this attempt, which the log says.
            log.error("Task span record %s is unreadable (%s); the task span will start at "
                      "attempt %d", path, exc, attempt)
        record = cls(path, start_ns, attempt)
        record._save()
        return record

    def _save(self) -> None:
        try:
            write_durably(self.path, orjson.dumps({
                "startNs": self.start_ns, "firstAttempt": self.first_attempt,
                "sentBy": self.sent_by}))
        except OSError as exc:
            log.error("Cannot write the task span record %s (%s): a later attempt will not know "
                      "when the task started", self.path, exc.strerror)

    def send(self, tracing: Tracing, task: str, phase: str, attributes: dict[str, Any]) -> bool:
        """Send the task span, once per task; False when an earlier attempt sent it."""
        if self.sent_by is not None:
            log.info("Task %s: attempt %d sent the task span already", task, self.sent_by)
            return False
        Span(tracing, f"task {task}", task_span_id(tracing.trace_id), None, {
            ATTR.TASK_PHASE: phase, ATTR.ATTEMPTS: tracing.attempt,
            "tether.attempt.first": self.first_attempt, **attributes}, self.start_ns).end()
        self.sent_by = tracing.attempt
        self._save()
        return True
