"""One judge call, and a judgement: ``samples`` calls and their majority vote.

The calls go through the sidecar's pieces as a library (docs/evaluation.md, "The evaluator"):
:mod:`tether_sidecar.upstream` sends them, :mod:`tether_sidecar.dialects` builds the auth
headers and reads usage and reply text, :mod:`tether_sidecar.pricing` prices them,
:mod:`tether_sidecar.ledger` holds each call's worst case against the day's cap before it
leaves (the judge's per-day cap is the ledger's hard limit), :mod:`tether_sidecar.retry` decides
retries with the Judge's policy, and :func:`tether_sidecar.spend.billable` is the
charge-the-hold rule for an attempt whose cost is unknown.

A verdict is exactly ``{"pass": bool, "score": 0..1, "reason": str}`` (:class:`record.Verdict`);
anything else is the failure class ``malformed`` (retried per policy; when retries run out the
sample is ``malformed_verdict``). A judgement with any failed sample is ``judge_failed``: never a
pass. Temperature is always 0; sample ``i`` is sent with seed ``Judge.seed + i`` (reproducible,
and not the same request ``samples`` times).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from tether_sidecar.dialects import ANTHROPIC, OPENAI, Dialect
from tether_sidecar.errors import BudgetContended, BudgetExceeded
from tether_sidecar.ledger import Ledger
from tether_sidecar.pricing import Price
from tether_sidecar.retry import Failure, RetryExhausted, RetryState, parse_retry_after
from tether_sidecar.spend import billable
from tether_sidecar.upstream import TransportError, Upstream

from .config import JudgeSpec, RubricSpec
from .record import Verdict
from .redaction import RedactionFailed, Redactor
from .store import Key, Store, VerdictRow

__all__ = ["CapReached", "JudgeClient", "vote"]

log = logging.getLogger(__name__)
_OVERHEAD_TOKENS = 64  # chat framing a provider adds around the messages' bytes
CALL_HEADER = "X-Tether-Judge-Call"  # uid/attempt/policy/sample: lets a provider log correlate
FORMAT = ('Reply with one JSON object and nothing else: {"pass": true|false, "score": <number '
          'from 0 to 1>, "reason": "<one or two sentences>"}.')


def _ignore(usd: float) -> None:
    """No cost metric (a client used outside the service)."""


class CapReached(Exception):
    """The judge's daily cap leaves no room for this call: judging waits for the next day (or
    a raised cap with room for ``hold``, the call's worst case)."""

    def __init__(self, message: str, hold: Decimal = Decimal(0)) -> None:
        super().__init__(message)
        self.hold = hold


@dataclass(frozen=True)
class Sent:
    answer: dict[str, Any] | None  # final: a verdict or {"failed": class, "reason": ...}
    failure: Failure | None  # not final: retry per policy


