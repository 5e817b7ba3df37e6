"""The completion benchmark's tool server: a TEST DOUBLE for the two tools a bench task calls.

It does no real work: it answers data derived from the request's key and injects the fault
mix (`bench_faults`), deterministically from (seed, task, step, attempt). Routes (POST, JSON
body ``{"key": "s<seed>-t<task>-<r|p><step>"}``); ``{run}`` names a run, whose attempt counters
are its own, so the three arms (and the cluster run) share one server without sharing attempts:

- ``/bench/{run}/lookup`` — a record: 200 ``{"key": K, "value": <int>}``
- ``/bench/{run}/read_page`` — a page: 200 ``{"key": K, "text": <pageChars characters>}``

A faulty attempt gets instead: 5xx or 403 ``{"error": ...}``; 429 with ``Retry-After``; the
answer after ``toolTimeoutSeconds + 1`` s (timeout); a TCP RST (connection_reset); 200 with an
empty body, a truncated JSON body (malformed_body), the key alone (missing_field), or the
value as a string / the text as a list (schema_drift).

Control: ``GET /_bench/{run}/faults`` → ``{"<task>": [[step, attempt, kind], ...]}``: every
fault injected for that run, so a benchmark can say which arm met what. ``POST /_bench/reset``
clears all runs.

CLI: ``python -m tether_examples.bench_tools --mix tests/bench/completion_mix.yaml --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from aiohttp import web

from tether_examples._serve import LOOPBACK, run_until_signalled
from tether_examples.bench_faults import (
    Fault,
    FaultMix,
    Key,
    fault_for,
    load_mix,
    page_text,
    parse_key,
    record_value,
)

__all__ = ["STATE", "ToolState", "build_app", "main"]


@dataclass
class ToolState:
    mix: FaultMix
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (run, key)
    faults: dict[str, dict[str, list[list[object]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))


STATE = web.AppKey("bench_tool_state", ToolState)


def build_app(mix: FaultMix) -> web.Application:
    app = web.Application()
    app[STATE] = ToolState(mix)
    app.router.add_post("/bench/{run}/lookup", _tool)
    app.router.add_post("/bench/{run}/read_page", _tool)
    app.router.add_get("/_bench/{run}/faults", _faults)
    app.router.add_post("/_bench/reset", _reset)
    return app


async def _tool(request: web.Request) -> web.StreamResponse:
    state, run = request.app[STATE], request.match_info["run"]
    try:
        text = (await request.json())["key"]
    except (ValueError, KeyError, TypeError):
        return _error(400, 'the body must be JSON {"key": "s<seed>-t<task>-<r|p><step>"}')
    key = parse_key(str(text))
    wanted = "record" if request.path.endswith("/lookup") else "page"
    if key is None or key.kind != wanted:
        return _error(404, f"no {wanted} {text!r}: use a key of the task's {wanted} steps")
    attempt = state.attempts[(run, str(key))]
    state.attempts[(run, str(key))] += 1
    fault = fault_for(state.mix, key.seed, key.task, key.step, attempt)
    if fault is None:
        return web.json_response(_good(key, state.mix))
    state.faults[run][str(key.task)].append([key.step, attempt, fault.kind])
    return await _faulty(request, fault, key, state.mix)


def _good(key: Key, mix: FaultMix) -> dict[str, object]:
    if key.kind == "record":
        return {"key": str(key), "value": record_value(str(key))}
    return {"key": str(key), "text": page_text(str(key), int(mix.tasks["pageChars"]))}


async def _faulty(request: web.Request, fault: Fault, key: Key,
                  mix: FaultMix) -> web.StreamResponse:
    good = _good(key, mix)
    if fault.kind == "rate_limit":
        return _error(429, "rate limited", {"Retry-After": str(fault.retry_after or 1)})
    if fault.kind == "timeout":
        await asyncio.sleep(mix.tool_timeout + 1)
        return web.json_response(good)
    if fault.kind == "connection_reset":
        _reset_connection(request)
    if fault.kind == "empty_body":
        return web.Response(body=b"", content_type="application/json")
    if fault.kind == "malformed_body":
        return web.Response(text=json.dumps(good)[:20], content_type="application/json")
    if fault.kind == "missing_field":
        return web.json_response({"key": str(key)})
    if fault.kind == "schema_drift":
        drifted = ({"value": f"{good['value']:,} units"} if key.kind == "record"
                   else {"text": [good["text"]]})
        return web.json_response({"key": str(key), **drifted})
    return _error(fault.status(key.step), f"{fault.kind} on {key}")


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:  # SO_LINGER 0: close() sends RST, the client sees a reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp's own "client went away": no response is written


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.get(request.match_info["run"], {}))


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.attempts.clear()
    state.faults.clear()
    return web.json_response({"reset": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether_examples.bench_tools",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", required=True, help="the fault mix YAML")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port; 0 picks a free one")
    args = parser.parse_args(argv)
    run_until_signalled(build_app(load_mix(args.mix)), args.host, args.port)


if __name__ == "__main__":
    main()
