"""FastUpstream: a lean HTTP/1.1 client for the sidecar's outbound calls (models and tools).

Why it exists: aiohttp's client was the largest single cost inside the sidecar per model call
(docs/benchmarks.md). This one does only what the sidecar needs — HTTP/1.1 over TCP or TLS, a
keep-alive pool per origin, one timeout per call — on asyncio transports, with responses framed
by :mod:`http1` (httptools). It does not follow redirects, use proxies or ``*_proxy`` variables,
keep cookies, send credentials from the URL, speak HTTP/2 or send ``Expect: 100-continue``.

Retries: none, except one. A request that fails on a *reused* keep-alive connection before any
response byte arrived is sent again, once, on a new connection — when its method is idempotent
(RFC 9110 §9.2.2). That failure is nearly always the race of RFC 9112 §9.3.1 ("a client might
send a request on a connection that the server is closing"), which is why production clients
retry it: aiohttp for exactly these methods, Go's net/http for these or with an Idempotency-Key.
Like them we do not retry a POST here: a server that crashed after reading it looks identical
from this side, so it is reported (``reached=True``) and the retry policy above decides with what
it knows of the call (model call, tool side effects, idempotency header). Idle connections the
server already closed are skipped before sending, which keeps the race rare. Every other failure
is raised as :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, urlsplit

from .http1 import Http1Connection, Http1Response
from .upstream import TransportError, UpstreamResponse

_T = TypeVar("_T")

__all__ = ["FastUpstream"]

# RFC 9110 §9.2.2; the set aiohttp retries on a dropped keep-alive connection.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Framing is ours (RFC 9112 §6): a caller's value could contradict the body we actually send.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
# Methods that define a body: they get "Content-Length: 0" when empty (RFC 9110 §8.6).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_URL_CACHE_MAX = 1024  # parsed URLs kept; tool URLs may be many, so the cache is bounded


@dataclass(frozen=True, slots=True)
class _Url:
    tls: bool
    host: str
    port: int
    authority: str  # the Host header (RFC 9112 §3.2)
    target: str  # origin-form request target (RFC 9112 §3.2.1)


def _parse_url(url: str) -> _Url:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    port = parts.port or default
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii():  # the request line is ASCII: percent-encode (RFC 3986 §2.1)
        target = quote(target, safe="/?:@!$&'()*+,;=%~")
    return _Url(tls, parts.hostname, port, name if port == default else f"{name}:{port}", target)


def _head(method: str, url: _Url, headers: Mapping[str, str], length: int) -> bytes:
    # Names are case-insensitive (RFC 9110 §5.1): "Content-Type" then "content-type" is one
    # field, and the later value wins, as in aiohttp's CIMultiDict.
    fields = {name.lower(): (name, value) for name, value in headers.items()}
    lines = [f"{method} {url.target} HTTP/1.1"]
    if "host" not in fields:
        lines.append(f"Host: {url.authority}")
    lines += [f"{name}: {value}" for low, (name, value) in fields.items() if low not in _FRAMING]
    if "accept-encoding" not in fields:  # plain bodies: the sidecar parses and re-frames them
        lines.append("Accept-Encoding: identity")
    if length or method in _BODY_METHODS:
        lines.append(f"Content-Length: {length}")
    lines += ("", "")
    text = "\r\n".join(lines)
    # A CR or LF inside a name or value would inject headers or a request (RFC 9112 §2.2).
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise ValueError("a request header name or value contains CR or LF")
    return text.encode("utf-8", "surrogateescape")  # as aiohttp encodes them


def _connect_error(exc: OSError) -> TransportError:
    if isinstance(exc, TimeoutError):  # the OS gave up (ETIMEDOUT), before our own deadline
        return TransportError("timeout", f"timed out connecting: {exc}", reached=False)
    # Refused, unresolvable, unreachable, TLS handshake or certificate: nothing was sent.
    return TransportError("connection_refused", f"cannot connect: {exc}", reached=False)


class _Pool:
    """Connections to one origin: at most ``limit`` open; idle ones reused newest first."""

    def __init__(self, url: _Url, ssl_ctx: ssl.SSLContext | None, limit: int,
                 idle_timeout: float) -> None:
        self._url, self._ssl, self._idle_timeout = url, ssl_ctx, idle_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[Http1Connection] = deque()  # oldest on the left
        self._all: set[Http1Connection] = set()

    async def acquire(self) -> tuple[Http1Connection, bool]:
        """A connection and whether it was reused; holds a slot until :meth:`release`."""
        await self._slots.acquire()
        try:
            expired = asyncio.get_running_loop().time() - self._idle_timeout
            while self._idle:
                conn = self._idle.pop()
                if conn.open and conn.idle_since > expired:
                    return conn, True
                self.discard(conn)  # closed by the server while idle, or idle too long
            return await self.connect(), False
        except BaseException:
            self._slots.release()
            raise

    async def connect(self) -> Http1Connection:
        loop, u = asyncio.get_running_loop(), self._url
        try:
            if self._ssl is None:
                _, conn = await loop.create_connection(Http1Connection, u.host, u.port)
            else:  # certificate and host name checked by the context (SNI = the URL's host)
                _, conn = await loop.create_connection(Http1Connection, u.host, u.port,
                                                       ssl=self._ssl, server_hostname=u.host)
        except OSError as exc:  # ssl.SSLError and socket.gaierror are OSErrors too
            raise _connect_error(exc) from exc
        self._all.add(conn)
        return conn

    def release(self, conn: Http1Connection | None) -> None:
        self._slots.release()
        if conn is None:
            return
        if not conn.reusable:
            self.discard(conn)
            return
        conn.resume()  # a stream closed after its end may have left reading paused
        now = asyncio.get_running_loop().time()
        conn.idle_since = now
        self._idle.append(conn)
        while self._idle and self._idle[0].idle_since <= now - self._idle_timeout:
            self.discard(self._idle.popleft())

    def discard(self, conn: Http1Connection) -> None:
        conn.abort()
        self._all.discard(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.abort()
        self._all.clear()
        self._idle.clear()


class _Call:
    """One request: owns a pool slot (and its connection) until finish() or abandon()."""

    def __init__(self, pool: _Pool, method: str, head: bytes, body: bytes,
                 streaming: bool) -> None:
        self.pool, self.method, self.head, self.body = pool, method, head, body
        self.streaming = streaming
        self.conn: Http1Connection | None = None
        self.sent = False  # the request was written: it may have reached the server
        self._held = False

    async def open(self) -> Http1Response:
        conn, reused = await self.pool.acquire()
        self.conn, self._held = conn, True
        resp = self._send(conn)
        try:
            await resp.head()
        except TransportError:
            if not (reused and not resp.got_bytes and self.method in _IDEMPOTENT):
                raise
            # The keep-alive race (module docstring): once more, on a new connection.
            self.pool.discard(conn)
            self.conn = None
            try:
                self.conn = conn = await self.pool.connect()
            except TransportError as exc:  # the first attempt did leave: it may have reached
                raise TransportError(exc.kind, exc.reason, reached=True) from exc
            resp = self._send(conn)
            await resp.head()
        return resp

    async def fetch(self) -> tuple[Http1Response, bytes]:
        resp = await self.open()
        return resp, await resp.body()

    async def within(self, timeout: float, step: Awaitable[_T]) -> _T:
        """``step`` within ``timeout``; on a timeout or any failure the connection is dropped."""
        try:
            async with asyncio.timeout(timeout):
                return await step
        except TimeoutError as exc:
            self.abandon()
            raise _timed_out(self, timeout) from exc
        except BaseException:
            self.abandon()
            raise

    def _send(self, conn: Http1Connection) -> Http1Response:
        self.sent = True
        return conn.request(self.head, self.body, self.method == "HEAD", self.streaming)

    def finish(self) -> None:
        """The response was read to its end: the connection goes back if it may be reused."""
        if self._held:
            self._held = False
            self.pool.release(self.conn)

    def abandon(self) -> None:
        """Failed, timed out, cancelled or closed early: the connection is not reused."""
        if self._held:
            self._held = False
            if self.conn is not None:
                self.pool.discard(self.conn)
            self.pool.release(self.conn)


def _timed_out(call: _Call, timeout: float) -> TransportError:
    if not call.sent:
        return TransportError("timeout", f"timed out connecting after {timeout} s",
                              reached=False)
    return TransportError("timeout", f"no response within {timeout} s", reached=True)


class _FastStream:
    """Status and headers have arrived; the body is read as it comes."""

    def __init__(self, call: _Call, resp: Http1Response, idle_timeout: float) -> None:
        self.status, self.headers = resp.status, resp.headers
        self._call, self._resp, self._idle_timeout = call, resp, idle_timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        while data := await self._take():
            yield data

    async def read(self) -> bytes:
        parts = []
        while data := await self._take():
            parts.append(data)
        return b"".join(parts)

    async def _take(self) -> bytes:
        try:
            if self._resp.ready():
                data = await self._resp.take()
            else:  # bounded wait, so a silent upstream cannot hold the call open for ever
                async with asyncio.timeout(self._idle_timeout):
                    data = await self._resp.take()
        except TimeoutError as exc:
            self._call.abandon()
            raise TransportError("timeout", f"upstream sent nothing for {self._idle_timeout} s "
                                 "mid-response", reached=True) from exc
        except BaseException:
            self._call.abandon()
            raise
        if not data:
            self._call.finish()
        return data

    async def aclose(self) -> None:
        if self._resp.done:
            self._call.finish()
        else:  # unread rest: the connection's framing would be lost, so it is closed
            self._call.abandon()


class FastUpstream:
    """The :class:`~tether_sidecar.upstream.Upstream` protocol on asyncio + httptools.

    ``max_connections`` per origin (scheme, host, port), waiting for a free one beyond that;
    idle connections closed after ``idle_timeout`` seconds; ``ssl_context`` for https, by
    default :func:`ssl.create_default_context` (system CAs, host name checked).
    """

    def __init__(self, max_connections: int = 256, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._limit, self._idle_timeout, self._ssl = max_connections, idle_timeout, ssl_context
        self._pools: dict[tuple[bool, str, int], _Pool] = {}
        self._urls: dict[str, _Url] = {}
        self._closed = False

    def _call(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
              streaming: bool) -> _Call:
        if self._closed:
            raise RuntimeError("FastUpstream is closed")
        u = self._urls.get(url)
        if u is None:
            if len(self._urls) >= _URL_CACHE_MAX:
                self._urls.clear()
            u = self._urls[url] = _parse_url(url)
        pool = self._pools.get((u.tls, u.host, u.port))
        if pool is None:
            if u.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()  # once: it loads the CA store
            pool = _Pool(u, self._ssl if u.tls else None, self._limit, self._idle_timeout)
            self._pools[(u.tls, u.host, u.port)] = pool
        return _Call(pool, method, _head(method, u, headers, len(body)), body, streaming)

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse:
        call = self._call(method, url, headers, body, streaming=False)
        resp, data = await call.within(timeout, call.fetch())  # connect, write, whole response
        call.finish()
        return UpstreamResponse(resp.status, resp.headers, data)

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> _FastStream:
        call = self._call(method, url, headers, body, streaming=True)
        resp = await call.within(timeout, call.open())  # connect, write, status and headers
        return _FastStream(call, resp, timeout)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
