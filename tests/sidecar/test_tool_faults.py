"""Every fault a tool can show, through the real sidecar to a fault-injecting server on loopback:
the classification, how many attempts reached the server, what the agent saw, the metric and the
span. A failure never comes back as an empty success."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .proc import Sidecar, task_doc


@dataclass(frozen=True)
class Case:
    tool: str
    path: str
    status: int  # what the agent gets
    outcome: str  # tether_tool_calls_total outcome == error class on failure
    hits: int  # attempts that reached the tool server
    failure_class: str | None = None
    extra: dict[str, Any] | None = None


SCHEMA = {"type": "object", "required": ["result", "items"],
          "properties": {"result": {"type": "string"}, "items": {"type": "array"}}}
CASES = [
    Case("ok", "/ok", 200, "ok", 1),
    Case("flaky", "/flaky/503/1", 200, "retried_ok", 2),
    Case("e500", "/status/500", 502, "retryable_exhausted", 3, "500"),
    Case("e502", "/status/502", 502, "retryable_exhausted", 3, "502"),
    Case("e503", "/status/503", 502, "retryable_exhausted", 3, "503"),
    Case("rate", "/retry-after/1/1", 200, "retried_ok", 2),
    Case("slow", "/slow/3", 502, "retryable_exhausted", 3, "timeout", {"timeout": "300ms"}),
    Case("reset", "/reset", 502, "retryable_exhausted", 3, "connection"),
    # Not retried by default: a malformed body does not fix itself (the founding incident).
    Case("malformed", "/malformed", 502, "verification_failed", 1, "malformed"),
    Case("malformed-opt-in", "/malformed", 502, "retryable_exhausted", 3, "malformed",
         {"retry": {"retryOn": ["malformed"], "nonRetryable": []}}),
    Case("empty", "/empty", 502, "retryable_exhausted", 3, "empty"),
    Case("missing", "/missing-field", 502, "verification_failed", 1, "fields",
         {"verify": {"requiredFields": ["result"]}}),
    Case("drift", "/schema-drift", 502, "verification_failed", 1, "schema",
         {"verify": {"schema": SCHEMA}}),
    Case("e404", "/status/404", 502, "non_retryable", 1, "404"),
    Case("e401", "/status/401", 502, "non_retryable", 1, "401"),
    Case("effect", "/side-effect?delay=2", 502, "non_retryable", 1, "timeout",
         {"timeout": "300ms", "sideEffects": True}),
    Case("effect-idem", "/side-effect?delay=2", 200, "retried_ok", 2, None,
         {"timeout": "300ms", "sideEffects": True, "idempotencyHeader": "Idempotency-Key"}),
]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, str]]:
    from tether_examples import fault_tools
    from tether_examples._serve import serve_in_thread

    with serve_in_thread(fault_tools.build_app()) as tools_url:
        tools = [{"name": c.tool, "url": tools_url + c.path, **(c.extra or {})} for c in CASES]
        doc = task_doc("http://127.0.0.1:9", tools=tools,
                       observability={"toolIO": "full"})
        sc = Sidecar(tmp_path_factory.mktemp("tools"), doc).start()
        try:
            yield sc, tools_url
        finally:
            sc.stop()


def hits(tools_url: str, path: str) -> int:
    got: dict[str, int] = httpx.get(tools_url + "/_hits").json()["hits"]
    return got.get(path.split("?")[0], 0)


@pytest.mark.parametrize("case", CASES, ids=[c.tool for c in CASES])
def test_tool_fault(rig: tuple[Sidecar, str], case: Case) -> None:
    sc, tools_url = rig
    before = hits(tools_url, case.path)
    r = httpx.post(f"{sc.url}/tools/{case.tool}", json={"q": "x"}, timeout=30)
    assert r.status_code == case.status, r.text
    if case.status == 200:
        assert r.json()["result"] in ("ok", "done")
        assert r.headers["x-tether-attempts"] == str(case.hits)
    else:
        error = r.json()["error"]
        assert error["class"] == case.outcome
        assert error["failureClass"] == case.failure_class
        assert error["attempts"] == case.hits
        assert error["reason"]
    assert hits(tools_url, case.path) - before == case.hits
    assert sc.metric("tether_tool_calls_total", tool=case.tool, outcome=case.outcome) == 1
    span = sc.wait_span(lambda s: s["name"] == f"execute_tool {case.tool}")
    assert span["attributes"]["tether.outcome"] == case.outcome
    assert span["attributes"]["tether.attempts"] == case.hits
    assert span["attributes"]["gen_ai.tool.name"] == case.tool
    assert span["attributes"]["tether.tool.request"] == '{"q":"x"}'
    retries = [e for e in span["events"] if e["name"] == "retry"]
    assert len(retries) == case.hits - 1
    if case.failure_class:
        assert span["status"] == "ERROR"
        assert span["attributes"]["error.type"] == case.failure_class


def test_retry_after_is_honoured(rig: tuple[Sidecar, str]) -> None:
    sc, _ = rig
    httpx.post(f"{sc.url}/tools/rate", json={}, timeout=30)  # the key's counter was spent above
    span = sc.wait_span(lambda s: s["name"] == "execute_tool rate")
    (retry,) = [e for e in span["events"] if e["name"] == "retry"]
    assert retry["attributes"]["delay_s"] >= 1.0


def test_side_effect_ran_once_per_call(rig: tuple[Sidecar, str]) -> None:
    _, tools_url = rig
    effects = httpx.get(tools_url + "/_hits").json()["side_effects"]
    # "effect" (no key) ran once and was not retried; "effect-idem" ran once, its retry replayed.
    assert effects.count(None) == 1
    keyed = [e for e in effects if e is not None]
    assert len(keyed) == len(set(keyed)) == 1


def test_unknown_tool_is_a_404_naming_the_tools(rig: tuple[Sidecar, str]) -> None:
    sc, _ = rig
    r = httpx.post(f"{sc.url}/tools/nope", json={})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["class"] == "not_found" and "effect-idem" in error["reason"]


def test_malformed_agent_json_is_refused_before_the_tool_sees_it(
        rig: tuple[Sidecar, str]) -> None:
    sc, tools_url = rig
    before = hits(tools_url, "/ok")
    r = httpx.post(f"{sc.url}/tools/ok", content=b'{"q": ', headers={"content-type":
                                                                     "application/json"})
    assert r.status_code == 400 and r.json()["error"]["class"] == "bad_request"
    assert hits(tools_url, "/ok") == before

