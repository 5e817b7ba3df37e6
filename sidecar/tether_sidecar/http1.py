"""One HTTP/1.1 client connection: an asyncio Protocol feeding the httptools (llhttp) parser.

Only :mod:`upstream_fast` uses it. This module frames responses (RFC 9112 §6.3), skips interim
responses, decodes gzip/deflate bodies and says whether the connection may be reused; every
failure becomes a :class:`TransportError` on the response in flight. It does not connect, pool,
time out or retry: :class:`upstream_fast.FastUpstream` does.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from typing import cast

import httptools

from .upstream import TransportError

__all__ = ["Http1Connection", "Http1Response"]

# A stream stops reading the socket when this much is unread, so a slow consumer holds the
# server back (TCP flow control) instead of growing our memory.
_PAUSE_AT = 256 * 1024
# RFC 9110 §8.4.1: "deflate" is the zlib format (wbits 15); gzip has its own header (wbits 31).
_CODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def _broken(reason: str) -> TransportError:
    return TransportError("connection", reason, reached=True)


class _Decoder:
    """Undoes a Content-Encoding the server applied although we asked for identity."""

    def __init__(self, coding: str, wbits: int) -> None:
        self.coding, self._wbits = coding, wbits
        self._z = zlib.decompressobj(wbits)
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        self._fed = True
        try:
            out = self._z.decompress(data)
            while self._z.eof and self._z.unused_data:  # more gzip members (RFC 1952 §2.2)
                rest, self._z = self._z.unused_data, zlib.decompressobj(self._wbits)
                out += self._z.decompress(rest)
        except zlib.error as exc:
            raise _Refused(f"cannot decode the {self.coding} body from upstream: {exc}") from exc
        return out

    def finish(self) -> bytes:
        out = self._z.flush()
        if self._fed and not self._z.eof:  # an empty body (204, 304, length 0) is fine
            raise _Refused(f"the {self.coding} body from upstream ends early")
        return out


class Http1Response:
    """One response as it arrives: status and headers, then body pieces, then done or error."""

    def __init__(self, conn: Http1Connection, head_only: bool, streaming: bool) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.done = False
        self.error: TransportError | None = None
        self.got_bytes = False  # any response byte at all: a stale connection has none
        self.head_only = head_only  # HEAD: the headers are the whole response (RFC 9110 §9.3.2)
        self.close_delimited = False
        self._conn = conn
        self._limit = _PAUSE_AT if streaming else None
        self._pieces: list[bytes] = []
        self._size = 0
        self._decoder: _Decoder | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- consumer side -------------------------------------------------------------------------
    async def head(self) -> None:
        while not self.status and self.error is None:
            await self._wait()
        if not self.status and self.error is not None:
            raise self.error

    async def body(self) -> bytes:
        while not self.done and self.error is None:
            await self._wait()
        if self.error is not None:
            raise self.error
        return b"".join(self._pieces)

    def ready(self) -> bool:
        """True when :meth:`take` will not wait: data buffered, the end, or an error."""
        return bool(self._pieces) or self.done or self.error is not None

    async def take(self) -> bytes:
        """The data buffered so far (waiting for some if none); b"" at the end."""
        while not self.ready():
            await self._wait()
        if self._pieces:
            data = b"".join(self._pieces)
            self._pieces.clear()
            self._size = 0
            self._conn.resume()
            return data
        if self.error is not None:
            raise self.error
        return b""

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- protocol side -------------------------------------------------------------------------
    def start(self, status: int, headers: dict[str, str]) -> None:
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding != "identity":
            wbits = _CODINGS.get(coding)
            if wbits is None:
                raise _Refused(f"upstream sent content-encoding {coding!r}, which this client "
                               "cannot decode (it asks for identity)")
            self._decoder = _Decoder(coding, wbits)
            # The body handed on is decoded, so these no longer describe it.
            headers.pop("content-encoding")
            headers.pop("content-length", None)
        # RFC 9112 §6.3 rule 8: neither Transfer-Encoding nor Content-Length: read until close.
        self.close_delimited = ("content-length" not in headers
                                and "transfer-encoding" not in headers)
        self.status, self.headers = status, headers
        if self.head_only:
            self.done = True
        self._wake()

    def feed(self, data: bytes) -> bool:
        """Adds body bytes; returns True when the reader should pause."""
        if self._decoder is not None:
            data = self._decoder.feed(data)
        if data:
            self._pieces.append(data)
            self._size += len(data)
            self._wake()
        return self._limit is not None and self._size > self._limit

    def finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.finish()
            if tail:
                self._pieces.append(tail)
        self.done = True
        self._wake()

    def fail(self, error: TransportError) -> None:
        if not self.done and self.error is None:
            self.error = error
            self._wake()


class _Refused(Exception):
    """A response this client will not hand on; raised inside a parser callback, caught in
    data_received (httptools re-raises callback errors as HttpParserCallbackError)."""


class Http1Connection(asyncio.Protocol):
    """One connection, one response at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.keep_alive = False  # the last response allows another request (RFC 9112 §9.3)
        self.idle_since = 0.0
        self._resp: Http1Response | None = None
        self._raw: list[tuple[bytes, bytes]] = []
        self._paused = False
        self._parser = httptools.HttpResponseParser(self)

    @property
    def reusable(self) -> bool:
        r = self._resp
        return (self.open and self.keep_alive and r is not None and r.done and r.error is None
                and not r.head_only)

    def request(self, head: bytes, body: bytes, head_only: bool, streaming: bool
                ) -> Http1Response:
        assert self.transport is not None
        resp = self._resp = Http1Response(self, head_only, streaming)
        self.keep_alive = False
        if not self.open:  # lost since the pool checked: as if the server closed it just now
            resp.fail(_broken("upstream closed the connection before the request was sent"))
            return resp
        if len(body) <= 16384:  # one write, one syscall; larger bodies are not worth copying
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        return resp

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        self.transport, self.open = cast(asyncio.Transport, transport), True
        sock = transport.get_extra_info("socket")
        if sock is not None:  # requests are written whole: don't let Nagle hold the last segment
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        resp = self._resp
        if resp is None or resp.done or resp.error is not None:
            # Bytes nobody asked for (RFC 9112 §9.3 forbids them): the framing is lost.
            self.abort()
            return
        resp.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_broken("upstream switched protocols (101), which was not asked for"))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__  # what our callback raised (httptools chains it so)
            self._fail(_broken(str(cause) if isinstance(cause, _Refused) else str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(_broken(f"malformed response from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        resp = self._resp
        if resp is None or resp.done:
            return
        if exc is None and resp.status and resp.close_delimited:
            try:
                resp.finish()  # the close is the end of the body (RFC 9112 §6.3 rule 8)
            except _Refused as refused:
                resp.fail(_broken(str(refused)))
            return
        why = f": {exc}" if exc else ""
        when = "mid-response" if resp.got_bytes else "before responding"
        resp.fail(_broken(f"upstream closed the connection {when}{why}"))

    def _fail(self, error: TransportError) -> None:
        if self._resp is not None:
            self._resp.fail(error)
        self.abort()

    # --- httptools callbacks (exceptions here surface as HttpParserCallbackError) --------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        raw, self._raw = self._raw, []
        if status < 200:
            return  # interim response (RFC 9110 §15.2): the final one follows
        # Values decoded as aiohttp does; a repeated field keeps its last value, as there.
        headers = {n.decode("latin-1").lower(): v.decode("utf-8", "surrogateescape")
                   for n, v in raw}
        te = headers.get("transfer-encoding", "chunked").replace(" ", "").lower()
        if te != "chunked":  # RFC 9112 §6.1: other transfer codings we would have to undo
            raise _Refused(f"upstream sent transfer-encoding {te!r}, which this client "
                           "does not decode")
        assert self._resp is not None
        self._resp.start(status, headers)

    def on_body(self, body: bytes) -> None:
        assert self._resp is not None
        if self._resp.feed(body) and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            return
        assert self._resp is not None
        self.keep_alive = self._parser.should_keep_alive()
        self._resp.finish()
