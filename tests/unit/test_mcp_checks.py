"""The MCP tools/call checks one by one (mcp_verify), the messages the sidecar acts on
(mcp_wire) and what it learns from tools/list (mcp_catalogue); no server, no sidecar."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tether_api import VerifySpec
from tether_sidecar.mcp_catalogue import Catalogue
from tether_sidecar.mcp_verify import info_of, judge, result_checks, task_verify
from tether_sidecar.mcp_wire import McpRequestError, parse_agent_message, sse_messages

SCHEMA = {"type": "object", "required": ["result"], "properties": {"result": {"type": "string"}}}


def _reply(result: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
           msg_id: str = "t-1") -> bytes:
    doc: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id}
    doc.update({"error": error} if error is not None else {"result": result})
    return orjson.dumps(doc)


def _judge(body: bytes, spec: VerifySpec | None = None, tool: dict[str, Any] | None = None,
           status: int = 200, ctype: str = "application/json") -> str | None:
    spec = spec or VerifySpec()
    info = info_of(tool) if tool is not None else None
    _, failure = judge(status, ctype, body, "t-1", spec, result_checks(spec, info))
    return None if failure is None else failure.cls


TEXT = {"content": [{"type": "text", "text": "hi"}]}


@pytest.mark.parametrize(("body", "kw", "cls"), [
    (_reply(TEXT), {}, None),
    (_reply(TEXT), {"status": 503}, "503"),
    (b"<html>", {}, "malformed"),
    (_reply(TEXT, msg_id="other"), {}, "malformed"),
    (_reply(error={"code": -32603, "message": "down"}), {}, "rpc_error"),
    (_reply({**TEXT, "isError": True}), {}, "tool_error"),
    (_reply({"content": []}), {}, "empty"),
    (_reply({"content": []}), {"spec": VerifySpec.model_validate({"nonEmpty": False})}, None),
    (_reply({"content": [], "structuredContent": {"result": "x"}}), {}, None),
    (_reply(TEXT), {"tool": {"name": "x", "outputSchema": SCHEMA}}, "schema"),
    (_reply({**TEXT, "structuredContent": {"result": 5}}),
     {"tool": {"name": "x", "outputSchema": SCHEMA}}, "schema"),
    (_reply({**TEXT, "structuredContent": {"result": "5"}}),
     {"tool": {"name": "x", "outputSchema": SCHEMA}}, None),
    (_reply({"content": [{"type": "text", "text": '{"a": 1}'}]}),
     {"spec": VerifySpec.model_validate({"requiredFields": ["b"]})}, "fields"),
    (_reply({"content": [{"type": "text", "text": "not json"}]}),
     {"spec": VerifySpec.model_validate({"requiredFields": ["b"]})}, "malformed"),
    (_reply({"content": [], "structuredContent": {"b": "x"}}),
     {"spec": VerifySpec.model_validate({"requiredFields": ["b"], "schema": SCHEMA})}, "schema"),
    (b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
     b'id: 7\ndata: ' + _reply(TEXT) + b"\n\n", {"ctype": "text/event-stream"}, None),
])
def test_each_check_names_its_class(body: bytes, kw: dict[str, Any], cls: str | None) -> None:
    assert _judge(body, **kw) == cls


def test_the_task_verify_built_once_judges_every_call() -> None:
    # The proxy compiles the task's schema once per server and hands it to each call.
    spec = VerifySpec.model_validate({"schema": SCHEMA})
    once = task_verify(spec)
    for result, cls in (({"content": [], "structuredContent": {"result": "ok"}}, None),
                        ({"content": [], "structuredContent": {"result": 5}}, "schema"),
                        ({"content": [], "structuredContent": {"result": "again"}}, None)):
        _, failure = judge(200, "application/json", _reply(result), "t-1", spec,
                           result_checks(spec, None, once))
        assert (failure.cls if failure else None) == cls


def test_the_pipeline_gets_the_result_alone() -> None:
    resp, failure = judge(200, "application/json", _reply(TEXT), "t-1", VerifySpec(), [])
    assert failure is None and orjson.loads(resp.body) == TEXT


@pytest.mark.parametrize(("hints", "side_effects", "idempotent"), [
    # Nothing stated: the spec's defaults (readOnlyHint false, destructiveHint true,
    # idempotentHint false) make it a write that must not be repeated.
    (None, True, False),
    ({}, True, False),
    ({"destructiveHint": True}, True, False),
    ({"idempotentHint": False}, True, False),
    ({"destructiveHint": False}, True, False),  # additive: a repeat adds twice
    ({"destructiveHint": False, "idempotentHint": True}, False, True),
    ({"destructiveHint": True, "idempotentHint": True}, True, True),
    ({"readOnlyHint": True}, False, False),
    ({"readOnlyHint": True, "destructiveHint": True}, False, False),
])
def test_annotations_decide_side_effects(hints: dict[str, bool] | None, side_effects: bool,
                                         idempotent: bool) -> None:
    info = info_of({"name": "x", "annotations": hints})
    assert (info.side_effects, info.idempotent) == (side_effects, idempotent)


def test_an_invalid_output_schema_is_not_enforced() -> None:
    assert info_of({"name": "x", "outputSchema": {"type": 5}}).output is None


@pytest.mark.parametrize(("raw", "code"), [
    (b"{", -32700), (b"[]", -32600), (b'{"jsonrpc": "1.0"}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}}', -32600),
    (b'{"jsonrpc": "2.0", "id": true, "method": "tools/call", "params": {"name": "x"}}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 1}}', -32602),
])
def test_malformed_messages_are_refused(raw: bytes, code: int) -> None:
    with pytest.raises(McpRequestError) as info:
        parse_agent_message(raw)
    assert info.value.code == code and info.value.status == 400


def test_sse_events_are_read_whatever_the_line_ends() -> None:
    body = b'id: 1\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata:\r\n\r\ndata: {"b": 2}'
    assert sse_messages(body) == [{"a": 1}, {"b": 2}]


def test_catalogue_filters_and_remembers_per_session() -> None:
    cat = Catalogue(["a", "b"])
    tools: list[dict[str, Any]] = [{"name": n, "inputSchema": {}} for n in ("a", "b", "c")]
    out = cat.filtered("s1", {"tools": tools, "nextCursor": "2"}, first_page=True)
    assert [t["name"] for t in out["tools"]] == ["a", "b"] and out["nextCursor"] == "2"
    assert cat.get("s1", "a") is not None and cat.get("s1", "c") is None
    assert not cat.knows("s2") and cat.get("s2", "a") is None
    cat.forget("s1")
    assert not cat.knows("s1")
    assert Catalogue(None).allows("anything")
