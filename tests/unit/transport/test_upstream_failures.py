"""Keep-alive reuse, a server closing kept-alive connections, and every failure mapped to a
TransportError that says whether the request may have reached the server."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tether_examples._serve import serving
from tether_sidecar.proxies import Proxies
from tether_sidecar.upstream import AiohttpUpstream, TransportError

from .servers import Handler, app_of, echo, ok, raw_server, read_request


@pytest.fixture
async def up() -> AsyncIterator[AiohttpUpstream]:
    client = AiohttpUpstream(ssl.create_default_context(), Proxies())
    yield client
    await client.aclose()


async def test_keep_alive_reuses_one_connection(up: AiohttpUpstream) -> None:
    peers: set[int] = set()
    async with serving(app_of({"/": echo}, peers)) as url:
        for i in range(5):
            assert (await up.send("POST", url, {}, b"%d" % i, 5)).body == b"%d" % i
        stream = await up.stream("POST", url, {}, b"s", 5)
        assert await stream.read() == b"s"
        await stream.aclose()
        assert (await up.send("POST", url, {}, b"again", 5)).body == b"again"
    assert len(peers) == 1


async def test_connection_close_is_honoured(up: AiohttpUpstream) -> None:
    peers: set[int] = set()

    async def h(req: web.Request) -> web.Response:
        resp = web.Response(text="bye")
        resp.force_close()
        return resp

    async with serving(app_of({"/": h}, peers)) as url:
        for _ in range(3):
            assert (await up.send("GET", url, {}, b"", 5)).body == b"bye"
    assert len(peers) == 3


def stale_after_first() -> Handler:
    """Answers the first request of the first connection, then reads a second one and closes
    without a byte: the server closing a keep-alive connection as the client reuses it."""
    seen: list[bytes] = []

    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        if len(seen) == 1:
            writer.write(ok(b"first"))
            seen.append(await read_request(reader))
            return
        writer.write(ok(b"fresh"))
        await reader.read()
    return h


async def test_stale_connection_is_retried_once_for_idempotent(up: AiohttpUpstream) -> None:
    async with raw_server(stale_after_first()) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("GET", url, {}, b"", 5)).body == b"first"
        assert (await up.send("PUT", url, {}, b"doc", 5)).body == b"fresh"
    assert len(conns) == 2


async def test_stale_connection_is_reported_not_retried_for_post(up: AiohttpUpstream) -> None:
    """A POST may have been read before the close: sending it again is the retry policy's
    decision (side effects, idempotency key), so it is reported as possibly reached."""
    async with raw_server(stale_after_first()) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("POST", url, {}, b"a", 5)).body == b"first"
        with pytest.raises(TransportError) as err:
            await up.send("POST", url, {}, b"b", 5)
        assert (await up.send("POST", url, {}, b"c", 5)).body == b"fresh"  # the next works
    assert (err.value.kind, err.value.reached, len(conns)) == ("connection", True, 2)


async def until_idle_connections_closed(up: AiohttpUpstream) -> None:
    """Until the client has read the server's FIN on its pooled connection (bounded: 2 s)."""
    connector = up._client().connector
    assert connector is not None
    for _ in range(400):
        pooled = [proto for conns in connector._conns.values() for proto, _ in conns]
        if not any(proto.is_connected() for proto in pooled):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the client never saw the server close its idle connection")


async def test_idle_connection_closed_by_server_is_not_used(up: AiohttpUpstream) -> None:
    closed = asyncio.Event()

    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"once"))  # keep-alive by default, then closes anyway while idle
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with raw_server(h) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("POST", url, {}, b"", 5)).body == b"once"
        await closed.wait()
        await until_idle_connections_closed(up)
        assert (await up.send("POST", url, {}, b"", 5)).body == b"once"
    assert len(conns) == 2


async def test_refused(up: AiohttpUpstream) -> None:
    with socket.socket() as bound:  # bound, not listening: the kernel answers with a reset
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(TransportError) as err:
            await up.send("POST", f"http://127.0.0.1:{bound.getsockname()[1]}/", {}, b"", 5)
    assert (err.value.kind, err.value.reached) == ("connection_refused", False)


async def test_timeout_while_connecting(up: AiohttpUpstream) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, SYNs go unanswered
        port, fillers = listener.getsockname()[1], []
        try:
            for _ in range(8):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.3)
                try:
                    filler.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            for call in (up.send, up.stream):
                with pytest.raises(TransportError) as err:
                    await call("POST", f"http://127.0.0.1:{port}/", {}, b"x", 0.3)
                assert (err.value.kind, err.value.reached) == ("timeout", False)
        finally:
            for filler in fillers:
                filler.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # reads everything, answers nothing


async def test_timeout_in_tls_handshake_is_a_connect_timeout(up: AiohttpUpstream) -> None:
    async with raw_server(silent) as (port, _):
        with pytest.raises(TransportError) as err:
            await up.send("GET", f"https://127.0.0.1:{port}/", {}, b"", 0.3)
    assert (err.value.kind, err.value.reached) == ("timeout", False)


async def test_timeout_after_the_request_was_sent(up: AiohttpUpstream) -> None:
    async with raw_server(silent) as (port, _):
        for call in (up.send, up.stream):
            with pytest.raises(TransportError) as err:
                await call("POST", f"http://127.0.0.1:{port}/", {}, b"x", 0.3)
            assert (err.value.kind, err.value.reached) == ("timeout", True)


async def test_timeout_covers_the_body(up: AiohttpUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")

    async with raw_server(h) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(TransportError) as err:
            await up.send("GET", url, {}, b"", 0.3)
        assert (err.value.kind, err.value.reached) == ("timeout", True)
        stream = await up.stream("GET", url, {}, b"", 0.3)  # headers in time: a stream opens
        with pytest.raises(TransportError) as err:
            await stream.read()  # and then nothing for longer than the timeout
        await stream.aclose()
    assert (err.value.kind, err.value.reached) == ("timeout", True)


BROKEN = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
]


@pytest.mark.parametrize("data", BROKEN)
async def test_broken_responses(up: AiohttpUpstream, data: bytes) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()

    async with raw_server(h) as (port, _):
        for call in ("send", "stream"):
            with pytest.raises(TransportError) as err:
                if call == "send":
                    await up.send("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)
                else:
                    stream = await up.stream("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)
                    try:
                        await stream.read()
                    finally:
                        await stream.aclose()
            assert (err.value.kind, err.value.reached) == ("connection", True)
