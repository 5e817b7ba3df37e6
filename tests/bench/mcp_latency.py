"""Added latency of the sidecar per MCP ``tools/call``, against the same call direct to the server.

    python -m tests.bench.mcp_latency [--calls N] [--block B]

Starts the MCP test double (tests/sidecar/_mcp_server.py: the official SDK's Streamable HTTP
server, SSE answers, its own process), the sidecar with that server declared as an MCP tool
(spans, metrics and the journal on, as in production), and a bare pass-through on the sidecar's
own stack (``--serve-floor``: an aiohttp server and the sidecar's outbound transport, relaying
bytes and the session headers, nothing else), all on 127.0.0.1. Opens one MCP session direct to
the server, one through the floor and one through ``/mcp/{name}``, and from this one client
process, with the same keep-alive HTTP client for all, calls the ``ok`` tool (its result has
structuredContent checked against its outputSchema) one call at a time, N calls each, in
rotating blocks so drift on a shared machine lands on all alike. Sidecar minus floor is what
tether's own MCP work costs; floor minus direct is the extra HTTP hop. Prints the table and writes
``_out/bench/mcp_latency.json``. Goal (issue #12): added p50 ≤ 1 ms. Figures:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.sidecar.proc import Sidecar, task_doc

from ._measure import summary

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "mcp_latency.json"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def start_server(*cmd: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", *(cmd or ("tests.sidecar._mcp_server",))],
                            stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    if "ready port=" not in line:
        proc.kill()
        raise RuntimeError(f"the MCP server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line.split('port=')[1].strip()}/mcp"


class Session:
    """One MCP session over a keep-alive client: initialize, then tools/call by hand."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client, self.url, self.headers = client, url, dict(HEADERS)
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}
        r = client.post(url, json=init, headers=self.headers)
        r.raise_for_status()
        self.headers |= {"mcp-session-id": r.headers["mcp-session-id"],
                         "mcp-protocol-version": "2025-06-18"}
        client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=self.headers).raise_for_status()
        self.n = 0

    def call(self) -> int:
        """One tools/call, in ns; fails loudly on anything but a good result."""
        self.n += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.n, "method": "tools/call",
                           "params": {"name": "ok", "arguments": {}}}).encode()
        t0 = time.perf_counter_ns()
        r = self.client.post(self.url, content=body, headers=self.headers)
        took = time.perf_counter_ns() - t0
        if r.status_code != 200 or b'"isError":true' in r.content or b'"ok"' not in r.content:
            raise RuntimeError(f"bad answer from {self.url}: {r.status_code} {r.text[:300]}")
        return took


def measure(sessions: dict[str, Session], calls: int, block: int,
            warmup: int) -> dict[str, list[int]]:
    for session in sessions.values():
        for _ in range(warmup):
            session.call()
    lat: dict[str, list[int]] = {name: [] for name in sessions}
    order = list(sessions.items())
    for r in range(-(-calls // block)):
        for name, session in order[r % len(order):] + order[:r % len(order)]:
            lat[name] += [session.call() for _ in range(block)]
    return lat


def serve_floor(upstream: str) -> None:
    """The floor, in this process: relay each POST's bytes and the MCP headers, nothing more."""
    import asyncio

    from aiohttp import web

    from tether_sidecar.settings import Settings
    from tether_sidecar.upstream import make_upstream

    async def run() -> None:
        client = make_upstream(None, Settings.model_fields["max_response_bytes"].default, {})

        async def relay(request: web.Request) -> web.Response:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() in ("accept", "content-type") or k.lower().startswith("mcp-")}
            up = await client.send("POST", upstream, headers, await request.read(), 30.0)
            out = {k: v for k, v in up.headers.items()
                   if k.lower() == "content-type" or k.lower().startswith("mcp-")}
            return web.Response(body=up.body, status=up.status, headers=out)

        app = web.Application()
        app.router.add_post("/mcp", relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"mcp-floor ready port={port}", flush=True)
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(run())


def report(lat: dict[str, list[int]], sc: Sidecar) -> dict[str, Any]:
    stats = {k: summary(v) for k, v in lat.items()}
    for k, v in lat.items():
        q = statistics.quantiles([x / 1e6 for x in v], n=4)
        stats[k]["iqr"] = q[2] - q[0]
    total = sc.metric("tether_call_overhead_seconds_sum", kind="tool")
    count = sc.metric("tether_call_overhead_seconds_count", kind="tool")
    return {"stats_ms": stats,
            "added_ms": {p: stats["sidecar"][p] - stats["direct"][p]
                         for p in ("min", "p50", "p90", "p99", "mean")},
            "own_work_ms": {p: stats["sidecar"][p] - stats["floor"][p]
                            for p in ("min", "p50", "p90", "p99", "mean")},
            "self_reported_overhead_mean_ms": 1e3 * total / count if count else None,
            "tool_calls_ok": sc.metric("tether_tool_calls_total", outcome="ok"),
            "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()}}


def run(calls: int = 2000, block: int = 50, warmup: int = 100) -> dict[str, Any]:
    """The whole measurement (servers, sidecar, sessions, calls), as a JSON-able dict; also
    called by tests/bench/issue12.py, which runs it beside the footprint."""
    load_start = os.getloadavg()
    server, url = start_server()
    floor, floor_url = start_server("tests.bench.mcp_latency", "--serve-floor", url)
    try:
        with tempfile.TemporaryDirectory() as work:
            doc = task_doc("http://127.0.0.1:9", tools=[{"name": "bench", "mcp": {"url": url}}])
            sc = Sidecar(Path(work), doc, env={"OTEL_BSP_SCHEDULE_DELAY": "5000"}).start(60)
            try:
                with httpx.Client(timeout=30) as client:
                    sessions = {"direct": Session(client, url),
                                "floor": Session(client, floor_url),
                                "sidecar": Session(client, f"{sc.url}/mcp/bench")}
                    lat = measure(sessions, calls, block, warmup)
                result = report(lat, sc)
            finally:
                sc.stop()
    finally:
        for proc in (floor, server):
            proc.kill()
            proc.wait(10)
    result["machine"]["loadavg_start"] = load_start
    return result


def print_table(result: dict[str, Any]) -> None:
    cols = ("min", "p50", "p90", "p99", "mean")
    print(f"{'path':8} " + " ".join(f"{c:>8}" for c in (*cols, "stdev", "iqr")) + "  ms")
    for name, s in result["stats_ms"].items():
        print(f"{name:8} " + " ".join(f"{s[k]:8.3f}" for k in (*cols, "stdev", "iqr")))
    added, own = result["added_ms"], result["own_work_ms"]
    print("added    " + " ".join(f"{added[c]:8.3f}" for c in cols) + "   (sidecar - direct)")
    print("own work " + " ".join(f"{own[c]:8.3f}" for c in cols) + "   (sidecar - floor)")
    print(f"sidecar's own account: {result['self_reported_overhead_mean_ms']:.3f} ms mean; "
          f"load {result['machine']['loadavg_start'][0]:.1f} at start on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.mcp_latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000, help="tools/call per path")
    p.add_argument("--block", type=int, default=50, help="calls per path before switching")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--serve-floor", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_floor:
        return serve_floor(args.serve_floor)
    result = run(args.calls, args.block, args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_table(result)
    added, own = result["added_ms"], result["own_work_ms"]
    print(json.dumps({"added_p50_ms": added["p50"], "own_work_p50_ms": own["p50"],
                      "n": result["stats_ms"]["direct"]["n"]}))


if __name__ == "__main__":
    main()
