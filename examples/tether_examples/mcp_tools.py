"""An MCP tool server for the Agents-SDK reference agent: a TEST DOUBLE for the tools of an
incident investigation, built with the official ``mcp`` SDK (``MCPServer``, Streamable HTTP).

Tools (all answer from fixed data; none does real work):

- ``search_incidents(query)`` — read-only: the incidents that match.
- ``read_report(incident)`` — read-only: the report of one incident.
- ``check_status(service)`` — read-only but not repeatable: each check is numbered (``check
  #n``), as a live reading differs from one call to the next. An agent that re-runs a step it
  had already done (a resume that lost its checkpoint) sees a new number.
- ``open_ticket(title)`` — ``destructiveHint: true``: records a side effect and answers the new
  ticket's id (``TCK-<n>``), ``--ticket-delay`` seconds later (default 0): the ticket exists
  while its caller still waits, as with a slow backend. The harness must never call it twice for
  one task.

Control routes (not MCP): ``GET /_effects`` → ``{"tickets": [titles], "calls": {tool: n}}``
(every ``tools/call`` that reached a tool); ``POST /_reset`` clears both.

CLI: ``tether-mcp-tools --port N [--host 127.0.0.1] [--ticket-delay S]`` prints ``listening on http://HOST:PORT``
(the MCP endpoint is ``/mcp`` under it) and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tether_examples._serve import LOOPBACK

__all__ = ["ToolState", "build_server", "main"]

INCIDENTS = {
    1: {"title": "Payment outage", "service": "payments", "date": "2026-11-23",
        "report": "Root cause: the TLS certificate of the payment gateway expired at 02:14 UTC; "
                  "renewal was manual and missed."},
    2: {"title": "Slow checkout", "service": "checkout", "date": "2026-11-20",
        "report": "Root cause: a cache node ran out of memory; checkout fell back to the "
                  "database."},
}
READ_ONLY = ToolAnnotations(read_only_hint=True)
# A live reading: read-only, but a second call gives another answer.
LIVE_READING = ToolAnnotations(read_only_hint=True, idempotent_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)


@dataclass
class ToolState:
    """What the tools did: calls per tool and the tickets opened (the side effects)."""

    calls: Counter[str] = field(default_factory=Counter)
    tickets: list[str] = field(default_factory=list)
    ticket_delay: float = 0.0  # seconds open_ticket waits after opening, before it answers

    def reset(self) -> None:
        self.calls.clear()
        self.tickets.clear()


def build_server(state: ToolState) -> MCPServer:
    """The MCP server; its tools record what they do in `state`."""
    server = MCPServer("incident-tools")

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def search_incidents(query: str) -> str:
        """Incidents whose title or service contains the query's words (case-insensitive)."""
        state.calls["search_incidents"] += 1
        words = query.lower().split()
        found = [f"#{n} {i['title']} ({i['service']}, {i['date']})"
                 for n, i in INCIDENTS.items()
                 if any(w in f"{i['title']} {i['service']}".lower() for w in words)]
        return "\n".join(found) or "no incident matches"

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def read_report(incident: int) -> str:
        """The post-incident report of one incident, by number."""
        state.calls["read_report"] += 1
        if incident not in INCIDENTS:
            raise ValueError(f"no incident #{incident}; search_incidents lists them")
        return str(INCIDENTS[incident]["report"])

    @server.tool(annotations=LIVE_READING, structured_output=False)
    def check_status(service: str) -> str:
        """The current health of a service, as a numbered check."""
        state.calls["check_status"] += 1
        return f"{service}: healthy (check #{state.calls['check_status']})"

    @server.tool(annotations=DESTRUCTIVE, structured_output=False)
    async def open_ticket(title: str) -> str:
        """Open a follow-up ticket. Not undoable: each call opens a new ticket."""
        state.calls["open_ticket"] += 1
        state.tickets.append(title)
        ticket = f"TCK-{len(state.tickets)}"
        await asyncio.sleep(state.ticket_delay)
        return ticket

    return server


def app(host: str = LOOPBACK, ticket_delay: float = 0.0) -> Any:
    """The Starlette app serving ``/mcp`` and the control routes. `host` is where it listens:
    on a loopback address the SDK accepts loopback Host headers only (DNS-rebinding guard);
    elsewhere (a pod, a bridge address) it accepts the Host its clients name."""
    state = ToolState(ticket_delay=ticket_delay)
    starlette = build_server(state).streamable_http_app(host=host)

    async def effects(_: Request) -> JSONResponse:
        return JSONResponse({"tickets": state.tickets, "calls": dict(state.calls)})

    async def reset(_: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    starlette.router.routes += [Route("/_effects", effects, methods=["GET"]),
                                Route("/_reset", reset, methods=["POST"])]
    return starlette


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tether-mcp-tools", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind; 0 picks a free one")
    parser.add_argument("--ticket-delay", type=float, default=0.0,
                        help="seconds open_ticket waits after opening a ticket (default 0)")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    # uvicorn leaves Nagle on for sockets it is handed: each SSE answer would wait ~40 ms for
    # the client's delayed ACK. Accepted sockets inherit the option.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    # Listening before uvicorn starts: a client that connects at once waits in the backlog,
    # so the line below can be printed now, with the real port.
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{f'[{host}]' if ':' in host else host}:{port}", flush=True)
    config = uvicorn.Config(app(args.host, args.ticket_delay), log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
