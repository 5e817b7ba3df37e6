"""A judge's daily cap after a change to its Judge (issue #11): raised, judging resumes the same
day; unchanged or lowered, it stays stopped. And ``tether_eval_judge_cap_reached`` is 0 for every
judge the evaluator knows, 1 while capped, gone with the Judge."""

from __future__ import annotations

from typing import Any

from tether_eval.caps import JudgeCaps
from tether_eval.config import EvalConfig
from tether_eval.metrics import EvalMetrics
from tether_eval.service import Service
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record
from .test_judge import drain, ingest

GAUGE = "tether_eval_judge_cap_reached"


def gauge(svc: Service, namespace: str = "team-a", judge: str = "j1") -> float | None:
    return svc.metrics.registry.get_sample_value(GAUGE, {"namespace": namespace, "judge": judge})


def with_seed(cfg: dict[str, Any], seed: int) -> EvalConfig:
    """The same Judge edited elsewhere than its caps."""
    cfg["judges"]["j1"]["seed"] = seed
    return EvalConfig.model_validate(cfg)


async def test_a_raised_cap_resumes_judging_the_same_day(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, per_call="0.003", per_day="0.003"))
        await ingest(svc, *(record(f"u{i}") for i in range(6)))
        await drain(svc)
        judged = len(await svc.store.verdicts("p1"))
        assert 1 <= judged < 6 and "j1" in svc.evaluator.capped and gauge(svc) == 1
        # Edited without room for the refused call: still capped, the gauge does not flap.
        svc.reconfigure(with_seed(config_doc(jurl, per_call="0.003", per_day="0.003"), 8))
        assert await svc.evaluator.step() == 0
        assert gauge(svc) == 1 and len(judge.calls) == judged
        # What the alert says to do: raise perDayUSD. Judging resumes at once.
        svc.reconfigure(EvalConfig.model_validate(config_doc(jurl, per_call="0.003",
                                                             per_day="1")))
        await drain(svc)
    assert len(await svc.store.verdicts("p1")) == 6
    assert svc.evaluator.capped == {} and gauge(svc) == 0


async def test_a_lowered_cap_stops_judging_at_once(service_factory: Any) -> None:
    judge = ScriptedJudge(JudgeScript())
    async with serving(judge.app()) as jurl:
        svc = await service_factory(config_doc(jurl, per_call="0.003", per_day="1"))
        await ingest(svc, record("u0"))
        await drain(svc)
        assert len(judge.calls) == 1 and gauge(svc) == 0
        # Room for one call's hold (~0.0026 USD) but not beside the ~0.0002 spent today: the
        # next call is refused unsent.
        svc.reconfigure(EvalConfig.model_validate(config_doc(jurl, per_call="0.0027",
                                                             per_day="0.0027")))
        await ingest(svc, record("u1"))
        await drain(svc)
    assert len(judge.calls) == 1 and await svc.store.pending() == 1
    assert "j1" in svc.evaluator.capped and gauge(svc) == 1


async def test_the_cap_gauge_is_0_for_a_known_judge_and_gone_with_it(
        service_factory: Any) -> None:
    svc = await service_factory(config_doc("http://127.0.0.1:9"))
    assert gauge(svc) == 0  # before any record: dashboards and max-by alerts see it
    svc.reconfigure(EvalConfig())  # the Judge and its policy deleted
    assert gauge(svc) is None


def test_in_a_cluster_every_judge_of_the_namespace_has_a_series() -> None:
    """A Judge no policy names yet is known in its namespace; one deleted while capped is
    forgotten with its series."""
    metrics = EvalMetrics()
    caps = JudgeCaps(metrics)
    cfg = EvalConfig.model_validate(config_doc("http://127.0.0.1:9"))
    spare = cfg.judges["j1"]
    two = cfg.model_copy(update={"judges": {**cfg.judges, "j2": spare}})
    caps.learn(two, "team-a")

    def value(judge: str) -> float | None:
        return metrics.registry.get_sample_value(GAUGE, {"namespace": "team-a", "judge": judge})
    assert (value("j1"), value("j2")) == (0, 0)
    caps.cap("j2", "team-a", "2026-11-30", spare.cost_caps.per_call_usd)
    assert value("j2") == 1
    caps.learn(cfg, "team-a")
    assert (value("j1"), value("j2")) == (0, None) and caps.capped == {}
