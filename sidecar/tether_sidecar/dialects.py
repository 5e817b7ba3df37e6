"""The wire formats the sidecar speaks, as small adapters over the parsed request body.

OpenAI Chat Completions keeps the system prompt in ``messages`` and tool results as role
``tool``; Anthropic Messages keeps ``system`` apart and tool results as ``tool_result`` blocks in a
user message; the OpenAI Responses API (``responses_dialect.py``) keeps ``instructions`` apart
and its conversation as typed ``input`` items. Everything provider-specific that the proxy, the
context budget and the accounting need is here (the hooks below ``auth``), so they stay
format-agnostic: one call path, several front doors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .errors import BadRequest
from .sse import SseUsage

if TYPE_CHECKING:
    from .context import Compaction, Estimate
    from .harness import Harness

__all__ = ["ANTHROPIC", "OPENAI", "Dialect", "StreamUsage", "Usage"]

Message = dict[str, Any]
Usage = tuple[int, int, int, int]  # input, output, cache_read, cache_write
IMAGE_TOKENS = 1600  # an image part counts as this many tokens (upper end of providers' rules)


def _part_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            for key in ("text", "input", "content", "arguments", "partial_json"):
                value = part.get(key)
                if isinstance(value, str):
                    yield value
                elif isinstance(value, (dict, list)) and key != "content":
                    yield repr(value)
                elif key == "content" and isinstance(value, list):
                    yield from _part_texts(value)


class StreamUsage(Protocol):
    """Reads the usage out of a stream while it is relayed (``sse.SseUsage`` and its kin)."""

    input_tokens: int | None
    output_tokens: int | None
    cache_read: int
    cache_write: int

    @property
    def complete(self) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


Summarize = Callable[[list["Message"]], Awaitable[str]]


class Dialect:
    name = ""  # the provider family: gen_ai.provider.name, and which routes a task may use
    path = ""
    routes = ""  # what the agent of a task of this family should send, for an error message
    system_in_messages = True

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        for msg in body.get("messages") or ():
            if isinstance(msg, dict):
                yield from _part_texts(msg.get("content"))
                for call in msg.get("tool_calls") or ():
                    fn = (call.get("function") or {}) if isinstance(call, dict) else {}
                    yield str(fn.get("name", "")) + str(fn.get("arguments", ""))
        system = body.get("system")
        if system is not None:
            yield from _part_texts(system)
        for tool in body.get("tools") or ():
            yield repr(tool)

    def images(self, body: dict[str, Any]) -> int:
        count = 0
        for msg in body.get("messages") or ():
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list):
                count += sum(
                    1 for p in content if isinstance(p, dict) and p.get("type") in
                    ("image_url", "image", "input_image")
                )
        return count

    def is_permanent(self, msg: Message) -> bool:
        return False

    def is_tool_result(self, msg: Message) -> bool:
        raise NotImplementedError

    def note(self, text: str) -> Message:
        return {"role": "user", "content": text}

    def max_tokens(self, body: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def cap_max_tokens(self, body: dict[str, Any], value: int) -> None:
        raise NotImplementedError

    def usage(self, doc: dict[str, Any]) -> Usage | None:
        raise NotImplementedError

    def error(self, error_class: str, reason: str) -> dict[str, Any]:
        raise NotImplementedError

    def auth(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def summary_request(self, model: str, transcript: str, max_tokens: int) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": SUMMARY_PROMPT + transcript}],
        }

    def reply_text(self, doc: dict[str, Any]) -> str:
        raise NotImplementedError

    # --- hooks of the call path (llm_proxy.py); the defaults are the chat formats' -------

    def check(self, body: dict[str, Any]) -> None:
        """Refuse a body this format cannot carry (BadRequest names the field)."""
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise BadRequest("messages: a non-empty list is required")

    async def fit(self, h: Harness, body: dict[str, Any], summarize: Summarize
                  ) -> tuple[Estimate, Compaction | None]:
        """The context budget: estimate the prompt and compact it in place when it must."""
        return await h.context.fit(body, self, summarize)

    def estimate(self, h: Harness, body: dict[str, Any], *, exact: bool = False) -> Estimate:
        """The prompt's tokens outside :meth:`fit`: a summary's, or counted exactly before a
        call is refused on the estimate."""
        return h.context.estimate(body, self, exact=exact)

    def context_attributes(self, h: Harness, body: dict[str, Any]) -> dict[str, Any]:
        """Span attributes about what the estimate could and could not see."""
        return {}

    def ask_stream_usage(self, body: dict[str, Any]) -> bool:
        """Ask for usage in a stream that would not carry it; True when the body changed."""
        return False

    def stream_usage(self, h: Harness, strip_usage_chunk: bool) -> StreamUsage:
        return SseUsage(self.name, strip_usage_chunk)

    def stream_error(self, error_class: str, reason: str) -> bytes:
        """The SSE event that ends a broken stream (the SDKs raise on it)."""
        return b"data: " + orjson.dumps(self.error(error_class, reason)) + b"\n\n"

    def answered(self, h: Harness, doc: dict[str, Any]) -> None:
        """A whole (non-streamed) response arrived and was settled."""


SUMMARY_PROMPT = (
    "Summarize the conversation below for the agent that produced it, so it can continue its "
    "task without it. Keep every fact, decision, identifier, number and open question; drop "
    "pleasantries and repetition.\n\n"
)


class _OpenAI(Dialect):
    name = "openai"
    path = "/chat/completions"
    routes = "/v1/chat/completions or /v1/responses"

    def is_permanent(self, msg: Message) -> bool:
        return msg.get("role") in ("system", "developer")

    def is_tool_result(self, msg: Message) -> bool:
        return msg.get("role") == "tool"

    def max_tokens(self, body: dict[str, Any]) -> int | None:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def cap_max_tokens(self, body: dict[str, Any], value: int) -> None:
        # max_completion_tokens is the current name; max_tokens is what compatible servers read.
        key = "max_tokens" if "max_tokens" in body else "max_completion_tokens"
        body[key] = value

    def usage(self, doc: dict[str, Any]) -> Usage | None:
        u = doc.get("usage")
        if not isinstance(u, dict):
            return None
        details = u.get("prompt_tokens_details") or {}
        return (int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0), 0)

    def error(self, error_class: str, reason: str) -> dict[str, Any]:
        return {"error": {"message": reason, "type": error_class, "code": error_class,
                          "param": None}}

    def auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def reply_text(self, doc: dict[str, Any]) -> str:
        choices = doc.get("choices") or [{}]
        return str((choices[0].get("message") or {}).get("content") or "")

    def ask_stream_usage(self, body: dict[str, Any]) -> bool:
        opts = body.get("stream_options") or {}
        if opts.get("include_usage"):
            return False
        body["stream_options"] = {**opts, "include_usage": True}
        return True


class _Anthropic(Dialect):
    name = "anthropic"
    path = "/v1/messages"
    routes = "/v1/messages"
    system_in_messages = False

    def is_tool_result(self, msg: Message) -> bool:
        content = msg.get("content")
        return msg.get("role") == "user" and isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "tool_result" for p in content
        )

    def max_tokens(self, body: dict[str, Any]) -> int | None:
        value = body.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def cap_max_tokens(self, body: dict[str, Any], value: int) -> None:
        body["max_tokens"] = value

    def usage(self, doc: dict[str, Any]) -> Usage | None:
        u = doc.get("usage")
        if not isinstance(u, dict):
            return None
        read = int(u.get("cache_read_input_tokens") or 0)
        write = int(u.get("cache_creation_input_tokens") or 0)
        # Anthropic's input_tokens excludes cached tokens; genai-prices counts them in.
        return (int(u.get("input_tokens") or 0) + read + write, int(u.get("output_tokens") or 0),
                read, write)

    def error(self, error_class: str, reason: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_class, "message": reason}}

    def auth(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def stream_error(self, error_class: str, reason: str) -> bytes:
        return b"event: error\n" + super().stream_error(error_class, reason)

    def reply_text(self, doc: dict[str, Any]) -> str:
        return "".join(
            str(b.get("text", "")) for b in doc.get("content") or () if isinstance(b, dict)
        )


OPENAI: Dialect = _OpenAI()
ANTHROPIC: Dialect = _Anthropic()
