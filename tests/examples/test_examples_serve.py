"""`serve_in_thread`: the helper other tests use to run an aiohttp app on loopback."""

from __future__ import annotations

import socket

import httpx
import pytest
from aiohttp import web

from tether_examples._serve import serve_in_thread


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


def test_serves_on_a_free_loopback_port_and_stops() -> None:
    with serve_in_thread(_app()) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url).text == "hello"

    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_a_server_that_cannot_start_raises_in_the_caller() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with (
            pytest.raises(OSError, match="address already in use"),
            serve_in_thread(_app(), port=port),
        ):
            pytest.fail("the server should not have started")
