"""A model upstream that reports the usage a provider would: the prompt counted with o200k_base.

Test double for the context budget: the sidecar's estimate anchors on reported usage, so a double
that reports made-up figures cannot show it working. ``POST /v1/chat/completions`` answers with a
tool call (or, for the sidecar's summary request, a short summary) and ``usage.prompt_tokens``
counted the way OpenAI documents it: 3 tokens per request, 4 per message, plus the tokens of the
role, the content, and each tool call's name and arguments. Counted independently of the
sidecar's own code. ``GET /_counted`` lists what each request counted and whether it was a
summary request.
"""

from __future__ import annotations

from typing import Any

import bpe_openai
import orjson
from aiohttp import web

__all__ = ["SUMMARY", "build_app", "prompt_tokens"]

SUMMARY = ("Summary: searched the archive step by step; every result so far lists lighthouses "
           "by coast, none contradicts another, and the count is still open.")
_ENC = bpe_openai.get_encoding("o200k_base")
_LOG: web.AppKey[list[dict[str, Any]]] = web.AppKey("log", list)


def _tokens(text: str) -> int:
    return len(_ENC.encode_ordinary(text)) if text else 0


def _content(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 3
    for msg in messages:
        total += 4 + _tokens(str(msg.get("role", ""))) + _tokens(_content(msg.get("content")))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += _tokens(str(fn.get("name", ""))) + _tokens(str(fn.get("arguments", "")))
    return total


async def _complete(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    messages = body["messages"]
    summary = "Summarize the conversation" in _content(messages[-1].get("content"))
    counted = prompt_tokens(messages)
    request.app[_LOG].append({"prompt_tokens": counted, "summary": summary,
                              "messages": len(messages)})
    step = len(request.app[_LOG])
    if summary:
        message: dict[str, Any] = {"role": "assistant", "content": SUMMARY}
        out = _tokens(SUMMARY)
    else:
        args = orjson.dumps({"q": f"lighthouses {step}"}).decode()
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{step}", "type": "function",
             "function": {"name": "search", "arguments": args}}]}
        out = 12
    return web.json_response({
        "id": f"chatcmpl-{step}", "object": "chat.completion", "created": 1700000000,
        "model": body.get("model", "gpt-4o"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": counted, "completion_tokens": out,
                  "total_tokens": counted + out}})


async def _counted(request: web.Request) -> web.Response:
    return web.json_response(request.app[_LOG])


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_LOG] = []
    app.router.add_post("/v1/chat/completions", _complete)
    app.router.add_get("/_counted", _counted)
    return app
