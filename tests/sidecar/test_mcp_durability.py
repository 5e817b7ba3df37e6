"""A destructive MCP tool is not called twice across a SIGKILL of the sidecar: a completed call is
answered from the journal, and a call in flight at the kill is refused as "may have run"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._mcp_server import FaultServer, serve_mcp
from .proc import Sidecar, task_doc
from .test_mcp_faults import _text, call


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Callable[[], Sidecar], FaultServer]]:
    """Start (and restart) sidecars that share one state dir, as pods share a PVC."""
    running: list[Sidecar] = []
    with serve_mcp() as (url, faults):
        doc = task_doc("http://127.0.0.1:9", tools=[{"name": "faults", "mcp": {"url": url}}])

        def start() -> Sidecar:
            sc = Sidecar(tmp_path, doc)
            running.append(sc)
            return sc.start()

        yield start, faults
        for sc in running:
            sc.stop()


async def test_completed_destructive_call_is_replayed_after_a_kill(
        rig: tuple[Callable[[], Sidecar], FaultServer]) -> None:
    start, faults = rig
    sc = start()
    first = await call(f"{sc.url}/mcp/faults", "destroy", {"key": "a"})
    assert not first.is_error and faults.hits["destroy"] == 1
    sc.kill()

    again = start()  # the agent starts over from no checkpoint and makes the same call
    second = await call(f"{again.url}/mcp/faults", "destroy", {"key": "a"})
    assert not second.is_error and _text(second) == _text(first) == "destroyed a"
    assert second.meta is not None and second.meta["tether.dev/replayed"] is True
    assert faults.hits["destroy"] == 1  # not sent again
    assert again.status()["replayed"] == 1
    assert again.metric("tether_journal_replays_total", kind="tool") == 1
    assert again.wait_span(lambda s: s["name"] == "execute_tool faults/destroy"
                           and s["attributes"].get("tether.replayed") is True)
    # A different call goes to the server.
    assert not (await call(f"{again.url}/mcp/faults", "destroy", {"key": "b"})).is_error
    assert faults.hits["destroy"] == 2


async def test_destructive_call_in_flight_at_a_kill_is_not_sent_again(
        rig: tuple[Callable[[], Sidecar], FaultServer]) -> None:
    start, faults = rig
    sc = start()
    pending = asyncio.ensure_future(call(f"{sc.url}/mcp/faults", "destroy",
                                         {"key": "c", "delay": 5}))
    assert await asyncio.to_thread(faults.destroying.wait, 20), "the call never arrived"
    sc.kill()
    pending.cancel()  # the agent's connection was cut with the sidecar; it gives up the call
    await asyncio.gather(pending, return_exceptions=True)

    again = start()
    result = await call(f"{again.url}/mcp/faults", "destroy", {"key": "c", "delay": 5})
    assert result.is_error and "may have run" in _text(result)
    assert result.meta is not None
    assert result.meta["tether.dev/error"]["class"] == "non_retryable"
    assert faults.hits["destroy"] == 1
