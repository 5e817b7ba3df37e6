"""Pure: an EvaluationPolicy's status from what the store knows. No I/O here.

The evaluator writes it to the policy (``status`` subresource) once it watches the cluster;
until then ``GET /v1/policies/{name}/status`` shows it. Conditions follow the API conventions
through the operator's own ``conditions.merge`` (``lastTransitionTime`` moves only when a
type's status changes):

* ``Ready`` — True: the policy's Rubric and Judge are known and records are judged.
* ``Degraded`` — True once the change detector alarmed on the agent's pass rate, and until the
  policy's detector settings change (a new baseline is the acknowledgement: the detector then
  starts afresh). False while it has not, or when the anchors put the alarm on the judge
  (reason ``AlarmAttributedToJudge``: :func:`stats.attribute`).
* ``JudgeDrift`` — True when the latest anchor run's pass rate moved from the first run's
  (:func:`stats.anchors_moved`): the judge changed. False while steady; Unknown without
  anchors, before their first run, or when they cannot be read (the message says why).
* ``JudgeCapReached`` — True while the judge's daily cap stops judging.
* ``RedactionFailures`` — True when any record of the policy could not be redacted (counted,
  never judged).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tether_api import usd
from tether_api.evaluation_policy import EvaluationPolicyStatus
from tether_operator.conditions import merge, want

from .detect import Cusum
from .stats import AnchorCheck, anchors_moved, attribute, wilson
from .store import Tally

__all__ = ["PolicyFacts", "policy_status"]


@dataclass(frozen=True)
class PolicyFacts:
    records: int
    redaction_failures: int
    samples: int
    tally: Tally
    cusum: Cusum | None
    alarms: int  # since the policy was created (the store's count, across detector restarts)
    judge: str
    judge_spent_today: Decimal
    capped: bool
    anchored: bool = False  # the policy names anchors
    anchors: AnchorCheck | None = None  # the latest anchor run against the first
    anchor_problem: str | None = None  # why the anchors could not be read, if so


def _judge_drift(f: PolicyFacts) -> dict[str, Any]:
    a = f.anchors
    if not f.anchored:
        return want("JudgeDrift", None, "NoAnchors", "the policy names no anchors: a judge "
                    "change cannot be told from an agent change")
    if f.anchor_problem is not None:
        return want("JudgeDrift", None, "AnchorsUnreadable", f.anchor_problem)
    if a is None:
        return want("JudgeDrift", None, "AnchorsNotRun", "the anchors are not judged yet")
    moved = anchors_moved(a) != 0
    return want("JudgeDrift", moved, "AnchorsMoved" if moved else "AnchorsSteady",
                f"the anchors passed {a.passes} of {a.n}, against {a.baseline_passes} of "
                f"{a.baseline_n} at their first run" + (": the judge changed" if moved else ""))


def _degraded(f: PolicyFacts) -> dict[str, Any]:
    """True on an alarm the anchors do not put on the judge (the agent's drift)."""
    alarms = f.cusum.alarms if f.cusum is not None else 0
    if not alarms:
        return want("Degraded", False, "NoAlarm", "no drift alarm")
    cause = attribute(True, f.anchors)
    if cause == "judge":
        return want("Degraded", False, "AlarmAttributedToJudge",
                    f"the pass rate fell ({alarms} alarm(s)), but the anchors moved down as "
                    "much: the judge changed (see JudgeDrift), not the agent")
    known = {"agent": "the anchors are steady", "both": "the anchors moved up: the agent "
             "dropped more than they show", "unknown": "no anchors tell the judge apart"}
    return want("Degraded", True, "DriftAlarm",
                f"the pass rate fell: {alarms} alarm(s) since the detector's settings were last "
                f"set, attributed to the agent ({known[cause]}); change "
                "detector.baselinePassRate to acknowledge")


def _conditions(f: PolicyFacts) -> list[dict[str, Any]]:
    return [
        want("Ready", True, "Judging", "records are stored and the sample judged"),
        _degraded(f),
        _judge_drift(f),
        want("JudgeCapReached", f.capped, "DailyCapReached" if f.capped else "WithinCap",
             f"judge {f.judge} reached its perDayUSD: judging waits for the next UTC day"
             if f.capped else f"judge {f.judge} spent {usd(f.judge_spent_today)} USD today"),
        want("RedactionFailures", f.redaction_failures > 0,
             "RecordsNotRedacted" if f.redaction_failures else "AllRedacted",
             f"{f.redaction_failures} record(s) could not be redacted: counted, not judged"
             if f.redaction_failures else "every record was redacted"),
    ]


def policy_status(f: PolicyFacts, old: dict[str, Any] | None, now: datetime,
                  generation: int) -> dict[str, Any]:
    """The status to write, as the API's JSON (validated by ``EvaluationPolicyStatus``)."""
    t = f.tally
    n = t.passed + t.failed
    rate = wilson(t.passed, n) if n else None
    conditions = merge((old or {}).get("conditions"), _conditions(f), now, generation)
    doc = {
        "observedGeneration": generation, "records": f.records, "samples": f.samples,
        "judged": n, "passRate": rate.point if rate else None,
        "passRateLower": rate.lower if rate else None,
        "passRateUpper": rate.upper if rate else None,
        "meanScore": t.score_sum / n if n else None,
        "cusum": f.cusum.statistic_nats if f.cusum else None, "alarms": f.alarms,
        "anchorPassRate": f.anchors.passes / f.anchors.n if f.anchors and f.anchors.n else None,
        "judgeSpentTodayUSD": usd(f.judge_spent_today), "conditions": conditions,
    }
    return EvaluationPolicyStatus.model_validate(doc).model_dump(
        mode="json", by_alias=True, exclude_none=True)
