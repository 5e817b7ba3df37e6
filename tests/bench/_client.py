"""The bench's HTTP clients: one persistent connection each, the same code for every target.

Sequential calls use a blocking socket (no event loop between the clock and the wire); the
concurrent phase uses asyncio streams, one connection per in-flight request. Both send a request
built once (:func:`request_bytes`) and read exactly one framed response, so the client's cost is
a few microseconds and identical whichever proxy is on the other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from ._http import Head, dechunk, parse_head

__all__ = ["AsyncConn", "BadResponse", "SyncConn"]

_MAX_HEAD = 64 * 1024
# Servers drop idle keep-alive connections (uvicorn, under LiteLLM, after 5 s). Targets wait for
# each other in rounds, so a connection idle longer than this is replaced before a block, untimed,
# rather than failing (or reconnecting) inside a timed call.
MAX_IDLE = 2.0


class BadResponse(Exception):
    """The target answered something other than a 200 with a body."""


def _check(head: Head, body: bytes) -> None:
    if head.first[1] != "200" or not body:
        raise BadResponse(f"HTTP {head.first[1]} {head.first[2]}: {body[:300]!r}")


class SyncConn:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.addr = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.used = 0.0

    def fresh(self) -> None:
        """Open the connection now (untimed), replacing it if it sat idle too long."""
        if self.sock is not None and time.monotonic() - self.used > MAX_IDLE:
            self.close()
        self._socket()
        self.used = time.monotonic()

    def _socket(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection(self.addr, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self, sock: socket.socket, buf: bytearray) -> None:
        chunk = sock.recv(262_144)
        if not chunk:
            self.close()
            raise BadResponse("connection closed by the target")
        buf += chunk

    def call(self, request: bytes) -> bytes:
        """Send one request and return the response body (raises BadResponse unless 200)."""
        sock = self._socket()
        sock.sendall(request)
        buf = bytearray()
        for _ in range(10_000):
            end = buf.find(b"\r\n\r\n")
            if end >= 0 or len(buf) > _MAX_HEAD:
                break
            self._recv(sock, buf)
        if end < 0:
            raise BadResponse(f"no response head in {len(buf)} bytes")
        head = parse_head(bytes(buf[:end]))
        start = end + 4
        body: bytes
        for _ in range(100_000):
            if head.chunked:
                decoded = dechunk(buf, start)
                if decoded is not None:
                    body = decoded[0]
                    break
            elif len(buf) >= start + head.length:
                body = bytes(buf[start:start + head.length])
                break
            self._recv(sock, buf)
        else:
            raise BadResponse("response body never completed")
        if head.close:
            self.close()
        self.used = time.monotonic()
        _check(head, body)
        return body


class AsyncConn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def fresh(self) -> None:
        """Open the connection now (untimed), replacing it if it sat idle too long."""
        if self.writer is not None and time.monotonic() - self.used > MAX_IDLE:
            await self.close()
        await self._open()
        self.used = time.monotonic()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):  # the target already dropped it
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def call(self, request: bytes) -> bytes:
        reader, writer = await self._open()
        writer.write(request)
        head = parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
        if head.chunked:
            parts = []
            for _ in range(100_000):
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await reader.readexactly(head.length)
        if head.close:
            await self.close()
        self.used = time.monotonic()
        _check(head, body)
        return body
