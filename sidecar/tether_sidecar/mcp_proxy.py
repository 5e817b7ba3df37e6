"""``/mcp/{name}``: an MCP server (Streamable HTTP) through the sidecar, its ``tools/call`` through
the tool pipeline.

The session is the server's: ``initialize``, notifications, responses, the GET stream and DELETE
are relayed as they are (``Mcp-Session-Id`` and the other ``Mcp-*`` headers both ways), streamed.
Two methods are the sidecar's business:

* ``tools/list``: the tools the AgentTask does not allow (``mcp.allowedTools``) are left out, and
  the rest are remembered for the session (output schema, annotations: mcp_catalogue);
* ``tools/call``: refused with a JSON-RPC error when the tool is not allowed or not listed;
  otherwise one call of :class:`~tether_sidecar.tool_proxy.ToolPipeline` (journal, retry,
  span, metric), each attempt a fresh request id to the server, judged by mcp_verify. A failure
  reaches the agent as a tool result with ``isError: true`` naming the class and the reason,
  never as a transport error and never as a success.

Imported only for a task that declares an MCP server (app.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tether_api import ToolSpec

from .errors import NotFound, SidecarError
from .harness import Harness
from .journal import call_key
from .mcp_catalogue import Catalogue
from .mcp_verify import ResultCheck, ToolInfo, judge, result_checks, task_verify
from .mcp_wire import (
    INVALID_PARAMS,
    McpRequestError,
    error_doc,
    find_response,
    parse_agent_message,
    parse_reply,
    tool_error_result,
)
from .retry import Failure
from .tool_proxy import ToolCall, ToolPipeline
from .tracing import ATTR
from .upstream import HOP_HEADERS, TransportError
from .verify import ToolResponse

__all__ = ["McpProxy"]

log = logging.getLogger(__name__)

_STREAM_SILENCE_S = 24 * 3600.0  # a GET stream may carry nothing for long: not a failure


@dataclass(frozen=True)
class _Server:
    tool: ToolSpec
    url: str
    catalogue: Catalogue
    verify: ResultCheck  # the task's verify on each result, its schema compiled once


def _forwarded(request: web.Request) -> dict[str, str]:
    """The agent's headers the server needs: the MCP ones (session, protocol version), content
    negotiation, resumption, and the agent's own credentials for that server."""
    return {k.lower(): v for k, v in request.headers.items()
            if k.lower() in ("content-type", "accept", "last-event-id", "authorization")
            or k.lower().startswith("mcp-")}


def _relayed(headers: Any) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        if k.lower() not in HOP_HEADERS:
            out.add(k, v)
    return out


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json",
                        headers=headers)


def _unreachable(server: _Server, msg_id: Any, exc: TransportError) -> web.Response:
    reason = f"cannot reach MCP server {server.tool.name!r}: {exc.reason}"
    return _json(error_doc(msg_id, -32603, reason), 502, {"x-tether-error-class": exc.kind})


