"""The sidecar's outbound transport against real servers on 127.0.0.1: framing, trailers,
decoding, the response cap, keep-alive, streaming, and failures mapped to TransportError.

Every test runs on the default asyncio loop and on uvloop (the sidecar's), whose transports
differ (the loop factories in conftest.py)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tether_examples._serve import serving
from tether_sidecar.proxies import Proxies
from tether_sidecar.upstream import AiohttpUpstream, TransportError

from .servers import app_of, echo, ok, raw_server, read_request

CAP = 64 * 1024


@pytest.fixture
async def up() -> AsyncIterator[AiohttpUpstream]:
    client = AiohttpUpstream(ssl.create_default_context(), Proxies(), max_response_bytes=CAP)
    yield client
    await client.aclose()


# --- framing ---------------------------------------------------------------------------------

async def test_request_as_sent(up: AiohttpUpstream) -> None:
    got: dict[str, str] = {}

    async def h(req: web.Request) -> web.Response:
        got.update({k.lower(): v for k, v in req.headers.items()}, body=(await req.text()))
        return web.Response(body=b"x" * 5000, headers={"X-Reply": "Yes"})

    async with serving(app_of({"/v1/c": h})) as url:
        resp = await up.send("POST", url + "/v1/c?a=1", {"X-Caller": "me"}, b"hello", 5)
    assert (resp.status, resp.body, resp.headers["x-reply"]) == (200, b"x" * 5000, "Yes")
    assert got["host"] == url.removeprefix("http://")
    assert (got["content-length"], got["body"], got["x-caller"]) == ("5", "hello", "me")
    assert got["accept-encoding"] == "gzip, deflate"  # what decoding.py can undo, no more
    assert "content-type" not in got and "user-agent" not in got and "cookie" not in got


async def test_chunked_body_is_reassembled(up: AiohttpUpstream) -> None:
    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        for i in range(50):
            await resp.write(b"%03d," % i)
        await resp.write_eof()
        return resp

    async with serving(app_of({"/": h})) as url:
        resp = await up.send("GET", url, {}, b"", 5)
    assert resp.body == b"".join(b"%03d," % i for i in range(50))


async def test_trailers_do_not_leak_into_the_next_response(up: AiohttpUpstream) -> None:
    """The defect of the removed client: a chunked response's trailer fields (here even a
    Content-Encoding) became headers of the next response on the same connection."""
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, "
                     b"Content-Encoding\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\n"
                     b"Content-Encoding: gzip\r\n\r\n")
        while await read_request(reader):
            writer.write(ok(b"plain", b"X-Second: 1\r\n"))

    async with raw_server(h) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        first = await up.send("POST", url, {}, b"{}", 5)
        second = await up.send("POST", url, {}, b"{}", 5)
        stream = await up.stream("POST", url, {}, b"{}", 5)
        streamed = await stream.read()
        await stream.aclose()
    assert first.body == b"hello" and "x-sum" not in first.headers
    assert (second.body, streamed) == (b"plain", b"plain")
    assert "x-sum" not in second.headers and "content-encoding" not in second.headers
    assert "x-sum" not in stream.headers and "content-encoding" not in stream.headers
    assert len(conns) == 1  # the same connection each time: the case that leaked


async def test_repeated_headers_are_kept(up: AiohttpUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}", b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nLink: </x>\r\n"
                        b"link: </y>\r\n"))

    async with raw_server(h) as (port, _):
        resp = await up.send("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)
    assert resp.headers.getall("set-cookie") == ["a=1", "b=2"]
    assert resp.headers.getall("Link") == ["</x>", "</y>"]


NO_BODY = [("HEAD", 200), ("GET", 204), ("GET", 304)]


@pytest.mark.parametrize(("method", "status"), NO_BODY)
async def test_responses_without_body(up: AiohttpUpstream, method: str, status: int) -> None:
    async def h(req: web.Request) -> web.Response:
        if status == 200:
            return web.Response(body=b"x" * 100)  # HEAD: aiohttp sends Content-Length: 100
        return web.Response(status=status)

    async with serving(app_of({"/": h, "/next": echo})) as url:
        resp = await up.send(method, url + "/", {}, b"", 5)
        assert (resp.status, resp.body) == (status, b"")
        assert (await up.send("POST", url + "/next", {}, b"after", 5)).body == b"after"


# --- decoding and the cap --------------------------------------------------------------------

@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(up: AiohttpUpstream, coding: str) -> None:
    plain = b'{"choices": []}' * 500
    packed = gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)

    async def h(req: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": coding})

    async with serving(app_of({"/": h})) as url:
        resp = await up.send("GET", url, {}, b"", 5)
        stream = await up.stream("GET", url, {}, b"", 5)
        streamed = b"".join([c async for c in stream.chunks()])
        await stream.aclose()
    assert resp.body == streamed == plain
    for headers in (resp.headers, stream.headers):  # they described the encoded body
        assert "content-encoding" not in headers and "content-length" not in headers


BAD_BODIES = [
    (ok(gzip.compress(b"a" * 1000)[:-6], b"Content-Encoding: gzip\r\n"), "ends early"),
    (ok(b"abcd", b"Content-Encoding: gzip\r\n"), "cannot decode the gzip body"),
    (ok(b"ab", b"Content-Encoding: br\r\n"), "did not ask for"),
]


@pytest.mark.parametrize(("data", "says"), BAD_BODIES)
async def test_undecodable_bodies_are_errors(up: AiohttpUpstream, data: bytes, says: str
                                             ) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(data)

    async with raw_server(h) as (port, _):
        with pytest.raises(TransportError, match=says) as err:
            await up.send("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)
    assert (err.value.kind, err.value.reached) == ("connection", True)


OVERSIZED = [
    (ok(b"x" * (CAP + 1)), "Content-Length over the cap"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"4000\r\n" + b"x" * 0x4000 + b"\r\n" + b"4000\r\n" + b"y" * 0x4000 + b"\r\n"
     + b"4000\r\n" + b"z" * 0x4000 + b"\r\n" + b"4001\r\n" + b"w" * 0x4001 + b"\r\n0\r\n\r\n",
     "chunked, no length"),
    (ok(gzip.compress(b"0" * (4 * CAP)), b"Content-Encoding: gzip\r\n"), "small gzip, inflates"),
]


@pytest.mark.parametrize(("data", "case"), OVERSIZED, ids=[c for _, c in OVERSIZED])
async def test_oversized_body_is_refused_not_truncated(up: AiohttpUpstream, data: bytes,
                                                       case: str) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            writer.write(data if b"/big" in request else ok(b"small"))

    async with raw_server(h) as (port, _):
        with pytest.raises(TransportError) as err:
            await up.send("GET", f"http://127.0.0.1:{port}/big", {}, b"", 5)
        assert (await up.send("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)).body == b"small"
    assert (err.value.kind, err.value.reached) == ("too_large", True)
    assert f"over {CAP} bytes" in err.value.reason and "MAX_RESPONSE_BYTES" in err.value.reason


# --- streaming -------------------------------------------------------------------------------

async def test_sse_events_arrive_before_the_response_ends(up: AiohttpUpstream) -> None:
    go = asyncio.Event()

    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        await resp.write(b"data: one\n\n")
        await go.wait()  # the second event exists only once the client has seen the first
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp

    async with serving(app_of({"/": h})) as url:
        stream = await up.stream("POST", url, {}, b"{}", 5)
        assert (stream.status, stream.headers["content-type"]) == (200, "text/event-stream")
        chunks = stream.chunks()
        async with asyncio.timeout(5):
            assert await anext(chunks) == b"data: one\n\n"
            go.set()
            assert b"".join([c async for c in chunks]) == b"data: two\n\n"
        await stream.aclose()


async def test_a_stream_is_not_capped(up: AiohttpUpstream) -> None:
    blob = bytes(range(256)) * 1024  # 256 KiB, four times the cap of a whole body

    async def h(req: web.Request) -> web.Response:
        return web.Response(body=blob)

    async with serving(app_of({"/": h})) as url:
        stream = await up.stream("GET", url, {}, b"", 5)
        got = bytearray()
        async for chunk in stream.chunks():
            got += chunk
        await stream.aclose()
    assert bytes(got) == blob


async def test_stream_closed_early_closes_its_connection(up: AiohttpUpstream) -> None:
    peers: set[int] = set()

    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(req)
        await resp.write(b"first")
        await asyncio.Event().wait()  # never finishes on its own
        return resp

    async with serving(app_of({"/": h, "/e": echo}, peers)) as url:
        stream = await up.stream("GET", url, {}, b"", 5)
        assert await anext(stream.chunks()) == b"first"
        await stream.aclose()
        assert (await up.send("POST", url + "/e", {}, b"x", 5)).body == b"x"
    assert len(peers) == 2
