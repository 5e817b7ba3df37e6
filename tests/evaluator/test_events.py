"""Which condition changes become Events (pure): a transition, never a repeat."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tether_eval.kube_events import judge_status, transitions
from tether_operator.conditions import want


def test_an_event_per_transition_and_none_for_a_repeat() -> None:
    calm = [want("Degraded", False, "NoAlarm", "no drift alarm"),
            want("JudgeDrift", None, "NoAnchors", "none")]
    alarm = [want("Degraded", True, "DriftAlarm", "the pass rate fell"),
             want("JudgeDrift", True, "AnchorsMoved", "the judge changed")]
    assert transitions(None, calm) == []  # a first status that is all well says nothing
    assert transitions(calm, alarm) == [("Warning", "DriftDetected", "the pass rate fell"),
                                        ("Warning", "JudgeDrift", "the judge changed")]
    assert transitions(alarm, alarm) == []
    assert transitions(alarm, calm) == [("Normal", "DriftCleared", "no drift alarm")]


def test_a_refused_judge_is_a_warning_naming_why_once() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    ok = judge_status(None, None, False, Decimal("0.5"), now, 2)
    refused = judge_status(ok, ("CredentialsNotAllowed", "Secret k lacks the label"), False,
                           Decimal(0), now, 2)
    assert ok["spentTodayUSD"] == "0.500000" and ok["observedGeneration"] == 2
    assert transitions(ok["conditions"], refused["conditions"]) == [
        ("Warning", "CredentialsNotAllowed", "Secret k lacks the label")]
    assert transitions(refused["conditions"], refused["conditions"]) == []
    capped = judge_status(ok, None, True, Decimal(1), now, 2)
    assert transitions(ok["conditions"], capped["conditions"])[0][:2] == (
        "Warning", "JudgeCapReached")