class JudgeClient:
    def __init__(self, name: str, spec: JudgeSpec, upstream: Upstream, api_key: str | None,
                 redactor: Redactor, store: Store, timeout: float = 60.0,
                 max_output_tokens: int = 512) -> None:
        self.name, self.spec, self._up, self._store = name, spec, upstream, store
        self._redactor, self._timeout, self.max_output = redactor, timeout, max_output_tokens
        self.dialect: Dialect = ANTHROPIC if spec.model.provider == "anthropic" else OPENAI
        self.price = Price(spec.model)
        self.url = spec.model.upstream_base + self.dialect.path
        self._auth = self.dialect.auth(api_key) if api_key else {}
        self._rng = random.Random(spec.seed)
        self.day = ""
        self.ledger = Ledger(_day_envelope(spec))
        self._day_lock = asyncio.Lock()

    async def new_day(self, day: str) -> None:
        """The ledger of ``day`` (UTC), from what the store says was spent on it so far.
        Calls in flight keep the ledger they reserved on (each settles where it held)."""
        async with self._day_lock:
            if day != self.day:
                spent = await self._store.spent(self.name, day)
                self.ledger, self.day = Ledger(_day_envelope(self.spec), spent_usd=spent), day

    def body(self, rubric: RubricSpec, material: dict[str, Any], sample: int) -> bytes:
        system = f"{rubric.instructions}\n\n{FORMAT}"
        user = json.dumps(material, ensure_ascii=False, sort_keys=True)
        doc: dict[str, Any] = {"model": self.spec.model.name, "temperature": 0,
                               "max_tokens": self.max_output}
        if self.dialect is ANTHROPIC:
            doc |= {"system": system, "messages": [{"role": "user", "content": user}]}
        else:
            doc |= {"seed": self.spec.seed + sample, "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": user}]}
        return orjson.dumps(doc)

    def hold(self, body: bytes) -> Decimal:
        """The call's worst case: every byte a token (no tokenizer makes more), plus framing,
        and the whole output allowance."""
        return self.price.cost(len(body) + _OVERHEAD_TOKENS, self.max_output)

    async def sample(self, key: Key, sample: int, body: bytes,
                     on_cost: Callable[[float], None] = _ignore) -> dict[str, Any]:
        """One sample's final answer, journalled: a verdict, or a classified failure.
        ``on_cost`` gets each USD amount charged (the cost metric)."""
        retry = RetryState(self.spec.retry_policy, asyncio.get_running_loop().time())
        while True:
            sent = await self._attempt(key, sample, body, on_cost)
            if sent.answer is not None:
                return sent.answer
            assert sent.failure is not None
            try:
                retry = retry.increment(sent.failure, asyncio.get_running_loop().time(),
                                        self._rng)
            except RetryExhausted as exc:
                cls = "malformed_verdict" if sent.failure.cls == "malformed" else exc.error_class
                answer = {"failed": cls, "reason": exc.reason}
                await self._store.journal_answer(key, sample, answer, Decimal(0), self.name,
                                                 self.day)
                return answer
            await asyncio.sleep(retry.delay)

    async def _attempt(self, key: Key, sample: int, body: bytes,
                       on_cost: Callable[[float], None]) -> Sent:
        hold = self.hold(body)
        caps = self.spec.cost_caps
        # perCallUSD is for a whole judge call, all its samples (the Judge CRD says so).
        if hold * self.spec.samples > caps.per_call_usd:
            return Sent({"failed": "cost_cap", "reason": f"{self.spec.samples} sample(s) may cost "
                         f"up to {hold * self.spec.samples} USD, over the judge's perCallUSD "
                         f"{caps.per_call_usd}"}, None)
        ledger, day = self.ledger, self.day  # this call's day, even if a new one starts
        try:
            res = ledger.reserve(hold, 0)
        except (BudgetExceeded, BudgetContended) as exc:
            raise CapReached(f"judge {self.name}: perDayUSD {caps.per_day_usd} reached on "
                             f"{day} ({exc})", hold) from exc
        try:
            entry = await self._store.journal_send(key, sample, hold, self.name, day)
        except BaseException:
            ledger.release(res)  # not sent
            raise
        if entry.state == "answered":
            ledger.release(res)  # paid for before the restart: not sent again
            assert entry.answer is not None
            return Sent(entry.answer, None)
        if entry.orphaned:
            ledger.spent_usd += entry.orphan_hold  # the store charged the lost call's hold
            on_cost(float(entry.orphan_hold))
        answer, failure, cost, usage = await self._send(key, sample, body, hold)
        ledger.settle(res, cost, usage[0], usage[1])
        on_cost(float(cost))
        await self._store.journal_answer(key, sample, answer, cost, self.name, day)
        return Sent(answer, failure)

    async def _send(self, key: Key, sample: int, body: bytes, hold: Decimal
                    ) -> tuple[dict[str, Any] | None, Failure | None, Decimal, tuple[int, int]]:
        headers = {"Content-Type": "application/json", CALL_HEADER: "/".join(
            (key[0], str(key[1]), key[2], str(sample))), **self._auth}
        try:
            resp = await self._up.send("POST", self.url, headers, body, self._timeout)
        except TransportError as exc:
            failure = Failure(exc.kind, f"judge {self.name}: {exc.reason}", exc.reached)
            return None, failure, hold if billable(failure) else Decimal(0), (0, 0)
        if resp.status != 200:
            failure = Failure(str(resp.status), f"judge {self.name}: HTTP {resp.status}",
                              retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                              status=resp.status)
            return None, failure, hold if billable(failure) else Decimal(0), (0, 0)
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return None, Failure("malformed", "the judge's response is not JSON"), hold, (0, 0)
        usage = self.dialect.usage(doc) if isinstance(doc, dict) else None
        cost = hold if usage is None else self.price.cost(*usage)
        tokens = (usage[0], usage[1]) if usage is not None else (0, 0)
        verdict = self._verdict(doc)
        if isinstance(verdict, Failure):
            return None, verdict, cost, tokens
        return verdict, None, cost, tokens

    def _verdict(self, doc: Any) -> dict[str, Any] | Failure:
        try:
            text = self.dialect.reply_text(doc)
            v = Verdict.model_validate_json(text)
        except (ValidationError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return Failure("malformed", f"judge {self.name}: not a verdict "
                           f"({type(exc).__name__}): expected {FORMAT}")
        try:
            reason, _ = self._redactor.redact_text(v.reason)
        except RedactionFailed as exc:
            log.warning("Withheld a judge reason of judge %s: redaction failed (%s)",
                        self.name, exc)
            reason = "[reason withheld: redaction failed]"
        return {"pass": v.passed, "score": v.score, "reason": reason}


def _day_envelope(spec: JudgeSpec) -> Any:
    from tether_api import CostEnvelope

    return CostEnvelope.model_validate({"hardLimitUSD": str(spec.cost_caps.per_day_usd)})


def vote(answers: list[dict[str, Any]], rubric: RubricSpec, rubric_hash: str,
         judge: str, why: str = "sampled") -> VerdictRow:
    """The majority of the samples; any failed sample makes the judgement ``judge_failed``."""
    for a in answers:
        if "failed" in a:
            return VerdictRow("judge_failed", None, f"{a['failed']}: {a['reason']}",
                              rubric_hash, judge, why)
    if rubric.verdict.kind == "score":
        threshold = float(rubric.verdict.pass_threshold or 0)
        passes = [float(a["score"]) >= threshold for a in answers]
    else:
        passes = [bool(a["pass"]) for a in answers]
    passed = sum(passes) * 2 > len(answers)
    score = sum(float(a["score"]) for a in answers) / len(answers)
    reason = next(a["reason"] for a, p in zip(answers, passes, strict=True) if p == passed)
    return VerdictRow("pass" if passed else "fail", score, reason, rubric_hash, judge, why)
