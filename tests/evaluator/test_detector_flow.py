"""The change detector behind the judge: an alarm after a planted drop in the true pass rate, and
none before it (seeded: the scripted judge's draws and so the alarm's index are reproducible)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether_eval.detect import Cusum
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record
from .test_judge import ingest

CHANGE = 300  # judged samples at the baseline before the drop
AFTER = 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_detector_alarms_after_a_planted_drop_and_not_before(
        service_factory: Any) -> None:
    script = JudgeScript(pass_rate=0.9, change_after=CHANGE, pass_rate_after=0.6, seed=11)
    judge = ScriptedJudge(script)
    detector = {"baselinePassRate": "0.9", "shift": "0.1", "falseAlarmEvery": 5000}
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, detector=detector))
        # No truth marker: the judge draws each sample's truth at its current rate.
        await ingest(svc, *(record(f"u{i:04d}", answer="Done.") for i in range(CHANGE + AFTER)))
        alarms = svc.metrics.alarms.labels("team-a", "p1", "agent")
        first = None
        for index in range(CHANGE + AFTER):
            assert await svc.evaluator.step() == 1
            if first is None and alarms._value.get() > 0:
                first = index
    assert first is not None, "no alarm in the 200 samples after the drop"
    assert first >= CHANGE, f"a false alarm at sample {first}, before the drop at {CHANGE}"
    state, stored_alarms = await svc.store.detector("p1")
    assert state is not None and stored_alarms >= 1
    assert Cusum.from_dict(json.loads(state)).samples == CHANGE + AFTER
    tally = await svc.store.tally("p1")
    assert tally.passed + tally.failed == CHANGE + AFTER
