"""One trace per task across attempts, read back from a real Jaeger (issue #11): an AgentTask on
the real node exports its spans over OTLP to a Jaeger on this machine, is evicted mid-task
(the Eviction API) and resumes on attempt 2 to Succeeded. From Jaeger's HTTP API, by the
task's ``status.traceID``:

- one trace holds both attempts (each pod's spans name their attempt), the attempt spans
  under the task span (the root, sent once by attempt 2, which ended the task: Succeeded, 2
  attempts, the task's spend), and the step spans 1..N once each, in order, attempt 1's first;
- every span attempt 1 finished before the eviction is there, its own attempt span included:
  that one ends in the sidecar's SIGTERM path, so only the SDK's flush on shutdown sends it;
- each model span carries its token counts (the script's), the context's token count and hash,
  and its cost; the costs add up exactly to ``status.spentUSD``, each step's cost is its call's,
  and the attempts' costs add up to the spend too;
- tool spans carry the request and response bodies verbatim under ``toolIO: full``, their
  shapes only under ``redacted`` (the default), nothing under ``none`` (two more tasks, run
  beside the evicted one, uninterrupted).
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from tether_sidecar.tracing import task_span_id

from .._obs import (
    Jaeger,
    answers,
    free_port,
    jaeger_binary,
    jaeger_config,
    running,
    wait_for,
)
from ._tasks import Doubles, Tasks, agenttask, doubles, steps_script, tasks
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "operator", "tasks"]  # fixtures, used here by name

STEPS = 10  # steps_script: step s asks the model (turn s-1), then calls one tool but the last
Span = dict[str, Any]


@contextmanager
def reachable_jaeger(workdir: Path, host: str) -> Iterator[Jaeger]:
    """tests/_obs.py's Jaeger, its OTLP receiver bound to ``host`` (where the pods reach this
    machine, as the doubles are) instead of 127.0.0.1; the query API stays on loopback."""
    otlp_port, query_port, grpc_port = free_port(), free_port(), free_port()
    config = jaeger_config(otlp_port, query_port, grpc_port)
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = f"{host}:{otlp_port}"
    (workdir / "jaeger.yaml").write_text(yaml.safe_dump(config))
    found = Jaeger(f"http://{host}:{otlp_port}", f"http://127.0.0.1:{query_port}")

    def ready() -> bool | None:
        try:
            socket.create_connection((host, otlp_port), timeout=1).close()
        except OSError:
            return None
        return answers(f"{found.query}/api/services")

    with running([jaeger_binary(), f"--config={workdir / 'jaeger.yaml'}"], workdir, "jaeger",
                 ready):
        yield found


def traced(name: str, doubles: Doubles, backend: Jaeger, tool_io: str) -> dict[str, Any]:
    return agenttask(name, doubles,
                     observability={"otlpEndpoint": backend.otlp_http, "toolIO": tool_io})


def parse_trace(raw: bytes) -> list[Span]:
    """The spans of Jaeger's ``/api/traces/{id}`` answer, each with its ``tags``, ``attempt``
    (its pod's) and ``parent``; numbers as the exact decimals Jaeger wrote."""
    doc = json.loads(raw, parse_float=Decimal)
    if not doc.get("data"):
        return []
    assert len(doc["data"]) == 1, doc["errors"]
    trace = doc["data"][0]
    spans: list[Span] = trace["spans"]
    for span in spans:
        span["tags"] = {t["key"]: t["value"] for t in span["tags"]}
        process = {t["key"]: t["value"] for t in trace["processes"][span["processID"]]["tags"]}
        span["attempt"] = process["tether.attempt"]
        span["parent"] = next((r["spanID"] for r in span["references"]
                               if r["refType"] == "CHILD_OF"), None)
    return spans


def check_attempts_and_steps(spans: list[Span], trace_id: str, attempts: int) -> list[Span]:
    """Attempt spans under the task's span id; steps 1..STEPS once each, in order, under the
    attempt that checkpointed them, attempt 1's first. Returns the step spans."""
    attempt = {s["attempt"]: s for s in spans if s["operationName"].startswith("attempt ")}
    assert sorted(attempt) == list(range(1, attempts + 1)), sorted(attempt)
    (task,) = [s for s in spans if s["operationName"].startswith("task ")]
    assert task["spanID"] == f"{task_span_id(int(trace_id, 16)):016x}" and task["parent"] is None
    assert task["attempt"] == attempts and task["tags"]["tether.attempts"] == attempts
    assert task["tags"]["tether.task.phase"] == "Succeeded"
    assert {s["parent"] for s in attempt.values()} == {task["spanID"]}
    assert task["startTime"] <= attempt[1]["startTime"]
    steps = sorted((s for s in spans if s["operationName"].startswith("step ")),
                   key=lambda s: s["startTime"])
    assert [s["operationName"] for s in steps] == [f"step {n}" for n in range(1, STEPS + 1)]
    assert [s["tags"]["tether.step"] for s in steps] == list(range(1, STEPS + 1))
    by_attempt = [s["attempt"] for s in steps]
    assert by_attempt == sorted(by_attempt) and set(by_attempt) == set(attempt), by_attempt
    for step in steps:
        assert step["parent"] == attempt[step["attempt"]]["spanID"], step
    return steps


def calls(spans: list[Span], kind: str) -> list[Span]:
    """The model (``chat``) or tool (``execute_tool``) spans that reached the upstream, in
    step order; the journal's replays are not calls."""
    return sorted((s for s in spans if s["tags"].get("gen_ai.operation.name") == kind
                   and not s["tags"].get("tether.replayed")), key=lambda s: s["startTime"])


def check_calls_under_steps(spans: list[Span], steps: list[Span]) -> None:
    """Step s holds one model call, then (but the last) one tool call, both under its span."""
    step_id = {s["tags"]["tether.step"]: s["spanID"] for s in steps}
    chats, tools = calls(spans, "chat"), calls(spans, "execute_tool")
    assert [c["tags"]["tether.step"] for c in chats] == list(range(1, STEPS + 1))
    assert [t["tags"]["tether.step"] for t in tools] == list(range(1, STEPS))
    for call in chats + tools:
        assert call["parent"] == step_id[call["tags"]["tether.step"]], call
    for chat, tool in zip(chats, tools, strict=False):
        assert chat["startTime"] + chat["duration"] <= tool["startTime"], (chat, tool)


def check_model_spans(spans: list[Span], spent_usd: str) -> None:
    """Tokens as the script reported them, the context's size and hash, and costs that add up
    to the task's spend. Each cost is a Decimal of at most 15 digits (the price table's per-token
    prices times whole tokens), exported as a float64: Jaeger writes that double's shortest
    decimal form, which is the same Decimal, so the sum is exact; no rounding to explain."""
    chats = calls(spans, "chat")
    for chat in chats:
        tags, i = chat["tags"], chat["tags"]["tether.step"] - 1
        last = i == STEPS - 1
        assert tags["gen_ai.usage.input_tokens"] == (500 if last else 200 + 10 * i), tags
        assert tags["gen_ai.usage.output_tokens"] == (8 if last else 20), tags
        assert tags["tether.context.tokens_estimated"] > 0, tags
        assert tags["tether.cost_usd"] > 0, tags
    hashes = [c["tags"]["tether.context.hash"] for c in chats]
    assert len(set(hashes)) == STEPS and all(isinstance(h, str) and h for h in hashes), hashes
    total = sum((Decimal(c["tags"]["tether.cost_usd"]) for c in chats), Decimal(0))
    assert total == Decimal(spent_usd), (total, spent_usd)
    for step in (s for s in spans if s["operationName"].startswith("step ")):
        (chat,) = [c for c in chats if c["tags"]["tether.step"] == step["tags"]["tether.step"]]
        assert step["tags"]["tether.cost_usd"] == chat["tags"]["tether.cost_usd"], (step, chat)
    attempts = [s for s in spans if s["operationName"].startswith("attempt ")]
    by_attempt = sum((Decimal(a["tags"]["tether.cost_usd"]) for a in attempts), Decimal(0))
    assert by_attempt == Decimal(spent_usd), (by_attempt, spent_usd)
    (task,) = [s for s in spans if s["operationName"].startswith("task ")]
    assert Decimal(task["tags"]["tether.spent_usd"]) == Decimal(spent_usd), task


def tool_bodies(spans: list[Span]) -> list[tuple[Any, Any]]:
    return [(t["tags"].get("tether.tool.request"), t["tags"].get("tether.tool.response"))
            for t in calls(spans, "execute_tool")]


def check_full_bodies(spans: list[Span]) -> None:
    """Verbatim: the arguments the agent sent, and what the tool double answered to them."""
    for n, (request, response) in enumerate(tool_bodies(spans)):
        assert json.loads(request) == {"i": n}
        got = json.loads(response)
        if n % 3 == 2:  # steps_script's "record" tool: the side-effect route
            assert got["result"] == "done" and got["idempotency_key"], got
        else:
            assert got == {"result": "ok", "items": [{"id": 1, "name": "alpha"},
                                                     {"id": 2, "name": "beta"}],
                           "echo": {"i": n}}


def check_redacted_bodies(spans: list[Span]) -> None:
    """Keys, types and sizes only: no value the tool or the agent sent."""
    bodies = tool_bodies(spans)
    assert len(bodies) == STEPS - 1
    for n, (request, response) in enumerate(bodies):
        assert json.loads(request) == {"i": "<int>"}
        got = json.loads(response)
        if n % 3 == 2:
            assert got == {"result": "<str 4>", "effect": "<int>", "idempotency_key": "<str 32>"}
        else:
            assert got == {"result": "<str 2>", "items": [{"id": "<int>", "name": "<str 5>"},
                                                         {"id": "<int>", "name": "<str 4>"}],
                           "echo": {"i": "<int>"}}


def finished_trace(backend: Jaeger, status: dict[str, Any], keep: Path) -> list[Span]:
    """The task's trace once its task span is in (the last one exported, after its last
    attempt's); its raw JSON kept in ``keep`` for a failure's post-mortem."""
    def arrived() -> bytes | None:
        with urllib.request.urlopen(f"{backend.query}/api/traces/{status['traceID']}",
                                    timeout=5) as resp:
            raw: bytes = resp.read()
        names = {s["operationName"] for s in parse_trace(raw)}
        return raw if f"attempt {status['attempt']}" in names and any(
            n.startswith("task ") for n in names) else None

    raw = wait_for(arrived, 60, f"the task span and attempt {status['attempt']}'s in Jaeger")
    keep.write_bytes(raw)
    return parse_trace(raw)


def test_one_trace_holds_both_attempts_of_an_evicted_task(
        operator: Operator, tasks: Tasks, doubles: Doubles, core: client.CoreV1Api,
        namespace: str, tmp_path: Path) -> None:
    doubles.use(steps_script(STEPS, delay=1.0))  # slow enough to catch attempt 1 mid-task
    with reachable_jaeger(tmp_path, str(urlsplit(doubles.model).hostname)) as backend:
        for tool_io in ("full", "redacted", "none"):
            tasks.create(traced(f"trace-{tool_io}", doubles, backend, tool_io))
        running = tasks.wait("trace-full", lambda s: str(s.get("podName")).endswith("-a1")
                             and (s.get("step") or 0) >= 3)["status"]
        core.create_namespaced_pod_eviction(running["podName"], namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=running["podName"], namespace=namespace)))
        done = {t: tasks.done(f"trace-{t}", timeout=300)["status"]
                for t in ("full", "redacted", "none")}
        assert all(s["phase"] == "Succeeded" for s in done.values()), done
        st = done["full"]
        assert st["evictions"] == 1 and st["attempt"] == 2, st
        spans = {t: finished_trace(backend, s, tmp_path / f"trace-{t}.json")
                 for t, s in done.items()}
    steps = check_attempts_and_steps(spans["full"], st["traceID"], 2)
    # What attempt 1 finished before the eviction: the steps the status had seen, at least.
    assert sum(s["attempt"] == 1 for s in steps) >= running["step"], steps
    check_calls_under_steps(spans["full"], steps)
    check_model_spans(spans["full"], st["spentUSD"])
    check_full_bodies(spans["full"])
    check_redacted_bodies(spans["redacted"])
    assert tool_bodies(spans["none"]) == [(None, None)] * (STEPS - 1)
