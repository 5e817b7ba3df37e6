"""Outbound HTTP: the seam between the sidecar and the world (models and tools).

Two interchangeable clients implement :class:`Upstream`: aiohttp (the default, chosen by the
numbers in docs/benchmarks.md) and httpx (the design card's choice, kept selectable so the
benchmark measures both on every run). Each maps its own exceptions to :class:`TransportError` at
this boundary, saying whether the request may have reached the server — which decides whether a
side-effecting call may be retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx

__all__ = ["AiohttpUpstream", "HttpxUpstream", "StreamingResponse", "TransportError",
           "Upstream", "UpstreamResponse", "make_upstream"]

# Hop-by-hop and framing headers are never relayed (RFC 9110 §7.6.1); the body is re-framed.
HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "content-encoding", "host",
})


class TransportError(Exception):
    """No HTTP response. ``kind`` is timeout, connection or connection_refused; ``reached`` is
    False only when the request certainly never left (refused, or timed out while connecting)."""

    def __init__(self, kind: str, reason: str, reached: bool) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.reached = reached


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class StreamingResponse(Protocol):
    status: int
    headers: dict[str, str]

    def chunks(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse: ...
    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> StreamingResponse: ...
    async def aclose(self) -> None: ...


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class _AiohttpStream:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = _lower(resp.headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_aiohttp(exc) from exc

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_aiohttp(exc) from exc

    async def aclose(self) -> None:
        self._resp.release()


def _map_aiohttp(exc: BaseException) -> TransportError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError("timeout", f"timed out connecting: {exc}", reached=False)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportError("timeout", "timed out waiting for the response", reached=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError("connection_refused", f"cannot connect: {exc.os_error}",
                              reached=False)
    return TransportError("connection", f"connection failed: {type(exc).__name__}: {exc}",
                          reached=True)


class AiohttpUpstream:
    def __init__(self, max_connections: int = 256) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._max = max_connections

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must be made inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max, limit_per_host=self._max),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def _open(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    timeout: float) -> aiohttp.ClientResponse:
        try:
            return await self._client().request(
                method, url, headers=headers, data=body or None,
                timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0)),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_aiohttp(exc) from exc

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse:
        resp = await self._open(method, url, headers, body, timeout)
        try:
            data = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_aiohttp(exc) from exc
        finally:
            resp.release()
        return UpstreamResponse(resp.status, _lower(resp.headers), data)

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> StreamingResponse:
        return _AiohttpStream(await self._open(method, url, headers, body, timeout))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _map_httpx(exc: httpx.HTTPError) -> TransportError:
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return TransportError("timeout", f"timed out connecting: {exc}", reached=False)
    if isinstance(exc, httpx.TimeoutException):
        return TransportError("timeout", "timed out waiting for the response", reached=True)
    if isinstance(exc, httpx.ConnectError):
        return TransportError("connection_refused", f"cannot connect: {exc}", reached=False)
    return TransportError("connection", f"connection failed: {type(exc).__name__}: {exc}",
                          reached=True)


class _HttpxStream:
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = dict(resp.headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise _map_httpx(exc) from exc

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.HTTPError as exc:
            raise _map_httpx(exc) from exc

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxUpstream:
    def __init__(self, max_connections: int = 256) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> UpstreamResponse:
        try:
            resp = await self._client.request(method, url, headers=headers, content=body,
                                              timeout=timeout)
        except httpx.HTTPError as exc:
            raise _map_httpx(exc) from exc
        return UpstreamResponse(resp.status_code, dict(resp.headers), resp.content)

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                     timeout: float) -> StreamingResponse:
        request = self._client.build_request(method, url, headers=headers, content=body,
                                             timeout=timeout)
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _map_httpx(exc) from exc
        return _HttpxStream(resp)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_upstream(kind: str) -> Upstream:
    if kind == "aiohttp":
        return AiohttpUpstream()
    if kind == "httpx":
        return HttpxUpstream()
    if kind == "fast":
        from .upstream_fast import FastUpstream  # here: upstream_fast imports this module

        return FastUpstream()
    raise ValueError(f"unknown upstream client {kind!r}: use aiohttp, httpx or fast")
