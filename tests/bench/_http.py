"""Minimal HTTP/1.1 framing shared by the bench's upstream server and its clients.

Just enough of RFC 9112 for keep-alive request/response exchanges on loopback: a head ending in
CRLFCRLF, then a body framed by Content-Length or chunked transfer coding. Kept this small on
purpose: the clients must cost the same few microseconds in front of every target, and the upstream
must answer faster than anything it is compared with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["AGENT_KEY", "Head", "dechunk", "parse_head", "request_bytes"]

# The key every target receives. The sidecar drops it (it holds the real one), the upstream ignores
# it, and LiteLLM needs it: it refuses to start without a master key, and then checks it per call.
AGENT_KEY = "sk-bench-" + secrets.token_hex(24)


@dataclass(frozen=True)
class Head:
    first: tuple[str, str, str]  # request: method, target, version; response: version, code, text
    headers: dict[str, str]  # lower-cased names

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length", "0"))

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def close(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def parse_head(raw: bytes) -> Head:
    """``raw`` is the head without its final CRLFCRLF."""
    lines = raw.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) == 2:  # a reason phrase may be empty
        first.append("")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Head((first[0], first[1], first[2]), headers)


def dechunk(buf: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body beginning at ``start``: (body, end offset), or None if incomplete."""
    out = bytearray()
    pos = start
    for _ in range(1_000_000):  # bounded: a body has far fewer chunks
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # no trailers are sent here: CRLF ends the body
            return (bytes(out), end + 4) if end >= 0 else None
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2
    raise ValueError("too many chunks")


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    """One complete POST, built once and sent many times."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Authorization: Bearer {AGENT_KEY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body
