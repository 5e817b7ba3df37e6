"""Stored records a policy selects but that were never queued for it: queued when the evaluator
learns of the policy (or of a change to its sampling or selector), and at every start.

Why: selection runs when a record arrives (:func:`ingest.selection`) and knows only the policies
the evaluator has read by then. The operator puts a policy into a pod as soon as it sees it; the
evaluator reads its configuration on its own turn (``status_seconds``), so a task that ends in
between names a policy the evaluator does not know yet — its record was stored and never judged.

What is queued: the latest attempt's record of each task that *names* the policy (the operator
matched the policy's selector when it made the pod; a record that does not name it ran without
its checks and is not taken up later), with text to judge, received inside the window (below),
and with no queue row for the policy yet — so a record already judged, queued or superseded for
it is never queued twice. The reason is decided exactly as at arrival, with the policy's current
``include``: ``sampled`` (the sidecar's flag: the sample is drawn at the rate the pod was made
with, so a raised rate applies to new pods and a restart never changes what is judged),
``failed`` (not answered, or a terminal phase other than Succeeded), ``retried`` (attempt above
1). So in the steady state the start-up pass queues nothing: it only finds what arrived before
its policy was read, or what a new ``include`` takes in.

The window: records received since the policy's creation (an older record names an earlier
policy of the same name) and within ``backfill_seconds`` (a day by default, the judge's cap
period: a policy created long after its tasks is a new policy, and judging a long history at once
would spend days of the judge's budget on the past). Queue rows are committed in one transaction
with the check, so a kill leaves either none or all; the start-up pass finds what is left.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Policy

__all__ = ["reason", "since", "triggers"]


def reason(name: str, policy: Policy, body: dict[str, Any], phase: str | None) -> str | None:
    """Why policy ``name`` judges this stored record (sampled, failed, retried), or None."""
    refs = [ref for ref in body.get("policies") or () if ref.get("name") == name]
    if not refs:
        return None
    inc = policy.spec.sampling.include
    if refs[0].get("sampled"):
        return "sampled"
    ended_badly = phase is not None and phase != "Succeeded"
    if inc.failed and (body["outcome"] != "answered" or ended_badly):
        return "failed"
    if inc.retried and int(body["attempt"]) > 1:
        return "retried"
    return None


def since(policy: Policy, window_seconds: float, now: datetime | None = None) -> str:
    """The earliest ``received_at`` (ISO, UTC) of a record the policy takes up later."""
    start = (now or datetime.now(UTC)) - timedelta(seconds=window_seconds)
    if policy.created is not None and policy.created > start:
        start = policy.created
    return start.astimezone(UTC).isoformat()


def triggers(old: dict[str, Policy], new: dict[str, Policy]) -> list[str]:
    """The policies of ``new`` whose stored records must be looked at again: new ones, and those
    whose sampling, selector or creation (deleted and made again) changed."""
    out = []
    for name, pol in new.items():
        was = old.get(name)
        if (was is None or was.spec.sampling != pol.spec.sampling
                or was.spec.selector != pol.spec.selector or was.created != pol.created):
            out.append(name)
    return out
