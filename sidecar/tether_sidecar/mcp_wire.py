"""MCP messages on the wire: JSON-RPC 2.0 as plain dicts, checked by hand where the sidecar
acts on them, and the server-sent events a Streamable HTTP server may answer a POST with.

Plain dicts and orjson rather than the official SDK's pydantic models (``mcp.types``): the sidecar
reads five fields of a handful of messages and relays the rest untouched, and importing the
models costs resident memory in every pod (figures in docs/sidecar.md, "MCP tools"). What the
sidecar does not act on it never parses beyond JSON, so a newer protocol revision's fields pass
through unchanged.

Spec: modelcontextprotocol.io/specification/2025-06-18/basic/transports (Streamable HTTP) and
/server/tools (tools/list, tools/call, CallToolResult).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["INVALID_PARAMS", "INVALID_REQUEST", "PARSE_ERROR", "McpRequestError", "error_doc",
           "find_response", "parse_agent_message", "parse_reply", "tool_error_result"]

# JSON-RPC 2.0 error codes (jsonrpc.org/specification#error_object); MCP answers a tools/call
# naming an unknown tool with INVALID_PARAMS (spec: server/tools, "Error Handling").
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


class McpRequestError(Exception):
    """A message from the agent the sidecar cannot act on: answered with a 4xx and a JSON-RPC
    error naming what is wrong."""

    def __init__(self, code: int, reason: str, msg_id: Any = None, status: int = 400) -> None:
        super().__init__(reason)
        self.code, self.reason, self.msg_id, self.status = code, reason, msg_id, status


def error_doc(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def parse_agent_message(raw: bytes) -> dict[str, Any]:
    """The agent's POST body as one JSON-RPC message; McpRequestError when it is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise McpRequestError(PARSE_ERROR, f"the body is not valid JSON: {exc}") from exc
    if isinstance(doc, list):
        raise McpRequestError(INVALID_REQUEST, "a JSON-RPC batch (array) is not accepted: MCP "
                              "2025-06-18 removed batching; send one message per POST")
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
        raise McpRequestError(INVALID_REQUEST, 'not a JSON-RPC 2.0 message: expected an object '
                              'with "jsonrpc": "2.0"')
    method = doc.get("method")
    if method is not None and not isinstance(method, str):
        raise McpRequestError(INVALID_REQUEST, '"method" must be a string', doc.get("id"))
    if method is None and "result" not in doc and "error" not in doc:
        raise McpRequestError(INVALID_REQUEST, 'neither a request or notification ("method") '
                              'nor a response ("result" or "error")', doc.get("id"))
    if method == "tools/call":
        _check_tools_call(doc)
    return doc


def _check_tools_call(doc: dict[str, Any]) -> None:
    msg_id = doc.get("id")
    if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
        raise McpRequestError(INVALID_REQUEST, 'a tools/call request needs an "id" (a string or '
                              'an integer)', None)
    params = doc.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        raise McpRequestError(INVALID_PARAMS, 'tools/call needs "params": {"name": <tool>, '
                              '"arguments": {...}}', msg_id)
    if params.get("arguments") is not None and not isinstance(params["arguments"], dict):
        raise McpRequestError(INVALID_PARAMS, 'tools/call "params.arguments" must be an object',
                              msg_id)


def sse_messages(body: bytes) -> list[Any]:
    """The JSON ``data`` of each event in a text/event-stream body (events whose data is not
    JSON, such as a priming event with empty data, are skipped)."""
    out: list[Any] = []
    for event in body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n")
                          if line.startswith(b"data:"))
        if data.strip():
            try:
                out.append(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue  # not a JSON-RPC message; the response is looked for among the rest
    return out


def parse_reply(ctype: str, body: bytes) -> list[Any]:
    """The messages in a server's answer to a POST: one JSON object, or an SSE stream of them.
    Raises ValueError when a JSON body does not parse."""
    if "text/event-stream" in ctype.lower():
        return sse_messages(body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the MCP server's reply is not valid JSON: {exc}") from exc
    return doc if isinstance(doc, list) else [doc]


def find_response(messages: list[Any], msg_id: Any) -> dict[str, Any] | None:
    """The response (result or error) to request ``msg_id`` among ``messages``."""
    for msg in messages:
        if (isinstance(msg, dict) and msg.get("id") == msg_id
                and ("result" in msg or "error" in msg) and "method" not in msg):
            return msg
    return None


def tool_error_result(error: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult the agent's MCP client reads as a failed tool (``isError``), naming the
    class and the reason, with the sidecar's details under ``_meta``."""
    text = f"tether: {error['class']}: {error['reason']}"
    return {"content": [{"type": "text", "text": text}], "isError": True,
            "_meta": {"tether.dev/error": error}}
