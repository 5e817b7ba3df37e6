"""The spend rules of a model call: how it is held, and what it is charged when it ends.

**Holding** (:func:`hold`): the call's worst case is reserved in the :class:`Ledger` before it
leaves. A call that can never fit (spend so far plus its own hold passes the hard limit or the
token cap) trips the breaker: 402 ``budget_exceeded``, the task stops ``BudgetExceeded``. A call
that fits but not beside the holds of calls in flight waits up to ``--hold-wait-seconds`` for
them to settle, then is refused as retryable (429 ``budget_contended``, Retry-After) and the task
goes on.

**Charging — the charge-the-hold rule** (:class:`SpendingCall`, the one place it lives): an
attempt is charged the cost its provider reported (``usage``). When that is not known, and the
request may have reached the provider, it is charged what was held for it: the provider may
have billed an attempt we lost sight of, and over-counting is the safe side of a hard limit.
That covers a timeout after sending, a connection reset before the whole response, a response
or stream cut off, a 502/504 from a gateway (:func:`billable`), a client gone mid-stream, a stop
mid-call. It holds for *every* such attempt, not once per call:

* an attempt that may have been billed and is then **retried** is charged its hold for good
  (:meth:`SpendingCall.retrying`: settled in the ledger, its journal call closed with the charge)
  and the retry takes a **new** hold through :func:`hold` before it is sent. That hold may be
  refused like any call's (contention waited out, then 429; the hard limit, which trips the
  breaker, 402): the call then ends with that error and the retry is not sent;
* the attempt that finally succeeds is charged its reported usage (the lost ones are already
  charged); the one that finally fails is charged its hold if it may have been billed
  (:meth:`SpendingCall.fail`).

A streamed call is retried only before its first byte is relayed, by the same rule. $0 for an
attempt only when the request provably never left (connection refused, DNS, TLS, a proxy
refusing the tunnel, refused here) or the provider answered with an error it does not bill;
such an attempt's hold carries over to its retry. The journal's orphans (a call in flight at a
kill) follow the same rule: charged their hold.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from .errors import BudgetContended, BudgetExceeded, SidecarError
from .ledger import Reservation
from .retry import Failure
from .tracing import ATTR, Span

if TYPE_CHECKING:
    from .harness import Harness
    from .upstream import Headers

__all__ = ["SpendingCall", "billable", "hold"]

log = logging.getLogger(__name__)

# Answers not from the provider itself (a gateway in front of it gave up or failed): the
# provider may still have run the request. Any other HTTP error answer is the provider's own
# refusal or failure, which it does not bill.
_GATEWAY = frozenset({502, 504})


def billable(failure: Failure) -> bool:
    """Whether a failed attempt may have been billed: it may have reached the provider and no
    answer of the provider's own says it was not run."""
    return failure.reached and (failure.status is None or failure.status in _GATEWAY)


async def hold(h: Harness, amount: Decimal, tokens: int) -> Reservation:
    """Reserve ``amount`` USD and ``tokens`` for a call, waiting (bounded) out contention."""
    try:
        return await h.ledger.reserve_waiting(amount, tokens, h.settings.hold_wait_seconds)
    except BudgetExceeded:
        h.metrics.limit_hit("hard")
        log.warning("Refused a model call of task %s: hard limit reached", h.name)
        raise
    except BudgetContended:
        h.metrics.limit_hit("contended")
        log.warning("Refused a model call of task %s for now: holds of calls in flight left "
                    "no room within %.0fs (retryable)", h.name, h.settings.hold_wait_seconds)
        raise


