"""Planted PII and key canaries in records never reach the judge, the database or the logs."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record
from .test_judge import drain

EMAIL = "canary.7f3a@example.com"
KEY = "sk-proj-Canary7f3aCanary7f3aCanary7f3aCanary7f3aZZ"
PHONE = "+1 415 555 0142"
CANARIES = (EMAIL, KEY, PHONE, "Canary7f3a")


async def test_canaries_never_leave_the_record(service_factory: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # A judge that quotes PII back in its reason: the reason is redacted before it is kept.
    judge = ScriptedJudge(JudgeScript(reason_suffix=f" Checked with {EMAIL}."))
    doc = record("u1", answer={"summary": f"Mailed {EMAIL}, called {PHONE}. TRUTH:PASS",
                               "config": f"OPENAI_API_KEY={KEY}"},
                 instructions=f"Reply to {EMAIL} using the key {KEY}.",
                 inputs={"contact": EMAIL, "notes": [f"phone {PHONE}"]})
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, samples=3))
        async with (serving(svc.app()) as url, aiohttp.ClientSession() as http,
                    http.post(url + "/v1/records", json=doc) as r):
            assert r.status == 201
        await drain(svc)
    [(_, _, verdict, _, reason)] = await svc.store.verdicts("p1")
    assert verdict == "pass"  # judged: redaction kept the task's meaning
    assert reason.endswith("Checked with <EMAIL_ADDRESS>.")
    sent = "\n".join(c["body"] for c in judge.calls)
    assert len(judge.calls) == 3 and "<EMAIL_ADDRESS>" in sent
    stored = await svc.store.dump_text()
    for canary in CANARIES:
        assert canary not in sent, f"{canary!r} reached the judge"
        assert canary not in stored, f"{canary!r} reached the database"
        assert canary not in caplog.text, f"{canary!r} reached the logs"
    findings = (await svc.store.record("u1", 1) or {})["redaction"]["findings"]
    assert findings["EMAIL_ADDRESS"] >= 3 and findings["OPENAI_API_KEY"] >= 1
