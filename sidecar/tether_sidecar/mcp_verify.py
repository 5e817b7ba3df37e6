"""What counts as a failed MCP ``tools/call``, one small check each, and what the sidecar learns
about a server's tools from its ``tools/list``.

A reply fails, first failure wins: an HTTP status outside ``verify.expectStatus`` (the status
class) → no JSON-RPC response to the call in the reply (``malformed``) → a JSON-RPC error
(``rpc_error``) → a result marked ``isError`` (``tool_error``) → no content and no
``structuredContent`` (``empty``, when ``verify.nonEmpty``) → ``structuredContent`` missing or not
matching the tool's declared ``outputSchema`` (``schema``) → the AgentTask's own
``verify.requiredFields`` and ``verify.schema``, read from ``structuredContent`` or, when there is
none, from the first text content as JSON (``fields``, ``schema``, ``malformed``). Each class is
retried or not by the tool's retry policy (retry.py), exactly as for an HTTP tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tether_api import VerifySpec

from .mcp_wire import find_response, parse_reply
from .retry import Failure
from .verify import ToolResponse, expect_status, matches_schema, required_fields

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = ["ResultCheck", "ToolInfo", "info_of", "judge", "result_checks", "task_verify"]

_JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class ToolInfo:
    """One tool as its server lists it, reduced to what the harness acts on."""

    output: Draft202012Validator | None  # the declared outputSchema, compiled once
    side_effects: bool  # by the server's annotations
    idempotent: bool  # the server says a repeat has no further effect


def info_of(tool: Mapping[str, Any]) -> ToolInfo:
    """Annotations are the server's hints (spec: server/tools, "Tool Annotations"), absent ones
    at the spec's defaults: a tool not marked ``readOnlyHint: true`` is side-effecting unless it
    says ``destructiveHint: false`` (then it only adds, and a repeat may still add twice: so also
    ``idempotentHint: true``). Where a server says nothing, assuming a write is what keeps a
    timed-out payment from being sent twice. A schema that is not valid JSON Schema is not
    enforced (the server's bug is not the agent's failure)."""
    notes = tool.get("annotations") or {}
    if not isinstance(notes, dict):
        notes = {}
    writes = notes.get("readOnlyHint") is not True
    side_effects = writes and not (notes.get("destructiveHint") is False
                                   and notes.get("idempotentHint") is True)
    output = None
    schema = tool.get("outputSchema")
    if isinstance(schema, dict):
        # Imported with the first schema: ~1.5 MB resident that a server without one never needs.
        from jsonschema import Draft202012Validator, SchemaError

        try:
            Draft202012Validator.check_schema(schema)
            output = Draft202012Validator(schema)
        except SchemaError:
            output = None
    return ToolInfo(output, side_effects, notes.get("idempotentHint") is True)


ResultCheck = Callable[[dict[str, Any]], Failure | None]


def tool_error(result: dict[str, Any]) -> Failure | None:
    if result.get("isError") is not True:
        return None
    texts = [c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict)
             and c.get("type") == "text"]
    said = " ".join(t for t in texts if isinstance(t, str))[:300] or "(no text)"
    return Failure("tool_error", f"the tool reported an error (isError): {said}", status=200)


def non_empty(result: dict[str, Any]) -> Failure | None:
    if result.get("content") or result.get("structuredContent") is not None:
        return None
    return Failure("empty", "the result has no content and no structuredContent", status=200)


def output_schema(info: ToolInfo | None) -> ResultCheck:
    def check(result: dict[str, Any]) -> Failure | None:
        if info is None or info.output is None:
            return None
        doc = result.get("structuredContent")
        if doc is None:
            return Failure("schema", "the tool declares an outputSchema and the result has no "
                           "structuredContent", status=200)
        error = next(iter(info.output.iter_errors(doc)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Failure("schema", f"structuredContent does not match the tool's outputSchema at "
                       f"{where}: {error.message}", status=200)

    return check


def _document(result: dict[str, Any]) -> tuple[Any, Failure | None]:
    """What verify.requiredFields/schema read: structuredContent, else the first text as JSON."""
    if result.get("structuredContent") is not None:
        return result["structuredContent"], None
    for item in result.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text":
            try:
                return orjson.loads(str(item.get("text", ""))), None
            except orjson.JSONDecodeError as exc:
                return None, Failure("malformed", "verify needs structuredContent or a JSON text "
                                     f"content; the text is not JSON: {exc}", status=200)
    return None, Failure("malformed", "verify needs structuredContent or a JSON text content; "
                         "the result has neither", status=200)


def task_verify(spec: VerifySpec) -> ResultCheck:
    """The AgentTask's requiredFields and schema (verify.py's own checks) on the result."""
    checks = ([required_fields(spec.required_fields)] if spec.required_fields else []) + (
        [matches_schema(spec.schema_)] if spec.schema_ is not None else [])

    def check(result: dict[str, Any]) -> Failure | None:
        if not checks:
            return None
        doc, bad = _document(result)
        if bad is not None:
            return bad
        as_response = ToolResponse(200, _JSON, b"", _json=doc)
        return next((f for c in checks if (f := c(as_response)) is not None), None)

    return check


def result_checks(spec: VerifySpec, info: ToolInfo | None,
                  task: ResultCheck | None = None) -> list[ResultCheck]:
    """One tools/call's checks, in order. ``task`` is ``task_verify(spec)``, which compiles the
    task's schema: the proxy builds it once per server (McpProxy), not on every call."""
    checks: list[ResultCheck] = [tool_error]
    if spec.non_empty:
        checks.append(non_empty)
    return [*checks, output_schema(info), task if task is not None else task_verify(spec)]


def judge(status: int, ctype: str, body: bytes, msg_id: Any, spec: VerifySpec,
          checks: list[ResultCheck]) -> tuple[ToolResponse, Failure | None]:
    """One attempt's reply as the pipeline sees it: the response (the call's ``result`` as JSON
    when there is one, else the reply as received) and its first failure, if any."""
    raw = ToolResponse(status, {"content-type": ctype}, body)
    bad_status = expect_status(spec.expect_status)(raw)
    if bad_status is not None:
        return raw, bad_status
    try:
        reply = find_response(parse_reply(ctype, body), msg_id)
    except ValueError as exc:
        return raw, Failure("malformed", str(exc), status=status)
    if reply is None:
        return raw, Failure("malformed", "the MCP server's reply holds no JSON-RPC response to "
                            "the tools/call", status=status)
    if "error" in reply:
        error = reply["error"] if isinstance(reply["error"], dict) else {}
        return raw, Failure("rpc_error", f"JSON-RPC error {error.get('code')}: "
                            f"{str(error.get('message'))[:300]}", status=status)
    result = reply.get("result")
    if not isinstance(result, dict):
        return raw, Failure("malformed", "the tools/call result is not an object", status=status)
    resp = ToolResponse(status, _JSON, orjson.dumps(result), _json=result)
    return resp, next((f for c in checks if (f := c(result)) is not None), None)
