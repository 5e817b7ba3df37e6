"""The evaluation record's way out of the task: an outbox on the state volume, then the evaluator.

A record (eval_record.py) is written to the outbox durably before anything is sent, then posted
to ``{evaluatorURL}/v1/records`` until the evaluator acknowledges it. Files in
``<state-dir>/evaluation/``, one record per attempt:

    record-<attempt>.json       pending (whole or absent: temp file, fsync, rename)
    record-<attempt>.sent       delivered: a 2xx came back; only its outcome kept, as the mark
    record-<attempt>.rejected   refused for good (a 4xx other than 408/429): kept, counted, logged
    record-<attempt>.damaged    not a record (damaged from outside): moved aside, logged, not sent

Retries: a connection failure, a timeout, 408, 429 or 5xx is tried again with exponential backoff
and jitter (``Retry-After`` honoured), capped at ``TETHER_SIDECAR_EVAL_RETRY_MAX_SECONDS``. A
restarted sidecar on the same volume delivers what is pending. At shutdown the last record is
built and the outbox flushed within ``FLUSH_SECONDS``; what is left stays for a restarted
sidecar. The evaluator is idempotent on ``(uid, attempt)`` (the ``Idempotency-Key`` header says
the same), so a record sent again after a lost acknowledgement is stored once.

When the attempt ends without a record (SIGTERM, no ``PUT /result``), one is written then: the
stored answer when an earlier attempt gave one, else ``no_answer`` (``budget_exceeded`` when the
hard limit stopped the task). The sidecar cannot tell the end of the pod from an eviction — both
are a SIGTERM — so the rule is the evaluator's: the latest attempt's record wins, and a task is
counted only once it is terminal; an evicted attempt's ``no_answer`` is superseded by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tether_api import CallRetry

from .checkpoints import write_durably
from .errors import SidecarError, StorageFailed
from .eval_config import Evaluation as Config
from .eval_record import build, facts
from .result_api import Result, ResultApi
from .retry import backoff, parse_retry_after
from .upstream import TransportError

if TYPE_CHECKING:
    from .harness import Harness

__all__ = ["Evaluation", "Outbox"]

log = logging.getLogger(__name__)
# terminationGracePeriodSeconds (30, operator settings) less the sidecar's --grace-seconds for
# calls in flight (20) leaves 10 s: 8 to build and deliver the last record, 2 for the rest.
FLUSH_SECONDS = 8.0
SEND_TIMEOUT_SECONDS = 10.0
FIRST_DELAY_SECONDS = 0.2
_NAME = re.compile(r"^record-(\d+)\.(json|sent|rejected)$")


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, attempt: int, kind: str) -> Path:
        return self.dir / f"record-{attempt:06d}.{kind}"

    def count(self, kind: str) -> int:
        return sum(1 for p in self.dir.iterdir() if (m := _NAME.match(p.name)) and m[2] == kind)

    def outcome(self, attempt: int) -> str | None:
        """The outcome of the attempt's record, pending or settled; None if it has none (or
        only a damaged one, which the next record replaces)."""
        for kind in ("json", "sent", "rejected"):
            path = self._path(attempt, kind)
            try:
                data = path.read_bytes()
                return data.decode() if kind == "sent" else str(orjson.loads(data)["outcome"])
            except FileNotFoundError:
                continue
            except (orjson.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                log.error("Evaluation record %s is damaged; a new one replaces it", path)
        return None

    def write(self, record: dict[str, Any]) -> None:
        path = self._path(int(record["attempt"]), "json")
        try:
            write_durably(path, orjson.dumps(record))
        except OSError as exc:
            raise StorageFailed(f"cannot write the evaluation record to {path}: "
                                f"{exc.strerror}", errno=exc.errno) from exc

    def pending(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.name.endswith(".json")
                      and _NAME.match(p.name))

    def settle(self, path: Path, kind: str, outcome: str) -> None:
        done = path.with_suffix(f".{kind}")
        os.rename(path, done)
        if kind == "sent":  # the evaluator has it: its outcome is all we keep
            done.write_bytes(outcome.encode())


class Evaluation:
    """The deterministic layer's life in one sidecar: record the answer, deliver, flush."""

    def __init__(self, h: Harness, config: Config, results: ResultApi) -> None:
        self.h, self.config, self.results = h, config, results
        self.outbox = Outbox(h.settings.state_dir / "evaluation")
        self.url = config.evaluator_url.rstrip("/") + "/v1/records"
        self.checks_passed = self.checks_failed = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._building: asyncio.Task[None] | None = None
        self._rng = random.Random()
        # The delivery's waits, by the call retry's own backoff: doubling from the first, capped,
        # jittered down by up to half (no herd of sidecars at an evaluator's return).
        self._backoff = CallRetry(initial_interval=f"{FIRST_DELAY_SECONDS * 1000:.3f}ms",
                                  backoff_coefficient=2.0, jitter=0.5, maximum_interval=
                                  f"{h.settings.eval_retry_max_seconds * 1000:.3f}ms")

    def status(self) -> dict[str, int]:
        return {"checksPassed": self.checks_passed, "checksFailed": self.checks_failed,
                "delivered": self.outbox.count("sent"), "pending": self.outbox.count("json"),
                "rejected": self.outbox.count("rejected")}

    async def start(self, _: web.Application) -> None:
        if left := len(self.outbox.pending()):
            log.info("Task %s: %d evaluation record(s) pending from before; delivering",
                     self.h.name, left)
        self._task = asyncio.create_task(self._deliver_all())

    async def answered(self, result: Result) -> None:
        """Build the record in the background: the agent's PUT /result returns once its answer
        is stored (the first record also loads the redaction engine, ~1-2 s). If building
        fails, the end of the attempt tries again."""
        if self._building is None or self._building.done():
            self._building = asyncio.create_task(self._record_logged(result))

    async def _record_logged(self, result: Result | None) -> None:
        try:
            await self._record(result)
        except SidecarError as exc:
            log.error("Task %s: no evaluation record for attempt %d yet: %s", self.h.name,
                      self.h.settings.attempt, exc.reason)
        except Exception:  # a bug of ours, in a background task: said loudly, retried at stop
            log.exception("Task %s: building the evaluation record of attempt %d failed",
                          self.h.name, self.h.settings.attempt)

    async def stop(self, _: web.Application) -> None:
        """At the end of the attempt: its record if it has none yet, then a flush; both within
        FLUSH_SECONDS, so the termination summary is still written before the pod's grace ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_SECONDS
        try:  # waits for a record being built (the lock), or builds this attempt's
            await asyncio.wait_for(self._record_logged(self.results.result), FLUSH_SECONDS)
        except TimeoutError:
            log.error("Task %s: the evaluation record of attempt %d was not built within %.0f "
                      "s; none is sent", self.h.name, self.h.settings.attempt, FLUSH_SECONDS)
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("Task %s: %d evaluation record(s) not delivered within %.0f s; kept in "
                        "%s for a restarted sidecar", self.h.name, len(self.outbox.pending()),
                        FLUSH_SECONDS, self.outbox.dir)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _record(self, result: Result | None) -> None:
        h = self.h
        async with self._lock:
            prior = self.outbox.outcome(h.settings.attempt)
            if prior is not None and (result is None or prior == "answered"):
                return
            # An answer after this attempt's no_answer record: the sidecar alone was restarted
            # in its pod (a failed liveness probe is a SIGTERM too). Pending, the record is
            # replaced; sent, the answered one follows it under the same key (docs/evaluation.md).
            f = facts(h, answered=result is not None)  # read on the loop: a snapshot
            answer = result.answer if result is not None else None
            record = await asyncio.to_thread(build, self.config, f, answer, result is not None)
            await asyncio.to_thread(self.outbox.write, record)
            checks = record["deterministic"]["checks"]
            passed = sum(1 for c in checks if c["passed"])
            # The attempt's current record (an answered one replaces a no_answer one).
            self.checks_passed, self.checks_failed = passed, len(checks) - passed
            if not record["redaction"]["ok"]:
                h.metrics.eval_redaction_failures.labels(**h.metrics.base).inc()
            log.info("Task %s: evaluation record of attempt %d written (%s; checks %d passed, "
                     "%d failed)", h.name, f.attempt, f.outcome, passed, len(checks) - passed)
            self._drained.clear()
            self._wake.set()

    async def _deliver_all(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            pending = self.outbox.pending()
            if not pending:
                self._drained.set()
                await self._wake.wait()
                continue
            self._drained.clear()
            retry_after: float | None = None
            for path in pending:
                try:
                    retry_after = await self._deliver(path)
                except (OSError, ValueError):  # a file damaged from outside, or a bug of ours
                    log.exception("Task %s: delivering %s failed; will retry", self.h.name, path)
                    retry_after = 0.0
                if retry_after is not None:
                    break
            if retry_after is None:
                failures = 0
                continue
            failures += 1
            delay = max(retry_after, backoff(self._backoff, failures, self._rng))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _deliver(self, path: Path) -> float | None:
        """None once the record is settled (sent or rejected); else seconds to wait at least."""
        h = self.h
        attempt = int(path.name.split("-")[1].split(".")[0])
        headers = {"content-type": "application/json",
                   "idempotency-key": f"{h.task.metadata.uid or h.name}/{attempt}"}
        data = path.read_bytes()
        try:
            record = orjson.loads(data)
            str(record["outcome"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            # Written whole or not at all (write_durably): only outside damage gets here.
            async with self._lock:  # unless a new record has just replaced it
                if path.read_bytes() == data:
                    log.error("Task %s: evaluation record %s is damaged; moved aside as "
                              ".damaged, not sent", h.name, path)
                    os.rename(path, path.with_suffix(".damaged"))
            return None
        try:
            resp = await h.upstream.send("POST", self.url, headers, data, SEND_TIMEOUT_SECONDS)
        except TransportError as exc:
            return self._retry(attempt, f"{exc.kind}: {exc.reason}", None)
        async with self._lock:  # a record written meanwhile replaced this one: send that next
            if path.read_bytes() != data:
                return None
            return self._settle(path, attempt, resp.status, resp.body, record,
                                parse_retry_after(resp.headers.get("retry-after")))

    def _settle(self, path: Path, attempt: int, status: int, body: bytes,
                record: dict[str, Any], retry_after: float | None) -> float | None:
        h = self.h
        if 200 <= status < 300:
            self.outbox.settle(path, "sent", str(record["outcome"]))
            h.metrics.eval_records_sent.labels(**h.metrics.base, outcome="delivered").inc()
            log.info("Task %s: evaluation record of attempt %d delivered (HTTP %d)", h.name,
                     attempt, status)
            return None
        if 400 <= status < 500 and status not in (408, 429):
            self.outbox.settle(path, "rejected", str(record["outcome"]))
            h.metrics.eval_records_sent.labels(**h.metrics.base, outcome="rejected").inc()
            log.error("Task %s: the evaluator refused the record of attempt %d for good (HTTP "
                      "%d: %s); kept as %s", h.name, attempt, status,
                      body[:300].decode("utf-8", "replace"), path.with_suffix(".rejected"))
            return None
        return self._retry(attempt, f"HTTP {status}", retry_after)

    def _retry(self, attempt: int, why: str, after: float | None) -> float:
        h = self.h
        h.metrics.eval_delivery_retries.labels(**h.metrics.base).inc()
        log.warning("Task %s: evaluation record of attempt %d not delivered to %s (%s); will "
                    "retry", h.name, attempt, self.url, why)
        return after or 0.0
