"""The trace through the real sidecar, across attempts on one state dir: task → attempt → step →
call, the task span sent once by the attempt that ends the task, a replayed call on the step of
the call it replays, and ``tether.cost_usd`` as each span's own cost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_agent import Harness

from .proc import Sidecar, task_doc

CHAT = "/v1/chat/completions"


def chat(sc: Sidecar, text: str) -> httpx.Response:
    body = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    r = httpx.post(sc.url + CHAT, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
def attempts(tmp_path: Path, model_server: str) -> Iterator[Callable[[], Sidecar]]:
    """Attempts 1, 2, 3... of one task, sharing its state dir as pods share a PVC."""
    started: list[Sidecar] = []

    def start() -> Sidecar:
        sc = Sidecar(tmp_path, task_doc(model_server), "--attempt", str(len(started) + 1))
        started.append(sc)
        return sc.start()

    yield start
    for sc in started:
        sc.stop()


def named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith(prefix)]


def test_the_task_span_is_sent_once_by_the_attempt_that_ends_the_task(
        attempts: Callable[[], Sidecar]) -> None:
    first = attempts()
    chat(first, "one")
    Harness(first.url).checkpoint(1, {"n": 1})
    assert first.stop() == 0
    assert named(first.spans(), "task ") == []  # evicted, say: the task goes on

    second = attempts()
    assert Harness(second.url).resume() is not None
    chat(second, "two")
    Harness(second.url).checkpoint(2, {"n": 2})
    Harness(second.url).finish("done")
    spent = float(second.status()["spentUSD"])
    assert second.stop() == 0
    attempts().stop()  # an attempt after the answer (an eviction before the agent exited)

    spans = first.spans()
    (task,) = named(spans, "task ")
    record = json.loads((first.state_dir / "task-span.json").read_text())
    assert task["name"] == "task t1" and task["parentId"] is None
    assert task["start"] == record["startNs"] and task["attempt"] == 2
    assert task["attributes"]["tether.task.phase"] == "Succeeded"
    assert task["attributes"]["tether.attempts"] == 2
    assert task["attributes"]["tether.spent_usd"] == pytest.approx(spent)
    attempt_spans = named(spans, "attempt ")
    assert [a["name"] for a in attempt_spans] == ["attempt 1", "attempt 2", "attempt 3"]
    assert {a["parentId"] for a in attempt_spans} == {task["spanId"]}
    assert task["start"] <= attempt_spans[0]["start"] and task["end"] >= attempt_spans[1]["end"]


def test_cost_is_each_spans_own_and_spent_the_running_total(
        attempts: Callable[[], Sidecar]) -> None:
    first = attempts()
    chat(first, "one")
    Harness(first.url).checkpoint(1, {})
    spent_1 = float(first.status()["spentUSD"])
    first.stop()
    second = attempts()
    chat(second, "two")
    chat(second, "three")
    Harness(second.url).checkpoint(2, {})
    spent_2 = float(second.status()["spentUSD"])
    second.stop()

    spans = first.spans()
    calls: dict[int, list[float]] = {1: [], 2: []}
    for s in named(spans, "chat "):
        calls[s["attributes"]["tether.step"]].append(s["attributes"]["tether.cost_usd"])
    assert len(calls[1]) == 1 and len(calls[2]) == 2 and min(calls[1] + calls[2]) > 0
    steps = {s["attributes"]["tether.step"]: s["attributes"] for s in named(spans, "step ")}
    assert steps[1]["tether.cost_usd"] == pytest.approx(sum(calls[1]))
    assert steps[2]["tether.cost_usd"] == pytest.approx(sum(calls[2]))
    assert steps[1]["tether.spent_usd"] == pytest.approx(spent_1)
    assert steps[2]["tether.spent_usd"] == pytest.approx(spent_2)
    one, two = (a["attributes"] for a in named(spans, "attempt "))
    assert one["tether.cost_usd"] == pytest.approx(spent_1)
    assert two["tether.cost_usd"] == pytest.approx(spent_2 - spent_1)
    assert two["tether.spent_usd"] == pytest.approx(spent_2)


def test_a_replayed_call_is_on_the_step_of_the_call_it_replays_which_costs_it(
        attempts: Callable[[], Sidecar]) -> None:
    first = attempts()
    Harness(first.url).checkpoint(1, {})
    chat(first, "two")  # the call of step 2, then a kill before its checkpoint
    first.kill()
    second = attempts()
    Harness(second.url).resume()
    assert chat(second, "two").headers["x-tether-replayed"] == "true"
    live, replayed = named(second.spans(), "chat ")
    assert replayed["attributes"]["tether.replayed"] is True
    assert replayed["attributes"]["tether.step"] == live["attributes"]["tether.step"] == 2
    assert replayed["parentId"] == live["parentId"]
    # The step's cost is its call's, charged by the attempt killed before the checkpoint.
    Harness(second.url).checkpoint(2, {})
    (step,) = [s for s in second.spans() if s["name"] == "step 2"]
    assert step["attempt"] == 2 and step["spanId"] == live["parentId"]
    assert step["attributes"]["tether.cost_usd"] == live["attributes"]["tether.cost_usd"] > 0
