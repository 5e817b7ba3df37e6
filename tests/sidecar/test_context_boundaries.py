"""Context boundaries through the real sidecar process: a compaction writes the compact form,
the summary and the archive to the state dir; a SIGKILLed sidecar restarted on it does not buy
the summary again; a torn boundary file falls back to the one before; the archive is read back
through the context_archive tool; a malformed request is refused with the reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_agent import Harness, HarnessError

from .conftest import upstream_requests
from .proc import Sidecar, task_doc
from .test_context_budget import history

CHAT = "/v1/chat/completions"
BUDGET = {"maxTokens": 4000, "compactAt": 0.5, "keepLastToolResults": 1}


@pytest.fixture
def rig(tmp_path: Path, model_server: str) -> Iterator[Callable[[], Sidecar]]:
    """Sidecars that share one state dir, as the pods of one task share its volume."""
    running: list[Sidecar] = []

    def start() -> Sidecar:
        sc = Sidecar(tmp_path, task_doc(model_server, contextBudget=BUDGET))
        running.append(sc)
        return sc.start()

    yield start
    for sc in running:
        sc.stop()


def chat(sc: Sidecar, messages: list[dict[str, Any]]) -> httpx.Response:
    r = httpx.post(sc.url + CHAT, timeout=30,
                   json={"model": "gpt-4o", "max_tokens": 50, "messages": messages})
    assert r.status_code == 200, r.text
    return r


def summary_calls(model_server: str) -> int:
    return sum("Summarize the conversation" in str(r["body"]["messages"][0]["content"])
               for r in upstream_requests(model_server))


def test_a_compaction_writes_a_boundary_the_agent_continues_from(
        rig: Callable[[], Sidecar], model_server: str) -> None:
    sc = rig()
    r = chat(sc, history(8))
    assert r.headers["x-tether-context-boundary"] == "1"
    ctx = Harness(sc.url).context()
    assert ctx is not None and ctx["boundary"] == 1
    sent = upstream_requests(model_server)[-1]["body"]["messages"]
    assert ctx["messages"] == sent  # exactly the compact form the model was sent
    assert ctx["summary"] == "Summary: all good." and "context_archive" in sent[2]["content"]
    files = sorted(p.name for p in (sc.state_dir / "context").iterdir())
    assert files == ["archive-0000000001.json", "boundary-0000000001.json"]
    first, count = ctx["archivedAdded"]
    assert (first, count) == (1, ctx["archivedTotal"]) and count >= 10  # assistant + tool each

    # The agent continues from the compact form: a later compaction archives only what is new.
    grown = ctx["messages"] + history(16)[len(history(0)):]
    r = chat(sc, grown)
    assert r.headers["x-tether-context-boundary"] == "2"
    second = Harness(sc.url).context()
    assert second is not None and second["archivedAdded"][0] == count + 1
    assert "[tether:" not in str(httpx.post(sc.url + "/tools/context_archive", timeout=10,
                                            json={"query": "tether:"}).json()["entries"])


def test_a_restarted_sidecar_reuses_the_persisted_summary(rig: Callable[[], Sidecar],
                                                          model_server: str) -> None:
    sc = rig()
    chat(sc, history(8))
    Harness(sc.url).checkpoint(8, {"messages": "the full history, as an agent keeps it"})
    assert summary_calls(model_server) == 1
    sc.kill()

    again = rig()
    assert Harness(again.url).resume() is not None  # the journal counts from the checkpoint
    chat(again, history(9))  # an agent that keeps its whole history resends it, one step on
    assert summary_calls(model_server) == 1  # the summary came from the volume, not the model
    assert again.status()["compactions"] == 1


def test_a_replayed_compacting_call_still_names_its_boundary(rig: Callable[[], Sidecar],
                                                             model_server: str) -> None:
    """An agent killed before it acted on the header resends the call after the restart: the
    journal answers it, and the header comes with it."""
    sc = rig()
    assert chat(sc, history(8)).headers["x-tether-context-boundary"] == "1"
    sc.kill()
    again = rig()
    assert Harness(again.url).resume() is None
    r = chat(again, history(8))
    assert r.headers["x-tether-replayed"] == "true"
    assert r.headers["x-tether-context-boundary"] == "1"
    assert summary_calls(model_server) == 1


def test_a_torn_boundary_falls_back_to_the_previous_one(rig: Callable[[], Sidecar]) -> None:
    sc = rig()
    chat(sc, history(8))
    first = Harness(sc.url).context()
    assert first is not None
    chat(sc, first["messages"] + history(16)[2:])
    sc.kill()
    torn = sc.state_dir / "context" / "boundary-0000000002.json"
    torn.write_bytes(torn.read_bytes()[:-7])  # a half-copied volume, a bad disk

    again = rig()
    ctx = Harness(again.url).context()
    assert ctx is not None and ctx["boundary"] == 1 and ctx["messages"] == first["messages"]
    assert "boundary-0000000002.json is damaged" in again.log()


def test_the_archive_tool_reads_archived_messages_back(rig: Callable[[], Sidecar]) -> None:
    sc = rig()
    chat(sc, history(8))
    r = httpx.post(sc.url + "/tools/context_archive", json={"query": "PAGE 3:"}, timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [e["message"]["content"][:7] for e in doc["entries"]] == ["page 3:"]
    ranged = httpx.post(sc.url + "/tools/context_archive", json={"from": 2, "to": 3},
                        timeout=10).json()
    assert [e["n"] for e in ranged["entries"]] == [2, 3]
    assert sc.metric("tether_tool_calls_total", tool="context_archive") == 2
    sc.wait_span(lambda s: s["name"] == "execute_tool context_archive")


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "not valid JSON"),
    (b'["query"]', "must be a JSON object"),
    (b'{"q": "x"}', "unknown field(s) q"),
    (b'{"query": ""}', "query must be a non-empty string"),
    (b'{"limit": 0}', "limit must be an integer of at least 1"),
    (b'{"from": "3"}', "from must be an integer"),
])
def test_a_malformed_archive_request_is_refused_with_the_reason(
        rig: Callable[[], Sidecar], body: bytes, reason: str) -> None:
    sc = rig()
    r = httpx.post(sc.url + "/tools/context_archive", content=body, timeout=10)
    assert r.status_code == 400
    assert reason in r.json()["error"]["reason"]


def test_before_any_compaction_there_is_no_boundary(rig: Callable[[], Sidecar]) -> None:
    sc = rig()
    assert Harness(sc.url).context() is None
    assert httpx.post(sc.url + "/tools/context_archive", json={},
                      timeout=10).json()["entries"] == []


def test_the_agent_marks_a_boundary_through_the_sdk(rig: Callable[[], Sidecar],
                                                    model_server: str) -> None:
    sc = rig()
    h = Harness(sc.url)
    short = history(3)  # far under the budget: only the agent's mark compacts it
    ctx = h.boundary(short)
    assert ctx["boundary"] == 1 and summary_calls(model_server) == 1
    assert ctx["messages"][:2] == short[:2] and ctx["messages"][-1] == short[-1]
    assert "Summary: all good." in ctx["messages"][2]["content"]
    assert h.context() == {**ctx}
    assert h.boundary(short)["boundary"] == 2 and summary_calls(model_server) == 1  # cached
    with pytest.raises(HarnessError) as nothing:
        h.boundary(short[:3])
    assert nothing.value.status == 400 and "nothing to archive" in nothing.value.reason
    r = httpx.post(sc.url + "/context/boundary", json={"history": short}, timeout=10)
    assert r.status_code == 400 and '{"messages": [...]}' in r.json()["error"]["reason"]