class SpendingCall:
    """A model call's ledger and journal records: begin, then settle and end, or fail; an
    attempt that may have been billed is charged before it is retried (:meth:`retrying`)."""

    def __init__(self, h: Harness, model: str) -> None:
        self.h = h
        self.model_name = model
        self.res: Reservation | None = None  # the hold of the attempt being made, while open
        self.call_id = ""  # its journal call: one per hold
        self.key = ""
        self.occurrence = 0
        self.settled: tuple[Decimal, int, int] | None = None
        self.sending = False  # an attempt is out (or its stream is being relayed)
        self.lost: str | None = None  # the attempt just failed may have been billed: why
        self.lost_usd = Decimal(0)  # charged for attempts lost and retried

    def begin(self, key: str, occurrence: int, res: Reservation) -> None:
        """Journal the hold ``res`` as a call of ``key`` (one journal call per hold)."""
        call_id = self.h.next_call_id()
        try:
            self.h.journal.begin(call_id, "llm", key, occurrence, hold=res.usd,
                                 lost=self.lost_usd)
        except SidecarError:
            self.h.ledger.release(res)  # refused before it left: never sent
            raise
        self.res, self.call_id, self.key, self.occurrence = res, call_id, key, occurrence

    def attempt_failed(self, failure: Failure) -> None:
        """Record an attempt that failed (it will be retried, or the call fails)."""
        self.sending = False
        if billable(failure):
            self.lost = failure.reason

    async def retrying(self) -> Decimal:
        """Before a retry: when the failed attempt may have been billed, charge its hold for good
        and take a new one for the retry (which may be refused: the error ends the call and the
        retry is not sent). Returns what was charged."""
        res, reason = self.res, self.lost
        if res is None or reason is None:
            return Decimal(0)  # provably not billed: its hold carries over to the retry
        self.res, self.lost = None, None
        self._book(res, res.usd, 0, 0)
        self.lost_usd += res.usd
        self.h.metrics.cost.labels(**self.h.metrics.base, model=self.model_name).inc(
            float(res.usd))
        log.warning("Model call of task %s: an attempt that may have been billed (%s) is "
                    "retried; charged what was held for it (%s USD), holding again for the "
                    "retry", self.h.name, reason, res.usd)
        call_id, self.call_id = self.call_id, ""
        self.h.journal.lost(call_id, reason, res.usd)
        self.begin(self.key, self.occurrence, await hold(self.h, res.usd, res.tokens))
        return res.usd

    def end(self, status: int, headers: Headers, body: bytes) -> None:
        cost, inp, out = self.settled or (Decimal(0), 0, 0)
        self.h.journal.end(self.call_id, self.key, status=status, headers=headers, body=body,
                           usd=cost, input_tokens=inp, output_tokens=out)

    def fail(self, reason: str, span: Span | None) -> None:
        """The call failed for good: the charge-the-hold rule (module docstring) for the last
        attempt's hold; attempts lost before it were charged when they were retried. What the
        call was charged in all goes on its ``span``, as for a call that succeeds."""
        lost = self.lost or ("in flight" if self.sending else None)
        self.sending = False
        res = self.res
        if self.settled is None and res is not None:  # else settled, or a retry refused
            if lost is None:
                self.res = None
                self.h.ledger.release(res)
            else:
                log.warning("Model call of task %s failed after it may have reached the "
                            "provider (%s); charged what was held (%s USD)", self.h.name, lost,
                            res.usd)
                self.settle(None, None)
            self.h.journal.abort(self.call_id, reason,
                                 usd=self.settled[0] if self.settled else None)
        if span is not None:
            charged = (self.settled[0] if self.settled else Decimal(0)) + self.lost_usd
            span.set_attribute(ATTR.COST, float(charged))

    def settle(self, usage: tuple[int, int, int, int] | None, span: Span | None) -> Decimal:
        """Charge the open hold: the reported usage, or the hold itself when there is none."""
        h, res = self.h, self.res
        if res is None:
            raise RuntimeError(f"model call {self.call_id or '?'} of task {h.name} settled with "
                               "no hold open")
        if usage is None:
            if span is not None:  # a response without usage; a failure was logged by fail()
                log.warning("Model response for task %s had no usage; charged the reservation "
                            "(%s USD)", h.name, res.usd)
            cost, inp, out = res.usd, 0, 0
        else:
            inp, out, read, write = usage
            cost = h.price.cost(inp, out, read, write)
        self.sending = False
        self.res = None
        self._book(res, cost, inp, out)
        self.settled = (cost, inp, out)
        h.metrics.llm(self.model_name, "ok" if span is not None else "lost", inp, out,
                      float(cost))
        if span is not None:
            span.set_attributes({ATTR.INPUT_TOKENS: inp, ATTR.OUTPUT_TOKENS: out,
                                 ATTR.COST: float(cost + self.lost_usd)})
        return cost

    def _book(self, res: Reservation, cost: Decimal, inp: int, out: int) -> None:
        if self.h.ledger.settle(res, cost, inp, out):
            self.h.metrics.limit_hit("soft")
            log.warning("Task %s passed its soft limit: spent %s USD", self.h.name,
                        self.h.ledger.spent_usd)
