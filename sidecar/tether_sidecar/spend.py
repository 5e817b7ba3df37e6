"""The spend rules of a model call: how it is held, and what it is charged when it ends.

**Holding** (:func:`hold`): the call's worst case is reserved in the :class:`Ledger` before it
leaves. A call that can never fit (spend so far plus its own hold passes the hard limit or the
token cap) trips the breaker: 402 ``budget_exceeded``, the task stops ``BudgetExceeded``. A call
that fits but not beside the holds of calls in flight waits up to ``--hold-wait-seconds`` for
them to settle, then is refused as retryable (429 ``budget_contended``, Retry-After) and the task
goes on.

**Charging — the charge-the-hold rule** (:meth:`SpendingCall.fail`, the one place it lives):
a call is charged the cost its provider reported (``usage``). When that is not known, and the
request may have reached the provider, it is charged what was held for it: the provider may
have billed a call we lost sight of, and over-counting is the safe side of a hard limit. That
covers a timeout after sending, a connection reset before the whole response, a broken stream,
retries exhausted after any such attempt, a client gone mid-stream, a stop mid-call, and a
success that arrives only after such an attempt (charged at least the hold). $0 only when the
request provably never left (connection refused, DNS, TLS, a proxy refusing the tunnel, refused
here) or every attempt was answered with an error the provider does not bill (:func:`billable`).
The journal's orphans (a call in flight at a kill) follow the same rule: charged their hold.
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
    """A model call's ledger and journal records: begin, then settle and end, or fail."""

    def __init__(self, h: Harness, model: str) -> None:
        self.h = h
        self.model_name = model
        self.call_id = ""
        self.key = ""
        self.settled: tuple[Decimal, int, int] | None = None
        self.sending = False  # an attempt is out (or its stream is being relayed)
        self.lost: str | None = None  # the first attempt that may have been billed, unknown

    def begin(self, key: str, occurrence: int, res: Reservation) -> None:
        call_id = self.h.next_call_id()
        try:
            self.h.journal.begin(call_id, "llm", key, occurrence, hold=res.usd)
        except SidecarError:
            self.h.ledger.release(res)  # refused before it left: never sent
            raise
        self.call_id, self.key = call_id, key

    def attempt_failed(self, failure: Failure) -> None:
        """Record an attempt that failed (it will be retried, or the call fails)."""
        self.sending = False
        if self.lost is None and billable(failure):
            self.lost = failure.reason

    def end(self, status: int, headers: Headers, body: bytes) -> None:
        cost, inp, out = self.settled or (Decimal(0), 0, 0)
        self.h.journal.end(self.call_id, self.key, status=status, headers=headers, body=body,
                           usd=cost, input_tokens=inp, output_tokens=out)

    def fail(self, res: Reservation, reason: str) -> None:
        """The call failed for good: the charge-the-hold rule (module docstring)."""
        lost = self.lost or ("in flight" if self.sending else None)
        self.sending = False
        if self.settled is not None:
            return
        if lost is None:
            self.h.ledger.release(res)
        else:
            log.warning("Model call of task %s failed after it may have reached the provider "
                        "(%s); charged what was held (%s USD)", self.h.name, lost, res.usd)
            self.settle(res, None, None)
        if self.call_id:
            self.h.journal.abort(self.call_id, reason,
                                 usd=self.settled[0] if self.settled else None)

    def settle(self, res: Reservation, usage: tuple[int, int, int, int] | None,
               span: Span | None) -> Decimal:
        h = self.h
        if usage is None:
            if span is not None:  # a response without usage; a failure was logged by fail()
                log.warning("Model response for task %s had no usage; charged the reservation "
                            "(%s USD)", h.name, res.usd)
            cost, inp, out = res.usd, 0, 0
        else:
            inp, out, read, write = usage
            cost = h.price.cost(inp, out, read, write)
            if self.lost is not None and cost < res.usd:
                # An earlier attempt may have been billed too: never charge less than the hold.
                log.warning("Model call of task %s succeeded after an attempt that may have been "
                            "billed (%s); charged what was held (%s USD)", h.name, self.lost,
                            res.usd)
                cost = res.usd
        self.sending = False
        if h.ledger.settle(res, cost, inp, out):
            h.metrics.limit_hit("soft")
            log.warning("Task %s passed its soft limit: spent %s USD", h.name, h.ledger.spent_usd)
        self.settled = (cost, inp, out)
        h.metrics.llm(self.model_name, "ok" if span is not None else "lost", inp, out,
                      float(cost))
        if span is not None:
            span.set_attributes({ATTR.INPUT_TOKENS: inp, ATTR.OUTPUT_TOKENS: out,
                                 ATTR.COST: float(cost)})
        return cost
