"""FastUpstream against real servers on 127.0.0.1: aiohttp apps for well-behaved upstreams, raw
asyncio servers where the upstream must misbehave (stale connections, resets, garbage, hangs).

Each test runs on the default asyncio loop (pytest-asyncio) and again on uvloop, which the sidecar
uses and whose transports differ (``test_again_on_uvloop`` at the end)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from tether_examples._serve import serving
from tether_sidecar.settings import Settings
from tether_sidecar.upstream import TransportError, make_upstream
from tether_sidecar.upstream_fast import FastUpstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def up() -> AsyncIterator[FastUpstream]:
    client = FastUpstream()
    yield client
    await client.aclose()


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(400):  # bounded: 2 s
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting until {what}")


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
        tasks.append(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
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
        await asyncio.gather(*tasks)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


async def aiohttp_app(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                      peers: set[int] | None = None) -> web.Application:
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


# --- framing ---------------------------------------------------------------------------------

async def test_request_headers_and_content_length_body(up: FastUpstream) -> None:
    got: dict[str, str] = {}

    async def h(req: web.Request) -> web.Response:
        got.update({k.lower(): v for k, v in req.headers.items()}, body=(await req.text()))
        return web.Response(body=b"x" * 5000, headers={"X-Reply": "Yes"})

    async with serving(await aiohttp_app({"/v1/c": h})) as url:
        resp = await up.send("POST", url + "/v1/c?a=1", {
            "X-Caller": "me", "Content-Length": "9", "Content-Type": "text/plain",
            "content-type": "application/json"}, b"hello", 5)
    assert (resp.status, resp.body, resp.headers["x-reply"]) == (200, b"x" * 5000, "Yes")
    assert got["host"] == url.removeprefix("http://")
    assert (got["content-length"], got["body"], got["x-caller"]) == ("5", "hello", "me")
    assert got["content-type"] == "application/json"  # one field, the later value
    assert got["accept-encoding"] == "identity"
    assert "connection" not in got and "transfer-encoding" not in got


async def test_caller_accept_encoding_is_kept(up: FastUpstream) -> None:
    async def h(req: web.Request) -> web.Response:
        return web.Response(text=req.headers["Accept-Encoding"])

    async with serving(await aiohttp_app({"/": h})) as url:
        assert (await up.send("GET", url, {"Accept-Encoding": "gzip"}, b"", 5)).body == b"gzip"


async def test_chunked_body_is_reassembled(up: FastUpstream) -> None:
    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        for i in range(50):
            await resp.write(b"%03d," % i)
        await resp.write_eof()
        return resp

    async with serving(await aiohttp_app({"/": h})) as url:
        resp = await up.send("GET", url, {}, b"", 5)
    assert resp.body == b"".join(b"%03d," % i for i in range(50))


async def test_close_delimited_body_and_no_reuse(up: FastUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")

    async with raw_server(h) as (port, conns):
        for _ in range(2):
            assert (await up.send("GET", f"http://127.0.0.1:{port}/", {}, b"", 5)).body \
                == b"until the end"
    assert len(conns) == 2


async def test_interim_responses_are_skipped(up: FastUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     + ok(b"final", b"X-Final: 1\r\n"))
        await reader.read()

    async with raw_server(h) as (port, _):
        resp = await up.send("POST", f"http://127.0.0.1:{port}/", {}, b"{}", 5)
    assert (resp.status, resp.body, resp.headers.get("link")) == (200, b"final", None)


NO_BODY = [("HEAD", 200), ("GET", 204), ("GET", 304)]


@pytest.mark.parametrize(("method", "status"), NO_BODY)
async def test_responses_without_body(up: FastUpstream, method: str, status: int) -> None:
    async def h(req: web.Request) -> web.Response:
        if status == 200:
            return web.Response(body=b"x" * 100)  # HEAD: aiohttp sends Content-Length: 100
        return web.Response(status=status)

    async with serving(await aiohttp_app({"/": h, "/next": echo})) as url:
        resp = await up.send(method, url + "/", {}, b"", 5)
        assert (resp.status, resp.body) == (status, b"")
        assert (await up.send("POST", url + "/next", {}, b"after", 5)).body == b"after"


# --- streaming -------------------------------------------------------------------------------

async def test_sse_events_arrive_before_the_response_ends(up: FastUpstream) -> None:
    go = asyncio.Event()

    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        await resp.write(b"data: one\n\n")
        await go.wait()  # the second event exists only once the client has seen the first
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp

    async with serving(await aiohttp_app({"/": h})) as url:
        stream = await up.stream("POST", url, {}, b"{}", 5)
        assert (stream.status, stream.headers["content-type"]) == (200, "text/event-stream")
        chunks = stream.chunks()
        async with asyncio.timeout(5):
            assert await anext(chunks) == b"data: one\n\n"
            go.set()
            assert b"".join([c async for c in chunks]) == b"data: two\n\n"
        await stream.aclose()


async def test_large_stream_with_slow_reader_is_complete(up: FastUpstream) -> None:
    blob = bytes(range(256)) * 8192  # 2 MiB: past the pause threshold

    async def h(req: web.Request) -> web.Response:
        return web.Response(body=blob)

    async with serving(await aiohttp_app({"/": h})) as url:
        stream = await up.stream("GET", url, {}, b"", 5)
        got = bytearray()
        async for chunk in stream.chunks():
            got += chunk
            await asyncio.sleep(0)
        await stream.aclose()
        assert bytes(got) == blob
        assert (await up.send("POST", url, {}, blob, 5)).body == blob


async def test_stream_closed_early_closes_its_connection(up: FastUpstream) -> None:
    peers: set[int] = set()

    async def h(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(req)
        await resp.write(b"first")
        await asyncio.Event().wait()  # never finishes on its own
        return resp

    async with serving(await aiohttp_app({"/": h, "/e": echo}, peers)) as url:
        stream = await up.stream("GET", url, {}, b"", 5)
        assert await anext(stream.chunks()) == b"first"
        await stream.aclose()
        assert (await up.send("POST", url + "/e", {}, b"x", 5)).body == b"x"
    assert len(peers) == 2


# --- the pool --------------------------------------------------------------------------------

async def test_keep_alive_reuses_one_connection(up: FastUpstream) -> None:
    peers: set[int] = set()
    async with serving(await aiohttp_app({"/": echo}, peers)) as url:
        for i in range(5):
            assert (await up.send("POST", url, {}, b"%d" % i, 5)).body == b"%d" % i
        stream = await up.stream("POST", url, {}, b"s", 5)
        assert await stream.read() == b"s"
        await stream.aclose()
        assert (await up.send("POST", url, {}, b"again", 5)).body == b"again"
    assert len(peers) == 1


async def test_connection_close_is_honoured(up: FastUpstream) -> None:
    peers: set[int] = set()

    async def h(req: web.Request) -> web.Response:
        resp = web.Response(text="bye")
        resp.force_close()
        return resp

    async with serving(await aiohttp_app({"/": h}, peers)) as url:
        for _ in range(3):
            assert (await up.send("GET", url, {}, b"", 5)).body == b"bye"
    assert len(peers) == 3


async def test_max_connections_bounds_calls_in_flight() -> None:
    gate, inflight, peak, peers = asyncio.Event(), [0], [0], set[int]()

    async def h(req: web.Request) -> web.Response:
        inflight[0] += 1
        peak[0] = max(peak[0], inflight[0])
        await gate.wait()
        inflight[0] -= 1
        return web.Response(text="ok")

    client = FastUpstream(max_connections=2)
    async with serving(await aiohttp_app({"/": h}, peers)) as url:
        calls = [asyncio.create_task(client.send("GET", url, {}, b"", 5)) for _ in range(6)]
        await until(lambda: inflight[0] == 2, "two calls are in flight")
        gate.set()
        assert [r.status for r in await asyncio.gather(*calls)] == [200] * 6
    await client.aclose()
    assert (peak[0], len(peers)) == (2, 2)


def stale_after_first() -> Handler:
    """Answers the first request of the first connection, then reads a second one and closes
    without a byte: the server closing a keep-alive connection as the client reuses it."""
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        if len(seen) == 1:
            writer.write(ok(b"first"))
            seen.append(await read_request(reader))
            return
        writer.write(ok(b"fresh"))
        await reader.read()
    seen: list[bytes] = []
    return h


async def test_stale_pooled_connection_is_retried_once_for_idempotent(up: FastUpstream) -> None:
    async with raw_server(stale_after_first()) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("GET", url, {}, b"", 5)).body == b"first"
        assert (await up.send("PUT", url, {}, b"doc", 5)).body == b"fresh"
    assert len(conns) == 2


async def test_stale_pooled_connection_is_not_retried_for_post(up: FastUpstream) -> None:
    async with raw_server(stale_after_first()) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("POST", url, {}, b"a", 5)).body == b"first"
        with pytest.raises(TransportError) as err:
            await up.send("POST", url, {}, b"b", 5)
    assert (err.value.kind, err.value.reached, len(conns)) == ("connection", True, 1)
    assert "before responding" in err.value.reason


async def test_idle_connection_closed_by_server_is_not_used(up: FastUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"once"))  # keep-alive by default, then closes anyway while idle

    async with raw_server(h) as (port, conns):
        url = f"http://127.0.0.1:{port}/"
        assert (await up.send("POST", url, {}, b"", 5)).body == b"once"
        pool = next(iter(up._pools.values()))
        await until(lambda: not pool._idle[0].open, "the client sees the close")
        assert (await up.send("POST", url, {}, b"", 5)).body == b"once"
    assert len(conns) == 2


# --- failures --------------------------------------------------------------------------------

async def test_refused(up: FastUpstream) -> None:
    with socket.socket() as bound:  # bound, not listening: the kernel answers with a reset
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(TransportError) as err:
            await up.send("POST", f"http://127.0.0.1:{bound.getsockname()[1]}/", {}, b"", 5)
    assert (err.value.kind, err.value.reached) == ("connection_refused", False)


async def test_timeout_while_connecting(up: FastUpstream) -> None:
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


async def test_timeout_in_tls_handshake_is_a_connect_timeout(up: FastUpstream) -> None:
    async with raw_server(silent) as (port, _):
        with pytest.raises(TransportError) as err:
            await up.send("GET", f"https://127.0.0.1:{port}/", {}, b"", 0.3)
    assert (err.value.kind, err.value.reached) == ("timeout", False)


async def test_timeout_after_the_request_was_sent(up: FastUpstream) -> None:
    async with raw_server(silent) as (port, _):
        for call in (up.send, up.stream):
            with pytest.raises(TransportError) as err:
                await call("POST", f"http://127.0.0.1:{port}/", {}, b"x", 0.3)
            assert (err.value.kind, err.value.reached) == ("timeout", True)


async def test_send_timeout_covers_the_whole_body(up: FastUpstream) -> None:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await reader.read()

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


def misbehaving(data: bytes, reset: bool) -> Handler:
    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        if reset:  # SO_LINGER 0: close() sends RST instead of FIN
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
    return h


BROKEN = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", False, "mid-response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", True, "closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", False, "mid-response"),
    (b"NOT HTTP AT ALL\r\n\r\n", False, "malformed"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", False,
     "switched protocols"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", False,
     "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nab", False, "'br'"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd", False,
     "cannot decode the gzip body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", False,
     "transfer-encoding"),
]


@pytest.mark.parametrize(("data", "reset", "says"), BROKEN)
async def test_broken_responses(up: FastUpstream, data: bytes, reset: bool, says: str) -> None:
    async with raw_server(misbehaving(data, reset)) as (port, _):
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
            assert says in err.value.reason


async def test_truncated_gzip_is_an_error(up: FastUpstream) -> None:
    cut = gzip.compress(b"a" * 1000)[:-6]
    async with raw_server(misbehaving(ok(cut, b"Content-Encoding: gzip\r\n"), False)) as (p, _):
        with pytest.raises(TransportError, match="ends early"):
            await up.send("GET", f"http://127.0.0.1:{p}/", {}, b"", 5)


CODINGS = ["gzip", "deflate"]


@pytest.mark.parametrize("coding", CODINGS)
async def test_compressed_bodies_are_decoded(up: FastUpstream, coding: str) -> None:
    plain = b'{"choices": []}' * 500
    packed = gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)

    async def h(req: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": coding})

    async with serving(await aiohttp_app({"/": h})) as url:
        resp = await up.send("GET", url, {}, b"", 5)
        stream = await up.stream("GET", url, {}, b"", 5)
        streamed = await stream.read()
        await stream.aclose()
    assert resp.body == streamed == plain
    assert "content-encoding" not in resp.headers and "content-length" not in resp.headers


# --- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


async def test_https_with_a_trusted_certificate(cert: tuple[Path, Path]) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*cert)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)

    async def h(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            writer.write(ok(request.split(b"\r\n\r\n", 1)[1]))

    trusted = FastUpstream(ssl_context=ssl.create_default_context(cafile=str(cert[0])))
    untrusted = FastUpstream()
    async with raw_server(h, tls=server_ctx) as (port, conns):
        for body in (b"one", b"two"):
            resp = await trusted.send("POST", f"https://localhost:{port}/", {}, body, 5)
            assert resp.body == body
        for client, host in ((trusted, "127.0.0.1"), (untrusted, "localhost")):
            with pytest.raises(TransportError) as err:  # not the name on the cert / unknown CA
                await client.send("POST", f"https://{host}:{port}/", {}, b"", 5)
            assert (err.value.kind, err.value.reached) == ("connection_refused", False)
            assert "CERTIFICATE_VERIFY_FAILED" in err.value.reason
    await trusted.aclose()
    await untrusted.aclose()
    assert sni[0] == "localhost"
    assert len(conns) == 1  # the two calls shared it; failed handshakes never got this far


# --- seams -----------------------------------------------------------------------------------

async def test_bad_input_is_refused_before_sending(up: FastUpstream) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        await up.send("GET", "http://127.0.0.1:9/", {"X-A": "b\r\nX-Injected: 1"}, b"", 1)
    with pytest.raises(ValueError, match="http"):
        await up.send("GET", "ftp://127.0.0.1/", {}, b"", 1)


async def test_selectable_by_settings_and_factory(tmp_path: Path) -> None:
    settings = Settings(task=tmp_path, state_dir=tmp_path, secrets_dir=tmp_path,
                        upstream_client="fast")
    client = make_upstream(settings.upstream_client)
    assert isinstance(client, FastUpstream)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.send("GET", "http://127.0.0.1:9/", {}, b"", 1)


# --- the same tests on uvloop ----------------------------------------------------------------

_SIMPLE = [test_request_headers_and_content_length_body, test_caller_accept_encoding_is_kept,
           test_chunked_body_is_reassembled, test_close_delimited_body_and_no_reuse,
           test_interim_responses_are_skipped, test_sse_events_arrive_before_the_response_ends,
           test_large_stream_with_slow_reader_is_complete,
           test_stream_closed_early_closes_its_connection, test_keep_alive_reuses_one_connection,
           test_connection_close_is_honoured,
           test_stale_pooled_connection_is_retried_once_for_idempotent,
           test_stale_pooled_connection_is_not_retried_for_post,
           test_idle_connection_closed_by_server_is_not_used, test_refused,
           test_timeout_while_connecting, test_timeout_in_tls_handshake_is_a_connect_timeout,
           test_timeout_after_the_request_was_sent, test_send_timeout_covers_the_whole_body,
           test_truncated_gzip_is_an_error, test_bad_input_is_refused_before_sending]


Case = Callable[[FastUpstream, tuple[Path, Path]], Awaitable[None]]


def _with_up(test: Callable[[FastUpstream], Awaitable[None]]) -> Case:
    async def case(up: FastUpstream, cert: tuple[Path, Path]) -> None:
        await test(up)
    return case


def _cases() -> dict[str, Case]:
    cases = {t.__name__: _with_up(t) for t in _SIMPLE}
    for m, s in NO_BODY:
        cases[f"no_body-{m}-{s}"] = _with_up(partial(test_responses_without_body, method=m,
                                                     status=s))
    for i, (data, reset, says) in enumerate(BROKEN):
        cases[f"broken-{i}"] = _with_up(partial(test_broken_responses, data=data, reset=reset,
                                                says=says))
    for coding in CODINGS:
        cases[f"coding-{coding}"] = _with_up(partial(test_compressed_bodies_are_decoded,
                                                     coding=coding))

    async def max_connections(up: FastUpstream, cert: tuple[Path, Path]) -> None:
        await test_max_connections_bounds_calls_in_flight()

    async def https(up: FastUpstream, cert: tuple[Path, Path]) -> None:
        await test_https_with_a_trusted_certificate(cert)

    return cases | {"max_connections": max_connections, "https": https}


@pytest.mark.parametrize("name", list(_cases()))
def test_again_on_uvloop(name: str, cert: tuple[Path, Path]) -> None:
    case = _cases()[name]

    async def run() -> None:
        client = FastUpstream()
        try:
            await case(client, cert)
        finally:
            await client.aclose()

    uvloop.run(run())
