"""``POST /v1/records``: validate a task record, redact it again, store it, queue its judging.

Answers 201 when stored, 200 when the same ``(uid, attempt)`` was stored before (the sidecar's
outbox re-delivers until acknowledged), 400 naming the field of a malformed record, 413 for a
body over the limit. The 2xx is sent only after the store committed: a record acknowledged is
never lost.

Judging waits until the task is terminal (:meth:`store.Store.set_terminal`, from the AgentTask's
phase) when the evaluator watches a cluster; without one, a record is judged on arrival.

Selection: a record is queued for a policy the evaluator knows when the sidecar marked it sampled
(the hash of the task's uid, :mod:`tether_api.sampling`), or the policy includes failed tasks and
it did not answer, or includes retried ones and it is not the first attempt. A record whose
redaction failed (at the sidecar or here) is counted and stored without text, never queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from .config import EvalConfig
from .metrics import EvalMetrics
from .record import Record
from .redaction import RedactionFailed, Redactor
from .store import Store

__all__ = ["Ingest", "selection"]

log = logging.getLogger(__name__)


def selection(rec: Record, config: EvalConfig) -> list[tuple[str, str]]:
    """The policies that judge this record, each with why: sampled, failed or retried."""
    if not rec.redaction.ok or rec.outcome == "no_record":  # no text to judge
        return []
    out = []
    for ref in rec.policies:
        pol = config.policies.get(ref.name)
        if pol is None:
            continue
        inc = pol.spec.sampling.include
        if ref.sampled:
            out.append((ref.name, "sampled"))
        elif inc.failed and rec.outcome != "answered":
            out.append((ref.name, "failed"))
        elif inc.retried and rec.attempt > 1:
            out.append((ref.name, "retried"))
    return out


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class Ingest:
    def __init__(self, store: Store, config: EvalConfig, redactor: Redactor,
                 metrics: EvalMetrics, on_queued: Any = None) -> None:
        self.store, self.config, self.redactor, self.metrics = store, config, redactor, metrics
        self.on_queued = on_queued  # a callable: wakes the judging loop
        # Without a cluster nothing says when a task is over: its record (sent at its end) is
        # judged on arrival. With one, judging waits for the AgentTask's terminal phase.
        self.terminal_on_arrival = True

    async def post(self, request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(await request.read())
            rec = Record.model_validate(doc)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        except ValidationError as exc:
            return _error(400, f"not a tether task record: {_reason(exc)}")
        new, queue = await self.accept(rec)
        if not new:
            return web.json_response({"stored": False, "reason": "already stored"}, status=200)
        return web.json_response({"stored": True, "queued": queue}, status=201)

    async def accept(self, rec: Record) -> tuple[bool, list[str]]:
        """Redact, store, count and queue a valid record: whether it was new, and the
        policies it is queued for."""
        rec, stored = await self.redact(rec)
        queue = selection(rec, self.config)
        labels = orjson.dumps(rec.labels, option=orjson.OPT_SORT_KEYS).decode()
        if not await self.store.put_record(stored, labels, queue, self.terminal_on_arrival):
            return False, []
        self.count(rec)
        if queue and self.on_queued is not None:
            self.on_queued()
        return True, [p for p, _ in queue]

    async def redact(self, rec: Record) -> tuple[Record, dict[str, Any]]:
        """The record redacted again (fail closed), and its JSON document to store."""
        doc = rec.model_dump(mode="json", by_alias=True)
        if not rec.redaction.ok:
            return rec, doc
        started = time.perf_counter()
        findings: dict[str, int] = dict(rec.redaction.findings)
        text = {f: doc[f] for f in ("answer", "instructions", "inputs")}
        try:
            # The engine blocks (its own thread, a deadline): off the event loop.
            out, found = await asyncio.get_running_loop().run_in_executor(
                None, self.redactor.redact_json, text)
            doc.update(out)
            for kind, n in found.items():
                findings[kind] = findings.get(kind, 0) + n
        except RedactionFailed as exc:
            log.warning("Record of task %s/%s attempt %d could not be redacted, stored without "
                        "text and not judged: %s", rec.namespace, rec.task, rec.attempt, exc)
            doc.update(answer=None, instructions=None, inputs=None)
            doc["redaction"] = {"ok": False, "findings": findings,
                                "engine": self.redactor.engine}
        finally:
            self.metrics.redaction_seconds.observe(time.perf_counter() - started)
        doc["redaction"]["findings"] = findings
        return Record.model_validate(doc), doc

    def count(self, rec: Record) -> None:
        ns = rec.namespace
        if not rec.redaction.ok:
            self.metrics.redaction_failures.labels(ns).inc()
        for ref in rec.policies:
            self.metrics.records.labels(ns, ref.name, rec.outcome).inc()
        for c in rec.deterministic.checks:
            self.metrics.checks.labels(ns, c.policy, c.name,
                                       "passed" if c.passed else "failed").inc()


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
