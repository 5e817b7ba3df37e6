"""MCP tools through the real sidecar: the official ``mcp`` SDK client, through ``/mcp/{name}``, to
a real MCP server built with the same SDK (tests/sidecar/_mcp_server.py). For each fault: the
class, how many attempts reached the server, what the agent's MCP client saw, the metric and the
span. A failure reaches the agent as a tool error (``isError``), never as a success."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import mcp.types as types
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from ._mcp_server import FaultServer, serve_mcp
from .proc import Sidecar, task_doc

ALLOWED = ["ok", "tool-error", "flaky", "rpc-error", "slow", "drift", "empty", "destroy",
           "unmarked"]


@dataclass(frozen=True)
class Case:
    server: str  # the AgentTask's name of the MCP server
    tool: str
    outcome: str  # tether_tool_calls_total outcome == error class on failure
    hits: int  # attempts that reached the MCP server
    failure_class: str | None = None
    args: dict[str, Any] | None = None


CASES = [
    Case("faults", "ok", "ok", 1),
    Case("faults", "tool-error", "non_retryable", 1, "tool_error"),
    Case("retrying", "flaky", "retried_ok", 2, None, {"key": "k1"}),
    Case("faults", "rpc-error", "non_retryable", 1, "rpc_error"),
    Case("faults", "slow", "retryable_exhausted", 3, "timeout"),
    Case("faults", "drift", "verification_failed", 1, "schema"),
    Case("faults", "empty", "retryable_exhausted", 3, "empty"),
    # destructiveHint: true, so a timeout after sending is not retried: it may have acted.
    Case("faults", "destroy", "non_retryable", 1, "timeout", {"key": "k2", "delay": 2}),
    Case("faults", "destroy", "ok", 1, None, {"key": "k3"}),
    # No annotations: the spec's defaults (not read-only, destructive) hold, so a timeout is
    # not retried either, unlike "slow", the same tool marked readOnlyHint.
    Case("faults", "unmarked", "non_retryable", 1, "timeout", {"seconds": 2}),
]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, FaultServer]]:
    with serve_mcp() as (url, faults):
        tools = [{"name": "faults", "mcp": {"url": url, "allowedTools": ALLOWED},
                  "timeout": "500ms"},
                 {"name": "retrying", "mcp": {"url": url}, "retry": {"retryOn": ["tool_error"]}}]
        doc = task_doc("http://127.0.0.1:9", tools=tools, observability={"toolIO": "full"})
        sc = Sidecar(tmp_path_factory.mktemp("mcp"), doc).start()
        try:
            yield sc, faults
        finally:
            sc.stop()


async def call(url: str, tool: str, args: dict[str, Any] | None = None) -> types.CallToolResult:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        result = await s.call_tool(tool, args or {})
        assert isinstance(result, types.CallToolResult)
        return result


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.server}/{c.tool}-{c.outcome}" for c in CASES])
async def test_mcp_fault(rig: tuple[Sidecar, FaultServer], case: Case) -> None:
    sc, faults = rig
    before = faults.hits[case.tool]
    label = f"{case.server}/{case.tool}"
    metric_before = sc.metric("tether_tool_calls_total", tool=label, outcome=case.outcome)
    result = await call(f"{sc.url}/mcp/{case.server}", case.tool, case.args)
    assert faults.hits[case.tool] - before == case.hits
    if case.failure_class is None:
        assert not result.is_error, _text(result)
        if case.tool == "ok":
            assert result.structured_content == {"result": "ok"}
    else:
        assert result.is_error
        assert _text(result).startswith(f"tether: {case.outcome}: ")
        assert result.meta is not None
        error = result.meta["tether.dev/error"]
        assert (error["class"], error["failureClass"], error["attempts"]) == (
            case.outcome, case.failure_class, case.hits)
    assert sc.metric("tether_tool_calls_total", tool=label, outcome=case.outcome) \
        == metric_before + 1
    span = sc.wait_span(lambda s: s["name"] == f"execute_tool {label}"
                        and s["attributes"].get("tether.outcome") == case.outcome)
    attrs = span["attributes"]
    assert attrs["tether.attempts"] == case.hits
    assert (attrs["gen_ai.tool.name"], attrs["tether.mcp.server"]) == (case.tool, case.server)
    assert len([e for e in span["events"] if e["name"] == "retry"]) == case.hits - 1
    if case.failure_class:
        assert span["status"] == "ERROR" and attrs["error.type"] == case.failure_class


async def test_disallowed_tool_is_filtered_and_refused(
        rig: tuple[Sidecar, FaultServer]) -> None:
    sc, faults = rig
    async with streamable_http_client(f"{sc.url}/mcp/faults") as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        listed = await s.list_tools()
        assert sorted(t.name for t in listed.tools) == sorted(ALLOWED)
        with pytest.raises(MCPError) as info:
            await s.call_tool("secret", {})
    assert info.value.error.code == -32602
    assert "not allowed" in info.value.error.message and "allowedTools" in info.value.error.message
    assert faults.hits["secret"] == 0
    # The same server under a name with no allow-list shows it.
    async with streamable_http_client(f"{sc.url}/mcp/retrying") as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        assert "secret" in [t.name for t in (await s.list_tools()).tools]


@pytest.mark.parametrize(("body", "code", "words"), [
    (b"{not json", -32700, "not valid JSON"),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600, "batch"),
    (b'{"id": 1, "method": "ping"}', -32600, "JSON-RPC 2.0"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}', -32602, "name"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
     b'"params": {"name": "ok", "arguments": [1]}}', -32602, "arguments"),
])
def test_malformed_request_is_a_4xx_naming_the_problem(
        rig: tuple[Sidecar, FaultServer], body: bytes, code: int, words: str) -> None:
    sc, faults = rig
    before = sum(faults.hits.values())
    r = httpx.post(f"{sc.url}/mcp/faults", content=body, headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert sum(faults.hits.values()) == before


def test_unknown_server_is_a_404_naming_the_servers(rig: tuple[Sidecar, FaultServer]) -> None:
    sc, _ = rig
    r = httpx.post(f"{sc.url}/mcp/nope", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 404
    assert "faults, retrying" in r.json()["error"]["reason"]
    r = httpx.post(f"{sc.url}/tools/faults", json={})
    assert r.status_code == 404 and "/mcp/faults" in r.json()["error"]["reason"]


def test_session_header_passes_both_ways_and_delete_ends_it(
        rig: tuple[Sidecar, FaultServer]) -> None:
    sc, _ = rig
    url = f"{sc.url}/mcp/faults"
    headers = {"accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}}
    with httpx.Client(timeout=10) as client:
        r = client.post(url, json=init, headers=headers)
        assert r.status_code == 200, r.text
        session = r.headers["mcp-session-id"]
        headers |= {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert client.post(url, json=note, headers=headers).status_code == 202
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        assert client.post(url, json=ping, headers=headers).status_code == 200
        # The server's own stream (GET) is relayed as a stream: its headers come at once.
        with client.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
        assert client.delete(url, headers=headers).status_code == 200
        assert client.post(url, json={**ping, "id": 3}, headers=headers).status_code == 404
        # A tools/call in the ended session gets the 404 too, so the client starts a new one.
        call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "ok", "arguments": {}}}
        r = client.post(url, json=call, headers=headers)
        assert r.status_code == 404 and "session not found" in r.json()["error"]["message"]
