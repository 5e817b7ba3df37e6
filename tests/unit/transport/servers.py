"""Real servers on 127.0.0.1 for the transport tests: raw asyncio ones where the upstream must
misbehave (framing, trailers, stale connections, hangs), aiohttp apps for well-behaved ones,
and a tiny proxy that speaks CONNECT and forward-proxy HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler, tls: ssl.SSLContext | None = None
                     ) -> AsyncIterator[tuple[int, list[int]]]:
    """Yields (port, connections); each accepted connection appends to the list."""
    conns: list[int] = []
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task[None]] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)  # type: ignore[arg-type]
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away: what several tests make it do
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], conns
    finally:
        server.close()
        for writer in writers:  # handlers waiting to read see the end and return
            writer.transport.abort()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and Content-Length body; b"" when the client closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


def app_of(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
           peers: set[int] | None = None) -> web.Application:
    """An aiohttp app; ``peers`` collects the client ports seen (one per connection)."""
    app = web.Application()
    for path, fn in routes.items():
        async def wrapped(req: web.Request, fn: Callable[..., Awaitable[web.StreamResponse]] = fn
                          ) -> web.StreamResponse:
            if peers is not None and req.transport is not None:
                peers.add(req.transport.get_extra_info("peername")[1])
            return await fn(req)
        app.router.add_route("*", path, wrapped)
    return app


async def echo(req: web.Request) -> web.Response:
    return web.Response(body=await req.read())


@dataclass
class ProxyLog:
    """What the proxy saw: request lines (CONNECT host:port, or an absolute-form request) and
    the Proxy-Authorization values."""

    lines: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@asynccontextmanager
async def proxy_server(refuse: int | None = None) -> AsyncIterator[tuple[int, ProxyLog]]:
    """CONNECT tunnels (or ``refuse`` with that status) and plain forward proxying, one
    request per connection for the latter (it answers ``Connection: close``)."""
    log = ProxyLog()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        if not head:
            return
        first, *fields = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        log.lines.append(first)
        log.auth.append(next((f.split(":", 1)[1].strip() for f in fields
                              if f.lower().startswith("proxy-authorization:")), None))
        method, target, _ = first.split(" ")
        if method == "CONNECT":
            if refuse is not None:
                writer.write(b"HTTP/1.1 %d Refused\r\nContent-Length: 0\r\n\r\n" % refuse)
                return
            host, port = target.rsplit(":", 1)
            up_r, up_w = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            return
        body = f"proxied {method} {target}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()

    async with raw_server(handle) as (port, _):
        yield port, log
