"""A real MCP server, built with the official ``mcp`` SDK (Streamable HTTP), that fails in named,
repeatable ways: a TEST DOUBLE for the MCP servers an agent calls through the sidecar.

Tools (``GET /_hits`` counts the tools/call requests that reached each one):

    ok             text + structuredContent matching its outputSchema
    tool-error     a result with isError: true
    flaky          isError on its first call, then ok (per argument ``key``)
    rpc-error      a JSON-RPC error (the handler raises MCPError)
    slow           sleeps ``seconds`` (default 3) before answering: past the tool's timeout
    drift          structuredContent that does not match its own outputSchema
    empty          no content and no structuredContent
    destroy        destructiveHint: true; answers after ``delay`` seconds (default 0)
    secret         left out by the AgentTask's allowedTools in the tests

Run in a thread on 127.0.0.1 by :func:`serve_mcp` (uvicorn), stopped on exit.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import mcp.types as types
import uvicorn
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

OUTPUT = {"type": "object", "required": ["result"], "properties": {"result": {"type": "string"}}}
ARGS = {"type": "object", "properties": {"key": {"type": "string"},
                                         "seconds": {"type": "number"},
                                         "delay": {"type": "number"}}}


def _tool(name: str, output: bool = False, **hints: bool) -> types.Tool:
    return types.Tool(name=name, input_schema=ARGS, output_schema=OUTPUT if output else None,
                      annotations=types.ToolAnnotations(**hints) if hints else None)


READ = {"read_only_hint": True}
TOOLS = [_tool("ok", output=True, **READ), _tool("tool-error", **READ), _tool("flaky", **READ),
         _tool("rpc-error", **READ), _tool("slow", **READ), _tool("drift", output=True, **READ),
         _tool("empty", **READ), _tool("destroy", destructive_hint=True, read_only_hint=False),
         _tool("secret", **READ),
         # No annotations at all: the MCP spec's defaults make it a destructive write.
         _tool("unmarked")]


def _text(text: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=text)]


class FaultServer:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.destroying = threading.Event()  # set when a destroy call arrives
        self.flaky: Counter[str] = Counter()
        self.server = Server("faults", on_list_tools=self.list_tools, on_call_tool=self.call_tool)

    async def list_tools(self, ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(self, ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        name, args = params.name, params.arguments or {}
        self.hits[name] += 1
        if name == "ok":
            return types.CallToolResult(content=_text('{"result": "ok"}'),
                                        structured_content={"result": "ok"})
        if name == "tool-error":
            return types.CallToolResult(content=_text("backend down"), is_error=True)
        if name == "flaky":
            self.flaky[str(args.get("key"))] += 1
            if self.flaky[str(args.get("key"))] == 1:
                return types.CallToolResult(content=_text("try again"), is_error=True)
            return types.CallToolResult(content=_text("done"))
        if name == "rpc-error":
            raise MCPError(code=-32603, message="database unavailable")
        if name in ("slow", "unmarked"):
            await anyio.sleep(float(args.get("seconds", 3)))
            return types.CallToolResult(content=_text("late"))
        if name == "drift":
            return types.CallToolResult(content=_text("5"), structured_content={"result": 5})
        if name == "empty":
            return types.CallToolResult(content=[])
        if name == "destroy":
            self.destroying.set()
            await anyio.sleep(float(args.get("delay", 0)))
            return types.CallToolResult(content=_text(f"destroyed {args.get('key')}"))
        if name == "secret":
            return types.CallToolResult(content=_text("the secret"))
        raise MCPError(code=-32602, message=f"unknown tool {name}")

    def app(self) -> Any:
        async def hits(_: Request) -> JSONResponse:
            return JSONResponse(dict(self.hits))

        return self.server.streamable_http_app(custom_starlette_routes=[Route("/_hits", hits)])


@contextmanager
def serve_mcp() -> Iterator[tuple[str, FaultServer]]:
    """The server's MCP endpoint URL (``http://127.0.0.1:PORT/mcp``) and the double itself."""
    faults = FaultServer()
    sock = socket.socket()
    # uvicorn leaves Nagle on for the sockets it is given: each SSE answer waited ~40 ms for the
    # client's delayed ACK. Accepted sockets inherit the option.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(faults.app(), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)  # uvicorn offers no event to wait on; it sets a flag once listening
    if not server.started:
        raise RuntimeError("the MCP test server did not start")
    try:
        yield f"http://127.0.0.1:{port}/mcp", faults
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main() -> None:
    """``python -m tests.sidecar._mcp_server --port N``: serve until killed (the benchmark runs
    it in its own process); prints ``mcp-faults ready port=P`` once listening."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.sidecar._mcp_server")
    p.add_argument("--port", type=int, default=0)
    port = p.parse_args().port
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as in serve_mcp
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(FaultServer().app(), log_level="warning",
                                           lifespan="on"))

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)  # uvicorn sets a flag once listening, no event
        print(f"mcp-faults ready port={sock.getsockname()[1]}", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
