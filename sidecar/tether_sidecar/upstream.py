"""Outbound HTTP: the seam between the sidecar and the world (models and tools).

One transport, on aiohttp's client (the sidecar's server is aiohttp already; why not httpx or a
client of our own: docs/sidecar.md, "Outbound transport"). What it adds to the bare client:

* proxies from ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, resolved once per origin
  (:mod:`proxies`); https through a proxy is a ``CONNECT`` tunnel;
* TLS with the system trust store plus an optional mounted PEM bundle (``ca_bundle``);
* a cap on every non-streamed body, counted after decoding (:mod:`decoding`): an oversized body
  is a ``too_large`` :class:`TransportError`, never a truncated success;
* gzip/deflate decoded here, with truncation detected; the headers handed on then no longer
  claim an encoding or length;
* repeated response headers kept (a multidict; ``headers.get`` is case-insensitive);
* no cookies kept, no redirects followed, no netrc credentials.

Each failure is mapped at this boundary to :class:`TransportError`, saying whether the request
may have reached the server — which decides whether a side-effecting call may be retried.
Keep-alive: aiohttp re-sends a request that failed on a reused connection before any response
byte only for idempotent methods (RFC 9110 §9.2.2); a POST that meets a server closing the
connection is reported ``reached=True`` and the retry policy decides.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .decoding import ACCEPT_ENCODING, BodyError, Decoder, decoder_for, too_large
from .errors import StartupError
from .proxies import Proxies, ProxyConfigError, Route

__all__ = ["HOP_HEADERS", "AiohttpUpstream", "Headers", "StreamingResponse", "TransportError",
           "Upstream", "UpstreamResponse", "make_upstream"]

# Hop-by-hop and framing headers are never relayed (RFC 9110 §7.6.1); the body is re-framed.
HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "content-encoding", "host",
})
Headers = CIMultiDictProxy[str]
_NO_ROUNDING = float("inf")
_TARGETS_MAX = 1024  # parsed URLs and their routes kept; tool URLs may be many, so bounded


class TransportError(Exception):
    """No usable HTTP response. ``kind`` is timeout, connection, connection_refused or too_large;
    ``reached`` is False only when the request certainly never left (refused, or timed out
    while connecting)."""

    def __init__(self, kind: str, reason: str, reached: bool) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.reached = reached


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: Headers
    body: bytes


class StreamingResponse(Protocol):
    status: int
    headers: Headers

    def chunks(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse: ...
    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> StreamingResponse: ...
    async def aclose(self) -> None: ...


def _map(exc: BaseException, route: Route) -> TransportError:
    via = f" via proxy {route.proxy}" if route.proxy is not None else ""
    if isinstance(exc, BodyError):
        return TransportError(exc.kind, exc.reason, reached=True)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError("timeout", f"timed out connecting{via}: {exc}", reached=False)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportError("timeout", "timed out waiting for the response", reached=True)
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel
        return TransportError("connection_refused", f"proxy {route.proxy} refused the CONNECT "
                              f"tunnel: HTTP {exc.status} {exc.message}", reached=False)
    if isinstance(exc, aiohttp.ClientConnectorError):  # also TLS and certificate failures
        return TransportError("connection_refused", f"cannot connect{via}: {exc}",
                              reached=False)
    return TransportError("connection", f"connection failed: {type(exc).__name__}: {exc}",
                          reached=True)


def _decoded(resp: aiohttp.ClientResponse, limit: int) -> tuple[Headers, Decoder | None]:
    """The headers to hand on and the decoder for the body, if it is encoded."""
    headers = resp.headers
    coding = headers.get("Content-Encoding")
    if coding is None:  # the common case: no origin string built (a few µs per call)
        return headers, None
    decoder = decoder_for(coding, limit, str(resp.url.origin()))
    if decoder is None:
        return headers, None
    # The body handed on is decoded, so these no longer describe it.
    plain = CIMultiDict(headers)
    plain.popall("Content-Encoding")
    plain.popall("Content-Length", None)
    return CIMultiDictProxy(plain), decoder


async def _read(resp: aiohttp.ClientResponse, decoder: Decoder | None, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes after decoding."""
    length = resp.content_length
    if decoder is None and length is not None:
        if length > limit:  # refused before reading a byte of it
            raise too_large(str(resp.url.origin()), limit)
        return await resp.read()  # framing stops at Content-Length
    parts, size = [], 0
    while chunk := await resp.content.readany():
        out = decoder.feed(chunk) if decoder is not None else chunk
        size += len(out)
        if size > limit:
            raise too_large(str(resp.url.origin()), limit)
        parts.append(out)
    if decoder is not None:
        decoder.finish()
    return b"".join(parts)


