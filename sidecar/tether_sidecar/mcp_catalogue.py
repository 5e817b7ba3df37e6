"""The tools an MCP server lists, per session, and which of them the AgentTask allows.

Filled from every ``tools/list`` answer the agent receives, and fetched by the sidecar itself in
the agent's session when a ``tools/call`` comes first. Keyed by ``Mcp-Session-Id`` ("" for a
server without sessions); bounded, the oldest session forgotten first, and a session the agent
ends with DELETE is forgotten at once.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from .mcp_verify import ToolInfo, info_of
from .mcp_wire import find_response, parse_reply
from .upstream import TransportError, Upstream

__all__ = ["Catalogue"]

log = logging.getLogger(__name__)
_MAX_SESSIONS = 64
_MAX_PAGES = 16
_ACCEPT = "application/json, text/event-stream"
_ids = itertools.count(1)


class Catalogue:
    def __init__(self, allowed: Iterable[str] | None) -> None:
        self.allowed = None if allowed is None else frozenset(allowed)
        self._sessions: OrderedDict[str, dict[str, ToolInfo]] = OrderedDict()

    def allows(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def filtered(self, session: str, result: dict[str, Any], first_page: bool) -> dict[str, Any]:
        """A tools/list result with the tools the task does not allow left out; the rest are
        remembered for the session (a first page starts the session's list afresh)."""
        tools = result.get("tools")
        if not isinstance(tools, list):
            return result
        kept = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)
                and self.allows(t["name"])]
        known = {} if first_page else dict(self._sessions.get(session, {}))
        known.update({t["name"]: info_of(t) for t in kept})
        self._sessions[session] = known
        self._sessions.move_to_end(session)
        while len(self._sessions) > _MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return {**result, "tools": kept}

    def knows(self, session: str) -> bool:
        return session in self._sessions

    def get(self, session: str, name: str) -> ToolInfo | None:
        return self._sessions.get(session, {}).get(name)

    def forget(self, session: str) -> None:
        self._sessions.pop(session, None)

    async def fetch(self, upstream: Upstream, url: str, session: str, headers: dict[str, str],
                    timeout: float) -> None:
        """The server's tools for the session, asked by the sidecar itself (the agent called a
        tool before listing, or one not listed). A failure leaves the catalogue as it was."""
        cursor: Any = None
        headers = {**headers, "accept": _ACCEPT, "content-type": "application/json"}
        for page in range(_MAX_PAGES):
            msg_id = f"tether-list-{next(_ids)}"
            body = orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/list",
                                 "params": {"cursor": cursor} if cursor else {}})
            try:
                up = await upstream.send("POST", url, headers, body, timeout)
                reply = find_response(parse_reply(up.headers.get("content-type", ""), up.body),
                                      msg_id)
            except (TransportError, ValueError) as exc:
                log.warning("MCP server %s: tools/list failed (%s); calls go on without its "
                            "output schemas and annotations", url, exc)
                return
            result = reply.get("result") if reply is not None else None
            if not isinstance(result, dict):
                log.warning("MCP server %s: tools/list answered %s", url, reply)
                return
            self.filtered(session, result, page == 0)
            cursor = result.get("nextCursor")
            if not cursor:
                return
