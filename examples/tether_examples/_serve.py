"""Run an aiohttp application on a loopback port: in a background thread or in the foreground.

Three entry points, one way of binding:

- `serving(app)` — async context manager for code that already owns an event loop; yields the
  base URL (``http://127.0.0.1:PORT``) once the socket is bound.
- `serve_in_thread(app)` — sync context manager for tests that drive a server with blocking
  clients (the official OpenAI/Anthropic SDKs, httpx): the server gets its own thread and event
  loop, the URL is yielded once bound, and leaving the block stops the server and re-raises
  anything that crashed it.
- `run_until_signalled(app, host, port)` — what the example CLIs call: prints one line
  ``listening on http://HOST:PORT`` (flushed, with the real port when 0 was asked for) and
  serves until SIGINT or SIGTERM.

Port 0 always means "let the kernel pick a free port"; callers read the real one from the URL
instead of guessing a free port in advance, which races with other tests.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web

__all__ = ["LOOPBACK", "run_until_signalled", "serve_in_thread", "serving"]

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serving(
    app: web.Application,
    host: str = LOOPBACK,
    port: int = 0,
    *,
    shutdown_timeout: float = 1.0,
) -> AsyncIterator[str]:
    """Serve `app` on `host:port` for the duration of the block; yield the base URL.

    `shutdown_timeout` (seconds) bounds how long stopping waits for handlers still running
    (a `/slow` request whose client already gave up, say); after it they are cancelled. The
    aiohttp default of 60 s would make every test that abandons a slow request wait that long.
    """
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield _base_url(runner)
    finally:
        await runner.cleanup()


def _base_url(runner: web.AppRunner) -> str:
    # addresses are socket names: (host, port) for IPv4, (host, port, flow, scope) for IPv6.
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def serve_in_thread(
    app: web.Application,
    host: str = LOOPBACK,
    port: int = 0,
    *,
    timeout: float = 10.0,
    shutdown_timeout: float = 1.0,
) -> Iterator[str]:
    """Serve `app` from a background thread with its own event loop; yield the base URL.

    `timeout` (seconds) bounds both start-up and stopping. On exit the server is stopped, the
    thread joined, and an exception that ended the server early is re-raised here so a test
    cannot pass against a server that died.
    """
    ready: Future[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = Future()
    finished: Future[None] = Future()

    async def run() -> None:
        stop = asyncio.Event()
        async with serving(app, host, port, shutdown_timeout=shutdown_timeout) as url:
            ready.set_result((url, asyncio.get_running_loop(), stop))
            await stop.wait()

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            if not ready.done():
                ready.set_exception(exc)
            finished.set_exception(exc)
        else:
            finished.set_result(None)

    thread = threading.Thread(target=target, name="tether-examples-server", daemon=True)
    thread.start()
    try:
        url, loop, stop = ready.result(timeout=timeout)
    except BaseException:
        thread.join(timeout)  # a failed start ends the thread; let it finish before raising
        raise
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"server at {url} did not stop within {timeout} s")
        finished.result()


def run_until_signalled(app: web.Application, host: str, port: int) -> None:
    """Serve `app` in the foreground until SIGINT or SIGTERM; announce the URL on stdout."""
    asyncio.run(_run_until_signalled(app, host, port))


async def _run_until_signalled(app: web.Application, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving(app, host, port) as url:
        # Scripts wait for this exact line to learn the port; flush so a pipe sees it now.
        print(f"listening on {url}", flush=True)
        await stop.wait()
