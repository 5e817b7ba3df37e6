"""POST /v1/records over real HTTP: 201 stored, 200 already stored, 400 naming the field."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tether_examples._serve import serving

from .conftest import config_doc, record


def metric(text: str, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def test_records_are_stored_once_and_malformed_ones_refused(service_factory: Any) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    async with serving(svc.app()) as url, aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/records", json=record("u1")) as r:
            assert (r.status, await r.json()) == (201, {"stored": True, "queued": ["p1"]})
        async with http.post(url + "/v1/records", json=record("u1")) as r:
            assert r.status == 200
        not_sampled = record("u2", sampled=False)
        async with http.post(url + "/v1/records", json=not_sampled) as r:
            assert (await r.json())["queued"] == []
        failed = record("u3", sampled=False, outcome="no_answer", answer=None)
        async with http.post(url + "/v1/records", json=failed) as r:
            assert (await r.json())["queued"] == ["p1"]  # include.failed
        bad = {k: v for k, v in record("u4").items() if k != "attempt"}
        async with http.post(url + "/v1/records", json=bad) as r:
            assert r.status == 400
            assert "attempt: Field required" in (await r.json())["error"]
        async with http.post(url + "/v1/records", data=b"{not json") as r:
            assert r.status == 400
            assert "not JSON" in (await r.json())["error"]
        smuggled = record("u5", redaction={"ok": False, "findings": {}, "engine": "x"})
        async with http.post(url + "/v1/records", json=smuggled) as r:
            assert r.status == 400
            assert "redaction.ok is false" in (await r.json())["error"]
        async with http.get(url + "/metrics") as r:
            text = await r.text()
    assert metric(text, "tether_eval_records_total", policy="p1", outcome="answered") == 2
    assert metric(text, "tether_eval_checks_total", check="json", result="passed") == 3
    assert await svc.store.pending() == 2


async def test_a_record_that_failed_redaction_is_counted_and_never_queued(
        service_factory: Any) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    unredacted = record("u1", answer=None, instructions=None, inputs=None,
                        redaction={"ok": False, "findings": {}, "engine": "sidecar"})
    # Too large for the evaluator's redactor: it fails closed here too.
    too_large = record("u2", answer="x" * 600_000)
    async with serving(svc.app()) as url, aiohttp.ClientSession() as http:
        for doc in (unredacted, too_large):
            async with http.post(url + "/v1/records", json=doc) as r:
                assert (r.status, (await r.json())["queued"]) == (201, [])
        async with http.get(url + "/metrics") as r:
            text = await r.text()
    assert metric(text, "tether_eval_redaction_failures_total", namespace="team-a") == 2
    stored = await svc.store.record("u2", 1) or {}
    assert (stored["answer"], stored["redaction"]["ok"]) == (None, False)
    assert await svc.store.pending() == 0


async def test_health_and_readiness(service_factory: Any) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    async with serving(svc.app()) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as r:
            assert r.status == 200
        async with http.get(url + "/readyz") as r:
            assert r.status == 503  # the judging loop is not running
        svc.start()
        async with http.get(url + "/readyz") as r:
            assert (r.status, (await r.json())["store"]) == (200, svc.store.kind)