class McpProxy:
    def __init__(self, h: Harness, pipeline: ToolPipeline) -> None:
        self.h, self.pipeline = h, pipeline
        self.servers = {t.name: _Server(t, t.mcp.url, Catalogue(t.mcp.allowed_tools),
                                        task_verify(t.verify))
                        for t in h.task.spec.tools if t.mcp is not None}
        self.ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()

    def _server(self, request: web.Request) -> _Server:
        name = request.match_info["name"]
        server = self.servers.get(name)
        if server is None:
            known = ", ".join(self.servers) or "none"
            raise NotFound(f"unknown MCP server {name!r}; this task's MCP servers: {known}")
        return server

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return await self.post(request)
        if request.method == "GET":
            return await self.get(request)
        if request.method == "DELETE":
            return await self.delete(request)
        raise web.HTTPMethodNotAllowed(request.method, ["POST", "GET", "DELETE"])

    # --- relayed as they are ----------------------------------------------------------------

    async def get(self, request: web.Request) -> web.StreamResponse:
        # The server's stream of its own messages is not a call: a stop does not wait for it.
        self.h.in_flight -= 1
        try:
            return await self._relay(request, self._server(request), "GET", b"",
                                     _STREAM_SILENCE_S)
        finally:
            self.h.in_flight += 1

    async def delete(self, request: web.Request) -> web.StreamResponse:
        server = self._server(request)
        server.catalogue.forget(request.headers.get("mcp-session-id", ""))
        return await self._relay(request, server, "DELETE", b"", self.pipeline.timeout(server.tool))

    async def _relay(self, request: web.Request, server: _Server, method: str, body: bytes,
                     timeout: float, msg_id: Any = None) -> web.StreamResponse:
        try:
            up = await self.h.upstream.stream(method, server.url, _forwarded(request), body,
                                              timeout)
        except TransportError as exc:
            return _unreachable(server, msg_id, exc)
        resp = web.StreamResponse(status=up.status, headers=_relayed(up.headers))
        try:
            await resp.prepare(request)
            async for chunk in up.chunks():
                await resp.write(chunk)
        except TransportError as exc:  # the server's stream broke: so does the agent's
            log.warning("MCP server %s: %s stream cut: %s", server.tool.name, method, exc.reason)
            resp.force_close()
        except ConnectionResetError:  # the agent went away: nothing left to relay to
            log.info("MCP server %s: the agent closed its %s stream", server.tool.name, method)
        finally:
            await up.aclose()
        return resp

    # --- POST: one JSON-RPC message -----------------------------------------------------------

    async def post(self, request: web.Request) -> web.StreamResponse:
        server = self._server(request)
        raw = await request.read()
        try:
            msg = parse_agent_message(raw)
        except McpRequestError as exc:
            return _json(error_doc(exc.msg_id, exc.code, exc.reason), exc.status,
                         {"x-tether-error-class": "bad_request"})
        method = msg.get("method")
        if method == "tools/call":
            return await self._call(request, server, msg)
        if method == "tools/list" and "id" in msg:
            return await self._list(request, server, msg, raw)
        return await self._relay(request, server, "POST", raw,
                                 self.pipeline.timeout(server.tool), msg.get("id"))

    async def _list(self, request: web.Request, server: _Server, msg: dict[str, Any],
                    raw: bytes) -> web.StreamResponse:
        headers = _forwarded(request)
        try:
            up = await self.h.upstream.send("POST", server.url, headers, raw,
                                            self.pipeline.timeout(server.tool))
        except TransportError as exc:
            return _unreachable(server, msg["id"], exc)
        out = _relayed(up.headers)
        ctype = up.headers.get("content-type", "")
        try:
            reply = find_response(parse_reply(ctype, up.body), msg["id"])
        except ValueError:
            reply = None
        if up.status != 200 or reply is None or not isinstance(reply.get("result"), dict):
            return web.Response(body=up.body, status=up.status, headers=out)  # as it came
        session = request.headers.get("mcp-session-id") or ""
        params = msg.get("params")
        first = not (isinstance(params, dict) and params.get("cursor"))
        result = server.catalogue.filtered(session, reply["result"], first)
        out["content-type"] = "application/json"
        return web.Response(body=orjson.dumps({**reply, "result": result}), headers=out)

    async def _info(self, server: _Server, session: str, headers: dict[str, str],
                    name: str) -> tuple[ToolInfo | None, bool]:
        """The tool's listing, and whether the server's list (when known) has it."""
        info = server.catalogue.get(session, name)
        if info is None:
            await server.catalogue.fetch(self.h.upstream, server.url, session, headers,
                                         self.pipeline.timeout(server.tool))
            info = server.catalogue.get(session, name)
        return info, info is not None or not server.catalogue.knows(session)

    async def _call(self, request: web.Request, server: _Server,
                    msg: dict[str, Any]) -> web.Response:
        started = time.perf_counter()
        params: dict[str, Any] = msg["params"]
        name: str = params["name"]
        srv, tool = server.tool.name, server.tool
        if not server.catalogue.allows(name):
            allowed = ", ".join(sorted(server.catalogue.allowed or ())) or "none"
            return _json(error_doc(msg["id"], INVALID_PARAMS, f"tool {name!r} of MCP server "
                                   f"{srv!r} is not allowed by this AgentTask "
                                   f"(spec.tools[].mcp.allowedTools: {allowed})"))
        headers = _forwarded(request)
        info, listed = await self._info(server, request.headers.get("mcp-session-id", ""),
                                        headers, name)
        if not listed:
            return _json(error_doc(msg["id"], INVALID_PARAMS, f"unknown tool {name!r}: MCP "
                                   f"server {srv!r} does not list it"))
        label, arguments = f"{srv}/{name}", params.get("arguments") or {}
        send = _Attempts(self, server, headers, params, result_checks(tool.verify, info,
                                                                      server.verify))
        call = ToolCall(tool, label, call_key("mcp", label, {"name": name, "arguments": arguments}),
                        orjson.dumps(arguments),
                        side_effects=tool.side_effects if tool.side_effects is not None
                        else info is None or info.side_effects,
                        idempotent=tool.idempotency_header is not None
                        or (info is not None and info.idempotent),
                        attributes={ATTR.TOOL_NAME: name, ATTR.MCP_SERVER: srv})
        try:
            done = await self.pipeline.run(call, send)
        except SidecarError as exc:  # the agent's MCP client must see a failed tool
            if exc.details.get("upstreamStatus") == 404 and "mcp-session-id" in headers:
                # The session is gone (spec: transports, "Session Management"): the client must
                # see the 404 to start a new one, not a tool error.
                return _json(error_doc(msg["id"], -32001, f"MCP server {srv!r}: session not "
                                       f"found; start a new one ({exc.reason})"), 404)
            return _json({"jsonrpc": "2.0", "id": msg["id"],
                          "result": tool_error_result(exc.body()["error"])},
                         headers={"x-tether-error-class": exc.error_class})
        result = done.response.json()
        if done.replayed:
            meta = result.get("_meta") if isinstance(result.get("_meta"), dict) else {}
            result = {**result, "_meta": {**meta, "tether.dev/replayed": True}}
            return _json({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                         headers={"x-tether-replayed": "true"})
        self.h.metrics.overhead_tool.observe(time.perf_counter() - started - send.waited
                                             - done.backoff_s)
        return _json({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                     headers={"x-tether-attempts": str(done.attempts)})

    def cancel(self, server: _Server, headers: dict[str, str], msg_id: str) -> None:
        """Tell the server to stop the attempt that timed out (spec: utilities/cancellation);
        best effort, in the background: the retry does not wait for it."""
        body = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
            "requestId": msg_id, "reason": "timed out in the tether sidecar"}})

        async def post() -> None:
            try:
                await self.h.upstream.send("POST", server.url, dict(headers), body, 5.0)
            except TransportError as exc:
                log.info("MCP server %s: cancelling %s failed: %s", server.tool.name, msg_id,
                         exc.reason)

        task = asyncio.get_running_loop().create_task(post())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Attempts:
    """The ``send`` of one tools/call: each attempt a request of its own to the server, judged
    by mcp_verify; counts the time spent waiting on the server (not the sidecar's overhead)."""

    def __init__(self, proxy: McpProxy, server: _Server, headers: dict[str, str],
                 params: dict[str, Any], checks: list[ResultCheck]) -> None:
        self.proxy, self.server, self.headers = proxy, server, headers
        self.params, self.checks = params, checks
        self.timeout = proxy.pipeline.timeout(server.tool)
        self.waited = 0.0

    async def __call__(self, idempotency_key: str) -> tuple[ToolResponse | None, Failure | None]:
        tool = self.server.tool
        # A fresh id per attempt: the server may still be running the one that timed out.
        msg_id = f"tether-{next(self.proxy.ids)}"
        body = orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                             "params": self.params})
        if tool.idempotency_header:
            self.headers[tool.idempotency_header] = idempotency_key
        t0 = time.perf_counter()
        try:
            up = await self.proxy.h.upstream.send("POST", self.server.url, self.headers, body,
                                                  self.timeout)
        except TransportError as exc:
            if exc.kind == "timeout" and exc.reached:
                self.proxy.cancel(self.server, self.headers, msg_id)
            return None, Failure(exc.kind, exc.reason, reached=exc.reached)
        finally:
            self.waited += time.perf_counter() - t0
        return judge(up.status, up.headers.get("content-type", ""), up.body, msg_id,
                     tool.verify, self.checks)