class _Stream:
    def __init__(self, resp: aiohttp.ClientResponse, route: Route, limit: int) -> None:
        self._resp, self._route, self._limit = resp, route, limit
        self.status = resp.status
        self.headers, self._decoder = _decoded(resp, limit)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                out = self._decoder.feed(chunk) if self._decoder is not None else chunk
                if out:
                    yield out
            if self._decoder is not None:
                self._decoder.finish()
        except (TimeoutError, aiohttp.ClientError, BodyError) as exc:
            raise _map(exc, self._route) from exc

    async def read(self) -> bytes:
        try:
            return await _read(self._resp, self._decoder, self._limit)
        except (TimeoutError, aiohttp.ClientError, BodyError) as exc:
            raise _map(exc, self._route) from exc

    async def aclose(self) -> None:
        self._resp.release()  # before its end: aiohttp closes the connection instead of reusing


class AiohttpUpstream:
    """The :class:`Upstream` protocol on one ``aiohttp.ClientSession`` (made in the loop)."""

    def __init__(self, ssl_context: ssl.SSLContext | bool, proxies: Proxies | None = None,
                 max_response_bytes: int = 32 * 1024 * 1024, max_connections: int = 256) -> None:
        self._ssl, self._proxies = ssl_context, proxies or Proxies()
        self._limit, self._max = max_response_bytes, max_connections
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, tuple[URL, Route]] = {}
        self._timeouts: dict[tuple[float, bool], aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must be made inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max, limit_per_host=self._max,
                                               ssl=self._ssl),
                headers={"Accept-Encoding": ACCEPT_ENCODING},
                skip_auto_headers=("User-Agent", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),  # a model's cookies are not a tool's
                auto_decompress=False,  # decoding.py, which detects truncation
            )
        return self._session

    def _target(self, url: str) -> tuple[URL, Route]:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _TARGETS_MAX:
                self._targets.clear()
            parsed = URL(url)
            target = self._targets[url] = (parsed, self._proxies.route(parsed))
        return target

    def _timeout(self, seconds: float, streaming: bool) -> aiohttp.ClientTimeout:
        t = self._timeouts.get((seconds, streaming))
        if t is None:
            # Connecting never gets the whole budget: were the two deadlines equal, the total
            # one would fire first and a request that never left would read as "reached".
            # Deadlines are not rounded to whole seconds (ceil_threshold) for the same reason.
            # The gap is at least 0.1 s (half the budget for tiny ones): a loop busy for a few
            # ms must not see both deadlines pass in one turn and report the wrong one.
            connect = min(10.0, max(seconds * 0.5, min(seconds * 0.95, seconds - 0.1)))
            # A stream may run for long: the limit is on silence (to headers, between chunks).
            t = (aiohttp.ClientTimeout(total=None, connect=connect, sock_read=seconds,
                                       ceil_threshold=_NO_ROUNDING) if streaming else
                 aiohttp.ClientTimeout(total=seconds, connect=connect,
                                       ceil_threshold=_NO_ROUNDING))
            self._timeouts[(seconds, streaming)] = t
        return t

    async def _open(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    timeout: float, streaming: bool) -> tuple[aiohttp.ClientResponse, Route]:
        target, route = self._target(url)
        try:
            resp = await self._client().request(
                method, target, headers=headers, data=body or None,
                timeout=self._timeout(timeout, streaming), allow_redirects=False,
                proxy=route.proxy, proxy_headers=route.proxy_headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map(exc, route) from exc
        return resp, route

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse:
        resp, route = await self._open(method, url, headers, body, timeout, False)
        try:
            plain, decoder = _decoded(resp, self._limit)
            data = await _read(resp, decoder, self._limit)
        except (TimeoutError, aiohttp.ClientError, BodyError) as exc:
            resp.close()  # the rest is not read: the connection cannot be reused
            raise _map(exc, route) from exc
        finally:
            resp.release()
        return UpstreamResponse(resp.status, plain, data)

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> StreamingResponse:
        resp, route = await self._open(method, url, headers, body, timeout, True)
        try:
            return _Stream(resp, route, self._limit)
        except BodyError as exc:
            resp.close()
            raise _map(exc, route) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_upstream(ca_bundle: Path | None, max_response_bytes: int,
                  environ: Mapping[str, str]) -> AiohttpUpstream:
    """The transport for the settings and the proxy variables in ``environ``; raises
    :class:`StartupError` naming the bundle or variable that cannot work."""
    # The system store (and SSL_CERT_FILE/SSL_CERT_DIR): ``True`` is aiohttp's own verified
    # context, which it loads when imported; a second copy cost ~27 ms of start-up and ~0.8 MB.
    ctx: ssl.SSLContext | bool = True
    if ca_bundle is not None:
        ctx = ssl.create_default_context()
        try:
            ctx.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:  # missing, unreadable, or no PEM certificate
            raise StartupError(
                f"--ca-bundle {ca_bundle}: cannot load it as PEM CA certificates ({exc}); mount "
                "the bundle there, or unset TETHER_SIDECAR_CA_BUNDLE to trust the system store "
                "only") from exc
    try:
        proxies = Proxies.from_environ(environ)
    except ProxyConfigError as exc:
        raise StartupError(str(exc)) from exc
    return AiohttpUpstream(ctx, proxies, max_response_bytes)
