"""A fault-injecting tool server: a TEST DOUBLE for the HTTP tools an agent calls.

Each route fails in one specific, documented way, so a test can show that a tool proxy retries
what is retryable, gives up on what is not, and never reports a broken answer as success. It
does no real work. Every route accepts GET and POST (JSON body); stateful routes keep their
counters per key, the ``X-Test-Key`` header (default ``default``), so tests can share a server.

Routes:

- ``/ok`` — 200 ``{"result": "ok", "items": [...], "echo": <request JSON body or null>}``
- ``/status/{code}`` — that status (200-599) with ``{"error": "injected <code>"}``
- ``/flaky/{code}/{n}`` — the first n requests per key get ``code``, then 200 as ``/ok``
- ``/retry-after/{seconds}/{n}`` — the first n per key get 429 with ``Retry-After: <seconds>``
- ``/slow/{seconds}`` — sleeps, then 200 as ``/ok`` (for client timeouts)
- ``/reset`` — closes the TCP connection with a RST and no response at all
- ``/malformed`` — 200, ``application/json``, body ``{"result": [1, 2`` (truncated JSON)
- ``/empty`` — 200, ``application/json``, empty body
- ``/missing-field`` — 200 ``{"items": []}`` (no ``result``)
- ``/schema-drift`` — 200 ``{"result": 42, "items": "not-a-list"}``
- ``/side-effect[?delay=S]`` — records a side effect (the ``Idempotency-Key`` header value, or
  null) and answers 200; the delay is slept AFTER recording, so a client that times out has
  still caused the effect. A repeated Idempotency-Key records nothing and replays the first
  result with ``Idempotent-Replayed: true``.

Control: ``GET /_hits`` → ``{"hits": {path: count}, "side_effects": [...],
"idempotency_keys": [...]}`` (hits count every request that reached a non-control route,
``/reset`` and ``/slow`` included); ``POST /_reset`` clears all state.

CLI: ``python -m tether_examples.fault_tools --port N [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether_examples._serve import LOOPBACK, run_until_signalled

__all__ = ["STATE", "FaultState", "build_app", "main"]

ITEMS = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FaultState:
    """All server state; `POST /_reset` empties it."""

    hits: Counter[str] = field(default_factory=Counter)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)  # (path, X-Test-Key)
    side_effects: list[str | None] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key → body

    def clear(self) -> None:
        self.hits.clear()
        self.seen.clear()
        self.side_effects.clear()
        self.replies.clear()


STATE = web.AppKey("fault_state", FaultState)


def build_app() -> web.Application:
    """The fault-injecting tool server as an aiohttp app with fresh state."""
    app = web.Application(middlewares=[_count_hits])
    app[STATE] = FaultState()
    routes: list[tuple[str, _Handler]] = [
        ("/ok", _ok),
        ("/status/{code}", _status),
        ("/flaky/{code}/{n}", _flaky),
        ("/retry-after/{seconds}/{n}", _retry_after),
        ("/slow/{seconds}", _slow),
        ("/reset", _reset_connection),
        ("/malformed", _malformed),
        ("/empty", _empty),
        ("/missing-field", _missing_field),
        ("/schema-drift", _schema_drift),
        ("/side-effect", _side_effect),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
    app.router.add_get("/_hits", _hits)
    app.router.add_post("/_reset", _reset_state)
    return app


@web.middleware
async def _count_hits(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # Counted before the handler runs, so requests the client abandoned (timeouts) or the
    # server never answered (/reset) still show up.
    if not request.path.startswith("/_"):
        request.app[STATE].hits[request.path] += 1
    return await handler(request)


def _int(request: web.Request, name: str, low: int, high: int) -> int:
    text = request.match_info[name]
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad_request(f"{name} must be an integer in {low}..{high}, not {text!r}")
    return value


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise _bad_request(f"{what} must be a number of seconds in 0..3600, not {text!r}")
    return value


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_request(f"request body is not JSON: {exc}") from exc


def _seen_before(request: web.Request) -> int:
    """How many earlier requests this (path, X-Test-Key) made; counts this one."""
    key = (request.path, request.headers.get("X-Test-Key", "default"))
    state = request.app[STATE]
    state.seen[key] += 1
    return state.seen[key] - 1


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"result": "ok", "items": ITEMS, "echo": await _body(request)})


async def _status(request: web.Request) -> web.Response:
    code = _int(request, "code", 200, 599)
    if code in (204, 205, 304):  # HTTP forbids a body on these
        return web.Response(status=code)
    return web.json_response({"error": f"injected {code}"}, status=code)


async def _flaky(request: web.Request) -> web.Response:
    code, n = _int(request, "code", 200, 599), _int(request, "n", 0, 1_000_000)
    if _seen_before(request) < n:
        return web.json_response({"error": f"injected {code}"}, status=code)
    return await _ok(request)


async def _retry_after(request: web.Request) -> web.Response:
    seconds = request.match_info["seconds"]
    _seconds(seconds, "seconds")
    n = _int(request, "n", 0, 1_000_000)
    if _seen_before(request) < n:
        return web.json_response(
            {"error": "injected 429"}, status=429, headers={"Retry-After": seconds}
        )
    return await _ok(request)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(_seconds(request.match_info["seconds"], "seconds"))
    return await _ok(request)


async def _reset_connection(request: web.Request) -> web.Response:
    # Read the body first: a client still sending it would take the RST as a failed write,
    # and some (httpcore) then report a clean "disconnected" instead of a reset.
    await request.read()
    transport = request.transport
    if transport is None:  # the client is already gone; nothing left to reset
        raise asyncio.CancelledError
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER on with a zero timeout makes close() send RST instead of FIN, so the
        # client sees "connection reset by peer" rather than a clean end of stream.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Returning a response would make aiohttp try to write it (and log a status that was never
    # sent); ending the handler as cancelled is its own "client went away" path.
    raise asyncio.CancelledError


async def _malformed(request: web.Request) -> web.Response:
    return web.Response(body=b'{"result": [1, 2', content_type="application/json")


async def _empty(request: web.Request) -> web.Response:
    return web.Response(body=b"", content_type="application/json")


async def _missing_field(request: web.Request) -> web.Response:
    return web.json_response({"items": []})


async def _schema_drift(request: web.Request) -> web.Response:
    return web.json_response({"result": 42, "items": "not-a-list"})


async def _side_effect(request: web.Request) -> web.Response:
    state = request.app[STATE]
    delay = _seconds(request.query.get("delay", "0"), "delay")
    key = request.headers.get("Idempotency-Key")
    if key is not None and key in state.replies:
        return web.json_response(state.replies[key], headers={"Idempotent-Replayed": "true"})
    state.side_effects.append(key)
    reply = {"result": "done", "effect": len(state.side_effects), "idempotency_key": key}
    if key is not None:
        state.replies[key] = reply
    await asyncio.sleep(delay)
    return web.json_response(reply)


async def _hits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "hits": dict(state.hits),
            "side_effects": state.side_effects,
            "idempotency_keys": list(state.replies),
        }
    )


async def _reset_state(request: web.Request) -> web.Response:
    request.app[STATE].clear()
    return web.json_response({"reset": True})


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: serve the fault routes on a loopback port until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tether_examples.fault_tools",
        description="Fault-injecting tool server (a test double).",
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind; 0 picks a free one")
    args = parser.parse_args(argv)
    run_until_signalled(build_app(), args.host, args.port)


if __name__ == "__main__":
    main()
