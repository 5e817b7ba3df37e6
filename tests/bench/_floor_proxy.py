"""The floor: a bare pass-through proxy with no accounting, spans or metrics.

    python -m tests.bench._floor_proxy --upstream http://127.0.0.1:P/v1 --port 0

Same stack as the sidecar — an aiohttp server, the sidecar's own outbound transport
(:func:`tether_sidecar.upstream.make_upstream`, configured as the sidecar configures it), uvloop —
and nothing else: read the body, POST it upstream, relay the bytes. The gap between it and direct
calls is what the HTTP stack costs; the gap between it and the sidecar is what tether's own
per-call work costs. It is a reference for the benchmark, not a product.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from tether_sidecar.settings import Settings
from tether_sidecar.upstream import make_upstream


async def _serve(upstream: str, port: int) -> None:
    cap = Settings.model_fields["max_response_bytes"].default
    client = make_upstream(None, cap, {})  # the sidecar's defaults, no proxy
    url = upstream + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-floor"}

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        resp = await client.send("POST", url, headers, body, 600.0)
        return web.Response(body=resp.body, status=resp.status, content_type="application/json")

    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"bench-floor ready port={bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:P/v1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.upstream, args.port))
    else:
        uvloop.run(_serve(args.upstream, args.port))


if __name__ == "__main__":
    main()
