"""The usage of a Responses API stream, read from its final event while the stream is relayed.

A Responses stream is typed events (``event: response.output_text.delta`` / ``data: {...}``)
that ends with one of ``response.completed``, ``response.incomplete`` (``max_output_tokens``
reached or content filtered: billed, and it carries ``usage``) or ``response.failed`` (with
``usage`` when the provider reports one). That event's ``response`` is the whole response
object, so its ``usage`` is read as a plain response's is. A stream that ends without one,
even with a clean end of the HTTP body, was cut short: :meth:`ResponsesStreamUsage.flush` raises
it as a ``TransportError``, so the proxy ends the agent's stream with an error event, never a
clean end, and charges the hold (``spend.py``), as for a stream broken by the connection.

Bytes are passed on unchanged: the sidecar adds nothing to a Responses stream (it does not
have to ask for usage, as it must for Chat Completions), so nothing is held back either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .dialects import Usage
from .sse import EventSplitter, event_data
from .upstream import TransportError

__all__ = ["ResponsesStreamUsage", "usage_of"]

_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_MARKS = tuple(name.encode() for name in _FINAL)


def usage_of(response: dict[str, Any]) -> Usage | None:
    """(input, output, cache read, cache write) of a response object; output includes the
    reasoning tokens (``output_tokens_details.reasoning_tokens``), as the provider bills them."""
    u = response.get("usage")
    if not isinstance(u, dict):
        return None
    details = u.get("input_tokens_details") or {}
    return (int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0),
            int(details.get("cached_tokens") or 0), int(details.get("cache_write_tokens") or 0))


class ResponsesStreamUsage:
    def __init__(self, on_response: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._events = EventSplitter()
        self._on_response = on_response
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read = 0
        self.cache_write = 0
        self.final: str | None = None  # the type of the final event, once it came

    @property
    def complete(self) -> bool:
        return self.input_tokens is not None and self.output_tokens is not None

    def feed(self, chunk: bytes) -> bytes:
        for event in self._events.push(chunk):
            if any(mark in event for mark in _MARKS):
                self._read(event)
        return chunk

    def flush(self) -> bytes:
        rest = self._events.rest()
        if any(mark in rest for mark in _MARKS):
            self._read(rest)
        if self.final is None:
            raise TransportError("connection", "the stream ended before its final event "
                                 "(response.completed, .incomplete or .failed)", reached=True)
        return b""

    def _read(self, event: bytes) -> None:
        data = event_data(event)
        try:
            doc: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # not JSON, so not the final event; the agent's SDK reports it
        if not isinstance(doc, dict) or doc.get("type") not in _FINAL:
            return
        response = doc.get("response")
        if not isinstance(response, dict):
            return
        self.final = str(doc["type"])
        usage = usage_of(response)
        if usage is not None:
            self.input_tokens, self.output_tokens, self.cache_read, self.cache_write = usage
            if self._on_response is not None:
                self._on_response(response)
