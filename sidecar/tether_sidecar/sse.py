"""Reading usage out of a server-sent event stream while relaying it unchanged.

Chunks are forwarded as they arrive; a copy is split into events to find the ``usage`` the
provider reports (OpenAI: the last chunk when ``stream_options.include_usage`` is set; Anthropic:
``message_start`` for input tokens and ``message_delta`` for output tokens). When the sidecar
itself asked OpenAI for usage, the usage-only chunk is held back, so the agent sees exactly the
stream it asked for.

A stream is whole only with its terminal event (OpenAI and compatible servers: ``data: [DONE]``;
Anthropic: ``message_stop``). A body that ends cleanly before it was cut short all the same (a
proxy's idle timeout, a server restarting): :meth:`SseUsage.flush` raises that as a
``TransportError``, so the proxy ends the agent's stream with an error event and the call is
charged its hold, never relayed as a clean end an agent could take for the whole answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from .upstream import TransportError

__all__ = ["EventSplitter", "SseUsage", "event_data"]


class EventSplitter:
    """Whole server-sent events out of a byte stream cut anywhere (LF or CRLF line ends); the
    one splitter of every stream reader here (chat, messages, responses)."""

    def __init__(self) -> None:
        self._buf = b""

    def push(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes (none while an event is still open)."""
        self._buf += chunk
        if b"\n\n" not in self._buf and b"\r\n\r\n" not in self._buf:
            return []
        events = self._buf.replace(b"\r\n", b"\n").split(b"\n\n")
        self._buf = events.pop()
        return events

    def rest(self) -> bytes:
        """What the stream left after its last blank line, taken out."""
        rest, self._buf = self._buf, b""
        return rest


def event_data(event: bytes) -> bytes:
    """An event's ``data:`` lines, joined (each a JSON document in these APIs)."""
    return b"".join(line[5:].strip() for line in event.split(b"\n")
                    if line.startswith(b"data:"))


class SseUsage:
    def __init__(self, provider: str, strip_usage_chunk: bool) -> None:
        self.provider = provider
        self.strip = strip_usage_chunk
        self._events = EventSplitter()
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read = 0
        self.cache_write = 0
        self.model: str | None = None
        self.ended = False  # the terminal event came

    @property
    def complete(self) -> bool:
        return self.input_tokens is not None and self.output_tokens is not None

    def feed(self, chunk: bytes) -> bytes:
        """Take a chunk from upstream; return the bytes to pass on now."""
        events = self._events.push(chunk)
        if not events:
            return b"" if self.strip else chunk
        out = []
        for event in events:
            self.ended = self.ended or self._terminal(event)
            keep = self._read(event)
            if keep:
                out.append(event + b"\n\n")
        return b"".join(out) if self.strip else chunk

    def flush(self) -> bytes:
        """The end of the body: what is left to pass on; raises when the terminal event never
        came (the stream was cut short)."""
        rest = self._events.rest()
        if rest.strip():
            self.ended = self.ended or self._terminal(rest)
            self._read(rest)
        if not self.ended:
            marker = "message_stop" if self.provider == "anthropic" else "data: [DONE]"
            raise TransportError("connection", f"the stream ended before its final event "
                                 f"({marker})", reached=True)
        return rest if self.strip else b""

    def _terminal(self, event: bytes) -> bool:
        if self.provider == "anthropic":
            return b"message_stop" in event
        return any(line.startswith(b"data:") and line[5:].strip() == b"[DONE]"
                   for line in event.split(b"\n"))

    def _read(self, event: bytes) -> bool:
        if b'"usage"' not in event:
            return True
        data = event_data(event)
        try:
            doc: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True  # not ours to judge: relay it, the agent's SDK will report it
        if not isinstance(doc, dict):
            return True
        if self.provider == "anthropic":
            self._anthropic(doc)
            return True
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self.model = doc.get("model") or self.model
            self.input_tokens = int(usage.get("prompt_tokens") or 0)
            self.output_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cache_read = int(details.get("cached_tokens") or 0)
            return not (self.strip and not doc.get("choices"))
        return True

    def _anthropic(self, doc: dict[str, Any]) -> None:
        message = doc.get("message")
        usage = (message or {}).get("usage") if isinstance(message, dict) else doc.get("usage")
        if not isinstance(usage, dict):
            return
        if isinstance(message, dict):
            self.model = message.get("model") or self.model
        if "input_tokens" in usage and usage["input_tokens"] is not None:
            self.cache_read = int(usage.get("cache_read_input_tokens") or 0)
            self.cache_write = int(usage.get("cache_creation_input_tokens") or 0)
            self.input_tokens = int(usage["input_tokens"]) + self.cache_read + self.cache_write
        if "output_tokens" in usage and usage["output_tokens"] is not None:
            self.output_tokens = int(usage["output_tokens"])
