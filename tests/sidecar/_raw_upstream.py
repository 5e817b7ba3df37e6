"""A model upstream on 127.0.0.1 that misbehaves at the socket level after it has read the whole
request: it stalls, resets the connection, or breaks off a response or a stream part way.

The scripted model answers with HTTP; these faults happen below HTTP, where only a raw socket
can put them: what the sidecar sees then is exactly what a provider's dropped connection gives.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
CHUNK = (b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":'
         b'[{"index":0,"delta":{"role":"assistant","content":"par"},"finish_reason":null}]}\n\n')
DONE = (b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n'
        b"data: [DONE]\n\n")


COMPLETION = (b'{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}')


_RESETS_BEFORE_OK = {"reset_then_ok": 1, "reset_reset_ok": 2}
_OK_FIRST = {"held_then_reset"}


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass
class RawUpstream:
    """``fault`` is one of: stall, reset, half_response, broken_stream, stalled_stream,
    ended_stream (a chunk, then a clean end of the body without ``data: [DONE]``),
    stream_after_release (a chunk, then the rest once ``release`` is set), reset_then_ok and
    reset_reset_ok (the first request, or the first two, are reset; later ones are answered
    whole: 3 output tokens, or a stream of 1 when the request asks for one), held_then_reset
    (the first request is answered whole once ``release`` is set, later ones are reset)."""

    fault: str
    url: str = ""
    requests: int = 0  # requests read whole before the fault
    arrived: threading.Event = field(default_factory=threading.Event)  # a request was read
    release: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


def _read_request(sock: socket.socket) -> bytes | None:
    """The request's body once it was read whole, None when the client hung up first."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            return None
        body += more
    return body


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: linger on, timeout 0."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _serve_one(up: RawUpstream, sock: socket.socket) -> None:
    body = _read_request(sock)
    if body is None:
        return
    up.requests += 1
    number = up.requests
    up.arrived.set()
    if up.fault == "held_then_reset" and number == 1:
        up.release.wait(30)
    if number > _RESETS_BEFORE_OK.get(up.fault, number) or (up.fault in _OK_FIRST
                                                           and number == 1):
        if b'"stream":true' in body:  # the sidecar writes compact JSON
            sock.sendall(SSE_HEAD + chunked(CHUNK) + chunked(DONE) + b"0\r\n\r\n")
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                         % (len(COMPLETION), COMPLETION))
        sock.close()
        return
    if up.fault == "stall":
        up.stop.wait()
    elif up.fault == "half_response":
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 400\r\n\r\n{\"id\": \"c1\", \"choices\": [")
    elif up.fault in ("broken_stream", "stalled_stream", "stream_after_release",
                      "ended_stream"):
        sock.sendall(SSE_HEAD + chunked(CHUNK))
        if up.fault == "ended_stream":  # a clean end of the body, before data: [DONE]
            sock.sendall(b"0\r\n\r\n")
            sock.close()
            return
        if up.fault == "stalled_stream":
            up.stop.wait()
        elif up.fault == "stream_after_release":
            up.release.wait(30)
            for _ in range(50):  # enough writes for the sidecar to meet the closed agent side
                sock.sendall(chunked(CHUNK))
            sock.sendall(chunked(DONE) + b"0\r\n\r\n")
            return
    _reset(sock)


@contextmanager
def raw_upstream(fault: str) -> Iterator[RawUpstream]:
    up = RawUpstream(fault)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                _serve_one(up, self.request)
            except (BrokenPipeError, ConnectionResetError):
                return  # the sidecar hung up first (it timed out): what the fault provokes

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    up.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        up.stop.set()
        up.release.set()
        server.shutdown()
        server.server_close()
