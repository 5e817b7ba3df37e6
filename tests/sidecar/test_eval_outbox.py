"""The evaluation record's delivery through the real sidecar process: an evaluator that is down,
refuses, or loses its acknowledgement; a sidecar killed with a record pending; the record of an
attempt that ends without an answer; redaction that fails closed; canaries that never leave."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether_agent import Harness
from tether_examples._serve import serve_in_thread

from ._eval_rig import evaluation_env, running_evaluator, wait_until
from ._evaluator import EvaluatorDouble
from .proc import Sidecar, task_doc

ANSWER = {"total": 42.5, "currency": "EUR"}
SENT = "tether_sidecar_eval_records_sent_total"
RETRIES = "tether_sidecar_eval_delivery_retries_total"


@pytest.fixture
def evaluator() -> Iterator[tuple[EvaluatorDouble, str]]:
    with running_evaluator() as got:
        yield got


@pytest.fixture
def pod(tmp_path: Path, model_server: str) -> Iterator[Callable[..., Sidecar]]:
    """Sidecars of one pod: each start is a restart on the same state volume."""
    running: list[Sidecar] = []

    def start(env: dict[str, str], *args: str, task: dict[str, Any] | None = None) -> Sidecar:
        sc = Sidecar(tmp_path / "pod", task or task_doc(model_server), *args, env=env)
        running.append(sc)
        return sc.start()

    yield start
    for sc in running:
        sc.stop()


def outbox(sc: Sidecar) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (sc.state_dir / "evaluation").iterdir()}


def test_evaluator_down_then_back_gets_the_record(pod: Callable[..., Sidecar]) -> None:
    double = EvaluatorDouble()
    with serve_in_thread(double.app()) as url:
        pass  # a port that was the evaluator's and now refuses connections
    sc = pod(evaluation_env(url))
    Harness(sc.url).finish(ANSWER)
    wait_until(lambda: sc.metric(RETRIES) >= 2, "two failed deliveries")
    assert sc.status()["evaluation"]["pending"] == 1
    assert list(outbox(sc)) == ["record-000001.json"]
    port = int(url.rsplit(":", 1)[1])
    with serve_in_thread(double.app(), port=port):
        double.wait(lambda d: len(d.records) == 1)
        wait_until(lambda: sc.status()["evaluation"]["pending"] == 0, "the outbox emptied")
    assert sc.metric(SENT, outcome="delivered") == 1
    assert outbox(sc) == {"record-000001.sent": b"answered"}  # the record itself is gone


def test_killed_with_a_record_pending_delivers_it_once_after_restart(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    double.answers = [503] * 1000  # down for the first sidecar's life
    first = pod(evaluation_env(url))
    Harness(first.url).finish(ANSWER)
    double.wait(lambda d: len(d.posts) >= 2)
    first.kill()
    double.answers = ["lose_ack"]  # stored, but the sidecar hears 503 and sends it again
    again = pod(evaluation_env(url))
    wait_until(lambda: again.status()["evaluation"]["delivered"] == 1, "delivered after restart")
    assert len(double.records) == 1 and double.only_record()["attempt"] == 1
    keys = {h["idempotency-key"] for h, _ in double.posts}
    assert keys == {"6f1c2a3e-0000-4000-8000-00000000abcd/1"}
    assert len({body for _, body in double.posts}) == 1  # the same record every time


def test_a_refused_record_is_kept_counted_and_not_retried(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    double.answers = [400]
    sc = pod(evaluation_env(url))
    Harness(sc.url).finish(ANSWER)
    wait_until(lambda: sc.metric(SENT, outcome="rejected") == 1, "the record rejected")
    assert sc.status()["evaluation"] | {"checksPassed": 0} == {
        "checksPassed": 0, "checksFailed": 0, "delivered": 0, "pending": 0, "rejected": 1}
    assert json.loads(outbox(sc)["record-000001.rejected"])["outcome"] == "answered"
    assert "refused the record of attempt 1 for good (HTTP 400" in sc.log()
    assert len(double.posts) == 1


@pytest.mark.parametrize(("args", "outcome"), [((), "no_answer"),
                                                (("--prior-spent-usd", "5"), "budget_exceeded")])
def test_an_attempt_that_never_answers_is_recorded_at_its_end(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str],
        args: tuple[str, ...], outcome: str) -> None:
    double, url = evaluator
    sc = pod(evaluation_env(url), "--attempt", "2", *args)
    assert sc.stop() == 0  # SIGTERM: the pod ends
    record = double.only_record()  # flushed before the sidecar exited
    assert (record["attempt"], record["outcome"], record["answer"]) == (2, outcome, None)
    assert [c["reason"] for c in record["deterministic"]["checks"]] == [
        "no answer: the task never gave one"] * 2


def test_an_answer_after_a_restart_in_the_same_attempt_replaces_its_no_answer_record(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    """The sidecar alone restarted in its pod (a failed liveness probe): SIGTERM wrote a
    no_answer record for the attempt, and then the agent answers in that same attempt."""
    double, url = evaluator
    double.answers = [503] * 1000
    first = pod(evaluation_env(url))
    first.stop()  # the record stays pending: the evaluator answers 503
    again = pod(evaluation_env(url))
    pending = again.state_dir / "evaluation" / "record-000001.json"
    assert json.loads(pending.read_bytes())["outcome"] == "no_answer"
    Harness(again.url).finish(ANSWER)
    wait_until(lambda: json.loads(pending.read_bytes())["outcome"] == "answered",
               "the pending record replaced")
    double.answers.clear()
    double.wait(lambda d: len(d.records) == 1)
    assert double.only_record()["outcome"] == "answered"


def test_an_answer_after_a_delivered_no_answer_is_sent_under_the_same_key(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    first = pod(evaluation_env(url))
    first.stop()
    assert double.only_record()["outcome"] == "no_answer"
    again = pod(evaluation_env(url))
    Harness(again.url).finish(ANSWER)
    double.wait(lambda d: len(d.posts) == 2)
    outcomes = [json.loads(body)["outcome"] for _, body in double.posts]
    assert outcomes == ["no_answer", "answered"]
    assert len({h["idempotency-key"] for h, _ in double.posts}) == 1
    wait_until(lambda: again.status()["evaluation"]["pending"] == 0, "settled")
    assert outbox(again) == {"record-000001.sent": b"answered"}


def test_an_answer_from_an_earlier_attempt_is_this_attempts_answer(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    first = pod(evaluation_env(url), "--attempt", "1")
    Harness(first.url).finish(ANSWER)
    double.wait(lambda d: len(d.records) == 1)
    first.stop()
    second = pod(evaluation_env(url), "--attempt", "2")  # evicted, say; the agent ran again
    second.stop()
    assert sorted(double.records) == [("6f1c2a3e-0000-4000-8000-00000000abcd", 1),
                                      ("6f1c2a3e-0000-4000-8000-00000000abcd", 2)]
    assert {r["outcome"] for r in double.records.values()} == {"answered"}


def test_a_damaged_record_on_the_volume_is_moved_aside_not_sent(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    first = pod(evaluation_env(url), "--attempt", "1")
    first.stop()  # attempt 1's no_answer record, delivered
    (first.state_dir / "evaluation" / "record-000001.sent").unlink()
    (first.state_dir / "evaluation" / "record-000001.json").write_bytes(b'{"version": 1, "ui')
    again = pod(evaluation_env(url), "--attempt", "2")
    wait_until(lambda: "record-000001.damaged" in outbox(again), "the damaged record moved aside")
    Harness(again.url).finish(ANSWER)
    double.wait(lambda d: len(d.records) == 2)
    assert "is damaged; moved aside" in again.log()
    assert again.stop() == 0
    assert [json.loads(b)["attempt"] for _, b in double.posts] == [1, 2]


def canaries() -> dict[str, str]:
    """Unique values per run, so a hit can only come from this test."""
    tag = secrets.token_hex(6)
    return {"email": f"canary.{tag}@example.org",
            "openai": "sk-proj-" + secrets.token_urlsafe(36).replace("-", "a").replace("_", "b"),
            "aws": "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567")
                                    for _ in range(16))}


def test_planted_pii_and_keys_never_leave_the_task(
        pod: Callable[..., Sidecar], model_server: str,
        evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    c = canaries()
    task = task_doc(model_server)
    task["spec"]["task"] = {"instructions": f"Write to {c['email']} about the invoice.",
                            "inputs": {"credentials": {"aws": c["aws"]}, "n": 3}}
    answer = {"summary": f"Sent to {c['email']}; used key {c['openai']}",
              "total": 42.5, "currency": "EUR", "keys": [c["aws"]]}
    double.answers = [503] * 1000  # the record waits in the outbox while we read it
    sc = pod(evaluation_env(url), task=task)
    Harness(sc.url).finish(answer)
    double.wait(lambda d: len(d.posts) >= 1)
    pending = outbox(sc)["record-000001.json"]
    double.answers.clear()
    double.wait(lambda d: len(d.records) == 1)
    record = double.only_record()
    assert record["redaction"]["ok"] is True, record["redaction"]
    assert record["redaction"]["findings"].get("EMAIL_ADDRESS", 0) >= 2
    assert record["answer"]["total"] == 42.5 and "<EMAIL_ADDRESS>" in record["answer"]["summary"]
    sc.stop()
    for where, text in (("the outbox file", pending.decode()),
                        ("the evaluator", json.dumps(record)), ("the sidecar log", sc.log())):
        for kind, value in c.items():
            assert value not in text, f"{kind} canary in {where}"


def test_a_record_that_cannot_be_redacted_leaves_without_text(
        pod: Callable[..., Sidecar], evaluator: tuple[EvaluatorDouble, str]) -> None:
    double, url = evaluator
    sc = pod(evaluation_env(url))
    huge = {"total": 1, "currency": "EUR", "notes": "x" * 600_000}  # over redact.py's cap
    Harness(sc.url).finish(huge)
    double.wait(lambda d: len(d.records) == 1)
    record = double.only_record()
    assert (record["answer"], record["instructions"], record["inputs"]) == (None, None, None)
    assert record["redaction"]["ok"] is False and record["redaction"]["findings"] == {}
    assert [c["passed"] for c in record["deterministic"]["checks"]] == [True, True]
    assert sc.metric("tether_sidecar_eval_redaction_failures_total") == 1
    assert "Redaction failed (too_large)" in sc.log()
    assert "x" * 1000 not in sc.log() and b"x" * 1000 not in double.posts[0][1]
