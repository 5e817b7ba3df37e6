"""The floor: a bare aiohttp pass-through proxy with no accounting, spans or metrics.

    python -m tests.bench._floor_proxy --upstream http://127.0.0.1:P/v1 --port 0

Same stack as the sidecar (aiohttp server, aiohttp client session, uvloop), nothing else: read the
body, POST it upstream, relay the answer. The gap between it and direct calls is what the HTTP
stack costs; the gap between it and the sidecar is what tether's own per-call work costs. It is a
reference for the benchmark, not a product.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web


async def _serve(upstream: str, port: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                    skip_auto_headers=("User-Agent",))
    url = upstream + "/chat/completions"

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(url, data=body,
                                headers={"Content-Type": "application/json",
                                         "Authorization": "Bearer sk-floor"}) as resp:
            data = await resp.read()
            return web.Response(body=data, status=resp.status, content_type="application/json")

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
        await session.close()


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
