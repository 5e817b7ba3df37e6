"""What the agent gets through the real sidecar when upstreams compress, repeat headers or
answer too much: decoded bodies without a stale Content-Encoding, every repeated header, and an
oversized body as an explicit failure (never a truncated success)."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from tether_examples._serve import serve_in_thread

from .proc import Sidecar, task_doc

COMPLETION = {"id": "c1", "object": "chat.completion", "model": "gpt-4o", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "zipped"},
     "finish_reason": "stop"}], "usage": {"prompt_tokens": 1000, "completion_tokens": 100,
                                          "total_tokens": 1100}}
REPEATED = [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Link", "</x>"), ("Link", "</y>")]


def _app() -> web.Application:
    async def chat(req: web.Request) -> web.Response:
        await req.read()
        resp = web.Response(body=gzip.compress(orjson.dumps(COMPLETION)), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        for k, v in REPEATED:
            resp.headers.add(k, v)
        return resp

    async def tool(req: web.Request) -> web.Response:
        resp = web.Response(body=gzip.compress(b'{"result": "ok"}'), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        for k, v in REPEATED:
            resp.headers.add(k, v)
        return resp

    async def huge(req: web.Request) -> web.Response:
        return web.Response(body=b'{"result": "' + b"x" * 8192 + b'"}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/tool", tool)
    app.router.add_post("/huge", huge)
    return app


@pytest.fixture
def upstream() -> Iterator[str]:
    with serve_in_thread(_app()) as url:
        yield url


def _repeated(r: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.multi_items() if k in ("set-cookie", "link")]


def test_model_and_tool_responses_are_decoded_and_keep_repeated_headers(
        upstream: str, sidecar: Callable[..., Sidecar]) -> None:
    tools = [{"name": "t", "url": upstream + "/tool"}]
    sc = sidecar(task_doc(upstream, tools=tools))
    r = httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "zipped"
    assert "content-encoding" not in r.headers
    assert _repeated(r) == [(k.lower(), v) for k, v in REPEATED]
    assert sc.status()["inputTokens"] == 1000  # usage read from the decoded body: settled
    t = httpx.post(sc.url + "/tools/t", json={}, timeout=30)
    assert (t.status_code, t.json(), t.headers["x-tether-attempts"]) == (200, {"result": "ok"},
                                                                        "1")
    assert "content-encoding" not in t.headers
    assert _repeated(t) == [(k.lower(), v) for k, v in REPEATED]


def test_an_oversized_tool_response_is_an_explicit_failure(
        upstream: str, sidecar: Callable[..., Sidecar]) -> None:
    sc = sidecar(task_doc(upstream, tools=[{"name": "big", "url": upstream + "/huge"}]),
                 "--max-response-bytes", "4096")
    r = httpx.post(sc.url + "/tools/big", json={}, timeout=30)
    assert r.status_code == 502
    error = r.json()["error"]
    assert (error["class"], error["failureClass"], error["attempts"]) == (
        "non_retryable", "too_large", 1)
    assert "over 4096 bytes" in error["reason"]


@pytest.mark.parametrize(("args", "env", "says"), [
    (("--ca-bundle", "/nonexistent/ca.pem"), {}, "--ca-bundle /nonexistent/ca.pem"),
    ((), {"HTTPS_PROXY": "socks5://127.0.0.1:1080"}, "HTTPS_PROXY"),
    ((), {"TETHER_SIDECAR_UPSTREAM_CLIENT": "fast"}, "TETHER_SIDECAR_UPSTREAM_CLIENT"),
])
def test_a_transport_that_cannot_work_stops_the_start(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str) -> None:
    sc = Sidecar(tmp_path, task_doc("http://127.0.0.1:9"), *args, env=env)
    try:
        with pytest.raises(RuntimeError, match="sidecar exited 2") as err:
            sc.start()
    finally:
        sc.stop()  # closes its output pipe
    assert says in str(err.value)
