"""PUT /result and the evaluation record's content, through the real sidecar process: the
policies' checks per kind, the facts the sidecar counted, the answer's idempotency, and a task
with no policy that loads and sends nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_agent import Harness, HarnessError

from ._eval_rig import evaluation_env, running_evaluator
from ._evaluator import EvaluatorDouble
from .proc import Sidecar, task_doc

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
GOOD = {"total": 42.5, "currency": "EUR"}


@pytest.fixture
def evaluator() -> Iterator[tuple[EvaluatorDouble, str]]:
    with running_evaluator() as got:
        yield got


def checks_of(record: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {c["name"]: (c["passed"], c["reason"]) for c in record["deterministic"]["checks"]}


def test_answer_passing_every_check(sidecar: Callable[..., Sidecar], model_server: str,
                                    evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    sc = sidecar(task_doc(model_server), env=evaluation_env(url))
    assert Harness(sc.url).finish(GOOD)["attempt"] == 1
    double.wait(lambda d: len(d.records) == 1)
    record = double.only_record()
    assert checks_of(record) == {"shape": (True, ""), "euro": (True, "")}
    assert record["outcome"] == "answered" and record["policies"] == [
        {"name": "quality", "sampled": True}]
    assert sc.status()["evaluation"] == {"checksPassed": 2, "checksFailed": 0, "delivered": 1,
                                         "pending": 0, "rejected": 0}


@pytest.mark.parametrize(("answer", "shape", "euro"), [
    ({"total": "42", "currency": "EUR"}, "$.total: fails type \"number\"", None),
    ({"total": 1, "currency": "GBP"}, "$.currency: fails enum [\"EUR\",\"USD\"]",
     "no match for /\"currency\":\"EUR\"/"),
    ("forty-two", "$: fails type \"object\"", "no match for /\"currency\":\"EUR\"/"),
])
def test_failing_checks_say_why_from_the_policy_side(
        sidecar: Callable[..., Sidecar], model_server: str,
        evaluator: tuple[EvaluatorDouble, str], answer: Any, shape: str, euro: str | None) -> None:
    double, url = evaluator
    sc = sidecar(task_doc(model_server), env=evaluation_env(url))
    Harness(sc.url).finish(answer)
    double.wait(lambda d: len(d.records) == 1)
    got = checks_of(double.only_record())
    assert got["shape"] == (False, shape)
    assert got["euro"] == ((True, "") if euro is None else (False, euro))
    failed = 1 + (euro is not None)
    assert sc.status()["evaluation"]["checksFailed"] == failed


def test_a_backtracking_regex_and_a_broken_schema_fail_their_check_not_the_sidecar(
        sidecar: Callable[..., Sidecar], model_server: str,
        evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    checks: list[dict[str, Any]] = [{"name": "catastrophic", "regex": "(a|aa)+$"},
              {"name": "bad-schema", "jsonSchema": {"type": "no-such-type"}},
              {"name": "bad-regex", "regex": "(unclosed"}]
    sc = sidecar(task_doc(model_server), env=evaluation_env(url, checks))
    Harness(sc.url).finish("a" * 5000 + "b")
    double.wait(lambda d: len(d.records) == 1)
    got = checks_of(double.only_record())
    assert got["catastrophic"][0] is False and "took over 1 s" in got["catastrophic"][1]
    assert got["bad-schema"][0] is False and "jsonSchema is invalid" in got["bad-schema"][1]
    assert got["bad-regex"][0] is False and "does not compile" in got["bad-regex"][1]
    assert sc.status()["phase"] == "Running"


def test_record_carries_the_facts_the_sidecar_counted(
        sidecar: Callable[..., Sidecar], model_server: str, tool_server: str,
        evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    task = task_doc(model_server, costEnvelope={"softLimitUSD": "0.001",
                                                "hardLimitUSD": "2.00"},
                    tools=[{"name": "flaky", "url": tool_server + "/flaky/503/2"},
                           {"name": "checked", "url": tool_server + "/missing-field",
                            "verify": {"requiredFields": ["result"]}}])
    task["metadata"]["labels"] = {"team": "search", "tier": "gold"}
    sc = sidecar(task, "--attempt", "3", env=evaluation_env(url))
    assert httpx.post(sc.url + CHAT, json=BODY, timeout=30).status_code == 200
    assert httpx.post(sc.url + "/tools/flaky", json={}, timeout=30).status_code == 200
    refused = httpx.post(sc.url + "/tools/checked", json={}, timeout=30)
    assert refused.headers["x-tether-error-class"] == "verification_failed"
    status = sc.status()
    Harness(sc.url).finish(GOOD)
    double.wait(lambda d: len(d.records) == 1)
    record = double.only_record()
    assert (record["uid"], record["namespace"], record["task"], record["attempt"]) == (
        "6f1c2a3e-0000-4000-8000-00000000abcd", "team-a", "t1", 3)
    assert record["labels"] == {"team": "search", "tier": "gold"}
    assert record["deterministic"] | {"checks": None} == {
        "checks": None, "retries": status["retries"], "verificationFailures": 1,
        "limitHits": {"soft": 1, "hard": 0}, "spentUSD": status["spentUSD"]}
    assert status["retries"] >= 2 and status["spentUSD"] != "0.000000"
    assert record["finishedAt"].endswith("Z") and record["version"] == 1
    headers, _ = double.posts[0]
    assert headers["idempotency-key"] == f"{record['uid']}/3"
    assert headers["content-type"] == "application/json"


def test_the_answer_is_final_same_again_is_fine_another_is_a_conflict(
        sidecar: Callable[..., Sidecar], model_server: str,
        evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    sc = sidecar(task_doc(model_server), env=evaluation_env(url))
    first = httpx.put(sc.url + "/result", json={"answer": GOOD}, timeout=10)
    assert first.status_code == 201
    again = httpx.put(sc.url + "/result", json={"answer": dict(reversed(GOOD.items()))},
                      timeout=10)
    assert again.status_code == 200 and again.json() == first.json()
    with pytest.raises(HarnessError) as exc:
        Harness(sc.url).finish({"total": 1, "currency": "EUR"})
    assert exc.value.status == 409 and exc.value.error_class == "result_conflict"
    assert first.json()["sha256"] in exc.value.reason
    for bad in (b"{not json", b'{"result": 1}', b"[1]", b'{"answer": 1, "extra": 2}'):
        r = httpx.put(sc.url + "/result", content=bad, timeout=10)
        assert r.status_code == 400 and r.headers["x-tether-error-class"] == "bad_request", bad
    double.wait(lambda d: len(d.records) == 1)
    assert len(double.posts) == 1  # one record: the repeat did not make another


def test_a_restarted_sidecar_keeps_the_answer(model_server: str, tmp_path: Path) -> None:
    first = Sidecar(tmp_path / "pod", task_doc(model_server)).start()
    try:
        Harness(first.url).finish(GOOD)
    finally:
        first.stop()
    again = Sidecar(tmp_path / "pod", task_doc(model_server)).start()
    try:
        assert httpx.put(again.url + "/result", json={"answer": GOOD}, timeout=10
                         ).status_code == 200
        assert httpx.put(again.url + "/result", json={"answer": "other"}, timeout=10
                         ).status_code == 409
    finally:
        again.stop()


class ImportTimeSidecar(Sidecar):
    """The sidecar with ``-X importtime``: every module it imports is listed in its log."""

    def command(self) -> list[str]:
        python, *rest = super().command()
        return [python, "-X", "importtime", *rest]


def test_without_a_policy_nothing_is_loaded_or_recorded(model_server: str,
                                                        tmp_path: Path) -> None:
    sc = ImportTimeSidecar(tmp_path / "pod", task_doc(model_server)).start()
    try:
        Harness(sc.url).finish(GOOD)
        assert sc.status()["evaluation"] is None
    finally:
        assert sc.stop() == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in sc.log().splitlines()
                if line.startswith("import time:")}
    assert "tether_sidecar.result_api" in imported  # the listing is real
    for heavy in ("tether_sidecar.eval_config", "tether_sidecar.eval_outbox",
                  "tether_sidecar.eval_record", "tether_sidecar.redact", "jsonschema", "regex"):
        assert heavy not in imported, heavy
    assert (sc.state_dir / "result.json").exists()
    assert not (sc.state_dir / "evaluation").exists()


@pytest.mark.parametrize(("value", "named"), [
    ("{not json", "Invalid JSON"),
    ('{"evaluatorURL": "ftp://evaluator", "policies": [{"name": "p"}]}', "evaluatorURL"),
    ('{"evaluatorURL": "http://e", "policies": [{"name": "p", "checks": [{"name": "c"}]}]}',
     "give exactly one of jsonSchema or regex"),
])
def test_a_malformed_policy_variable_stops_the_sidecar_naming_it(
        model_server: str, tmp_path: Path, value: str, named: str) -> None:
    sc = Sidecar(tmp_path / "pod", task_doc(model_server), env={"TETHER_EVALUATION": value})
    with pytest.raises(RuntimeError, match="sidecar exited 2"):
        sc.start()
    assert sc.stop() == 2  # closes its pipe
    assert "invalid sidecar settings: TETHER_EVALUATION" in sc.log() and named in sc.log()
