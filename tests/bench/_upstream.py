"""A minimal, fast OpenAI-compatible upstream for benchmarks: its own process, raw asyncio.

``python -m tests.bench._upstream --port 0`` prints ``bench-upstream ready port=P`` once bound.
``POST …/chat/completions`` answers at once with a fixed ~300-byte ``chat.completion`` carrying a
``usage`` block; anything else is a 404. It runs in a separate process so that it never shares a
GIL with the client or a proxy, and uses a bare ``asyncio.Protocol`` (uvloop when installed) so the
"direct" baseline is as cheap as a Python server can be.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

from ._http import dechunk, parse_head

__all__ = ["COMPLETION", "main"]

COMPLETION = (
    b'{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_bench",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42.",'
    b'"refusal":null},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":250,"completion_tokens":6,"total_tokens":256}}'
)
_NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


def _response(status: str, body: bytes, close: bool) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode() + body


_OK = _response("200 OK", COMPLETION, close=False)
_OK_CLOSE = _response("200 OK", COMPLETION, close=True)


class _Server(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        for _ in range(10_000):  # bounded: pipelined requests in one read
            if not self._one():
                return

    def _one(self) -> bool:
        """Answer one complete request from the buffer; False when it holds none."""
        assert self.transport is not None
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = parse_head(bytes(self.buf[:end]))
        if head.chunked:
            decoded = dechunk(self.buf, end + 4)
            if decoded is None:
                return False
            consumed = decoded[1]
        else:
            consumed = end + 4 + head.length
            if len(self.buf) < consumed:
                return False
        del self.buf[:consumed]
        method, target, _ = head.first
        if method == "POST" and target.split("?", 1)[0].endswith("/chat/completions"):
            self.transport.write(_OK_CLOSE if head.close else _OK)
        else:
            self.transport.write(_response("404 Not Found", _NOT_FOUND, head.close))
        if head.close:
            self.transport.close()
            return False
        return True


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Server, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"bench-upstream ready port={bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.port))
    else:
        uvloop.run(_serve(args.port))


if __name__ == "__main__":
    main()
